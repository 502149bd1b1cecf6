-- Up Migration
-- Capture outcomes as data (issue 15) and leased capture jobs (issue 14): a job says how it ended
-- (done / partial / failed with a reason), how much of its window it covered, and which recorder
-- holds it until when; a recorder that stops renewing its lease loses the job to another host.
ALTER TABLE capture_jobs DROP CONSTRAINT capture_jobs_state_check;
ALTER TABLE capture_jobs ADD CONSTRAINT capture_jobs_state_check
  CHECK (state IN ('scheduled', 'recording', 'done', 'partial', 'failed', 'cancelled'));
ALTER TABLE capture_jobs
  ADD COLUMN reason text CHECK (reason IN ('auth', 'not_found', 'unsupported_transport', 'unreachable', 'no_media')),
  ADD COLUMN covered_s double precision NOT NULL DEFAULT 0 CHECK (covered_s >= 0),
  ADD COLUMN lease_until timestamptz,
  ADD COLUMN takeovers integer NOT NULL DEFAULT 0,
  ADD COLUMN cancelled_by bigint REFERENCES users(id) ON DELETE SET NULL;
-- Leases are renewed per recorder and taken over when stale.
CREATE INDEX capture_jobs_lease_idx ON capture_jobs (recorder_id, lease_until) WHERE state IN ('scheduled', 'recording');
CREATE INDEX capture_jobs_camera_time_idx ON capture_jobs (camera_id, starts_at);

-- Recorder hosts alive now and their load: claims go to the host with the fewest running jobs.
CREATE TABLE recorder_hosts (
  id            text PRIMARY KEY,
  heartbeat_at  timestamptz NOT NULL DEFAULT now(),
  running_jobs  integer NOT NULL DEFAULT 0,
  accepting     boolean NOT NULL DEFAULT true,
  started_at    timestamptz NOT NULL DEFAULT now()
);

-- Down Migration
DROP TABLE recorder_hosts;
DROP INDEX IF EXISTS capture_jobs_lease_idx, capture_jobs_camera_time_idx;
ALTER TABLE capture_jobs DROP COLUMN reason, DROP COLUMN covered_s, DROP COLUMN lease_until, DROP COLUMN takeovers, DROP COLUMN cancelled_by;
UPDATE capture_jobs SET state = 'done' WHERE state = 'partial';
ALTER TABLE capture_jobs DROP CONSTRAINT capture_jobs_state_check;
ALTER TABLE capture_jobs ADD CONSTRAINT capture_jobs_state_check
  CHECK (state IN ('scheduled', 'recording', 'done', 'failed', 'cancelled'));
