-- Up Migration
-- Beidou user cards: BD-3 terminals report 8-digit card numbers (24-bit addresses up to 16777215);
-- 6-7 digits stay valid (issue 13).
ALTER TABLE members DROP CONSTRAINT members_beidou_card_check;
ALTER TABLE members ADD CONSTRAINT members_beidou_card_check CHECK (beidou_card ~ '^[0-9]{6,8}$');
ALTER TABLE notification_contacts DROP CONSTRAINT notification_contacts_beidou_card_check;
ALTER TABLE notification_contacts ADD CONSTRAINT notification_contacts_beidou_card_check CHECK (beidou_card ~ '^[0-9]{6,8}$');

-- Down Migration
ALTER TABLE notification_contacts DROP CONSTRAINT notification_contacts_beidou_card_check;
ALTER TABLE notification_contacts ADD CONSTRAINT notification_contacts_beidou_card_check CHECK (beidou_card ~ '^[0-9]{6,7}$');
ALTER TABLE members DROP CONSTRAINT members_beidou_card_check;
ALTER TABLE members ADD CONSTRAINT members_beidou_card_check CHECK (beidou_card ~ '^[0-9]{6,7}$');
