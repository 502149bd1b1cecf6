-- Up Migration
-- Contract between recorder/ (writes) and scheduler/ (requests captures, judges completion).

CREATE TABLE capture_jobs (
  id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  camera_id    bigint NOT NULL REFERENCES cameras(id) ON DELETE CASCADE,
  session_id   bigint,                       -- scheduler's meeting session, if any
  starts_at    timestamptz NOT NULL,
  ends_at      timestamptz NOT NULL,
  pre_roll_s   integer NOT NULL DEFAULT 0 CHECK (pre_roll_s BETWEEN 0 AND 3600),
  post_roll_s  integer NOT NULL DEFAULT 0 CHECK (post_roll_s BETWEEN 0 AND 3600),
  state        text NOT NULL DEFAULT 'scheduled'
               CHECK (state IN ('scheduled', 'recording', 'done', 'failed', 'cancelled')),
  evidence     boolean NOT NULL DEFAULT false,   -- meeting evidence: exempt from retention
  created_at   timestamptz NOT NULL DEFAULT now(),
  CHECK (ends_at > starts_at)
);
CREATE INDEX capture_jobs_due_idx ON capture_jobs (state, starts_at);
CREATE INDEX capture_jobs_session_idx ON capture_jobs (session_id);

CREATE TABLE recording_segments (
  id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  camera_id       bigint NOT NULL REFERENCES cameras(id) ON DELETE CASCADE,
  capture_job_id  bigint REFERENCES capture_jobs(id) ON DELETE SET NULL,
  started_at      timestamptz NOT NULL,
  ended_at        timestamptz NOT NULL,
  bytes           bigint NOT NULL CHECK (bytes > 0),
  video_codec     text,
  audio_codec     text,
  bucket          text NOT NULL,
  object_key      text NOT NULL UNIQUE,
  evidence        boolean NOT NULL DEFAULT false,
  created_at      timestamptz NOT NULL DEFAULT now(),
  CHECK (ended_at > started_at)
);
CREATE INDEX recording_segments_camera_time_idx ON recording_segments (camera_id, started_at);
CREATE INDEX recording_segments_job_idx ON recording_segments (capture_job_id);

-- Down Migration
DROP TABLE recording_segments, capture_jobs;
