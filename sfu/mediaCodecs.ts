import type { types } from 'mediasoup';

// Opus for speech; VP8 is what every browser encodes; H.264 so IP cameras (RTSP, H.264) enter
// without transcoding. packetization-mode 1 + a baseline-compatible profile matches cameras and browsers.
export const mediaCodecs: types.RouterRtpCodecCapability[] = [
  { kind: 'audio', mimeType: 'audio/opus', clockRate: 48000, channels: 2 },
  { kind: 'video', mimeType: 'video/VP8', clockRate: 90000, parameters: { 'x-google-start-bitrate': 800 } },
  {
    kind: 'video',
    mimeType: 'video/H264',
    clockRate: 90000,
    parameters: { 'packetization-mode': 1, 'profile-level-id': '42e01f', 'level-asymmetry-allowed': 1 },
  },
];
