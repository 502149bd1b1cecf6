-- ONVIF (Profile S) per camera: the device service's port, the sub-stream the live wall pulls, the
-- snapshot address, what the last discovery found and when. Addresses never carry credentials: the
-- camera's username/password are added when pulling, and only towards the camera's own host.
ALTER TABLE cameras ADD COLUMN IF NOT EXISTS onvif_port integer CHECK (onvif_port BETWEEN 1 AND 65535);
ALTER TABLE cameras ADD COLUMN IF NOT EXISTS sub_stream_url text
  CHECK (sub_stream_url ~ '^rtsps?://[^/?#@[:space:]]+([/?#][^[:space:]]*)?$');
ALTER TABLE cameras ADD COLUMN IF NOT EXISTS snapshot_url text
  CHECK (snapshot_url ~ '^https?://[^/?#@[:space:]]+([/?#][^[:space:]]*)?$');
ALTER TABLE cameras ADD COLUMN IF NOT EXISTS onvif_profiles jsonb;
ALTER TABLE cameras ADD COLUMN IF NOT EXISTS onvif_checked_at timestamptz;
