-- Up Migration
-- Branch duties as the 中国共产党支部工作条例（试行）(2018) defines them (issue 16):
-- - members are full or probationary, may sit on the branch committee and belong to a party group;
-- - a branch has a committee (支委会) only where it has >= 7 full members (enforced by the API) and
--   party groups (党小组) only where it sets them up; obligations apply accordingly;
-- - the 条例's frequencies are a floor (obligation_types.statutory): a city may tighten, not loosen;
--   local practice (theme_day, sunshine_day) is each city's choice; annual duties are listed from a month on;
-- - one session may count for several obligations (session_obligations);
-- - a postponement needs the higher organisation's approval, which is recorded;
-- - the escalation ladder is data (escalation_ladders), and every reminder also becomes a to-do.

-- Party groups first: members reference them.
CREATE TABLE party_groups (
  id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  branch_id        bigint NOT NULL REFERENCES branches(id),
  name             text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
  leader_member_id bigint REFERENCES members(id) ON DELETE SET NULL,
  created_at       timestamptz NOT NULL DEFAULT now(),
  retired_at       timestamptz
);
CREATE INDEX party_groups_branch_idx ON party_groups (branch_id) WHERE retired_at IS NULL;

ALTER TABLE members
  ADD COLUMN membership text NOT NULL DEFAULT 'full' CHECK (membership IN ('full', 'probationary')),
  ADD COLUMN committee_role text CHECK (committee_role IN ('secretary', 'deputy_secretary', 'member')),
  ADD COLUMN party_group_id bigint REFERENCES party_groups(id) ON DELETE SET NULL,
  ADD COLUMN left_at timestamptz;
CREATE INDEX members_party_group_idx ON members (party_group_id) WHERE party_group_id IS NOT NULL;

ALTER TABLE branches ADD COLUMN has_committee boolean NOT NULL DEFAULT false;

-- What each obligation concerns, whether the 条例 sets it (a floor) and which quorum rule applies.
ALTER TABLE obligation_types
  ADD COLUMN scope text NOT NULL DEFAULT 'branch' CHECK (scope IN ('branch', 'committee', 'group')),
  ADD COLUMN statutory boolean NOT NULL DEFAULT true,
  ADD COLUMN quorum text NOT NULL DEFAULT 'none' CHECK (quorum IN ('none', 'full_members', 'committee', 'group'));
UPDATE obligation_types SET scope = 'committee', quorum = 'committee' WHERE code = 'committee_meeting';
UPDATE obligation_types SET scope = 'group', quorum = 'group' WHERE code = 'group_meeting';
UPDATE obligation_types SET quorum = 'full_members' WHERE code = 'member_meeting';
UPDATE obligation_types SET statutory = false WHERE code IN ('theme_day', 'sunshine_day');
INSERT INTO obligation_types (code, name_zh, name_en, sort) VALUES
  ('org_life_meeting', '组织生活会',   'organisational life meeting',   7),
  ('member_review',    '民主评议党员', 'annual review of members',      8),
  ('secretary_lesson', '书记讲党课',   'party lesson by the secretary', 9);

-- A yearly item is listed and reminded from this month of the year on (10 = the fourth quarter).
ALTER TABLE obligation_rules ADD COLUMN due_from_month smallint CHECK (due_from_month BETWEEN 1 AND 12);

-- National defaults per the 条例 (and common practice for 主题党日). 阳光议事日 is a local (Weifang)
-- practice: off nationally, a city switches it on.
INSERT INTO obligation_rules (unit_id, obligation, period, required_count, min_duration_s, enabled, due_from_month) VALUES
  (NULL, 'member_meeting',    'quarter', 1, 3600, true,  NULL),
  (NULL, 'committee_meeting', 'month',   1, 1800, true,  NULL),
  (NULL, 'group_meeting',     'month',   1, 1800, true,  NULL),
  (NULL, 'party_lesson',      'quarter', 1, 2700, true,  NULL),
  (NULL, 'org_life_meeting',  'year',    1, 3600, true,  10),
  (NULL, 'member_review',     'year',    1, 3600, true,  10),
  (NULL, 'secretary_lesson',  'year',    1, 2700, true,  NULL),
  (NULL, 'theme_day',         'month',   1, 3600, true,  NULL),
  (NULL, 'sunshine_day',      'month',   1, 1800, false, NULL)
ON CONFLICT (obligation) WHERE unit_id IS NULL DO UPDATE
  SET period = EXCLUDED.period, required_count = EXCLUDED.required_count, enabled = EXCLUDED.enabled,
      due_from_month = EXCLUDED.due_from_month, updated_at = now();

-- The rule that applies to each branch, only where the obligation applies to it at all: committee
-- meetings only where the branch has a committee, group meetings only where it has an active party
-- group (one row per group is made by scheduler/obligations/evaluate.ts). Columns of 0041 first, new
-- ones appended.
CREATE OR REPLACE VIEW branch_obligation_rules AS
SELECT DISTINCT ON (b.id, r.obligation)
  b.id AS branch_id, b.unit_id, u.path AS unit_path, r.obligation, r.period, r.required_count,
  r.min_duration_s, r.enabled, r.unit_id AS rule_unit_id, t.scope, r.due_from_month
FROM branches b
JOIN units u ON u.id = b.unit_id
JOIN obligation_rules r ON true
JOIN obligation_types t ON t.code = r.obligation
LEFT JOIN units ru ON ru.id = r.unit_id
WHERE b.retired_at IS NULL AND (r.unit_id IS NULL OR u.path LIKE ru.path || '%')
  AND (t.scope <> 'committee' OR b.has_committee)
  AND (t.scope <> 'group' OR EXISTS (SELECT 1 FROM party_groups g WHERE g.branch_id = b.id AND g.retired_at IS NULL))
ORDER BY b.id, r.obligation, coalesce(ru.depth, -1) DESC;

-- A session counts for every obligation it was held for; meeting_sessions.obligation stays (= the first).
ALTER TABLE meeting_sessions ADD COLUMN party_group_id bigint REFERENCES party_groups(id);
CREATE TABLE session_obligations (
  session_id     bigint NOT NULL REFERENCES meeting_sessions(id) ON DELETE CASCADE,
  obligation     text NOT NULL REFERENCES obligation_types(code),
  party_group_id bigint REFERENCES party_groups(id),
  passed         boolean,                      -- per-obligation verdict of the check; NULL = not judged
  reasons        jsonb NOT NULL DEFAULT '[]',
  PRIMARY KEY (session_id, obligation)
);
CREATE INDEX session_obligations_obligation_idx ON session_obligations (obligation, session_id);
INSERT INTO session_obligations (session_id, obligation, party_group_id)
SELECT id, obligation, party_group_id FROM meeting_sessions;
-- Every session counts at least for its first kind, whoever inserts it (writers that know more kinds
-- add their rows with ON CONFLICT DO NOTHING / DO UPDATE).
CREATE FUNCTION meeting_sessions_first_obligation() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO session_obligations (session_id, obligation, party_group_id)
  VALUES (NEW.id, NEW.obligation, NEW.party_group_id) ON CONFLICT DO NOTHING;
  RETURN NEW;
END $$;
CREATE TRIGGER meeting_sessions_first_obligation_trg AFTER INSERT ON meeting_sessions
  FOR EACH ROW EXECUTE FUNCTION meeting_sessions_first_obligation();

-- Postponement of one (branch, obligation[, group], period), approved by the higher organisation.
CREATE TABLE obligation_postponements (
  id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  branch_id      bigint NOT NULL REFERENCES branches(id),
  obligation     text NOT NULL REFERENCES obligation_types(code),
  party_group_id bigint REFERENCES party_groups(id),
  period_key     text NOT NULL CHECK (period_key ~ '^[0-9]{4}(-(0[1-9]|1[0-2]|Q[1-4]|H[12]))?$'),
  reason         text NOT NULL CHECK (length(reason) BETWEEN 1 AND 1000),
  requested_by   bigint REFERENCES users(id),
  requested_at   timestamptz NOT NULL DEFAULT now(),
  state          text NOT NULL DEFAULT 'requested' CHECK (state IN ('requested', 'approved', 'refused')),
  decided_by     bigint REFERENCES users(id),
  decided_at     timestamptz,
  decision_note  text,
  CHECK ((state = 'requested') = (decided_at IS NULL))
);
CREATE UNIQUE INDEX obligation_postponements_uq
  ON obligation_postponements (branch_id, obligation, coalesce(party_group_id, 0), period_key);

-- Reminders per party group for group meetings; one per (branch, obligation, period, step, group).
ALTER TABLE reminders ADD COLUMN party_group_id bigint REFERENCES party_groups(id);
ALTER TABLE reminders DROP CONSTRAINT reminders_branch_id_obligation_period_key_step_key;
CREATE UNIQUE INDEX reminders_once_uq
  ON reminders (branch_id, obligation, period_key, step, coalesce(party_group_id, 0));
ALTER TABLE reminders DROP CONSTRAINT reminders_target_check;
ALTER TABLE reminders ADD CONSTRAINT reminders_target_check CHECK (target IN ('secretary', 'supervisor'));

-- The escalation ladder: unit_id NULL = the default; otherwise a city's own. Steps are
-- {key, anchor: before_end|after_end, offsetHours, target: secretary|supervisor,
--  level?: direct|community|town|county|city, minConsecutiveMissed?: int} (validated in
-- scheduler/reminders/policy.ts).
CREATE TABLE escalation_ladders (
  id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  unit_id     bigint UNIQUE REFERENCES units(id) ON DELETE CASCADE,
  steps       jsonb NOT NULL CHECK (jsonb_typeof(steps) = 'array'),
  updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX escalation_ladders_default_uq ON escalation_ladders ((true)) WHERE unit_id IS NULL;
INSERT INTO escalation_ladders (unit_id, steps) VALUES (NULL, '[
  {"key": "d7", "anchor": "before_end", "offsetHours": 168, "target": "secretary"},
  {"key": "d2", "anchor": "before_end", "offsetHours": 48, "target": "secretary"},
  {"key": "escalate", "anchor": "after_end", "offsetHours": 24, "target": "supervisor", "level": "direct"},
  {"key": "county", "anchor": "after_end", "offsetHours": 72, "target": "supervisor", "level": "county", "minConsecutiveMissed": 2}
]');

-- In-app to-dos beside SMS/Beidou, seen by the users of a unit with a role.
CREATE TABLE todos (
  id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  unit_id      bigint NOT NULL REFERENCES units(id),
  role         text NOT NULL CHECK (role IN ('secretary', 'supervisor', 'leader', 'operator')),
  kind         text NOT NULL,
  title_zh     text,
  title_en     text,
  object_type  text,
  object_id    text,
  due_at       timestamptz,
  created_at   timestamptz NOT NULL DEFAULT now(),
  done_at      timestamptz,
  reminder_id  bigint REFERENCES reminders(id)
);
CREATE INDEX todos_open_idx ON todos (unit_id, role) WHERE done_at IS NULL;
CREATE UNIQUE INDEX todos_reminder_uq ON todos (reminder_id) WHERE reminder_id IS NOT NULL;

-- Down Migration
-- Data of the new obligation kinds cannot be represented before this migration and is removed.
DROP TABLE todos, escalation_ladders;
DROP INDEX reminders_once_uq;
DELETE FROM reminders WHERE obligation IN ('org_life_meeting', 'member_review', 'secretary_lesson');
DELETE FROM reminders r USING reminders o
 WHERE r.branch_id = o.branch_id AND r.obligation = o.obligation AND r.period_key = o.period_key
   AND r.step = o.step AND r.id > o.id;
ALTER TABLE reminders ADD CONSTRAINT reminders_branch_id_obligation_period_key_step_key
  UNIQUE (branch_id, obligation, period_key, step);
ALTER TABLE reminders DROP COLUMN party_group_id;
DROP TRIGGER meeting_sessions_first_obligation_trg ON meeting_sessions;
DROP FUNCTION meeting_sessions_first_obligation;
DROP TABLE obligation_postponements, session_obligations;
ALTER TABLE meeting_sessions DROP COLUMN party_group_id;
DELETE FROM meeting_sessions WHERE obligation IN ('org_life_meeting', 'member_review', 'secretary_lesson');
DROP VIEW branch_obligation_rules;
CREATE VIEW branch_obligation_rules AS
SELECT DISTINCT ON (b.id, r.obligation)
  b.id AS branch_id, b.unit_id, u.path AS unit_path, r.obligation, r.period, r.required_count,
  r.min_duration_s, r.enabled, r.unit_id AS rule_unit_id
FROM branches b
JOIN units u ON u.id = b.unit_id
JOIN obligation_rules r ON true
LEFT JOIN units ru ON ru.id = r.unit_id
WHERE b.retired_at IS NULL AND (r.unit_id IS NULL OR u.path LIKE ru.path || '%')
ORDER BY b.id, r.obligation, coalesce(ru.depth, -1) DESC;
DELETE FROM obligation_rules WHERE obligation IN ('org_life_meeting', 'member_review', 'secretary_lesson');
UPDATE obligation_rules SET enabled = true WHERE unit_id IS NULL AND obligation = 'sunshine_day';
ALTER TABLE obligation_rules DROP COLUMN due_from_month;
DELETE FROM obligation_types WHERE code IN ('org_life_meeting', 'member_review', 'secretary_lesson');
ALTER TABLE obligation_types DROP COLUMN scope, DROP COLUMN statutory, DROP COLUMN quorum;
ALTER TABLE branches DROP COLUMN has_committee;
ALTER TABLE members DROP COLUMN party_group_id, DROP COLUMN membership, DROP COLUMN committee_role, DROP COLUMN left_at;
DROP TABLE party_groups;
