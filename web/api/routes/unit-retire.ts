import { z } from 'zod';
import { withTransaction, type Pool } from '../../../infra/db/pool.ts';
import { HttpError, type AuthUser } from '../auth-context.ts';
import { audit } from '../audit.ts';
import { permissions } from '../permissions.ts';
import { idParam, type ApiRoutes } from '../route-registry.ts';
import { requireUnitInScope, type Db } from '../scope.ts';

// Retiring a unit that has data (a merged village, a dissolved community). Only an empty unit can be
// deleted (DELETE /units/:id); one with data is retired instead: the page first shows what depends
// on it (GET .../dependants), then POST .../retire marks the unit and its whole subtree retired, with
// their branches (obligations and reminders stop: branch_obligation_rules skips retired branches),
// cameras (no new captures; scheduled ones are cancelled) and service points; accounts there are
// disabled and SFU nodes revoked. Recordings, sessions, checks, reminders, calls and the audit log are
// kept untouched: the history of the unit stays readable.

export interface Dependants {
  unit_id: number;
  retired_at: string | null;
  child_units: number;
  users: number;
  branches: number;
  members: number;
  cameras: number;
  service_points: number;
  sfu_nodes: number;
  scheduled_captures: number;
  /** Kept whatever happens. */
  kept: { recording_segments: number; sessions: number; reminders: number; service_calls: number };
  /** Nothing depends on it: it can be deleted outright. */
  empty: boolean;
}

async function dependantsOf(db: Db, unitId: number, path: string): Promise<Dependants> {
  const { rows } = await db.query<Omit<Dependants, 'kept'> & { recording_segments: number; sessions: number; reminders: number; service_calls: number }>(
    `WITH sub AS (SELECT id FROM units WHERE path LIKE $2),
          cams AS (SELECT id FROM cameras WHERE unit_id IN (SELECT id FROM sub)),
          brs AS (SELECT id FROM branches WHERE unit_id IN (SELECT id FROM sub))
     SELECT $1::bigint AS unit_id, (SELECT retired_at FROM units WHERE id = $1) AS retired_at,
       (SELECT count(*) FROM units WHERE path LIKE $2 AND id <> $1 AND retired_at IS NULL)::int AS child_units,
       (SELECT count(*) FROM users WHERE unit_id IN (SELECT id FROM sub) AND NOT disabled)::int AS users,
       (SELECT count(*) FROM branches WHERE id IN (SELECT id FROM brs) AND retired_at IS NULL)::int AS branches,
       (SELECT count(*) FROM members WHERE branch_id IN (SELECT id FROM branches WHERE id IN (SELECT id FROM brs) AND retired_at IS NULL) AND left_at IS NULL)::int AS members,
       (SELECT count(*) FROM cameras WHERE id IN (SELECT id FROM cams) AND retired_at IS NULL)::int AS cameras,
       (SELECT count(*) FROM service_points WHERE unit_id IN (SELECT id FROM sub) AND retired_at IS NULL)::int AS service_points,
       (SELECT count(*) FROM sfu_nodes WHERE unit_id IN (SELECT id FROM sub) AND revoked_at IS NULL)::int AS sfu_nodes,
       (SELECT count(*) FROM capture_jobs WHERE camera_id IN (SELECT id FROM cams) AND state = 'scheduled')::int AS scheduled_captures,
       (SELECT count(*) FROM recording_segments WHERE camera_id IN (SELECT id FROM cams))::int AS recording_segments,
       (SELECT count(*) FROM meeting_sessions WHERE branch_id IN (SELECT id FROM brs))::int AS sessions,
       (SELECT count(*) FROM reminders WHERE branch_id IN (SELECT id FROM brs))::int AS reminders,
       (SELECT count(*) FROM service_calls WHERE station_id IN (SELECT id FROM service_points WHERE unit_id IN (SELECT id FROM sub))
          OR centre_id IN (SELECT id FROM service_points WHERE unit_id IN (SELECT id FROM sub)))::int AS service_calls,
       -- What DELETE /units/:id checks: anything at all below or in the unit, retired or not.
       NOT (EXISTS (SELECT 1 FROM units WHERE parent_id = $1) OR EXISTS (SELECT 1 FROM users WHERE unit_id = $1)
         OR EXISTS (SELECT 1 FROM branches WHERE unit_id = $1) OR EXISTS (SELECT 1 FROM service_points WHERE unit_id = $1)
         OR EXISTS (SELECT 1 FROM cameras WHERE unit_id = $1) OR EXISTS (SELECT 1 FROM sfu_nodes WHERE unit_id = $1)) AS empty`,
    [unitId, `${path}%`],
  );
  const r = rows[0]!;
  const kept = { recording_segments: r.recording_segments, sessions: r.sessions, reminders: r.reminders, service_calls: r.service_calls };
  return {
    unit_id: r.unit_id,
    retired_at: r.retired_at ? new Date(r.retired_at).toISOString() : null,
    child_units: r.child_units,
    users: r.users,
    branches: r.branches,
    members: r.members,
    cameras: r.cameras,
    service_points: r.service_points,
    sfu_nodes: r.sfu_nodes,
    scheduled_captures: r.scheduled_captures,
    kept,
    empty: r.empty,
  };
}

export function registerUnitRetireRoutes(routes: ApiRoutes, pool: Pool): void {
  routes.add(
    {
      method: 'get',
      path: '/units/:id/dependants',
      summary: 'What depends on a unit and its subtree (shown before a retire or delete), and the history a retire keeps',
      tag: 'units',
      params: idParam,
    },
    async ({ params, user }) => {
      const unit = await requireUnitInScope(pool, user, params.id);
      return dependantsOf(pool, unit.id, unit.path);
    },
  );

  routes.add(
    {
      method: 'post',
      path: '/units/:id/retire',
      summary: "Retires a unit with data and its subtree: branches, cameras, service points retire (obligations stop), accounts disabled, nodes revoked; history kept",
      tag: 'units',
      roles: permissions.writeUnits,
      params: idParam,
      // The page sends back the counts it showed: a retire never takes more than the person saw.
      body: z.strictObject({ confirm_counts: z.record(z.string().max(40), z.number().int().min(0)).optional() }),
    },
    async ({ params, body, user, req }) => retire(pool, user, params.id, body.confirm_counts, req.ip ?? null),
  );
}

async function retire(pool: Pool, user: AuthUser, unitId: number, shown: Record<string, number> | undefined, ip: string | null): Promise<Dependants & { retired: true }> {
  return withTransaction(pool, async (client) => {
    const unit = await requireUnitInScope(client, user, unitId);
    if (unit.id === user.unitId) throw new HttpError(403, 'own_unit', '不能撤销本人所属单位 / you cannot retire your own unit');
    await client.query('SELECT id FROM units WHERE path LIKE $1 FOR UPDATE', [`${unit.path}%`]);
    const before = await dependantsOf(client, unit.id, unit.path);
    if (before.retired_at) throw new HttpError(409, 'already_retired', '该单位已撤销 / the unit is retired already');
    if (shown) {
      const changed = Object.entries(shown).filter(([k, v]) => k in before && (before as unknown as Record<string, unknown>)[k] !== v);
      if (changed.length) {
        throw new HttpError(409, 'dependants_changed', '单位下的数据已变化，请重新查看后再确认 / what depends on the unit changed: review it again', { dependants: before });
      }
    }
    const sub = `${unit.path}%`;
    const inSub = 'unit_id IN (SELECT id FROM units WHERE path LIKE $1)';
    await client.query(`UPDATE units SET retired_at = now() WHERE path LIKE $1 AND retired_at IS NULL`, [sub]);
    await client.query(`UPDATE branches SET retired_at = now() WHERE ${inSub} AND retired_at IS NULL`, [sub]);
    await client.query(`UPDATE service_points SET retired_at = now() WHERE ${inSub} AND retired_at IS NULL`, [sub]);
    await client.query(`UPDATE capture_jobs SET state = 'cancelled' WHERE state = 'scheduled' AND camera_id IN (SELECT id FROM cameras WHERE ${inSub})`, [sub]);
    await client.query(`UPDATE cameras SET retired_at = now() WHERE ${inSub} AND retired_at IS NULL`, [sub]);
    await client.query(`UPDATE users SET disabled = true WHERE ${inSub} AND NOT disabled`, [sub]);
    await client.query(`UPDATE sfu_nodes SET revoked_at = now() WHERE ${inSub} AND revoked_at IS NULL`, [sub]);
    await client.query(
      `UPDATE sfu_node_keys SET state = 'revoked', ended_at = now() WHERE state IN ('active', 'pending') AND node_id IN (SELECT id FROM sfu_nodes WHERE ${inSub})`,
      [sub],
    );
    await audit(client, { action: 'unit.retire', user, objectType: 'unit', objectId: unit.id, unitId: unit.id, ip, detail: { retired: before } });
    const after = await dependantsOf(client, unit.id, unit.path);
    return { ...after, retired: true };
  });
}
