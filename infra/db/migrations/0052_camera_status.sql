-- Up Migration
-- What the last connection test of each camera found (issue 17): online or not, since when the
-- state has been so, and why not. "Test now" in the operator's console writes it.
CREATE TABLE camera_status (
  camera_id   bigint PRIMARY KEY REFERENCES cameras(id) ON DELETE CASCADE,
  online      boolean NOT NULL,
  since       timestamptz NOT NULL,
  reason      text CHECK (length(reason) <= 40),
  checked_at  timestamptz NOT NULL
);

-- Down Migration
DROP TABLE camera_status;
