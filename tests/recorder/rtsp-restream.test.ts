import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import * as mediasoup from 'mediasoup';
import type { types } from 'mediasoup';
import { SegmentCapture, type RawSegment } from '../../recorder/SegmentCapture.ts';
import { LiveCameraIngest, type LiveCameraState } from '../../recorder/LiveCameraIngest.ts';
import type { CaptureFailure } from '../../recorder/CaptureFailure.ts';
import { restreamer, RtspRestreamer } from '../../recorder/RtspRestreamer.ts';
import { recorderConfig } from '../../recorder/config.ts';
import { testCamera } from '../../web/api/routes/camera-test.ts';
import { DebianRtspServer } from '../support/debian-rtsp.ts';
import { RtspServer } from '../support/rtsp-server.ts';
import { rtcPortRange } from '../support/rtc-ports.ts';
import { cameraCapture, tempDir, waitFor, waitForEvent } from '../support/recorder-fixture.ts';
import { mediaCodecs } from '../../sfu/mediaCodecs.ts';
import { PlainViewer } from '../support/plain-viewer.ts';

// One RTSP session per camera (recorder/RtspRestreamer.ts): a camera recorded and watched live at
// once is pulled once, counted on the camera's side (gst-rtsp-server from Debian reports every
// successful SETUP/PLAY and every closed connection). Also across a camera restart, for a UDP-only
// camera with the setting 'auto', and for "test now" with each transport setting.

function captureOf(name: string, url: string, transport: 'tcp' | 'udp' | 'auto'): SegmentCapture {
  const config = recorderConfig({
    spoolDir: tempDir('restream-'),
    segmentSeconds: 1,
    rtspTimeoutMs: 2_000,
    stallTimeoutMs: 5_000,
    restartBackoffMinMs: 300,
    restartBackoffMaxMs: 5_000,
    cameraProbeIntervalMs: 300,
    audio: 'drop',
  });
  return cameraCapture(name, url, transport, config);
}

describe('one camera session serves recording and live viewing', () => {
  let worker: types.Worker;
  let router: types.Router;
  let cam: DebianRtspServer;
  let udpCam: DebianRtspServer;
  const closers: Array<() => Promise<void> | void> = [];

  before(async () => {
    const { rtcMinPort, rtcMaxPort } = rtcPortRange(100);
    worker = await mediasoup.createWorker({ logLevel: 'error', rtcMinPort, rtcMaxPort });
    router = await worker.createRouter({ mediaCodecs });
    // H.264 High behind Digest auth ('@' and '#' in the password), as cameras' main streams are.
    cam = await DebianRtspServer.start({ codec: 'h264', profile: 'high', auth: { user: 'admin', password: 'p@ss#w0rd' }, fps: 10 });
    udpCam = await DebianRtspServer.start({ codec: 'h264', profile: 'main', protocols: 'udp', fps: 10 });
  });

  after(async () => {
    for (const c of closers.reverse()) await c();
    await cam?.close();
    await udpCam?.close();
    worker?.close();
  });

  let capture: SegmentCapture;
  let ingest: LiveCameraIngest;
  let seen: PlainViewer;
  const segs: RawSegment[] = [];

  test('recorded and watched at once (Digest auth): the camera sees exactly one media session', async () => {
    cam.resetSessionCounts();
    capture = captureOf('recorded', cam.urlWithAuth, 'auto');
    closers.push(() => capture.stop(1_000));
    capture.on('segment', (s) => segs.push(s));
    capture.start();
    await waitForEvent(capture, 'segment', () => true, 20_000);
    // The live view joins a session that is already streaming (a late joiner: SPS/PPS from the SDP).
    ingest = await LiveCameraIngest.create({ router, pullUrl: cam.urlWithAuth, rtspTransport: 'auto', label: 'camera live', cameraProbeIntervalMs: 300, rtspTimeoutMs: 2_000, restartBackoffMinMs: 300, restartBackoffMaxMs: 5_000 });
    closers.push(() => ingest.close());
    assert.equal(ingest.passthrough, true, 'High profile forwarded as-is (the SFU\'s own codec list)');
    seen = await PlainViewer.open(router, ingest.videoProducer.id);
    closers.push(() => seen.close());
    const joined = Date.now();
    await waitFor('RTP at the live viewer', () => seen.arrivals.length > 30, 20_000, 100);
    await waitFor('segments recorded while watched', () => segs.filter((s) => s.startedAt >= joined).length >= 2, 20_000, 100);
    assert.equal(cam.plays, 1, `the camera played ${cam.plays} sessions`);
    assert.equal(cam.setups, 1, 'one SETUP (video only)');
    assert.equal(cam.maxPlaying, 1);
    const held = (await restreamer()).stats().filter((s) => s.camera === `127.0.0.1:${cam.port}/stream`);
    assert.equal(held.length, 1);
    assert.equal(held[0]!.playing, 2, 'two local readers on the one session');
  });

  test('a camera restart: recording and live resume, still one session at a time', async () => {
    cam.resetSessionCounts();
    const failure = new Promise<CaptureFailure>((r) => capture.once('failure', r));
    const offline = waitForEvent(ingest, 'state', (s: LiveCameraState) => s.state === 'offline', 15_000);
    await cam.stop();
    assert.equal((await failure).reason, 'unreachable');
    await offline;
    await cam.resume();
    const back = Date.now();
    await waitFor('segments after the restart', () => segs.filter((s) => s.startedAt >= back).length >= 2, 25_000, 100);
    await waitFor('live RTP after the restart', () => seen.countSince(back) > 30, 25_000, 100);
    await waitFor('live state again', () => ingest.state.state === 'live', 10_000, 100);
    assert.equal(cam.plays, 1, `sessions after the restart: ${cam.plays}`);
    assert.equal(cam.maxPlaying, 1, 'never two sessions at once');
    assert.equal(cam.playing, 1);
    await capture.stop(1_000);
    ingest.close();
    // Both readers gone: the session ends after the linger.
    await cam.waitForSessions((s) => s.playing === 0, 10_000);
  });

  test('a UDP-only camera with the setting auto: recorded and watched over one UDP session', async () => {
    udpCam.resetSessionCounts();
    const rec = captureOf('udp-recorded', udpCam.url, 'auto');
    closers.push(() => rec.stop(1_000));
    const got: RawSegment[] = [];
    const failures: CaptureFailure[] = [];
    rec.on('segment', (s) => got.push(s));
    rec.on('failure', (f) => failures.push(f));
    rec.start();
    const live = await LiveCameraIngest.create({ router, pullUrl: udpCam.url, rtspTransport: 'auto', label: 'camera udp', cameraProbeIntervalMs: 300, rtspTimeoutMs: 2_000, restartBackoffMinMs: 300 });
    closers.push(() => live.close());
    const v = await PlainViewer.open(router, live.videoProducer.id);
    closers.push(() => v.close());
    await waitFor('segments from the UDP-only camera', () => got.length >= 2, 25_000, 100);
    await waitFor('RTP at the viewer', () => v.arrivals.length > 30, 25_000, 100);
    assert.deepEqual(failures.map((f) => f.reason), [], 'the 461 is met inside the restreamer');
    assert.equal(udpCam.plays, 1, `the camera played ${udpCam.plays} sessions`);
    assert.equal(udpCam.maxPlaying, 1);
    const held = (await restreamer()).stats().find((s) => s.camera === `127.0.0.1:${udpCam.port}/stream`);
    assert.equal(held?.transport, 'udp');
    await rec.stop(1_000);
    live.close();
  });

  test('"test now" honours the transport: udp and auto succeed on a UDP-only camera, tcp says unsupported_transport', async () => {
    const row = { id: 7, rtsp_url: udpCam.url, username: null, password: null };
    for (const transport of ['udp', 'auto'] as const) {
      const r = await testCamera({ ...row, rtsp_transport: transport });
      assert.ok(r.ok, `${transport}: ${r.ok ? '' : `${r.reason} ${r.detail}`}`);
      assert.equal(r.video_codec, 'h264');
      assert.equal(r.width, 320);
      assert.match(r.snapshot, /^data:image\/jpeg;base64,\/9j/);
    }
    const tcp = await testCamera({ ...row, rtsp_transport: 'tcp' });
    assert.equal(tcp.ok, false);
    assert.equal(!tcp.ok && tcp.reason, 'unsupported_transport');
    assert.match(!tcp.ok ? tcp.message : '', /传输方式.*transport/);
  });

  test('a reader that stops reading is dropped at the backlog bound; the others keep their stream', async () => {
    // A camera that sends 1,400-byte RTP packets at ~40 Mbit/s: published into the project's test RTSP
    // server (ANNOUNCE/RECORD over TCP-interleaved, RFC 2326 10.11), read by a restreamer of its own.
    const rtsp = await RtspServer.start();
    const r = await RtspRestreamer.start({ maxClientBacklogBytes: 1024 * 1024, lingerMs: 200 });
    const pub = net.connect({ host: '127.0.0.1', port: rtsp.port });
    closers.push(async () => {
      pub.destroy();
      await r.close();
      await rtsp.close();
    });
    await new Promise<void>((ok) => pub.once('connect', () => ok()));
    const sdp = 'v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=flood\r\nt=0 0\r\nm=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\na=control:streamid=0\r\n';
    const url = rtsp.url('flood');
    pub.write(`ANNOUNCE ${url} RTSP/1.0\r\nCSeq: 1\r\nContent-Type: application/sdp\r\nContent-Length: ${sdp.length}\r\n\r\n${sdp}`);
    pub.write(`SETUP ${url}/streamid=0 RTSP/1.0\r\nCSeq: 2\r\nTransport: RTP/AVP/TCP;unicast;interleaved=0-1;mode=record\r\n\r\n`);
    pub.write(`RECORD ${url} RTSP/1.0\r\nCSeq: 3\r\n\r\n`);
    pub.on('data', () => undefined);
    await rtsp.waitForPublish('flood');
    let seq = 0;
    const packet = (): Buffer => {
      const f = Buffer.alloc(4 + 1400);
      f[0] = 0x24;
      f.writeUInt16BE(1400, 2);
      f[4] = 0x80;
      f[5] = 96;
      f.writeUInt16BE(seq++ & 0xffff, 6);
      f.writeUInt32BE(seq * 90, 8);
      return f;
    };
    const flood = setInterval(() => {
      for (let i = 0; i < 35; i++) pub.write(packet());
    }, 10);
    closers.push(() => clearInterval(flood));

    const src = r.source(url, 'tcp');
    const play = async (): Promise<{ socket: net.Socket; bytes: () => number }> => {
      const socket = net.connect({ host: '127.0.0.1', port: r.port });
      let text = '';
      let bytes = 0;
      let playing = false;
      const answered = (n: number): Promise<void> => new Promise((ok) => {
        const check = (): void => {
          if ((text.match(/RTSP\/1\.0 200/g) ?? []).length >= n) ok();
          else socket.once('data', check);
        };
        check();
      });
      socket.on('data', (d: Buffer) => {
        if (playing) bytes += d.length;
        else text += d.toString('latin1');
      });
      socket.on('error', () => undefined);
      socket.write(`DESCRIBE ${src.url} RTSP/1.0\r\nCSeq: 1\r\n\r\n`);
      await answered(1);
      socket.write(`SETUP ${src.url}/trackID=0 RTSP/1.0\r\nCSeq: 2\r\nTransport: RTP/AVP/TCP;unicast;interleaved=0-1\r\n\r\n`);
      await answered(2);
      socket.write(`PLAY ${src.url}/ RTSP/1.0\r\nCSeq: 3\r\n\r\n`);
      await answered(3);
      playing = true;
      return { socket, bytes: () => bytes };
    };
    const healthy = await play();
    const slow = await play();
    assert.equal(r.stats()[0]?.playing, 2);
    slow.socket.pause(); // reads nothing more: the kernel's buffers fill, then the restreamer's backlog
    await waitFor('the slow reader dropped', () => r.stats()[0]?.playing === 1, 20_000, 50);
    const at = healthy.bytes();
    await waitFor('the healthy reader still receives', () => healthy.bytes() > at + 1_000_000, 10_000, 50);
    assert.equal(r.stats()[0]?.playing, 1, 'one reader left on the session');
    // Reading again, the slow reader finds its connection closed.
    let closed = false;
    slow.socket.once('close', () => (closed = true));
    slow.socket.resume();
    await waitFor('the slow reader sees its connection closed', () => closed, 10_000, 50);
    healthy.socket.destroy();
    clearInterval(flood);
  });

  test('a reader without a valid token is refused, and learns nothing of the camera', async () => {
    const r = await restreamer();
    const answer = await new Promise<string>((resolve, reject) => {
      const s = net.connect({ host: '127.0.0.1', port: r.port }, () => s.write(`DESCRIBE rtsp://127.0.0.1:${r.port}/AAAAAAAAAAAAAAAAAAAAAAAA/stream RTSP/1.0\r\nCSeq: 1\r\n\r\n`));
      let text = '';
      s.on('data', (d) => (text += d.toString()));
      s.on('close', () => resolve(text));
      s.on('error', reject);
    });
    assert.match(answer, /^RTSP\/1\.0 403 /);
    assert.doesNotMatch(answer, /sdp|127\.0\.0\.1:\d+\/stream/i);
  });
});
