import { z } from 'zod';
import type { Pool } from '../../../infra/db/pool.ts';
import { ApiRoutes, page, pageQuery } from '../route-registry.ts';
import { requireUnitInScope } from '../scope.ts';
import { idQuery } from '../schemas.ts';

// The reminders the scheduler decided for branches in a subtree, newest first, each with the
// messages sent for it (channel, delivery state, failure reason) — what a supervisor checks when a
// branch is overdue. Read-only; the scheduler writes these tables.

interface ReminderRow {
  id: number;
  branch_id: number;
  branch_name: string;
  unit_id: number;
  unit_name: string;
  obligation: string;
  period_key: string;
  period_end: Date;
  step: string;
  target: string;
  created_at: Date;
  sends: Array<{ id: number; channel: string; state: string; failure_reason: string | null; parts: number; delivered_at: string | null }>;
}

export function createReminderRoutes(pool: Pool): ApiRoutes {
  const routes = new ApiRoutes();
  routes.add(
    {
      method: 'get',
      path: '/reminders',
      summary: 'Reminders sent for branches under a unit (default: yours), with each message\'s delivery state',
      tag: 'scheduler',
      roles: ['leader', 'supervisor', 'admin', 'secretary'],
      query: z.strictObject({ under: idQuery.optional(), target: z.enum(['secretary', 'supervisor']).optional(), ...pageQuery }),
    },
    async ({ query, user }) => {
      const root = query.under ? await requireUnitInScope(pool, user, query.under, 'under') : { path: user.unitPath };
      const args: unknown[] = [`${root.path}%`, query.limit + 1, query.offset];
      const target = query.target ? `AND r.target = $${args.push(query.target)}` : '';
      const { rows } = await pool.query<ReminderRow>(
        `SELECT r.id, b.id AS branch_id, b.name AS branch_name, u.id AS unit_id, u.name AS unit_name, r.obligation, r.period_key,
                r.period_end, r.step, r.target, r.created_at,
                COALESCE((SELECT json_agg(json_build_object('id', s.id, 'channel', s.channel, 'state', s.state,
                                  'failure_reason', s.failure_reason, 'parts', s.parts, 'delivered_at', s.delivered_at) ORDER BY s.id)
                            FROM message_sends s WHERE s.reminder_id = r.id), '[]') AS sends
           FROM reminders r JOIN branches b ON b.id = r.branch_id JOIN units u ON u.id = b.unit_id
          WHERE u.path LIKE $1 ${target}
          ORDER BY r.id DESC LIMIT $2 OFFSET $3`,
        args,
      );
      return page(
        rows.map((r) => ({
          id: r.id,
          branch: { id: r.branch_id, name: r.branch_name },
          unit: { id: r.unit_id, name: r.unit_name },
          obligation: r.obligation,
          period_key: r.period_key,
          period_end: r.period_end,
          step: r.step,
          target: r.target,
          created_at: r.created_at,
          sends: r.sends,
        })),
        query.limit,
        query.offset,
      );
    },
  );
  return routes;
}
