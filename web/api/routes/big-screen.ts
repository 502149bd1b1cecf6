import { z } from 'zod';
import type { Pool } from '../../../infra/db/pool.ts';
import { obligationStatusSql } from '../../../scheduler/obligations/evaluate.ts';
import { requireUnitInScope } from '../scope.ts';
import { ApiRoutes } from '../route-registry.ts';
import { idQuery } from '../schemas.ts';

// The control centre's big screen (大屏): one summary a wall display polls - warnings (branches
// overdue in the period just ended, cameras offline, capture jobs that failed in the last 24 hours)
// and today's sessions in the subtree with their state. The completion histogram itself comes from
// the completion routes. Everything is limited to the caller's subtree; a unit outside it is 404.

const Query = z.strictObject({ unitId: idQuery.optional() });
const LIST = 12;

export interface BigScreenOptions {
  now?: () => Date;
  /** The day "today" is counted in; default Asia/Shanghai. */
  timeZone?: string;
}

export function registerBigScreenRoutes(routes: ApiRoutes, pool: Pool, opts: BigScreenOptions = {}): void {
  const now = opts.now ?? (() => new Date());
  const tz = opts.timeZone ?? 'Asia/Shanghai';
  routes.add(
    {
      method: 'get',
      path: '/big-screen/summary',
      summary: "Big screen: warnings (overdue branches, cameras offline, failed captures) and today's sessions of a unit's subtree",
      tag: 'completion',
      roles: ['leader', 'supervisor', 'operator', 'admin'],
      query: Query,
      responses: { '404': 'no such unit in your subtree' },
    },
    async ({ query, user }) => {
      const unit = await requireUnitInScope(pool, user, query.unitId ?? user.unitId, 'unitId');
      const at = now();
      const prefix = `${unit.path}%`;

      // Overdue: (branch, obligation) rows of a period that has ended without being done.
      const overdue = await pool.query<{ branch_id: string; branch: string; unit: string; obligations: string[] }>(
        `WITH st AS (${obligationStatusSql})
         SELECT st.branch_id, b.name AS branch, u.name AS unit, array_agg(DISTINCT ot.name_zh ORDER BY ot.name_zh) AS obligations
           FROM st JOIN branches b ON b.id = st.branch_id JOIN units u ON u.id = st.unit_id
           JOIN obligation_types ot ON ot.code = st.obligation
          WHERE st.status = 'overdue'
          GROUP BY st.branch_id, b.name, u.name, u.path
          ORDER BY u.path, b.name`,
        [at, unit.path, '7 days'],
      );
      const offline = await pool.query<{ id: string; name: string; unit: string; since: Date; reason: string | null }>(
        `SELECT c.id, c.name, u.name AS unit, cs.since, cs.reason
           FROM cameras c JOIN units u ON u.id = c.unit_id JOIN camera_status cs ON cs.camera_id = c.id
          WHERE u.path LIKE $1 AND c.enabled AND c.retired_at IS NULL AND NOT cs.online
          ORDER BY cs.since, c.id`,
        [prefix],
      );
      const failed = await pool.query<{ id: string; camera: string; unit: string; starts_at: Date }>(
        `SELECT j.id, c.name AS camera, u.name AS unit, j.starts_at
           FROM capture_jobs j JOIN cameras c ON c.id = j.camera_id JOIN units u ON u.id = c.unit_id
          WHERE u.path LIKE $1 AND j.state = 'failed' AND j.ends_at > $2::timestamptz - interval '24 hours' AND j.starts_at <= $2
          ORDER BY j.starts_at DESC`,
        [prefix, at],
      );
      // Today's sessions. The state and topic columns come with the session ledger (0061): a session
      // started or ended by its secretary says so; a planned one is read from the clock (as the
      // sessions API does). to_jsonb tolerates the columns being absent (before 0061).
      const sessions = await pool.query<{ id: string; branch: string; unit: string; starts_at: Date; ends_at: Date; topic: string | null; obligation: string; obligation_zh: string; obligation_en: string; state: string }>(
        `SELECT s.id, b.name AS branch, u.name AS unit, s.starts_at, s.ends_at,
                coalesce(to_jsonb(s) ->> 'topic', s.title) AS topic, s.obligation, ot.name_zh AS obligation_zh, ot.name_en AS obligation_en,
                CASE WHEN s.cancelled OR to_jsonb(s) ->> 'state' = 'cancelled' THEN 'cancelled'
                     WHEN to_jsonb(s) ->> 'state' IN ('running', 'ended') THEN to_jsonb(s) ->> 'state'
                     WHEN $2 < s.starts_at THEN 'planned' WHEN $2 < s.ends_at THEN 'running' ELSE 'ended' END AS state,
                -- running first, then what is still to come, then what is over
                CASE WHEN s.cancelled OR to_jsonb(s) ->> 'state' = 'cancelled' THEN 3
                     WHEN to_jsonb(s) ->> 'state' = 'running' OR (coalesce(to_jsonb(s) ->> 'state', 'planned') = 'planned' AND $2 >= s.starts_at AND $2 < s.ends_at) THEN 0
                     WHEN coalesce(to_jsonb(s) ->> 'state', 'planned') = 'planned' AND $2 < s.starts_at THEN 1 ELSE 2 END AS rank
           FROM meeting_sessions s JOIN branches b ON b.id = s.branch_id JOIN units u ON u.id = b.unit_id
           JOIN obligation_types ot ON ot.code = s.obligation
          WHERE u.path LIKE $1
            AND s.starts_at >= date_trunc('day', $2::timestamptz AT TIME ZONE $3) AT TIME ZONE $3
            AND s.starts_at < (date_trunc('day', $2::timestamptz AT TIME ZONE $3) + interval '1 day') AT TIME ZONE $3
          ORDER BY 11, s.starts_at, s.id`,
        [prefix, at, tz],
      );
      const counts = { planned: 0, running: 0, ended: 0, cancelled: 0 } as Record<string, number>;
      for (const s of sessions.rows) counts[s.state] = (counts[s.state] ?? 0) + 1;
      return {
        at: at.toISOString(),
        unit: { id: unit.id, level: unit.level },
        warnings: {
          overdueBranches: overdue.rowCount ?? 0,
          overdue: overdue.rows.slice(0, LIST).map((r) => ({ branchId: Number(r.branch_id), branch: r.branch, unit: r.unit, obligations: r.obligations })),
          camerasOffline: offline.rowCount ?? 0,
          offline: offline.rows.slice(0, LIST).map((r) => ({ cameraId: Number(r.id), camera: r.name, unit: r.unit, since: r.since.toISOString(), reason: r.reason })),
          failedCaptures: failed.rowCount ?? 0,
          failed: failed.rows.slice(0, LIST).map((r) => ({ jobId: Number(r.id), camera: r.camera, unit: r.unit, startsAt: r.starts_at.toISOString() })),
        },
        today: {
          counts,
          sessions: sessions.rows.slice(0, 50).map((s) => ({
            id: Number(s.id), branch: s.branch, unit: s.unit, startsAt: s.starts_at.toISOString(), endsAt: s.ends_at.toISOString(),
            topic: s.topic, obligation: s.obligation, obligationZh: s.obligation_zh, obligationEn: s.obligation_en, state: s.state,
          })),
        },
      };
    },
  );
}
