-- Up Migration
-- A password set by somebody else (an admin creating the account or resetting it) is temporary:
-- its owner must choose a new one at the next sign-in before doing anything else (issue 17).
ALTER TABLE users ADD COLUMN must_change_password boolean NOT NULL DEFAULT false;

-- Down Migration
ALTER TABLE users DROP COLUMN must_change_password;
