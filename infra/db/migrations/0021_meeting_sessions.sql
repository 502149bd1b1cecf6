-- Up Migration
-- Scheduled sessions of a branch's obligations, and the completion check judged from each recording.

CREATE TABLE meeting_sessions (
  id                   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  branch_id            bigint NOT NULL REFERENCES branches(id) ON DELETE CASCADE,
  obligation           text NOT NULL REFERENCES obligation_types(code),
  title                text,
  starts_at            timestamptz NOT NULL,
  ends_at              timestamptz NOT NULL,
  camera_id            bigint REFERENCES cameras(id) ON DELETE SET NULL,
  expected_attendance  integer CHECK (expected_attendance >= 0),
  cancelled            boolean NOT NULL DEFAULT false,
  capture_job_id       bigint REFERENCES capture_jobs(id) ON DELETE SET NULL,
  capture_requested_at timestamptz,
  check_queued_at      timestamptz,
  created_at           timestamptz NOT NULL DEFAULT now(),
  CHECK (ends_at > starts_at)
);
CREATE INDEX meeting_sessions_branch_idx ON meeting_sessions (branch_id, obligation, starts_at);
CREATE INDEX meeting_sessions_capture_due_idx ON meeting_sessions (starts_at) WHERE capture_requested_at IS NULL;
CREATE INDEX meeting_sessions_check_due_idx ON meeting_sessions (ends_at) WHERE check_queued_at IS NULL;

CREATE TABLE completion_checks (
  session_id   bigint PRIMARY KEY REFERENCES meeting_sessions(id) ON DELETE CASCADE,
  checked_at   timestamptz NOT NULL DEFAULT now(),
  passed       boolean NOT NULL,
  covered_s    double precision NOT NULL,
  required_s   integer NOT NULL,
  reasons      jsonb NOT NULL DEFAULT '[]',   -- [{ code, message }], message in Chinese
  measurements jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX completion_checks_passed_idx ON completion_checks (session_id) WHERE passed;

-- Down Migration
DROP TABLE completion_checks, meeting_sessions;
