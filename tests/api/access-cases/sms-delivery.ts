import type { AccessCase, AccessWorld } from './types.ts';

// Issue 13: the delivery view of a reminder (web/api/routes/reminders.ts), the per-unit SMS provider
// table, and the cloud reply push. Reminders and provider rows belong to county A's subtree.

async function reminderOfA(w: AccessWorld): Promise<number> {
  const { rows } = await w.pool.query<{ id: number }>(
    `INSERT INTO reminders (branch_id, obligation, period_key, period_end, step, target, due_at)
     VALUES ($1, 'member_meeting', $2, now() + interval '5 days', 'd7', 'secretary', now()) RETURNING id`,
    [w.A.branch, `20${String(10 + (w.unique() % 80)).padStart(2, '0')}-Q1`],
  );
  return Number(rows[0]!.id);
}

export const cases: AccessCase[] = [
  {
    method: 'GET', route: '/api/reminders/{id}/delivery', allowed: { role: 'supervisor', level: 'town' },
    build: async (w) => ({ path: `/api/reminders/${await reminderOfA(w)}/delivery` }), allowedStatus: [200],
  },
  {
    method: 'GET', route: '/api/units/{id}/sms-providers', allowed: { role: 'admin' },
    build: (w) => ({ path: `/api/units/${w.A.units.county}/sms-providers` }), allowedStatus: [200],
  },
  {
    method: 'PUT', route: '/api/units/{id}/sms-providers', allowed: { role: 'admin' },
    build: (w) => ({ path: `/api/units/${w.A.units.county}/sms-providers`, body: { providers: [] } }), allowedStatus: [200],
  },
  {
    method: 'POST', route: '/api/sms/callback/{id}/{token}', allowed: { role: 'admin' },
    public: 'cloud SMS providers push replies without signing in; the provider row\'s write-only callbackToken in the URL is the secret (a wrong one is 404)',
    build: () => ({ path: '/api/sms/callback/1/not-the-token-0123456789', body: [] }),
  },
];
