-- Up Migration
-- The secretary's sessions and their ledger (台账), issue 16: a session is planned (or started now, or
-- claimed from a recording afterwards), runs and ends; its ledger records topic, agenda, chair/lecturer,
-- minutes, the members' attendance and photos taken from the recording, and is submitted to and
-- reviewed (approved / returned with a reason) by the higher organisation.

ALTER TABLE meeting_sessions
  ADD COLUMN topic              text CHECK (length(topic) <= 200),
  ADD COLUMN agenda             text CHECK (length(agenda) <= 4000),
  ADD COLUMN state              text NOT NULL DEFAULT 'planned'
                                CHECK (state IN ('planned', 'running', 'ended', 'cancelled')),
  ADD COLUMN origin             text NOT NULL DEFAULT 'planned'
                                CHECK (origin IN ('planned', 'started_now', 'claimed')),
  ADD COLUMN planned_by         bigint REFERENCES users(id) ON DELETE SET NULL,
  ADD COLUMN chair_member_id    bigint REFERENCES members(id) ON DELETE SET NULL,
  ADD COLUMN lecturer_member_id bigint REFERENCES members(id) ON DELETE SET NULL,
  ADD COLUMN minutes            text CHECK (length(minutes) <= 20000),
  ADD COLUMN ledger_state       text NOT NULL DEFAULT 'draft'
                                CHECK (ledger_state IN ('draft', 'submitted', 'approved', 'returned')),
  ADD COLUMN ledger_note        text CHECK (length(ledger_note) <= 1000),
  ADD COLUMN submitted_at       timestamptz,
  ADD COLUMN reviewed_at        timestamptz,
  ADD COLUMN reviewed_by        bigint REFERENCES users(id) ON DELETE SET NULL,
  ADD COLUMN meeting_id         bigint REFERENCES meetings(id) ON DELETE SET NULL;

-- Existing rows: what is already cancelled or over says so; the rest stays planned.
UPDATE meeting_sessions SET state = CASE WHEN cancelled THEN 'cancelled'
                                         WHEN ends_at <= now() THEN 'ended'
                                         ELSE 'planned' END;

-- `cancelled` (read by the scheduler, the evaluation and older code) and `state` say the same thing:
-- whichever of the two a statement changes, the other follows.
CREATE FUNCTION meeting_sessions_sync_cancelled() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    IF NEW.cancelled THEN NEW.state := 'cancelled';
    ELSIF NEW.state = 'cancelled' THEN NEW.cancelled := true;
    END IF;
  ELSE
    IF NEW.state IS DISTINCT FROM OLD.state THEN
      NEW.cancelled := (NEW.state = 'cancelled');
    ELSIF NEW.cancelled IS DISTINCT FROM OLD.cancelled THEN
      NEW.state := CASE WHEN NEW.cancelled THEN 'cancelled'
                        WHEN NEW.ends_at <= now() THEN 'ended' ELSE 'planned' END;
    END IF;
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER meeting_sessions_sync_cancelled BEFORE INSERT OR UPDATE ON meeting_sessions
  FOR EACH ROW EXECUTE FUNCTION meeting_sessions_sync_cancelled();
ALTER TABLE meeting_sessions ADD CONSTRAINT meeting_sessions_cancelled_state
  CHECK (cancelled = (state = 'cancelled'));

CREATE INDEX meeting_sessions_ledger_idx ON meeting_sessions (ledger_state, submitted_at) WHERE ledger_state = 'submitted';
CREATE INDEX meeting_sessions_meeting_idx ON meeting_sessions (meeting_id) WHERE meeting_id IS NOT NULL;

-- Attendance per member: at the kiosk (the member taps their name), by phone (a signed code), remotely
-- (流动党员 from a meeting link) or entered by the secretary. A member who attended is evidence: the
-- member is marked as having left (members.left_at), not deleted.
CREATE TABLE session_attendance (
  session_id   bigint NOT NULL REFERENCES meeting_sessions(id) ON DELETE CASCADE,
  member_id    bigint NOT NULL REFERENCES members(id) ON DELETE RESTRICT,
  status       text NOT NULL CHECK (status IN ('present', 'absent', 'leave')),
  reason       text CHECK (length(reason) <= 200),
  source       text NOT NULL CHECK (source IN ('kiosk', 'phone', 'remote', 'secretary')),
  recorded_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (session_id, member_id)
);
CREATE INDEX session_attendance_member_idx ON session_attendance (member_id);

-- Frames taken from the session's recording at intervals, stored in the recordings bucket.
CREATE TABLE session_photos (
  session_id  bigint NOT NULL REFERENCES meeting_sessions(id) ON DELETE CASCADE,
  offset_s    integer NOT NULL CHECK (offset_s >= 0),
  object_key  text NOT NULL,
  created_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (session_id, offset_s)
);

-- Down Migration
DROP TABLE session_photos, session_attendance;
ALTER TABLE meeting_sessions DROP CONSTRAINT meeting_sessions_cancelled_state;
DROP TRIGGER meeting_sessions_sync_cancelled ON meeting_sessions;
DROP FUNCTION meeting_sessions_sync_cancelled();
DROP INDEX meeting_sessions_ledger_idx, meeting_sessions_meeting_idx;
ALTER TABLE meeting_sessions
  DROP COLUMN topic, DROP COLUMN agenda, DROP COLUMN state, DROP COLUMN origin, DROP COLUMN planned_by,
  DROP COLUMN chair_member_id, DROP COLUMN lecturer_member_id, DROP COLUMN minutes, DROP COLUMN ledger_state,
  DROP COLUMN ledger_note, DROP COLUMN submitted_at, DROP COLUMN reviewed_at, DROP COLUMN reviewed_by,
  DROP COLUMN meeting_id;
