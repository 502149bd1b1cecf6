import assert from 'node:assert/strict';
import type { AccessCase, AccessWorld } from './types.ts';
import { listWithout } from './types.ts';

// H1 (issue 16): branch duties, obligation rules, escalation ladder, postponements, to-dos.
// The outsider is the same role and level in county B: every object here is county A's, so 404 (or 403).

const groupOfA = async (w: AccessWorld): Promise<number> => {
  const sec = await w.actor('A', 'secretary', 'village');
  const r = await w.call('POST', `/api/branches/${w.A.branch}/groups`, { token: sec.token, body: { name: `小组${w.unique()}` } });
  assert.equal(r.status, 201, r.text);
  return (r.body as { id: number }).id;
};

const todoOfA = async (w: AccessWorld): Promise<number> => {
  const { rows } = await w.pool.query<{ id: number }>(
    `INSERT INTO todos (unit_id, role, kind, title_zh, title_en) VALUES ($1, 'secretary', 'test', '待办', 'to-do') RETURNING id`,
    [w.A.units.village],
  );
  return Number(rows[0]!.id);
};

const postponementOfA = async (w: AccessWorld, periodKey: string): Promise<number> => {
  const sec = await w.actor('A', 'secretary', 'village');
  const r = await w.call('POST', '/api/postponements', {
    token: sec.token, body: { branchId: w.A.branch, obligation: 'member_meeting', periodKey, reason: '农忙' },
  });
  assert.equal(r.status, 201, r.text);
  return (r.body as { id: number }).id;
};

let listedTodo = 0;

export const cases: AccessCase[] = [
  {
    method: 'GET', route: '/api/branches/{id}/facts', allowed: { role: 'supervisor', level: 'town' },
    build: (w) => ({ path: `/api/branches/${w.A.branch}/facts` }),
    check: (r, w) => assert.equal((r.body as { members: unknown[] }).members.length, w.A.members.length),
  },
  {
    method: 'PATCH', route: '/api/branches/{id}/facts', allowed: { role: 'secretary', level: 'village' },
    build: (w) => ({ path: `/api/branches/${w.A.branch}/facts`, body: { hasCommittee: false } }),
    allowedStatus: [200],
  },
  {
    method: 'PATCH', route: '/api/members/{id}/duties', allowed: { role: 'secretary', level: 'village' },
    build: (w) => ({ path: `/api/members/${w.A.members[1]}/duties`, body: { membership: 'probationary' } }),
    allowedStatus: [200],
    check: async (r, w) => {
      const { rows } = await w.pool.query<{ membership: string }>(`SELECT membership FROM members WHERE id = $1`, [w.A.members[1]]);
      assert.equal(rows[0]!.membership, 'probationary');
      await w.pool.query(`UPDATE members SET membership = 'full' WHERE id = $1`, [w.A.members[1]]);
    },
  },
  {
    method: 'POST', route: '/api/branches/{id}/groups', allowed: { role: 'secretary', level: 'village' },
    build: (w) => ({ path: `/api/branches/${w.A.branch}/groups`, body: { name: `第${w.unique()}党小组` } }),
    allowedStatus: [201],
    check: async (r, w) => {
      const { rows } = await w.pool.query(`SELECT 1 FROM party_groups WHERE id = $1 AND branch_id = $2`, [(r.body as { id: number }).id, w.A.branch]);
      assert.equal(rows.length, 1);
    },
  },
  {
    method: 'PATCH', route: '/api/party-groups/{id}', allowed: { role: 'secretary', level: 'village' },
    build: async (w) => ({ path: `/api/party-groups/${await groupOfA(w)}`, body: { name: '改名党小组' } }),
    allowedStatus: [200],
  },
  {
    method: 'DELETE', route: '/api/party-groups/{id}', allowed: { role: 'secretary', level: 'village' },
    build: async (w) => ({ path: `/api/party-groups/${await groupOfA(w)}` }),
    allowedStatus: [200],
    check: (r) => assert.ok((r.body as { retiredAt: string | null }).retiredAt),
  },
  {
    method: 'GET', route: '/api/branches/{id}/obligations', allowed: { role: 'supervisor', level: 'town' },
    build: (w) => ({ path: `/api/branches/${w.A.branch}/obligations?at=2026-05-15T00:00:00Z` }),
    allowedStatus: [200],
    check: (r) => assert.ok((r.body as { rows: Array<{ obligation: string }> }).rows.some((x) => x.obligation === 'member_meeting')),
  },
  {
    method: 'GET', route: '/api/obligation-rules', allowed: { role: 'leader', level: 'county' },
    build: (w) => ({ path: `/api/obligation-rules?unitId=${w.A.units.county}` }),
    allowedStatus: [200],
  },
  {
    method: 'PUT', route: '/api/obligation-rules/{unitId}/{obligation}', allowed: { role: 'leader', level: 'county' },
    build: (w) => ({ path: `/api/obligation-rules/${w.A.units.county}/party_lesson`, body: { period: 'quarter', requiredCount: 1, minDurationS: 2700 } }),
    allowedStatus: [200],
  },
  {
    method: 'GET', route: '/api/escalation-ladder', allowed: { role: 'supervisor', level: 'town' },
    build: (w) => ({ path: `/api/escalation-ladder?unitId=${w.A.units.village}` }),
    allowedStatus: [200],
  },
  {
    // Ladders are set by a city; a county administrator reaches the route (role, subtree) and is told so.
    method: 'PUT', route: '/api/escalation-ladder/{cityUnitId}', allowed: { role: 'admin', level: 'county' },
    build: (w) => ({ path: `/api/escalation-ladder/${w.A.units.county}`, body: { steps: [{ key: 'd7', anchor: 'before_end', offsetHours: 168, target: 'secretary' }] } }),
    allowedStatus: [422],
  },
  {
    method: 'POST', route: '/api/postponements', allowed: { role: 'secretary', level: 'village' },
    build: (w) => ({ path: '/api/postponements', body: { branchId: w.A.branch, obligation: 'party_lesson', periodKey: '2026-Q4', reason: '汛期' } }),
    allowedStatus: [201],
    check: async (r, w) => {
      const { rows } = await w.pool.query(`SELECT 1 FROM obligation_postponements WHERE id = $1 AND branch_id = $2`, [(r.body as { id: number }).id, w.A.branch]);
      assert.equal(rows.length, 1);
    },
  },
  {
    method: 'GET', route: '/api/postponements', allowed: { role: 'supervisor', level: 'town' },
    build: async (w) => {
      await postponementOfA(w, '2026-Q2');
      return { path: `/api/postponements?under=${w.A.units.town}` };
    },
    allowedStatus: [200],
    check: (r, w) => assert.ok((r.body as { items: Array<{ branchId: number }> }).items.some((p) => p.branchId === w.A.branch)),
  },
  {
    method: 'POST', route: '/api/postponements/{id}/decision', allowed: { role: 'supervisor', level: 'town' },
    build: async (w) => ({ path: `/api/postponements/${await postponementOfA(w, '2026-Q3')}/decision`, body: { decision: 'approve', note: '同意' } }),
    allowedStatus: [200],
    check: (r) => assert.equal((r.body as { state: string }).state, 'approved'),
  },
  {
    // Everyone has a to-do list of their own unit and role: the outsider's holds none of county A's.
    method: 'GET', route: '/api/todos', allowed: { role: 'secretary', level: 'village' },
    build: async (w) => {
      listedTodo = await todoOfA(w);
      return { path: '/api/todos' };
    },
    outsider: listWithout(() => [listedTodo]),
    allowedStatus: [200],
    check: (r) => assert.ok((r.body as { items: Array<{ id: number }> }).items.some((t) => t.id === listedTodo)),
  },
  {
    method: 'POST', route: '/api/todos/{id}/done', allowed: { role: 'secretary', level: 'village' },
    build: async (w) => ({ path: `/api/todos/${await todoOfA(w)}/done` }),
    allowedStatus: [200],
    check: (r) => assert.ok((r.body as { doneAt: string | null }).doneAt),
  },
];
