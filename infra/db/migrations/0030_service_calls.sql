-- Up Migration
-- Face-to-face service calls (远程面对面服务): a village station queues for a service centre above it;
-- a clerk accepts or declines; an accepted call is a 1:1 SFU room `f2f-<id>`.

CREATE TABLE service_calls (
  id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  station_id      bigint NOT NULL REFERENCES service_points(id) ON DELETE CASCADE,
  centre_id       bigint NOT NULL REFERENCES service_points(id) ON DELETE CASCADE,
  service         text NOT NULL CHECK (service ~ '^[a-z_]{2,40}$'),
  caller_id       bigint REFERENCES users(id) ON DELETE SET NULL,
  clerk_id        bigint REFERENCES users(id) ON DELETE SET NULL,
  state           text NOT NULL DEFAULT 'queued'
                  CHECK (state IN ('queued', 'accepted', 'declined', 'cancelled', 'closed')),
  record          boolean NOT NULL DEFAULT false,
  decline_reason  text CHECK (length(decline_reason) <= 200),
  note            text CHECK (length(note) <= 2000),
  created_at      timestamptz NOT NULL DEFAULT now(),
  accepted_at     timestamptz,
  ended_at        timestamptz
);
CREATE INDEX service_calls_queue_idx ON service_calls (centre_id, state, id);
-- A station waits in at most one queue at a time.
CREATE UNIQUE INDEX service_calls_one_open_per_station ON service_calls (station_id) WHERE state IN ('queued', 'accepted');

-- Down Migration
DROP TABLE service_calls;
