-- Up Migration
-- Attendance of a meeting's sites (issue 11): one row per session of a site (a chair or participant
-- peer of room `m-<id>`), written by the API process's root SFU node as sites join and leave anywhere in
-- the cascade. left_at is NULL while the session is live. Kept with the meeting for the supervisors'
-- records: meetings are never deleted (they end), so the rows go only with the meeting itself; a unit
-- that attended cannot be deleted out from under its record (RESTRICT, as recordings' units).

CREATE TABLE meeting_attendance (
  id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  meeting_id    bigint NOT NULL REFERENCES meetings(id) ON DELETE CASCADE,
  unit_id       bigint NOT NULL REFERENCES units(id) ON DELETE RESTRICT,
  peer_id       text NOT NULL CHECK (length(peer_id) BETWEEN 1 AND 100),
  display_name  text NOT NULL CHECK (length(display_name) <= 100),
  role          text NOT NULL CHECK (role IN ('chair', 'participant')),
  joined_at     timestamptz NOT NULL,
  left_at       timestamptz CHECK (left_at IS NULL OR left_at >= joined_at)
);
-- A batch written twice (a retry after a commit whose answer was lost) adds nothing.
CREATE UNIQUE INDEX meeting_attendance_session_idx ON meeting_attendance (meeting_id, peer_id, joined_at);
-- The record and the roster per site; the live sessions (who is connected now, closing them).
CREATE INDEX meeting_attendance_unit_idx ON meeting_attendance (meeting_id, unit_id, joined_at);
CREATE INDEX meeting_attendance_open_idx ON meeting_attendance (meeting_id, unit_id) WHERE left_at IS NULL;
CREATE INDEX meeting_attendance_unit_fk_idx ON meeting_attendance (unit_id);

-- Down Migration
DROP TABLE meeting_attendance;
