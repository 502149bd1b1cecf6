-- Up Migration
-- Reminders (exactly once per branch, obligation, period and policy step) and every message sent.

-- Contact details of users who receive escalations (supervisors); members carry theirs in members.
CREATE TABLE notification_contacts (
  user_id           bigint PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
  mobile            text CHECK (mobile ~ '^\+?[0-9]{5,20}$'),
  beidou_card       text CHECK (beidou_card ~ '^[0-9]{6,7}$'),
  preferred_channel text NOT NULL DEFAULT 'sms' CHECK (preferred_channel IN ('sms', 'beidou')),
  fallback_enabled  boolean NOT NULL DEFAULT true
);

-- A secretary's choice whether a failed message may go out on the other channel (default yes).
CREATE TABLE member_notification_settings (
  member_id         bigint PRIMARY KEY REFERENCES members(id) ON DELETE CASCADE,
  fallback_enabled  boolean NOT NULL DEFAULT true
);

CREATE TABLE reminders (
  id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  branch_id   bigint NOT NULL REFERENCES branches(id) ON DELETE CASCADE,
  obligation  text NOT NULL REFERENCES obligation_types(code),
  period_key  text NOT NULL,
  period_end  timestamptz NOT NULL,
  step        text NOT NULL,
  target      text NOT NULL CHECK (target IN ('secretary', 'supervisor')),
  target_unit_id bigint REFERENCES units(id) ON DELETE SET NULL,  -- supervising unit for escalations
  due_at      timestamptz NOT NULL,
  done_count     smallint NOT NULL DEFAULT 0,   -- sessions passed when the reminder was decided
  required_count smallint NOT NULL DEFAULT 1,
  created_at  timestamptz NOT NULL DEFAULT now(),
  UNIQUE (branch_id, obligation, period_key, step)
);
CREATE INDEX reminders_created_idx ON reminders (created_at);

CREATE TABLE message_sends (
  id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  reminder_id     bigint REFERENCES reminders(id) ON DELETE CASCADE,
  recipient_kind  text NOT NULL CHECK (recipient_kind IN ('member', 'user')),
  recipient_id    bigint NOT NULL,
  channel         text NOT NULL CHECK (channel IN ('sms', 'beidou')),
  address         text NOT NULL,
  body            text NOT NULL,
  parts           smallint NOT NULL DEFAULT 1,
  state           text NOT NULL DEFAULT 'queued'
                  CHECK (state IN ('queued', 'sending', 'sent', 'delivered', 'failed')),
  attempts        smallint NOT NULL DEFAULT 0,
  next_attempt_at timestamptz,
  fallback_of     bigint REFERENCES message_sends(id) ON DELETE SET NULL,
  failure_reason  text,
  created_at      timestamptz NOT NULL DEFAULT now(),
  updated_at      timestamptz NOT NULL DEFAULT now(),
  sent_at         timestamptz,
  delivered_at    timestamptz,
  UNIQUE (reminder_id, recipient_kind, recipient_id, channel)
);
CREATE INDEX message_sends_state_idx ON message_sends (state, next_attempt_at);

-- One row per SMS part / Beidou frame; delivery receipts are matched on provider_message_id.
CREATE TABLE message_send_parts (
  send_id              bigint NOT NULL REFERENCES message_sends(id) ON DELETE CASCADE,
  part_no              smallint NOT NULL,
  provider_message_id  text,
  state                text NOT NULL DEFAULT 'sent' CHECK (state IN ('sent', 'delivered', 'failed')),
  detail               text,
  updated_at           timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (send_id, part_no)
);
CREATE UNIQUE INDEX message_send_parts_provider_idx ON message_send_parts (provider_message_id) WHERE provider_message_id IS NOT NULL;

-- History of every state change of a send, for the audit trail shown to supervisors.
CREATE TABLE message_send_events (
  id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  send_id  bigint NOT NULL REFERENCES message_sends(id) ON DELETE CASCADE,
  at       timestamptz NOT NULL DEFAULT now(),
  state    text NOT NULL,
  detail   text
);
CREATE INDEX message_send_events_send_idx ON message_send_events (send_id);

-- Down Migration
DROP TABLE message_send_events, message_send_parts, message_sends, reminders,
  member_notification_settings, notification_contacts;
