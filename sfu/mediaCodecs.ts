import type { types } from 'mediasoup';

// Opus for speech; VP8 is what every browser encodes (listed first, so pages publish VP8). H.264 lets
// IP cameras (RTSP) enter without transcoding: a camera's main stream is usually High or Main profile,
// which Chromium and Safari decode, so each profile is listed and a camera is forwarded in its own
// profile (mediasoup matches H.264 by profile; the level is free with level-asymmetry-allowed).
const h264 = (profileLevelId: string): types.RouterRtpCodecCapability => ({
  kind: 'video',
  mimeType: 'video/H264',
  clockRate: 90000,
  parameters: { 'packetization-mode': 1, 'profile-level-id': profileLevelId, 'level-asymmetry-allowed': 1 },
});

export const mediaCodecs: types.RouterRtpCodecCapability[] = [
  { kind: 'audio', mimeType: 'audio/opus', clockRate: 48000, channels: 2 },
  { kind: 'video', mimeType: 'video/VP8', clockRate: 90000, parameters: { 'x-google-start-bitrate': 800 } },
  h264('42e01f'),
  h264('4d001f'),
  h264('64001f'),
  // High 4:4:4 Predictive: Chromium offers this (not plain High) because its decoder takes every
  // profile below it (H.264 A.2: such decoders decode High streams). A High camera is labelled so.
  h264('f4001f'),
];
