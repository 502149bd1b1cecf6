-- Up Migration
-- Access tokens issued before this moment (whole seconds) are refused: set when a user changes
-- their own password, so a session someone else took over ends with the change.
ALTER TABLE users ADD COLUMN sessions_valid_after timestamptz;

-- Down Migration
ALTER TABLE users DROP COLUMN sessions_valid_after;
