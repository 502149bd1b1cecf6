-- RTSP lower transport per camera: 'tcp', 'udp', or 'auto' (TCP, then UDP when the camera refuses TCP).
ALTER TABLE cameras ADD COLUMN IF NOT EXISTS rtsp_transport text NOT NULL DEFAULT 'auto'
  CHECK (rtsp_transport IN ('tcp', 'udp', 'auto'));
