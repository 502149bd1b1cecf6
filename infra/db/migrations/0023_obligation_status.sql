-- Up Migration
-- Status of every (branch, obligation) in a subtree for the period containing `at` and the one before
-- it, in one set-based statement. JIT is off for it (compiling costs more than the query runs) and
-- work_mem is raised so the per-branch rule resolution sorts in memory.

CREATE FUNCTION obligation_status(at timestamptz, subtree text, at_risk interval)
RETURNS TABLE (
  branch_id bigint, unit_id bigint, unit_path text, obligation text, period text, period_key text,
  period_start timestamptz, period_end timestamptz, required_count int, done_count int, status text
)
STABLE LANGUAGE sql SET jit = off SET work_mem = '32MB' AS $$
  WITH rules AS (
    SELECT bor.* FROM branch_obligation_rules bor
     WHERE bor.enabled AND bor.required_count > 0 AND bor.unit_path LIKE subtree || '%'
  ), periods AS (
    -- Bounds of the current and previous period of each kind, computed once (time-zone arithmetic is
    -- the expensive part when done per row).
    SELECT k.period, p.start AS period_start, obligation_period_end(k.period, p.start) AS period_end,
           obligation_period_key(k.period, p.start) AS period_key
      FROM (VALUES ('month'), ('quarter'), ('half_year'), ('year')) k(period)
      CROSS JOIN LATERAL (VALUES (obligation_period_start(k.period, at)),
                                 (obligation_period_start(k.period, obligation_period_start(k.period, at) - interval '1 second'))) p(start)
  ), bounded AS (
    SELECT rules.branch_id, rules.unit_id, rules.unit_path, rules.obligation, rules.period, rules.required_count,
           periods.period_start, periods.period_end, periods.period_key
      FROM rules JOIN periods ON periods.period = rules.period
  ), passed AS (
    -- Sessions whose recording passed its check, near `at` (a previous period is at most a year long).
    SELECT s.branch_id, s.obligation, s.starts_at
      FROM meeting_sessions s JOIN completion_checks c ON c.session_id = s.id AND c.passed
     WHERE NOT s.cancelled AND s.starts_at >= at - interval '2 years' AND s.starts_at < at + interval '1 year'
  ), counted AS (
    SELECT b.branch_id, b.unit_id, b.unit_path, b.obligation, b.period, b.required_count, b.period_start,
           b.period_end, b.period_key, count(p.starts_at)::int AS done_count
      FROM bounded b
      LEFT JOIN passed p ON p.branch_id = b.branch_id AND p.obligation = b.obligation
                        AND p.starts_at >= b.period_start AND p.starts_at < b.period_end
     GROUP BY b.branch_id, b.unit_id, b.unit_path, b.obligation, b.period, b.required_count, b.period_start,
              b.period_end, b.period_key
  )
  SELECT branch_id, unit_id, unit_path, obligation, period, period_key, period_start, period_end,
         required_count::int, done_count,
         CASE WHEN done_count >= required_count THEN 'done'
              WHEN at >= period_end THEN 'overdue'
              WHEN at >= period_end - at_risk THEN 'at_risk'
              ELSE 'pending' END
    FROM counted
$$;

-- Down Migration
DROP FUNCTION obligation_status(timestamptz, text, interval);
