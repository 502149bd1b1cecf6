-- Up Migration
-- Evidence and history survive ordinary deletes (issue 12, item 5). Cameras, branches and service
-- points are retired (hidden from lists, kept for history) instead of deleted when anything hangs
-- off them; the foreign keys that used to cascade into recordings, capture jobs, meeting sessions,
-- reminders, members and service calls now refuse, so no delete can remove evidence by accident.

ALTER TABLE cameras ADD COLUMN retired_at timestamptz;
ALTER TABLE branches ADD COLUMN retired_at timestamptz;
ALTER TABLE service_points ADD COLUMN retired_at timestamptz;

ALTER TABLE capture_jobs DROP CONSTRAINT capture_jobs_camera_id_fkey,
  ADD CONSTRAINT capture_jobs_camera_id_fkey FOREIGN KEY (camera_id) REFERENCES cameras(id) ON DELETE RESTRICT;
ALTER TABLE recording_segments DROP CONSTRAINT recording_segments_camera_id_fkey,
  ADD CONSTRAINT recording_segments_camera_id_fkey FOREIGN KEY (camera_id) REFERENCES cameras(id) ON DELETE RESTRICT;
ALTER TABLE recording_segments DROP CONSTRAINT recording_segments_unit_id_fkey,
  ADD CONSTRAINT recording_segments_unit_id_fkey FOREIGN KEY (unit_id) REFERENCES units(id) ON DELETE RESTRICT;
ALTER TABLE meeting_sessions DROP CONSTRAINT meeting_sessions_branch_id_fkey,
  ADD CONSTRAINT meeting_sessions_branch_id_fkey FOREIGN KEY (branch_id) REFERENCES branches(id) ON DELETE RESTRICT;
ALTER TABLE meeting_sessions DROP CONSTRAINT meeting_sessions_camera_id_fkey,
  ADD CONSTRAINT meeting_sessions_camera_id_fkey FOREIGN KEY (camera_id) REFERENCES cameras(id) ON DELETE RESTRICT;
ALTER TABLE reminders DROP CONSTRAINT reminders_branch_id_fkey,
  ADD CONSTRAINT reminders_branch_id_fkey FOREIGN KEY (branch_id) REFERENCES branches(id) ON DELETE RESTRICT;
ALTER TABLE members DROP CONSTRAINT members_branch_id_fkey,
  ADD CONSTRAINT members_branch_id_fkey FOREIGN KEY (branch_id) REFERENCES branches(id) ON DELETE RESTRICT;
ALTER TABLE service_calls DROP CONSTRAINT service_calls_station_id_fkey,
  ADD CONSTRAINT service_calls_station_id_fkey FOREIGN KEY (station_id) REFERENCES service_points(id) ON DELETE RESTRICT;
ALTER TABLE service_calls DROP CONSTRAINT service_calls_centre_id_fkey,
  ADD CONSTRAINT service_calls_centre_id_fkey FOREIGN KEY (centre_id) REFERENCES service_points(id) ON DELETE RESTRICT;

-- Segments the recorder could not index (camera gone for good, rows the database refuses): kept on
-- the recorder's disk in quarantine, listed here for an operator and for the alert metric.
CREATE TABLE recorder_quarantine (
  segment_id   text PRIMARY KEY,
  recorder_id  text NOT NULL,
  camera_id    bigint,
  room_id      text,
  started_at   timestamptz NOT NULL,
  file         text NOT NULL,
  reason       text NOT NULL,
  created_at   timestamptz NOT NULL DEFAULT now()
);

-- Down Migration
DROP TABLE recorder_quarantine;
ALTER TABLE service_calls DROP CONSTRAINT service_calls_centre_id_fkey,
  ADD CONSTRAINT service_calls_centre_id_fkey FOREIGN KEY (centre_id) REFERENCES service_points(id) ON DELETE CASCADE;
ALTER TABLE service_calls DROP CONSTRAINT service_calls_station_id_fkey,
  ADD CONSTRAINT service_calls_station_id_fkey FOREIGN KEY (station_id) REFERENCES service_points(id) ON DELETE CASCADE;
ALTER TABLE members DROP CONSTRAINT members_branch_id_fkey,
  ADD CONSTRAINT members_branch_id_fkey FOREIGN KEY (branch_id) REFERENCES branches(id) ON DELETE CASCADE;
ALTER TABLE reminders DROP CONSTRAINT reminders_branch_id_fkey,
  ADD CONSTRAINT reminders_branch_id_fkey FOREIGN KEY (branch_id) REFERENCES branches(id) ON DELETE CASCADE;
ALTER TABLE meeting_sessions DROP CONSTRAINT meeting_sessions_camera_id_fkey,
  ADD CONSTRAINT meeting_sessions_camera_id_fkey FOREIGN KEY (camera_id) REFERENCES cameras(id) ON DELETE SET NULL;
ALTER TABLE meeting_sessions DROP CONSTRAINT meeting_sessions_branch_id_fkey,
  ADD CONSTRAINT meeting_sessions_branch_id_fkey FOREIGN KEY (branch_id) REFERENCES branches(id) ON DELETE CASCADE;
ALTER TABLE recording_segments DROP CONSTRAINT recording_segments_unit_id_fkey,
  ADD CONSTRAINT recording_segments_unit_id_fkey FOREIGN KEY (unit_id) REFERENCES units(id) ON DELETE CASCADE;
ALTER TABLE recording_segments DROP CONSTRAINT recording_segments_camera_id_fkey,
  ADD CONSTRAINT recording_segments_camera_id_fkey FOREIGN KEY (camera_id) REFERENCES cameras(id) ON DELETE CASCADE;
ALTER TABLE capture_jobs DROP CONSTRAINT capture_jobs_camera_id_fkey,
  ADD CONSTRAINT capture_jobs_camera_id_fkey FOREIGN KEY (camera_id) REFERENCES cameras(id) ON DELETE CASCADE;
ALTER TABLE service_points DROP COLUMN retired_at;
ALTER TABLE branches DROP COLUMN retired_at;
ALTER TABLE cameras DROP COLUMN retired_at;
