-- Up Migration
-- A retired branch (0040) keeps its history but has no obligations any more: no new periods, no
-- reminders. Same columns as 0020's view, one more condition.
CREATE OR REPLACE VIEW branch_obligation_rules AS
SELECT DISTINCT ON (b.id, r.obligation)
  b.id AS branch_id, b.unit_id, u.path AS unit_path, r.obligation, r.period, r.required_count,
  r.min_duration_s, r.enabled, r.unit_id AS rule_unit_id
FROM branches b
JOIN units u ON u.id = b.unit_id
JOIN obligation_rules r ON true
LEFT JOIN units ru ON ru.id = r.unit_id
WHERE b.retired_at IS NULL AND (r.unit_id IS NULL OR u.path LIKE ru.path || '%')
ORDER BY b.id, r.obligation, coalesce(ru.depth, -1) DESC;

-- Down Migration
CREATE OR REPLACE VIEW branch_obligation_rules AS
SELECT DISTINCT ON (b.id, r.obligation)
  b.id AS branch_id, b.unit_id, u.path AS unit_path, r.obligation, r.period, r.required_count,
  r.min_duration_s, r.enabled, r.unit_id AS rule_unit_id
FROM branches b
JOIN units u ON u.id = b.unit_id
JOIN obligation_rules r ON true
LEFT JOIN units ru ON ru.id = r.unit_id
WHERE r.unit_id IS NULL OR u.path LIKE ru.path || '%'
ORDER BY b.id, r.obligation, coalesce(ru.depth, -1) DESC;
