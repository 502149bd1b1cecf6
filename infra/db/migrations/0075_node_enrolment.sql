-- Up Migration
-- Node enrolment (issue 14 item 3): an operator creates a node (unit, address) and gets a one-time
-- code; the node enrols its own public key with it. Codes are stored hashed, expire and are used once.
-- A node may hold a second (pending) key while it rotates; revoked keys stay for the record.
ALTER TABLE sfu_nodes ADD COLUMN cascade_id text UNIQUE CHECK (cascade_id ~ '^[A-Za-z0-9_.-]{1,64}$');
ALTER TABLE sfu_nodes ADD COLUMN revoked_at timestamptz;
-- What the node last reported (heartbeat signed with its key): state and load for the console.
ALTER TABLE sfu_nodes ADD COLUMN last_seen_at timestamptz;
ALTER TABLE sfu_nodes ADD COLUMN last_report jsonb;

CREATE TABLE sfu_node_enrolment_codes (
  id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  node_id     bigint NOT NULL REFERENCES sfu_nodes(id) ON DELETE CASCADE,
  code_hash   text NOT NULL UNIQUE,          -- sha256 hex of the code: the code itself is shown once
  expires_at  timestamptz NOT NULL,
  used_at     timestamptz,
  created_by  bigint REFERENCES users(id) ON DELETE SET NULL,
  created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX sfu_node_enrolment_codes_node_idx ON sfu_node_enrolment_codes (node_id);

CREATE TABLE sfu_node_keys (
  id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  node_id       bigint NOT NULL REFERENCES sfu_nodes(id) ON DELETE CASCADE,
  public_key    text NOT NULL,               -- SPKI PEM (ES256)
  state         text NOT NULL CHECK (state IN ('active', 'pending', 'retired', 'revoked')),
  created_at    timestamptz NOT NULL DEFAULT now(),
  activated_at  timestamptz,
  ended_at      timestamptz
);
-- At most one active and one pending key per node.
CREATE UNIQUE INDEX sfu_node_keys_one_active ON sfu_node_keys (node_id) WHERE state = 'active';
CREATE UNIQUE INDEX sfu_node_keys_one_pending ON sfu_node_keys (node_id) WHERE state = 'pending';

-- A unit with data is retired, not deleted (web/api/routes/unit-retire.ts): its subtree's branches,
-- cameras and service points retire with it (their obligations stop), evidence and history stay.
ALTER TABLE units ADD COLUMN retired_at timestamptz;

-- Down Migration
ALTER TABLE units DROP COLUMN retired_at;
DROP TABLE sfu_node_keys, sfu_node_enrolment_codes;
ALTER TABLE sfu_nodes DROP COLUMN cascade_id, DROP COLUMN revoked_at, DROP COLUMN last_seen_at, DROP COLUMN last_report;
