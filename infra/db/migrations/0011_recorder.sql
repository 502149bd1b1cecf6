-- Up Migration
-- Recorder additions on top of the 0010 contract (tables and columns there are unchanged in meaning).

-- Review material and probe results per segment. Conference recordings have no camera: they name the
-- room and the unit that owns it, so access control still follows the tree.
ALTER TABLE recording_segments
  ALTER COLUMN camera_id DROP NOT NULL,
  ADD COLUMN unit_id     bigint REFERENCES units(id) ON DELETE CASCADE,
  ADD COLUMN room_id     text,
  ADD COLUMN width       integer,
  ADD COLUMN height      integer,
  ADD COLUMN thumb_key   text,
  ADD COLUMN strip_key   text,
  ADD COLUMN run_id      text,
  ADD COLUMN seq         integer,
  ADD CONSTRAINT recording_segments_source_chk CHECK (camera_id IS NOT NULL OR (room_id IS NOT NULL AND unit_id IS NOT NULL));
CREATE INDEX recording_segments_room_time_idx ON recording_segments (room_id, started_at) WHERE room_id IS NOT NULL;
CREATE INDEX recording_segments_age_idx ON recording_segments (started_at) WHERE NOT evidence;

ALTER TABLE capture_jobs
  ADD COLUMN error       text,
  ADD COLUMN started_capture_at timestamptz,
  ADD COLUMN finished_at timestamptz,
  -- The recorder instance that runs the job (several recorders may share one database).
  ADD COLUMN recorder_id text;

-- Down Migration
ALTER TABLE capture_jobs DROP COLUMN error, DROP COLUMN started_capture_at, DROP COLUMN finished_at, DROP COLUMN recorder_id;
DROP INDEX IF EXISTS recording_segments_room_time_idx, recording_segments_age_idx;
ALTER TABLE recording_segments
  DROP CONSTRAINT recording_segments_source_chk,
  DROP COLUMN unit_id, DROP COLUMN room_id, DROP COLUMN width, DROP COLUMN height,
  DROP COLUMN thumb_key, DROP COLUMN strip_key, DROP COLUMN run_id, DROP COLUMN seq;
