-- Up Migration
-- Superseded: this migration first created a SQL function obligation_status(). Wrapped in a function
-- the query planned generically and ran 6-8x slower than the same statement sent directly, so the
-- statement lives in scheduler/obligations/evaluate.ts. The file stays (as a no-op) so that databases
-- which already ran it keep a consistent migration history; it removes the function where present.
DROP FUNCTION IF EXISTS obligation_status(timestamptz, text, interval);

-- Down Migration
SELECT 1;
