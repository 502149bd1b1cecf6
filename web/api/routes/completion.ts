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
export function createCompletionRouter(deps: CompletionDeps): Router {
  return createCompletionRoutes(deps).router;
}

const unitParams = z.object({ unitId: idQuery });

/** The completion routes, declared with their schemas (validated, and listed in /api/openapi.json). */
export interface CompletionDeps {
  pool: Pool;
  atRiskDays?: number;
  now?: () => Date;
  /** The recorder's storage: thumbnails of the evidence are presigned from it (else thumbUrl is null). */
  storage?: { presignGet(key: string, expirySeconds?: number): Promise<string> };
}

const branchParams = z.object({ id: idQuery });
/** A period key as the obligations name them: 2026, 2026-H1, 2026-Q1, 2026-03. */
const PeriodKey = z.string().regex(/^\d{4}(-(H[12]|Q[1-4]|0[1-9]|1[0-2]))?$/, '期间格式为 2026、2026-H1、2026-Q1 或 2026-03 / period is 2026, 2026-H1, 2026-Q1 or 2026-03');
const BranchQuery = z.object({ period: PeriodKey.optional(), at: z.iso.datetime({ offset: true }).optional() });

/** [start, end) of a period key in China Standard Time (UTC+8, no daylight saving). */
export function periodBounds(key: string): { start: Date; end: Date } {
  const y = Number(key.slice(0, 4));
  const rest = key.slice(5);
  let m0 = 0;
  let months = 12;
  if (rest.startsWith('H')) { m0 = rest === 'H1' ? 0 : 6; months = 6; }
  else if (rest.startsWith('Q')) { m0 = (Number(rest.slice(1)) - 1) * 3; months = 3; }
  else if (rest) { m0 = Number(rest) - 1; months = 1; }
  const cst = (yy: number, mm: number) => new Date(Date.UTC(yy, mm, 1) - 8 * 3_600_000);
  return { start: cst(y, m0), end: cst(y, m0 + months) };
}

interface WhyRow {
  branch_id: number; obligation: string; party_group_id: number | null; period: string; period_key: string;
  period_start: Date; period_end: Date; required_count: number; done_count: number; checking_count: number; status: string;
}

export function createCompletionRoutes(deps: CompletionDeps): ApiRoutes {
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

  routes.add(
    {
      method: 'get', path: '/branches/:id/completion', tag: 'completion',
      summary: "Why a branch is (not) done: per obligation and period its status, the sessions held with their verdicts, reasons and evidence, and any approved postponement",
      params: branchParams, query: BranchQuery,
    },
    async ({ params, query, user }) => {
      const b = (await pool.query<{ id: number; name: string; unit_id: number; path: string }>(
        `SELECT b.id, b.name, b.unit_id, u.path FROM branches b JOIN units u ON u.id = b.unit_id WHERE b.id = $1`, [params.id])).rows[0];
      if (!b || !inSubtree(user, b.path)) throw new HttpError(404, 'not_found', '支部不存在 / branch not found');
      const current = now();
      // A past period is shown as it stands now (a missed quarter is overdue); a future one as planned.
      let at = query.at ? new Date(query.at) : current;
      let bounds: { start: Date; end: Date } | null = null;
      if (query.period) {
        bounds = periodBounds(query.period);
        at = new Date(Math.min(current.getTime(), bounds.end.getTime() + 86_400_000));
        if (at < bounds.start) at = bounds.start;
      }
      const { rows } = await pool.query<WhyRow>(
        `WITH st AS (${obligationStatusSql}) SELECT * FROM st WHERE st.branch_id = $4
           AND ($5::timestamptz IS NULL AND st.period_start <= $1 AND $1 < st.period_end
                OR $5::timestamptz IS NOT NULL AND st.period_start < $6::timestamptz AND st.period_end > $5::timestamptz)
         ORDER BY st.obligation, st.party_group_id NULLS FIRST, st.period_start`,
        [at, b.path, `${deps.atRiskDays ?? 7} days`, b.id, bounds?.start ?? null, bounds?.end ?? null],
      );
      const sessions = rows.length === 0 ? [] : (await pool.query<{
        id: number; obligation: string; party_group_id: number | null; starts_at: Date; ends_at: Date; topic: string | null;
        passed: boolean | null; reasons: Array<{ code: string; message: string }>; pending: boolean | null; covered_s: number | null; required_s: number | null;
        recording_ids: number[]; thumb_key: string | null;
      }>(
        `SELECT s.id, so.obligation, so.party_group_id, s.starts_at, s.ends_at, s.topic,
                coalesce(so.passed, CASE WHEN c.pending THEN NULL ELSE c.passed END) AS passed,
                CASE WHEN so.passed IS NOT NULL OR c.session_id IS NULL THEN so.reasons ELSE c.reasons END AS reasons,
                c.pending, c.covered_s, c.required_s,
                coalesce((SELECT array_agg(r.id ORDER BY r.started_at) FROM recording_segments r
                           WHERE r.camera_id = s.camera_id AND r.ended_at > s.starts_at AND r.started_at < s.ends_at), '{}') AS recording_ids,
                (SELECT r.thumb_key FROM recording_segments r
                  WHERE r.camera_id = s.camera_id AND r.ended_at > s.starts_at AND r.started_at < s.ends_at AND r.thumb_key IS NOT NULL
                  ORDER BY r.started_at LIMIT 1) AS thumb_key
           FROM meeting_sessions s JOIN session_obligations so ON so.session_id = s.id
           LEFT JOIN completion_checks c ON c.session_id = s.id
          WHERE s.branch_id = $1 AND NOT s.cancelled AND s.starts_at >= $2 AND s.starts_at < $3
          ORDER BY s.starts_at`,
        [b.id, new Date(Math.min(...rows.map((r) => r.period_start.getTime()))), new Date(Math.max(...rows.map((r) => r.period_end.getTime())))],
      )).rows;
      const postponements = rows.length === 0 ? [] : (await pool.query<{
        obligation: string; party_group_id: number | null; period_key: string; reason: string; decided_at: Date | null; decision_note: string | null;
        approver: string | null; approver_id: number | null;
      }>(
        `SELECT p.obligation, p.party_group_id, p.period_key, p.reason, p.decided_at, p.decision_note,
                u.display_name AS approver, u.id AS approver_id
           FROM obligation_postponements p LEFT JOIN users u ON u.id = p.decided_by
          WHERE p.branch_id = $1 AND p.state = 'approved'`, [b.id])).rows;
      const out = [];
      for (const r of rows) {
        const mine = sessions.filter((x) => x.obligation === r.obligation
          && (r.party_group_id === null || Number(x.party_group_id) === Number(r.party_group_id))
          && x.starts_at >= r.period_start && x.starts_at < r.period_end);
        const shaped = [];
        for (const x of mine) {
          const judged = x.passed !== null;
          shaped.push({
            id: Number(x.id), startsAt: x.starts_at.toISOString(), endsAt: x.ends_at.toISOString(), topic: x.topic,
            // null: not judged yet (ends in the future, check queued or pending after a transient fault).
            passed: judged ? x.passed : null,
            checking: !judged && x.ends_at <= current,
            reasons: x.reasons ?? [],
            coveredS: x.covered_s, requiredS: x.required_s,
            evidence: {
              recordingIds: (x.recording_ids ?? []).map(Number),
              thumbUrl: x.thumb_key && deps.storage ? await deps.storage.presignGet(x.thumb_key, 3600) : null,
            },
          });
        }
        const p = postponements.find((q) => q.obligation === r.obligation && q.period_key === r.period_key
          && Number(q.party_group_id ?? 0) === Number(r.party_group_id ?? 0));
        // done / checking / postponed / missing (overdue) come from the obligation model; a period that
        // had sessions none of which passed is "flawed": held, but not valid (reasons say why).
        const held = shaped.some((x) => x.passed === false);
        const status = r.status === 'overdue' || r.status === 'at_risk' || r.status === 'pending'
          ? (held && r.status === 'overdue' ? 'flawed' : r.status === 'overdue' ? 'missing' : r.status)
          : r.status;
        out.push({
          obligation: r.obligation, partyGroupId: r.party_group_id === null ? null : Number(r.party_group_id),
          period: r.period, periodKey: r.period_key, periodStart: r.period_start.toISOString(), periodEnd: r.period_end.toISOString(),
          requiredCount: r.required_count, doneCount: r.done_count, checkingCount: r.checking_count,
          status, modelStatus: r.status, flawed: held && r.done_count < r.required_count,
          sessions: shaped,
          ...(p ? { postponement: { reason: p.reason, approvedAt: p.decided_at?.toISOString() ?? null, note: p.decision_note, approver: p.approver, approverId: p.approver_id === null ? null : Number(p.approver_id) } } : {}),
        });
      }
      return { at: at.toISOString(), branch: { id: Number(b.id), name: b.name, unitId: Number(b.unit_id) }, period: query.period ?? null, obligations: out };
    },
  );

  return routes;
}
