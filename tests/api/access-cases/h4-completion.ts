import assert from 'node:assert/strict';
import type { AccessCase, ApiAnswer, AccessWorld } from './types.ts';

// H4: completion figures and the per-branch "why" (web/api/routes/completion.ts).

interface UnitsAnswer { units: Array<{ unit: { id: number } }> }

/** The compare route answers everyone with the units of one level inside the caller's own subtree. */
const noUnitOfA = (r: ApiAnswer, w: AccessWorld): void => {
  assert.equal(r.status, 200, r.text.slice(0, 200));
  const ids = (r.body as UnitsAnswer).units.map((u) => u.unit.id);
  assert.ok(!ids.includes(w.A.units.village), `county B's user sees county A's village ${w.A.units.village}`);
};

export const cases: AccessCase[] = [
  {
    method: 'GET', route: '/api/completion/units/{unitId}',
    allowed: { role: 'supervisor', level: 'town' },
    build: (w) => ({ path: `/api/completion/units/${w.A.units.town}` }),
    allowedStatus: [200],
    check: (r) => {
      const b = r.body as { overall: { branches: number } };
      assert.ok(b.overall.branches > 0, r.text.slice(0, 200));
    },
  },
  {
    method: 'GET', route: '/api/completion/units/{unitId}/children',
    allowed: { role: 'leader', level: 'county' },
    build: (w) => ({ path: `/api/completion/units/${w.A.units.community}/children` }),
    allowedStatus: [200],
    check: (r, w) => {
      assert.ok((r.body as UnitsAnswer).units.some((u) => u.unit.id === w.A.units.village), r.text.slice(0, 300));
    },
  },
  {
    method: 'GET', route: '/api/completion/compare',
    allowed: { role: 'supervisor', level: 'county' },
    build: () => ({ path: '/api/completion/compare?level=village' }),
    outsider: noUnitOfA,
    allowedStatus: [200],
    check: (r, w) => {
      assert.ok((r.body as UnitsAnswer).units.some((u) => u.unit.id === w.A.units.village), r.text.slice(0, 300));
    },
  },
  {
    method: 'GET', route: '/api/branches/{id}/completion',
    allowed: { role: 'supervisor', level: 'town' },
    build: (w) => ({ path: `/api/branches/${w.A.branch}/completion` }),
    allowedStatus: [200],
    check: (r, w) => {
      const b = r.body as { branch: { id: number }; obligations: Array<{ obligation: string; status: string }> };
      assert.equal(b.branch.id, w.A.branch);
      assert.ok(b.obligations.some((o) => o.obligation === 'member_meeting'), r.text.slice(0, 300));
    },
  },
];
