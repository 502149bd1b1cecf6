import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { createLogger } from '../../infra/logger.ts';
import { SfuNode } from '../../sfu/SfuNode.ts';
import { NodeLiveCameraProvider } from '../../web/live-camera-provider.ts';
import { liveRoomFor } from '../../web/api/routes/live-cameras.ts';
import { DebianRtspServer } from '../support/debian-rtsp.ts';
import { waitFor } from '../support/cascade-harness.ts';
import { TEST_JOIN_KEYS } from '../support/join-keys.ts';
import { rtcPortRange } from '../support/rtc-ports.ts';
import { SignalClient } from '../security/sfu-support.ts';

// An H.264 High camera (gst-rtsp-server from Debian) watched live through the node: a browser that
// decodes the camera's profile gets the camera's own stream (no transcoding); one that decodes only
// constrained baseline (Firefox, older kiosks) gets the ingest's baseline rendition of the same camera
// on its first consume, and the camera still serves one RTSP session (the restreamer shares it).

type H264Codec = { mimeType: string; payloadType: number; clockRate: number; parameters?: Record<string, unknown> };
type ConsumeAnswer = { consumerId: string; producerId: string; rtpParameters: { codecs: H264Codec[]; encodings: Array<{ ssrc: number }> } };

const h264 = (profileLevelId: string, pt: number) => ({
  kind: 'video',
  mimeType: 'video/H264',
  preferredPayloadType: pt,
  clockRate: 90000,
  parameters: { 'packetization-mode': 1, 'profile-level-id': profileLevelId, 'level-asymmetry-allowed': 1 },
  rtcpFeedback: [{ type: 'nack' }, { type: 'nack', parameter: 'pli' }, { type: 'ccm', parameter: 'fir' }],
});
const OPUS = { kind: 'audio', mimeType: 'audio/opus', preferredPayloadType: 111, clockRate: 48000, channels: 2 };
/** Debian's Chromium (RTCRtpReceiver.getCapabilities): 42001f, 42e01f, 4d001f, f4001f. */
const CHROMIUM = { codecs: [OPUS, h264('42001f', 102), h264('42e01f', 104), h264('4d001f', 106), h264('f4001f', 108)], headerExtensions: [] };
/** A browser that decodes constrained baseline only. */
const BASELINE_ONLY = { codecs: [OPUS, h264('42e01f', 104)], headerExtensions: [] };

interface TestNode {
  node: SfuNode;
  wsUrl: string;
  close(): Promise<void>;
}

/** A node whose viewers may receive over plain RTP (the node's plainRtp option), as the attack suite's clients do. */
async function startNode(): Promise<TestNode> {
  const ports = rtcPortRange(200);
  const node = new SfuNode({
    joinKey: TEST_JOIN_KEYS.publicKey, numWorkers: 1, listenIp: '127.0.0.1', webRtcBasePort: 0,
    rtcMinPort: ports.rtcMinPort, rtcMaxPort: ports.rtcMaxPort, logger: createLogger('rendition-test'), plainRtp: true,
  });
  await node.start();
  const server = http.createServer((_req, res) => res.writeHead(404).end());
  node.attach(server, '/sfu');
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    node,
    wsUrl: `ws://127.0.0.1:${(server.address() as AddressInfo).port}/sfu`,
    async close() {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
      await node.close();
      ports.release();
    },
  };
}

/** A viewer over a plain recv transport: counts the RTP of the SSRC it consumes (not the node's bandwidth probes). */
async function viewer(node: TestNode, userId: number, room: string, caps: unknown): Promise<{ c: SignalClient; rtp: () => number; watch(ssrc: number): void; close(): void }> {
  const c = await SignalClient.join(node.wsUrl, { userId, room });
  const set = await c.request('setRtpCapabilities', { rtpCapabilities: caps });
  assert.equal(set.ok, true, JSON.stringify(set.error));
  const socket = dgram.createSocket('udp4');
  await new Promise<void>((r) => socket.bind(0, '127.0.0.1', () => r()));
  let packets = 0;
  let ssrc: number | undefined;
  socket.on('message', (m) => {
    if (m.length > 12 && (m[1]! < 200 || m[1]! > 206) && m.readUInt32BE(8) === ssrc) packets++;
  });
  const t = await c.request('createPlainTransport', { direction: 'recv' });
  assert.equal(t.ok, true, JSON.stringify(t.error));
  const transportId = (t.data as { transportId: string }).transportId;
  const conn = await c.request('connectPlainTransport', { transportId, ip: '127.0.0.1', port: socket.address().port });
  assert.equal(conn.ok, true, JSON.stringify(conn.error));
  return { c, rtp: () => packets, watch: (s) => void (ssrc = s), close: () => (socket.close(), c.close()) };
}

describe('live camera in its own H.264 profile, and a baseline rendition for browsers that need one', { timeout: 120_000 }, () => {
  let node: TestNode;
  let cam: DebianRtspServer;
  let provider: NodeLiveCameraProvider;
  const closers: Array<() => void> = [];

  before(async () => {
    node = await startNode();
    cam = await DebianRtspServer.start({ codec: 'h264', profile: 'high', auth: { user: 'admin', password: 'p@ss#w0rd' }, fps: 15 });
    provider = new NodeLiveCameraProvider({ sfu: node.node, log: createLogger('rendition-test'), rtspTimeoutMs: 5_000 });
  });

  after(async () => {
    for (const c of closers.reverse()) c();
    provider?.close();
    await node?.close();
    await cam?.close();
  });

  test('Chromium gets the camera as sent; a baseline-only browser gets the rendition; one RTSP session', async () => {
    const session = await provider.ensure({ id: 71, unitId: 1, name: '村会议室', pullUrl: cam.urlWithAuth, rtspTransport: 'tcp' });
    const video = session.producers.find((p) => p.kind === 'video')!.producerId;
    const room = liveRoomFor(71);

    const chromium = await viewer(node, 1, room, CHROMIUM);
    closers.push(() => chromium.close());
    const a = await chromium.c.request('consume', { producerId: video });
    assert.equal(a.ok, true, JSON.stringify(a.error));
    const asSent = (a.data as ConsumeAnswer).rtpParameters.codecs.find((c) => c.mimeType === 'video/H264')!;
    assert.equal(String(asSent.parameters?.['profile-level-id']).slice(0, 4), 'f400', 'High forwarded as is (signalled as High 4:4:4 Predictive)');
    chromium.watch((a.data as ConsumeAnswer).rtpParameters.encodings[0]!.ssrc);
    await chromium.c.request('resumeConsumer', { consumerId: (a.data as ConsumeAnswer).consumerId });
    await waitFor('RTP of the camera at the Chromium-like viewer', () => chromium.rtp() > 30, 20_000);

    const baseline = await viewer(node, 2, room, BASELINE_ONLY);
    closers.push(() => baseline.close());
    const b = await baseline.c.request('consume', { producerId: video });
    assert.equal(b.ok, true, `the baseline-only viewer is served: ${JSON.stringify(b.error)}`);
    const rendition = (b.data as ConsumeAnswer).rtpParameters.codecs.find((c) => c.mimeType === 'video/H264')!;
    assert.equal(String(rendition.parameters?.['profile-level-id']).slice(0, 4), '42e0', 'a constrained-baseline rendition');
    baseline.watch((b.data as ConsumeAnswer).rtpParameters.encodings[0]!.ssrc);
    await baseline.c.request('resumeConsumer', { consumerId: (b.data as ConsumeAnswer).consumerId });
    await waitFor('RTP of the rendition at the baseline-only viewer', () => baseline.rtp() > 30, 30_000);

    // Both pulls of the camera went through the restreamer: the camera served one media session.
    assert.equal(cam.maxPlaying, 1, `RTSP sessions playing at once at the camera: ${cam.maxPlaying}`);
  });
});
