-- Up Migration
-- "Three meetings and one lesson" (三会一课) and related obligations of every party branch.
-- A rule row with unit_id NULL is the national default; a city may change a rule for its subtree,
-- a county may only tighten the rule it inherits (enforced in scheduler/obligations/rules.ts).

CREATE TABLE obligation_types (
  code     text PRIMARY KEY,
  name_zh  text NOT NULL,
  name_en  text NOT NULL,
  sort     smallint NOT NULL
);
INSERT INTO obligation_types (code, name_zh, name_en, sort) VALUES
  ('member_meeting',    '支部党员大会', 'branch member meeting',    1),
  ('committee_meeting', '支委会',       'branch committee meeting', 2),
  ('group_meeting',     '党小组会',     'party group meeting',      3),
  ('party_lesson',      '党课',         'party lesson',             4),
  ('theme_day',         '主题党日',     'theme party day',          5),
  ('sunshine_day',      '阳光议事日',   'sunshine deliberation day', 6);

CREATE TABLE obligation_rules (
  id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  unit_id         bigint REFERENCES units(id) ON DELETE CASCADE,
  obligation      text NOT NULL REFERENCES obligation_types(code),
  period          text NOT NULL CHECK (period IN ('month', 'quarter', 'half_year', 'year')),
  required_count  smallint NOT NULL CHECK (required_count BETWEEN 0 AND 31),
  min_duration_s  integer NOT NULL CHECK (min_duration_s BETWEEN 1 AND 86400),
  enabled         boolean NOT NULL DEFAULT true,
  updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX obligation_rules_default_uq ON obligation_rules (obligation) WHERE unit_id IS NULL;
CREATE UNIQUE INDEX obligation_rules_unit_uq ON obligation_rules (unit_id, obligation) WHERE unit_id IS NOT NULL;

-- Defaults from shared/DESIGN.md; minimum durations are this project's assumption.
INSERT INTO obligation_rules (unit_id, obligation, period, required_count, min_duration_s) VALUES
  (NULL, 'member_meeting',    'quarter', 1, 3600),
  (NULL, 'committee_meeting', 'month',   1, 1800),
  (NULL, 'group_meeting',     'month',   1, 1800),
  (NULL, 'party_lesson',      'quarter', 1, 2700),
  (NULL, 'theme_day',         'month',   1, 3600),
  (NULL, 'sunshine_day',      'month',   1, 1800);

-- Periods follow China Standard Time (no DST), whatever the server's time zone.
CREATE FUNCTION obligation_period_start(period text, at timestamptz) RETURNS timestamptz
STABLE LANGUAGE sql AS $$
  SELECT (CASE period
    WHEN 'month' THEN date_trunc('month', at AT TIME ZONE 'Asia/Shanghai')
    WHEN 'quarter' THEN date_trunc('quarter', at AT TIME ZONE 'Asia/Shanghai')
    WHEN 'half_year' THEN date_trunc('year', at AT TIME ZONE 'Asia/Shanghai')
      + CASE WHEN extract(month FROM at AT TIME ZONE 'Asia/Shanghai') > 6 THEN interval '6 months' ELSE interval '0' END
    WHEN 'year' THEN date_trunc('year', at AT TIME ZONE 'Asia/Shanghai')
  END) AT TIME ZONE 'Asia/Shanghai'
$$;

CREATE FUNCTION obligation_period_length(period text) RETURNS interval IMMUTABLE LANGUAGE sql AS $$
  SELECT CASE period WHEN 'month' THEN interval '1 month' WHEN 'quarter' THEN interval '3 months'
                     WHEN 'half_year' THEN interval '6 months' WHEN 'year' THEN interval '1 year' END
$$;

CREATE FUNCTION obligation_period_end(period text, period_start timestamptz) RETURNS timestamptz
STABLE LANGUAGE sql AS $$
  SELECT ((period_start AT TIME ZONE 'Asia/Shanghai') + obligation_period_length(period)) AT TIME ZONE 'Asia/Shanghai'
$$;

CREATE FUNCTION obligation_period_key(period text, period_start timestamptz) RETURNS text
STABLE LANGUAGE sql AS $$
  SELECT CASE period
    WHEN 'month' THEN to_char(period_start AT TIME ZONE 'Asia/Shanghai', 'YYYY-MM')
    WHEN 'quarter' THEN to_char(period_start AT TIME ZONE 'Asia/Shanghai', 'YYYY-"Q"Q')
    WHEN 'half_year' THEN to_char(period_start AT TIME ZONE 'Asia/Shanghai', 'YYYY-')
      || CASE WHEN extract(month FROM period_start AT TIME ZONE 'Asia/Shanghai') > 6 THEN 'H2' ELSE 'H1' END
    WHEN 'year' THEN to_char(period_start AT TIME ZONE 'Asia/Shanghai', 'YYYY')
  END
$$;

-- The rule that applies to each branch: the deepest unit rule on the branch's ancestor path, else the default.
CREATE VIEW branch_obligation_rules AS
SELECT DISTINCT ON (b.id, r.obligation)
  b.id AS branch_id, b.unit_id, u.path AS unit_path, r.obligation, r.period, r.required_count,
  r.min_duration_s, r.enabled, r.unit_id AS rule_unit_id
FROM branches b
JOIN units u ON u.id = b.unit_id
JOIN obligation_rules r ON true
LEFT JOIN units ru ON ru.id = r.unit_id
WHERE r.unit_id IS NULL OR u.path LIKE ru.path || '%'
ORDER BY b.id, r.obligation, coalesce(ru.depth, -1) DESC;

-- Down Migration
DROP VIEW branch_obligation_rules;
DROP FUNCTION obligation_period_key, obligation_period_end, obligation_period_length, obligation_period_start;
DROP TABLE obligation_rules, obligation_types;
