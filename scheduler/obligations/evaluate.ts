import type { Pool, PoolClient } from '../../infra/db/pool.ts';
import type { ObligationCode, ObligationStatus, PeriodKind } from './types.ts';

/**
 * Set-based evaluation of every applicable (branch, obligation[, party group], period) in a subtree at
 * one instant: the current period and the one before it (escalations concern a period that has just
 * ended). Applicability follows the 2018 条例 (branch_obligation_rules, 0060): committee meetings only
 * where the branch has a committee, group meetings once per active party group, a yearly item with
 * due_from_month only from that month of the year on (or once something was held for it).
 * A session counts for each of its kinds (session_obligations); an approved postponement of a period
 * makes it 'postponed' (no reminder, not overdue).
 * Parameters: $1 = instant, $2 = unit path prefix of the subtree, $3 = at-risk lead (interval).
 * One statement for all branches; the naive per-branch loop below is the benchmark's baseline.
 * (Tried as a SQL function with SET jit = off: 6-8x slower, generic plan; sent directly the plan's
 * cost stays under jit_above_cost.)
 */
export const obligationStatusSql = `
  WITH rules AS (
    SELECT bor.branch_id, bor.unit_id, bor.unit_path, bor.obligation, bor.period, bor.required_count,
           bor.due_from_month, g.id AS party_group_id
      FROM branch_obligation_rules bor
      LEFT JOIN party_groups g ON bor.scope = 'group' AND g.branch_id = bor.branch_id AND g.retired_at IS NULL
     WHERE bor.enabled AND bor.required_count > 0 AND bor.unit_path LIKE $2::text || '%'
       AND (bor.scope <> 'group' OR g.id IS NOT NULL)
  ), periods AS (
    -- Bounds of the current and previous period of each kind, computed once (time-zone arithmetic is
    -- the expensive part when done per row).
    SELECT k.period, p.start AS period_start, obligation_period_end(k.period, p.start) AS period_end,
           obligation_period_key(k.period, p.start) AS period_key
      FROM (VALUES ('month'), ('quarter'), ('half_year'), ('year')) k(period)
      CROSS JOIN LATERAL (VALUES (obligation_period_start(k.period, $1::timestamptz)),
                                 (obligation_period_start(k.period, obligation_period_start(k.period, $1::timestamptz) - interval '1 second'))) p(start)
  ), bounded AS (
    SELECT rules.branch_id, rules.unit_id, rules.unit_path, rules.obligation, rules.party_group_id, rules.period,
           rules.required_count, periods.period_start, periods.period_end, periods.period_key,
           -- A yearly item is listed from its month on (China Standard Time).
           CASE WHEN rules.period = 'year' AND rules.due_from_month IS NOT NULL
                THEN ((periods.period_start AT TIME ZONE 'Asia/Shanghai')
                      + make_interval(months => rules.due_from_month - 1)) AT TIME ZONE 'Asia/Shanghai'
                ELSE periods.period_start END AS listed_from
      FROM rules JOIN periods ON periods.period = rules.period
  ), sessions AS (
    -- Sessions near the instant (a previous period is at most a year long), once per kind they were
    -- held for, that count: passed (the kind's own verdict, else the session's for rows judged before
    -- per-kind verdicts), or ended without a verdict yet (check queued, retried after a storage or
    -- ffmpeg fault, upload not complete), which are neither done nor missed until judged.
    SELECT s.branch_id, so.obligation, so.party_group_id, s.starts_at,
           coalesce(so.passed, c.passed, false) AS passed
      FROM meeting_sessions s
      JOIN session_obligations so ON so.session_id = s.id
      LEFT JOIN completion_checks c ON c.session_id = s.id
     WHERE NOT s.cancelled AND s.starts_at >= $1::timestamptz - interval '2 years' AND s.starts_at < $1::timestamptz + interval '1 year'
       AND (coalesce(so.passed, c.passed, false) OR (s.ends_at <= $1::timestamptz AND (c.session_id IS NULL OR c.pending)))
  ), counted AS (
    SELECT b.branch_id, b.unit_id, b.unit_path, b.obligation, b.party_group_id, b.period, b.required_count,
           b.period_start, b.period_end, b.period_key, b.listed_from,
           count(p.starts_at) FILTER (WHERE p.passed)::int AS done_count,
           count(p.starts_at) FILTER (WHERE NOT p.passed)::int AS checking_count
      FROM bounded b
      LEFT JOIN sessions p ON p.branch_id = b.branch_id AND p.obligation = b.obligation
                          AND (b.party_group_id IS NULL OR p.party_group_id = b.party_group_id)
                          AND p.starts_at >= b.period_start AND p.starts_at < b.period_end
     GROUP BY b.branch_id, b.unit_id, b.unit_path, b.obligation, b.party_group_id, b.period, b.required_count,
              b.period_start, b.period_end, b.period_key, b.listed_from
  )
  SELECT k.branch_id, k.unit_id, k.unit_path, k.obligation, k.party_group_id, k.period, k.period_key,
         k.period_start, k.period_end, k.required_count::int, k.done_count, k.checking_count,
         CASE WHEN k.done_count >= k.required_count THEN 'done'
              -- Could still be done once the pending checks give their verdict: no reminder, not overdue.
              WHEN k.done_count + k.checking_count >= k.required_count THEN 'checking'
              WHEN EXISTS (SELECT 1 FROM obligation_postponements op
                            WHERE op.branch_id = k.branch_id AND op.obligation = k.obligation
                              AND coalesce(op.party_group_id, 0) = coalesce(k.party_group_id, 0)
                              AND op.period_key = k.period_key AND op.state = 'approved') THEN 'postponed'
              WHEN $1::timestamptz >= k.period_end THEN 'overdue'
              WHEN $1::timestamptz >= k.period_end - $3::interval THEN 'at_risk'
              ELSE 'pending' END AS status
    FROM counted k
   WHERE $1::timestamptz >= k.listed_from OR k.done_count + k.checking_count > 0`;

export interface ObligationStatusRow {
  branch_id: number;
  unit_id: number;
  unit_path: string;
  obligation: ObligationCode;
  /** The party group of a group meeting row; null for every other obligation. */
  party_group_id: number | null;
  period: PeriodKind;
  period_key: string;
  period_start: Date;
  period_end: Date;
  required_count: number;
  done_count: number;
  /** Sessions of the period that have ended without a verdict yet. */
  checking_count: number;
  status: ObligationStatus;
}

export interface EvaluateOptions {
  at: Date;
  /** Subtree to evaluate (units.path prefix); '' = everything. */
  unitPath?: string;
  /** A period becomes "at risk" this many days before its end while not done. */
  atRiskDays?: number;
}

export async function evaluateObligations(db: Pool | PoolClient, opts: EvaluateOptions): Promise<ObligationStatusRow[]> {
  const { rows } = await db.query<ObligationStatusRow>(obligationStatusSql, [
    opts.at,
    opts.unitPath ?? '',
    `${opts.atRiskDays ?? 7} days`,
  ]);
  return rows;
}

/** Baseline for the benchmark: what a straightforward implementation does, one branch at a time. */
export async function evaluateObligationsNaive(pool: Pool, opts: EvaluateOptions): Promise<ObligationStatusRow[]> {
  const out: ObligationStatusRow[] = [];
  const branches = await pool.query<{ id: number; unit_id: number; path: string; has_committee: boolean }>(
    `SELECT b.id, b.unit_id, u.path, b.has_committee FROM branches b JOIN units u ON u.id = b.unit_id
      WHERE u.path LIKE $1 || '%' AND b.retired_at IS NULL ORDER BY b.id`,
    [opts.unitPath ?? ''],
  );
  const lead = (opts.atRiskDays ?? 7) * 86_400_000;
  for (const b of branches.rows) {
    // The deepest rule on the branch's path for each obligation, else the national default.
    const rules = await pool.query<{ obligation: ObligationCode; period: PeriodKind; required_count: number; due_from_month: number | null; scope: string }>(
      `SELECT DISTINCT ON (r.obligation) r.obligation, r.period, r.required_count, r.enabled, r.due_from_month, t.scope
         FROM obligation_rules r JOIN obligation_types t ON t.code = r.obligation LEFT JOIN units ru ON ru.id = r.unit_id
        WHERE r.unit_id IS NULL OR $1 LIKE ru.path || '%'
        ORDER BY r.obligation, coalesce(ru.depth, -1) DESC`,
      [b.path],
    );
    const groups = await pool.query<{ id: number }>(
      `SELECT id FROM party_groups WHERE branch_id = $1 AND retired_at IS NULL ORDER BY id`, [b.id],
    );
    for (const r of rules.rows as Array<typeof rules.rows[number] & { enabled: boolean }>) {
      if (!r.enabled || r.required_count <= 0) continue;
      if (r.scope === 'committee' && !b.has_committee) continue;
      const groupIds: (number | null)[] = r.scope === 'group' ? groups.rows.map((g) => g.id) : [null];
      const cur = await pool.query<{ s: Date }>(`SELECT obligation_period_start($1, $2) AS s`, [r.period, opts.at]);
      const curStart = cur.rows[0]!.s;
      const prev = await pool.query<{ s: Date }>(`SELECT obligation_period_start($1, $2::timestamptz - interval '1 second') AS s`, [r.period, curStart]);
      for (const groupId of groupIds) {
        for (const start of [curStart, prev.rows[0]!.s]) {
          const p = await pool.query<{ e: Date; k: string; l: Date }>(
            `SELECT obligation_period_end($1, $2) AS e, obligation_period_key($1, $2) AS k,
                    CASE WHEN $1 = 'year' AND $3::int IS NOT NULL
                         THEN (($2::timestamptz AT TIME ZONE 'Asia/Shanghai') + make_interval(months => $3::int - 1)) AT TIME ZONE 'Asia/Shanghai'
                         ELSE $2::timestamptz END AS l`,
            [r.period, start, r.due_from_month],
          );
          const { e, k, l } = p.rows[0]!;
          const done = await pool.query<{ n: number }>(
            `SELECT count(*)::int AS n FROM meeting_sessions s JOIN session_obligations so ON so.session_id = s.id
               LEFT JOIN completion_checks c ON c.session_id = s.id
              WHERE s.branch_id = $1 AND so.obligation = $2 AND ($5::bigint IS NULL OR so.party_group_id = $5)
                AND NOT s.cancelled AND s.starts_at >= $3 AND s.starts_at < $4 AND coalesce(so.passed, c.passed, false)`,
            [b.id, r.obligation, start, e, groupId],
          );
          const n = done.rows[0]!.n;
          const unjudged = await pool.query<{ n: number }>(
            `SELECT count(*)::int AS n FROM meeting_sessions s JOIN session_obligations so ON so.session_id = s.id
               LEFT JOIN completion_checks c ON c.session_id = s.id
              WHERE s.branch_id = $1 AND so.obligation = $2 AND ($6::bigint IS NULL OR so.party_group_id = $6)
                AND NOT s.cancelled AND s.starts_at >= $3 AND s.starts_at < $4
                AND NOT coalesce(so.passed, c.passed, false) AND s.ends_at <= $5 AND (c.session_id IS NULL OR c.pending)`,
            [b.id, r.obligation, start, e, opts.at, groupId],
          );
          const u = unjudged.rows[0]!.n;
          if (opts.at < l && n + u === 0) continue;
          const postponed = await pool.query<{ n: number }>(
            `SELECT count(*)::int AS n FROM obligation_postponements
              WHERE branch_id = $1 AND obligation = $2 AND coalesce(party_group_id, 0) = coalesce($3::bigint, 0)
                AND period_key = $4 AND state = 'approved'`,
            [b.id, r.obligation, groupId, k],
          );
          const status: ObligationStatus =
            n >= r.required_count ? 'done' : n + u >= r.required_count ? 'checking'
              : postponed.rows[0]!.n > 0 ? 'postponed'
                : opts.at >= e ? 'overdue' : opts.at.getTime() >= e.getTime() - lead ? 'at_risk' : 'pending';
          out.push({
            branch_id: b.id, unit_id: b.unit_id, unit_path: b.path, obligation: r.obligation, party_group_id: groupId,
            period: r.period, period_key: k, period_start: start, period_end: e, required_count: r.required_count,
            done_count: n, checking_count: u, status,
          });
        }
      }
    }
  }
  return out;
}
