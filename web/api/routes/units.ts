import { z } from 'zod';
import { withTransaction, type Pool } from '../../../infra/db/pool.ts';
import { unitLevelSchema, levelRank } from '../../../infra/org/levels.ts';
import { unitCodeSchema } from '../../../infra/org/org-file.ts';
import { HttpError, type AuthUser } from '../auth-context.ts';
import { audit } from '../audit.ts';
import { notFound } from '../errors.ts';
import { permissions } from '../permissions.ts';
import { idParam, page, pageQuery, type ApiRoutes } from '../route-registry.ts';
import { requireUnitInScope, scopePattern, type Db } from '../scope.ts';
import { id, idQuery, name } from '../schemas.ts';
import { SubtreeStatsCache, type SubtreeStatsCacheOptions } from '../subtree-stats-cache.ts';

// The organisation tree. A subtree is a prefix of units.path; the caller's own unit shows no parent
// (what lies above it is outside their view), and ancestor paths are never returned.

const UNIT_COLUMNS = `u.id, CASE WHEN u.path || '%' = $1 THEN NULL ELSE u.parent_id END AS parent_id,
  u.level, u.name, u.code, u.depth, u.created_at, u.retired_at,
  (SELECT count(*) FROM units c WHERE c.parent_id = u.id)::int AS child_count`;

export interface UnitRow {
  id: number;
  parent_id: number | null;
  level: string;
  name: string;
  code: string | null;
  depth: number;
  child_count: number;
}

async function readUnit(db: Db, user: AuthUser, unitId: number): Promise<UnitRow> {
  const { rows } = await db.query<UnitRow>(`SELECT ${UNIT_COLUMNS} FROM units u WHERE u.path LIKE $1 AND u.id = $2`, [scopePattern(user), unitId]);
  if (!rows[0]) throw notFound('单位', 'unit');
  return rows[0];
}

/** Escapes LIKE wildcards in a user-typed search term. */
function likeLiteral(s: string): string {
  return s.replace(/[\\%_]/g, (c) => `\\${c}`);
}

/** Dashboard counts: kept 30 s when they took 100 ms or more to compute (a county or a city). */
export const DEFAULT_SUBTREE_STATS_CACHE: SubtreeStatsCacheOptions = { ttlMs: 30_000, slowMs: 100 };

export function registerUnitRoutes(routes: ApiRoutes, pool: Pool, statsCache: SubtreeStatsCacheOptions = DEFAULT_SUBTREE_STATS_CACHE): void {
  const stats = new SubtreeStatsCache<Record<string, number>>(statsCache);
  routes.add(
    {
      method: 'get',
      path: '/units',
      summary: "List units in the caller's subtree (optionally below `under`, only children of `parent_id`, one `level`, search `q` in name or code)",
      tag: 'units',
      query: z.strictObject({
        ...pageQuery,
        under: idQuery.optional(),
        parent_id: idQuery.optional(),
        level: unitLevelSchema.optional(),
        q: z.string().trim().min(1).max(50).optional(),
      }),
    },
    async ({ query, user }) => {
      let pattern = scopePattern(user);
      if (query.under !== undefined) pattern = `${(await requireUnitInScope(pool, user, query.under)).path}%`;
      // $1 stays the caller's own scope (UNIT_COLUMNS hides the parent of the caller's unit).
      const values: unknown[] = [scopePattern(user), pattern];
      const where = ['u.path LIKE $2'];
      // The parent must be visible too: children of an outside unit would reveal the caller's own ancestry.
      if (query.parent_id !== undefined) {
        await requireUnitInScope(pool, user, query.parent_id);
        where.push(`u.parent_id = $${values.push(query.parent_id)}`);
      }
      if (query.level !== undefined) where.push(`u.level = $${values.push(query.level)}`);
      if (query.after_id !== undefined) where.push(`u.id > $${values.push(query.after_id)}`);
      if (query.q !== undefined) {
        const n = values.push(`%${likeLiteral(query.q)}%`);
        where.push(`(u.name LIKE $${n} OR u.code LIKE $${n})`);
      }
      const limit = `$${values.push(query.limit + 1)}`;
      const offset = `$${values.push(query.offset)}`;
      const { rows } = await pool.query<UnitRow>(
        `SELECT ${UNIT_COLUMNS} FROM units u WHERE ${where.join(' AND ')} ORDER BY u.id LIMIT ${limit} OFFSET ${offset}`,
        values,
      );
      return page(rows, query.limit, query.offset);
    },
  );

  routes.add({ method: 'get', path: '/units/:id', summary: 'Read one unit', tag: 'units', params: idParam }, async ({ params, user }) =>
    readUnit(pool, user, params.id),
  );

  routes.add(
    { method: 'get', path: '/units/:id/stats', summary: 'Counts in the subtree of a unit: units by level, branches, members, service points, cameras, users (a count that took ≥ 100 ms to compute is kept 30 s: `computed_at`, `cached`)', tag: 'units', params: idParam },
    async ({ params, user }) => {
      const unit = await requireUnitInScope(pool, user, params.id);
      const p = `${unit.path}%`;
      const counted = await stats.get(unit.id, async () => (await pool.query<Record<string, number>>(
        `SELECT
           count(*) FILTER (WHERE level = 'county')::int AS county,
           count(*) FILTER (WHERE level = 'town')::int AS town,
           count(*) FILTER (WHERE level = 'community')::int AS community,
           count(*) FILTER (WHERE level = 'village')::int AS village,
           (SELECT count(*) FROM branches b JOIN units x ON x.id = b.unit_id WHERE x.path LIKE $1)::int AS branches,
           (SELECT count(*) FROM members m JOIN branches b ON b.id = m.branch_id JOIN units x ON x.id = b.unit_id WHERE x.path LIKE $1)::int AS members,
           (SELECT count(*) FROM service_points s JOIN units x ON x.id = s.unit_id WHERE x.path LIKE $1)::int AS service_points,
           (SELECT count(*) FROM cameras c JOIN units x ON x.id = c.unit_id WHERE x.path LIKE $1)::int AS cameras,
           (SELECT count(*) FROM users s JOIN units x ON x.id = s.unit_id WHERE x.path LIKE $1)::int AS users
         FROM units WHERE path LIKE $1 AND id <> $2`,
        [p, unit.id],
      )).rows[0]!);
      const r = counted.value;
      return {
        unit_id: unit.id,
        descendants: { county: r.county, town: r.town, community: r.community, village: r.village },
        branches: r.branches,
        members: r.members,
        service_points: r.service_points,
        cameras: r.cameras,
        users: r.users,
        computed_at: counted.computedAt.toISOString(),
        cached: counted.cached,
      };
    },
  );

  routes.add(
    {
      method: 'post',
      path: '/units',
      summary: 'Create a unit under a parent in the subtree',
      tag: 'units',
      roles: permissions.writeUnits,
      status: 201,
      body: z.strictObject({ parent_id: id, level: unitLevelSchema, name, code: unitCodeSchema.nullable().optional() }),
    },
    async ({ body, user, req }) =>
      withTransaction(pool, async (client) => {
        const parent = await requireUnitInScope(client, user, body.parent_id, 'parent_id');
        if (levelRank(body.level) <= levelRank(unitLevelSchema.parse(parent.level))) {
          throw new HttpError(422, 'bad_level', `层级须低于上级 / a ${body.level} cannot be placed under a ${parent.level}`, { field: 'level' });
        }
        const { rows } = await client.query<{ id: number }>(
          'INSERT INTO units (parent_id, level, name, code) VALUES ($1, $2, $3, $4) RETURNING id',
          [parent.id, body.level, body.name, body.code ?? null],
        );
        const unitId = rows[0]!.id;
        await audit(client, { action: 'unit.create', user, objectType: 'unit', objectId: unitId, unitId, ip: req.ip ?? null });
        return readUnit(client, user, unitId);
      }),
  );

  routes.add(
    {
      method: 'patch',
      path: '/units/:id',
      summary: 'Rename a unit or set its code (units are not moved)',
      tag: 'units',
      roles: permissions.writeUnits,
      params: idParam,
      body: z
        .strictObject({ name: name.optional(), code: unitCodeSchema.nullable().optional() })
        .refine((o) => Object.keys(o).length > 0, { message: '至少修改一个字段 / change at least one field' }),
    },
    async ({ params, body, user, req }) =>
      withTransaction(pool, async (client) => {
        await requireUnitInScope(client, user, params.id);
        const sets: string[] = [];
        const values: unknown[] = [params.id];
        if (body.name !== undefined) sets.push(`name = $${values.push(body.name)}`);
        if (body.code !== undefined) sets.push(`code = $${values.push(body.code)}`);
        await client.query(`UPDATE units SET ${sets.join(', ')} WHERE id = $1`, values);
        await audit(client, { action: 'unit.update', user, objectType: 'unit', objectId: params.id, unitId: params.id, ip: req.ip ?? null, detail: { fields: Object.keys(body) } });
        return readUnit(client, user, params.id);
      }),
  );

  routes.add(
    {
      method: 'delete',
      path: '/units/:id',
      summary: 'Delete an empty unit (no child units, users, branches, service points, cameras or SFU node)',
      tag: 'units',
      roles: permissions.writeUnits,
      params: idParam,
      status: 204,
    },
    async ({ params, user, req }) => {
      await withTransaction(pool, async (client) => {
        const unit = await requireUnitInScope(client, user, params.id);
        if (unit.id === user.unitId) throw new HttpError(403, 'own_unit', '不能删除本人所属单位 / you cannot delete your own unit');
        const { rows } = await client.query<{ used: boolean }>(
          `SELECT EXISTS (SELECT 1 FROM units WHERE parent_id = $1) OR EXISTS (SELECT 1 FROM users WHERE unit_id = $1)
             OR EXISTS (SELECT 1 FROM branches WHERE unit_id = $1) OR EXISTS (SELECT 1 FROM service_points WHERE unit_id = $1)
             OR EXISTS (SELECT 1 FROM cameras WHERE unit_id = $1) OR EXISTS (SELECT 1 FROM sfu_nodes WHERE unit_id = $1) AS used`,
          [unit.id],
        );
        if (rows[0]?.used) throw new HttpError(409, 'in_use', '单位下仍有数据，不能删除 / the unit still has children or data', { unit_id: unit.id });
        await client.query('DELETE FROM units WHERE id = $1', [unit.id]);
        await audit(client, { action: 'unit.delete', user, objectType: 'unit', objectId: unit.id, unitId: unit.id, ip: req.ip ?? null });
      });
      return undefined;
    },
  );
}
