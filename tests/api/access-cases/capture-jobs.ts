import type { AccessCase, AccessWorld } from './types.ts';
import { listWithout } from './types.ts';

// Capture jobs as data (web/api/routes/capture-jobs.ts): listed, read and cancelled only within the
// caller's subtree. Each case makes its own job of county A's camera (scheduled an hour ahead).

async function jobOfA(w: AccessWorld): Promise<number> {
  const { rows } = await w.pool.query<{ id: number }>(
    `INSERT INTO capture_jobs (camera_id, starts_at, ends_at) VALUES ($1, now() + interval '1 hour', now() + interval '2 hours') RETURNING id`,
    [w.A.camera],
  );
  return Number(rows[0]!.id);
}

let listed = 0;

export const cases: AccessCase[] = [
  {
    method: 'GET',
    route: '/api/capture-jobs',
    allowed: { role: 'supervisor', level: 'town' },
    build: async (w) => {
      listed = await jobOfA(w);
      return { path: '/api/capture-jobs?limit=500' };
    },
    outsider: listWithout(() => [listed]),
    allowedStatus: [200],
    check: (r) => {
      const items = (r.body as { items: Array<{ id: number }> }).items;
      if (!items.some((j) => j.id === listed)) throw new Error(`county A's job ${listed} missing from its own list`);
    },
  },
  {
    method: 'GET',
    route: '/api/capture-jobs',
    title: 'filtered by a camera of county A',
    allowed: { role: 'supervisor', level: 'town' },
    build: (w) => ({ path: `/api/capture-jobs?camera_id=${w.A.camera}` }),
    allowedStatus: [200],
  },
  {
    method: 'GET',
    route: '/api/capture-jobs/{id}',
    allowed: { role: 'operator', level: 'village' },
    build: async (w) => ({ path: `/api/capture-jobs/${await jobOfA(w)}` }),
    allowedStatus: [200],
  },
  {
    method: 'POST',
    route: '/api/capture-jobs/{id}/cancel',
    allowed: { role: 'supervisor', level: 'town' },
    build: async (w) => ({ path: `/api/capture-jobs/${await jobOfA(w)}/cancel`, body: {} }),
    allowedStatus: [200],
    check: async (r, w) => {
      const id = (r.body as { id: number }).id;
      const { rows } = await w.pool.query<{ state: string }>('SELECT state FROM capture_jobs WHERE id = $1', [id]);
      if (rows[0]?.state !== 'cancelled') throw new Error(`job ${id} not cancelled: ${rows[0]?.state}`);
    },
  },
];
