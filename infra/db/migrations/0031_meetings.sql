-- Up Migration
-- Multi-level meetings: a leader chairs; the sites are units of the chair's subtree chosen by level
-- or by hand. The SFU room is `m-<id>`; only the chair and the sites' users get join tokens.

CREATE TABLE meetings (
  id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  title          text NOT NULL CHECK (length(title) BETWEEN 1 AND 100),
  mode           text NOT NULL DEFAULT 'meeting' CHECK (mode IN ('meeting', 'broadcast')),
  chair_user_id  bigint REFERENCES users(id) ON DELETE SET NULL,
  chair_unit_id  bigint NOT NULL REFERENCES units(id) ON DELETE CASCADE,
  state          text NOT NULL DEFAULT 'live' CHECK (state IN ('live', 'ended')),
  created_at     timestamptz NOT NULL DEFAULT now(),
  ended_at       timestamptz
);
CREATE INDEX meetings_chair_unit_idx ON meetings (chair_unit_id, id);

CREATE TABLE meeting_sites (
  meeting_id  bigint NOT NULL REFERENCES meetings(id) ON DELETE CASCADE,
  unit_id     bigint NOT NULL REFERENCES units(id) ON DELETE CASCADE,
  PRIMARY KEY (meeting_id, unit_id)
);
CREATE INDEX meeting_sites_unit_idx ON meeting_sites (unit_id);

-- Down Migration
DROP TABLE meeting_sites, meetings;
