import type { Pool, PoolClient } from '../../infra/db/pool.ts';
import type { ObligationCode, ObligationStatus, PeriodKind } from './types.ts';

/**
 * Set-based evaluation of every (branch, obligation, period) in a subtree at one instant: the
 * current period and the one before it (escalations concern a period that has just ended).
 * Parameters: $1 = instant, $2 = unit path prefix of the subtree, $3 = at-risk lead (interval).
 * One statement for all branches; the naive per-branch loop below is the benchmark's baseline.
 * (Tried as a SQL function with SET jit = off: 6-8x slower, generic plan; sent directly the plan's
 * cost stays under jit_above_cost.)
 */
export const obligationStatusSql = `
  WITH rules AS (
    SELECT bor.* FROM branch_obligation_rules bor
     WHERE bor.enabled AND bor.required_count > 0 AND bor.unit_path LIKE $2::text || '%'
  ), periods AS (
    -- Bounds of the current and previous period of each kind, computed once (time-zone arithmetic is
    -- the expensive part when done per row).
    SELECT k.period, p.start AS period_start, obligation_period_end(k.period, p.start) AS period_end,
           obligation_period_key(k.period, p.start) AS period_key
      FROM (VALUES ('month'), ('quarter'), ('half_year'), ('year')) k(period)
      CROSS JOIN LATERAL (VALUES (obligation_period_start(k.period, $1::timestamptz)),
                                 (obligation_period_start(k.period, obligation_period_start(k.period, $1::timestamptz) - interval '1 second'))) p(start)
  ), bounded AS (
    SELECT rules.branch_id, rules.unit_id, rules.unit_path, rules.obligation, rules.period, rules.required_count,
           periods.period_start, periods.period_end, periods.period_key
      FROM rules JOIN periods ON periods.period = rules.period
  ), sessions AS (
    -- Sessions near the instant (a previous period is at most a year long) that count: passed their
    -- check, or ended without a verdict yet (check queued, retried after a storage or ffmpeg fault,
    -- upload not complete), which are neither done nor missed until judged.
    SELECT s.branch_id, s.obligation, s.starts_at, coalesce(c.passed, false) AS passed
      FROM meeting_sessions s LEFT JOIN completion_checks c ON c.session_id = s.id
     WHERE NOT s.cancelled AND s.starts_at >= $1::timestamptz - interval '2 years' AND s.starts_at < $1::timestamptz + interval '1 year'
       AND (c.passed OR (s.ends_at <= $1::timestamptz AND (c.session_id IS NULL OR c.pending)))
  ), counted AS (
    SELECT b.branch_id, b.unit_id, b.unit_path, b.obligation, b.period, b.required_count, b.period_start,
           b.period_end, b.period_key, count(p.starts_at) FILTER (WHERE p.passed)::int AS done_count,
           count(p.starts_at) FILTER (WHERE NOT p.passed)::int AS checking_count
      FROM bounded b
      LEFT JOIN sessions p ON p.branch_id = b.branch_id AND p.obligation = b.obligation
                          AND p.starts_at >= b.period_start AND p.starts_at < b.period_end
     GROUP BY b.branch_id, b.unit_id, b.unit_path, b.obligation, b.period, b.required_count, b.period_start,
              b.period_end, b.period_key
  )
  SELECT branch_id, unit_id, unit_path, obligation, period, period_key, period_start, period_end,
         required_count::int, done_count, checking_count,
         CASE WHEN done_count >= required_count THEN 'done'
              -- Could still be done once the pending checks give their verdict: no reminder, not overdue.
              WHEN done_count + checking_count >= required_count THEN 'checking'
              WHEN $1::timestamptz >= period_end THEN 'overdue'
              WHEN $1::timestamptz >= period_end - $3::interval THEN 'at_risk'
              ELSE 'pending' END AS status
    FROM counted`;

export interface ObligationStatusRow {
  branch_id: number;
  unit_id: number;
  unit_path: string;
  obligation: ObligationCode;
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
  const branches = await pool.query<{ id: number; unit_id: number; path: string }>(
    `SELECT b.id, b.unit_id, u.path FROM branches b JOIN units u ON u.id = b.unit_id WHERE u.path LIKE $1 || '%' AND b.retired_at IS NULL ORDER BY b.id`,
    [opts.unitPath ?? ''],
  );
  const lead = (opts.atRiskDays ?? 7) * 86_400_000;
  for (const b of branches.rows) {
    const rules = await pool.query<{ obligation: ObligationCode; period: PeriodKind; required_count: number }>(
      `SELECT obligation, period, required_count FROM branch_obligation_rules
        WHERE branch_id = $1 AND enabled AND required_count > 0`,
      [b.id],
    );
    for (const r of rules.rows) {
      const cur = await pool.query<{ s: Date }>(`SELECT obligation_period_start($1, $2) AS s`, [r.period, opts.at]);
      const curStart = cur.rows[0]!.s;
      const prev = await pool.query<{ s: Date }>(`SELECT obligation_period_start($1, $2::timestamptz - interval '1 second') AS s`, [r.period, curStart]);
      for (const start of [curStart, prev.rows[0]!.s]) {
        const p = await pool.query<{ e: Date; k: string }>(
          `SELECT obligation_period_end($1, $2) AS e, obligation_period_key($1, $2) AS k`,
          [r.period, start],
        );
        const { e, k } = p.rows[0]!;
        const done = await pool.query<{ n: number }>(
          `SELECT count(*)::int AS n FROM meeting_sessions s JOIN completion_checks c ON c.session_id = s.id AND c.passed
            WHERE s.branch_id = $1 AND s.obligation = $2 AND NOT s.cancelled AND s.starts_at >= $3 AND s.starts_at < $4`,
          [b.id, r.obligation, start, e],
        );
        const n = done.rows[0]!.n;
        const unjudged = await pool.query<{ n: number }>(
          `SELECT count(*)::int AS n FROM meeting_sessions s LEFT JOIN completion_checks c ON c.session_id = s.id
            WHERE s.branch_id = $1 AND s.obligation = $2 AND NOT s.cancelled AND s.starts_at >= $3 AND s.starts_at < $4
              AND s.ends_at <= $5 AND (c.session_id IS NULL OR c.pending)`,
          [b.id, r.obligation, start, e, opts.at],
        );
        const u = unjudged.rows[0]!.n;
        const status: ObligationStatus =
          n >= r.required_count ? 'done' : n + u >= r.required_count ? 'checking'
            : opts.at >= e ? 'overdue' : opts.at.getTime() >= e.getTime() - lead ? 'at_risk' : 'pending';
        out.push({
          branch_id: b.id, unit_id: b.unit_id, unit_path: b.path, obligation: r.obligation, period: r.period,
          period_key: k, period_start: start, period_end: e, required_count: r.required_count, done_count: n, checking_count: u, status,
        });
      }
    }
  }
  return out;
}
