-- Up Migration
-- SMS as Chinese deployments send it (issue 13): per-city providers (SMPP, CMPP, Alibaba Cloud,
-- Tencent Cloud) with signature, templates, rate limit and fallback order as data; replies from
-- secretaries (SMS MO / Beidou) landing on their reminder; receipts kept for the delivery view.

CREATE TABLE sms_providers (
  id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  unit_id       bigint NOT NULL REFERENCES units(id) ON DELETE CASCADE,  -- the city
  name          text NOT NULL CHECK (length(name) BETWEEN 1 AND 40),
  kind          text NOT NULL CHECK (kind IN ('smpp', 'cmpp', 'aliyun', 'tencent')),
  priority      smallint NOT NULL CHECK (priority BETWEEN 1 AND 20),   -- fallback order: 1 first
  enabled       boolean NOT NULL DEFAULT true,
  -- Registered signature naming the sending organisation, e.g. XX县委组织部 (without 【】).
  signature     text NOT NULL CHECK (length(signature) BETWEEN 2 AND 20),
  rate_per_s    integer NOT NULL DEFAULT 10 CHECK (rate_per_s BETWEEN 1 AND 1000),
  settings      jsonb NOT NULL DEFAULT '{}',   -- host, port, source address, TON/NPI, endpoint, sdk app id...
  templates     jsonb NOT NULL DEFAULT '{}',   -- reminder kind -> provider template code
  credentials   jsonb NOT NULL DEFAULT '{}',   -- write-only: never selected by an API response
  updated_at    timestamptz NOT NULL DEFAULT now(),
  UNIQUE (unit_id, name),
  UNIQUE (unit_id, priority)
);

ALTER TABLE message_sends ADD COLUMN provider text;

-- Receipts are matched on the message id in either base (hex or decimal, SMSCs differ): the
-- normalised form (upper case, no leading zeros) is indexed for the second look-up.
CREATE INDEX message_send_parts_norm_id_idx ON message_send_parts (ltrim(upper(provider_message_id), '0'))
  WHERE provider_message_id IS NOT NULL;

-- Every receipt as it came (interim ones too), once per part and state, for the delivery view.
CREATE TABLE message_send_receipts (
  id                   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  send_id              bigint NOT NULL REFERENCES message_sends(id) ON DELETE CASCADE,
  part_no              smallint NOT NULL,
  provider_message_id  text NOT NULL,
  stat                 text NOT NULL,
  err                  text,
  received_at          timestamptz NOT NULL DEFAULT now(),
  UNIQUE (send_id, part_no, stat)
);

-- Who asked for a postponement when it came by SMS/Beidou reply (a member, not a signed-in user).
ALTER TABLE obligation_postponements
  ADD COLUMN requested_by_member bigint REFERENCES members(id) ON DELETE SET NULL,
  ADD COLUMN requested_via text NOT NULL DEFAULT 'web' CHECK (requested_via IN ('web', 'sms', 'beidou'));

CREATE TABLE reminder_replies (
  id                   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  channel              text NOT NULL CHECK (channel IN ('sms', 'beidou')),
  from_address         text NOT NULL,
  body                 text NOT NULL,
  received_at          timestamptz NOT NULL,
  provider_message_id  text,
  outcome              text NOT NULL CHECK (outcome IN ('scheduled', 'postpone_requested', 'unrecognised', 'unknown_sender')),
  reminder_id          bigint REFERENCES reminders(id) ON DELETE SET NULL,
  member_id            bigint REFERENCES members(id) ON DELETE SET NULL,
  scheduled_for        date,
  postponement_id      bigint REFERENCES obligation_postponements(id) ON DELETE SET NULL,
  created_at           timestamptz NOT NULL DEFAULT now()
);
-- A provider resending the same MO is recorded once.
CREATE UNIQUE INDEX reminder_replies_provider_idx ON reminder_replies (channel, provider_message_id) WHERE provider_message_id IS NOT NULL;
CREATE INDEX reminder_replies_reminder_idx ON reminder_replies (reminder_id);

-- Down Migration
DROP TABLE reminder_replies;
ALTER TABLE obligation_postponements DROP COLUMN requested_via, DROP COLUMN requested_by_member;
DROP TABLE message_send_receipts;
DROP INDEX message_send_parts_norm_id_idx;
ALTER TABLE message_sends DROP COLUMN provider;
DROP TABLE sms_providers;
