-- Up Migration
-- Scheduler data integrity under faults (issue 12, item 10).

-- A completion check that could not run (storage unreachable, ffmpeg crashed or timed out, recording
-- still uploading) is "pending": not a verdict. It is retried with capped backoff and never counts
-- as a failed session; a later verdict replaces it, and a failed verdict is re-checked when segments
-- of the session are indexed after it (late upload).
ALTER TABLE completion_checks
  ADD COLUMN pending        boolean NOT NULL DEFAULT false,
  -- Runs since the last verdict (1 for a verdict reached at once).
  ADD COLUMN attempts       integer NOT NULL DEFAULT 1,
  -- Consecutive runs in which ffmpeg failed on an object that storage said was there.
  ADD COLUMN probe_failures integer NOT NULL DEFAULT 0,
  -- Scheduler time of the next try (pending only).
  ADD COLUMN next_check_at  timestamptz,
  -- Database time a re-check job was queued; cleared by its result (one re-check job at a time).
  ADD COLUMN requeued_at    timestamptz,
  ADD CONSTRAINT completion_checks_pending_not_passed CHECK (NOT (pending AND passed));
CREATE INDEX completion_checks_pending_idx ON completion_checks (next_check_at) WHERE pending;

-- SMS/Beidou parts are tracked one by one so a send interrupted mid-message resumes at the first
-- part not acknowledged instead of repeating the parts already accepted:
--   pending     not handed to the channel yet
--   unconfirmed handed over, no answer (timeout, disconnect, crash): a receipt or late answer confirms it
--   sent        accepted (provider message id known)
--   delivered / failed  final delivery receipt
ALTER TABLE message_send_parts DROP CONSTRAINT message_send_parts_state_check;
ALTER TABLE message_send_parts ADD CONSTRAINT message_send_parts_state_check
  CHECK (state IN ('pending', 'unconfirmed', 'sent', 'delivered', 'failed'));
-- The concatenation reference (UDH) of the message, kept across attempts so resumed parts join it.
ALTER TABLE message_sends ADD COLUMN concat_ref smallint CHECK (concat_ref BETWEEN 0 AND 255);

-- Down Migration
ALTER TABLE message_sends DROP COLUMN concat_ref;
DELETE FROM message_send_parts WHERE state IN ('pending', 'unconfirmed');
ALTER TABLE message_send_parts DROP CONSTRAINT message_send_parts_state_check;
ALTER TABLE message_send_parts ADD CONSTRAINT message_send_parts_state_check CHECK (state IN ('sent', 'delivered', 'failed'));
DROP INDEX completion_checks_pending_idx;
ALTER TABLE completion_checks DROP CONSTRAINT completion_checks_pending_not_passed,
  DROP COLUMN pending, DROP COLUMN attempts, DROP COLUMN probe_failures, DROP COLUMN next_check_at, DROP COLUMN requeued_at;
