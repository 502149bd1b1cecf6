import type { Router } from 'express';
import { z } from 'zod';
import type { Pool } from '../../../infra/db/pool.ts';
import { HttpError, inSubtree, type AuthUser } from '../auth-context.ts';
import { ApiRoutes } from '../route-registry.ts';
import { idQuery } from '../schemas.ts';
import { obligationStatusSql } from '../../../scheduler/obligations/evaluate.ts';
import { ObligationCode } from '../../../scheduler/obligations/types.ts';

// Figures for leaders: completion of "three meetings and one lesson" per unit and period, and the
// comparison of units of one level (the data behind the histograms). Always within the caller's subtree;
// a unit outside it is answered 404, as if it did not exist.

const Query = z.object({
  at: z.iso.datetime({ offset: true }).optional(),
  obligation: ObligationCode.optional(),
});
const CompareQuery = Query.extend({
  level: z.enum(['county', 'town', 'community', 'village']),
});

interface UnitRow {
  id: number;
  name: string;
  level: string;
  path: string;
  depth: number;
}

export interface CompletionFigures {
  branches: number;
  done: number;
  atRisk: number;
  overdue: number;
  pending: number;
  /** Sessions held but not judged yet (recording check pending): neither done nor overdue. */
  checking: number;
  /** done / branches, 0..1; null when no branch owes anything. */
  rate: number | null;
}

interface AggRow {
  group_id: number;
  obligation: string | null;
  period_keys: string[];
  branches: number;
  done: number;
  at_risk: number;
  overdue: number;
  pending: number;
  checking: number;
}

const figures = (r: AggRow): CompletionFigures => ({
  branches: r.branches, done: r.done, atRisk: r.at_risk, overdue: r.overdue, pending: r.pending, checking: r.checking,
  rate: r.branches > 0 ? Math.round((r.done / r.branches) * 10_000) / 10_000 : null,
});

/**
 * Groups the status of every (branch, obligation) for the period containing `at`, by a unit on each
 * branch's ancestor path chosen by `groupSql` (an expression over the ancestor `a` and `units g`).
 * Parameters after the status SQL's three: $4 obligation filter, then the caller's.
 */
function aggregateSql(groupJoin: string): string {
  return `
    WITH st AS (${obligationStatusSql})
    SELECT g.id AS group_id, o.obligation,
           array_agg(DISTINCT st.period_key) AS period_keys,
           count(*)::int AS branches,
           count(*) FILTER (WHERE st.status = 'done')::int AS done,
           count(*) FILTER (WHERE st.status = 'at_risk')::int AS at_risk,
           count(*) FILTER (WHERE st.status = 'overdue')::int AS overdue,
           count(*) FILTER (WHERE st.status = 'pending')::int AS pending,
           count(*) FILTER (WHERE st.status = 'checking')::int AS checking
      FROM st
      ${groupJoin}
      CROSS JOIN LATERAL (SELECT st.obligation) o
     WHERE st.period_start <= $1::timestamptz AND $1::timestamptz < st.period_end
       AND ($4::text IS NULL OR st.obligation = $4)
     GROUP BY GROUPING SETS ((g.id, o.obligation), (g.id))`;
}

/** The completion routes as an express router (mounted under /api). */
export function createCompletionRouter(deps: { pool: Pool; atRiskDays?: number; now?: () => Date }): Router {
  return createCompletionRoutes(deps).router;
}

const unitParams = z.object({ unitId: idQuery });

/** The completion routes, declared with their schemas (validated, and listed in /api/openapi.json). */
export function createCompletionRoutes(deps: { pool: Pool; atRiskDays?: number; now?: () => Date }): ApiRoutes {
  const routes = new ApiRoutes();
  const { pool } = deps;
  const now = deps.now ?? (() => new Date());

  async function visibleUnit(user: AuthUser, id: number): Promise<UnitRow> {
    const { rows } = await pool.query<UnitRow>(`SELECT id, name, level, path, depth FROM units WHERE id = $1`, [id]);
    const unit = rows[0];
    if (!unit || !inSubtree(user, unit.path)) throw new HttpError(404, 'not_found', '单位不存在 / unit not found');
    return unit;
  }

  function shape(rows: AggRow[], names: Map<number, UnitRow>) {
    const byGroup = new Map<number, { unit: { id: number; name: string; level: string }; overall: CompletionFigures | null; obligations: Array<CompletionFigures & { obligation: string; periodKeys: string[] }> }>();
    for (const [id, u] of names) byGroup.set(id, { unit: { id, name: u.name, level: u.level }, overall: null, obligations: [] });
    for (const r of rows) {
      const g = byGroup.get(r.group_id);
      if (!g) continue;
      if (r.obligation === null) g.overall = figures(r);
      else g.obligations.push({ obligation: r.obligation, periodKeys: r.period_keys, ...figures(r) });
    }
    for (const g of byGroup.values()) {
      g.overall ??= { branches: 0, done: 0, atRisk: 0, overdue: 0, pending: 0, checking: 0, rate: null };
      g.obligations.sort((a, b) => a.obligation.localeCompare(b.obligation));
    }
    return [...byGroup.values()];
  }

  routes.add(
    { method: 'get', path: '/completion/units/:unitId', summary: "Completion of one unit's subtree, overall and per obligation", tag: 'completion', params: unitParams, query: Query },
    async ({ params, query, user }) => {
      const unit = await visibleUnit(user, params.unitId);
      const at = query.at ? new Date(query.at) : now();
      const { rows } = await pool.query<AggRow>(aggregateSql(`JOIN units g ON g.id = $5::bigint`), [
        at, unit.path, `${deps.atRiskDays ?? 7} days`, query.obligation ?? null, unit.id,
      ]);
      return { at: at.toISOString(), ...shape(rows, new Map([[unit.id, unit]]))[0] };
    },
  );

  routes.add(
    { method: 'get', path: '/completion/units/:unitId/children', summary: 'Direct children of a unit compared side by side (histogram of one level)', tag: 'completion', params: unitParams, query: Query },
    async ({ params, query, user }) => {
      const unit = await visibleUnit(user, params.unitId);
      const at = query.at ? new Date(query.at) : now();
      const children = await pool.query<UnitRow>(`SELECT id, name, level, path, depth FROM units WHERE parent_id = $1 ORDER BY id`, [unit.id]);
      const { rows } = await pool.query<AggRow>(
        aggregateSql(`JOIN units g ON g.id = (string_to_array(rtrim(st.unit_path, '.'), '.'))[$5::int + 2]::bigint`),
        [at, unit.path, `${deps.atRiskDays ?? 7} days`, query.obligation ?? null, unit.depth],
      );
      return { at: at.toISOString(), parent: { id: unit.id, name: unit.name, level: unit.level }, units: shape(rows, new Map(children.rows.map((c) => [c.id, c]))) };
    },
  );

  routes.add(
    { method: 'get', path: '/completion/compare', summary: "All units of one level inside the caller's subtree, compared", tag: 'completion', query: CompareQuery },
    async ({ query, user }) => {
      const at = query.at ? new Date(query.at) : now();
      const units = await pool.query<UnitRow>(
        `SELECT id, name, level, path, depth FROM units WHERE level = $1 AND path LIKE $2 || '%'
          ORDER BY string_to_array(rtrim(path, '.'), '.')::bigint[]`,
        [query.level, user.unitPath],
      );
      const { rows } = await pool.query<AggRow>(
        aggregateSql(`JOIN units g ON g.level = $5 AND g.id = ANY (string_to_array(rtrim(st.unit_path, '.'), '.')::bigint[])`),
        [at, user.unitPath, `${deps.atRiskDays ?? 7} days`, query.obligation ?? null, query.level],
      );
      return { at: at.toISOString(), level: query.level, units: shape(rows, new Map(units.rows.map((u) => [u.id, u]))) };
    },
  );

  return routes;
}
