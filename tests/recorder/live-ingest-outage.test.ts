import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as mediasoup from 'mediasoup';
import type { types } from 'mediasoup';
import { LiveCameraIngest, type LiveCameraState } from '../../recorder/LiveCameraIngest.ts';
import { CameraUnavailableError } from '../../recorder/CameraUnavailableError.ts';
import { restreamer } from '../../recorder/RtspRestreamer.ts';
import { DebianRtspServer } from '../support/debian-rtsp.ts';
import { rtcPortRange } from '../support/rtc-ports.ts';
import { waitFor, waitForEvent } from '../support/recorder-fixture.ts';
import { PlainViewer } from '../support/plain-viewer.ts';
import { mediaCodecs } from '../../sfu/mediaCodecs.ts';

// Live ingest against gst-rtsp-server (Debian), restarted on its port: the ingest must follow the
// camera through the outage (no transport locked to a dead ffmpeg's port), say why it is down, and
// hand RTP to viewers again within seconds of the camera's return.

// The SFU's own codec list: a camera is forwarded in the profile the SFU labels it with.

describe('live ingest follows a Debian RTSP camera through an outage', () => {
  let worker: types.Worker;
  let router: types.Router;
  let cam: DebianRtspServer;
  let udpCam: DebianRtspServer;
  const closers: Array<() => void> = [];

  before(async () => {
    const { rtcMinPort, rtcMaxPort } = rtcPortRange(200);
    worker = await mediasoup.createWorker({ logLevel: 'error', rtcMinPort, rtcMaxPort });
    router = await worker.createRouter({ mediaCodecs });
    // H.264 High as cameras' main streams are, behind Digest auth with '@' and '#' in the password.
    cam = await DebianRtspServer.start({ codec: 'h264', profile: 'high', auth: { user: 'admin', password: 'p@ss#w0rd' } });
    udpCam = await DebianRtspServer.start({ codec: 'h265', protocols: 'udp' });
  });

  after(async () => {
    for (const c of closers.reverse()) c();
    await cam?.close();
    await udpCam?.close();
    worker?.close();
  });

  test('H.264 High passes through; an outage shows offline (unreachable) and RTP resumes within 5 s of the return', async () => {
    const ingest = await LiveCameraIngest.create({ router, pullUrl: cam.urlWithAuth, label: 'camera high', cameraProbeIntervalMs: 300, rtspTimeoutMs: 2_000, restartBackoffMinMs: 300, restartBackoffMaxMs: 30_000 });
    closers.push(() => ingest.close());
    assert.equal(ingest.passthrough, true, 'High profile is forwarded as-is where the router accepts it');
    const states: LiveCameraState['state'][] = [];
    ingest.on('state', (s) => states.push(s.state));
    const viewer = await PlainViewer.open(router, ingest.videoProducer.id);
    closers.push(() => viewer.close());
    await waitFor('RTP at the viewer', () => viewer.arrivals.length > 20, 20_000);
    await waitFor('state live', () => ingest.state.state === 'live', 5_000);

    await cam.stop();
    const [off] = await waitForEvent(ingest, 'state', (s: LiveCameraState) => s.state === 'offline', 15_000);
    assert.equal(off.state === 'offline' && off.failure.reason, 'unreachable', 'a camera that is gone is "unreachable", not a password problem');
    const lastBefore = viewer.arrivals.at(-1)!.seq;
    // Long enough for the old code's doubled restart wait to pass several steps.
    await new Promise((r) => setTimeout(r, 6_000));
    assert.equal(ingest.state.state as string, 'offline');

    await cam.resume();
    const back = Date.now();
    await waitFor('RTP at the viewer after the camera came back', () => viewer.countSince(back) > 10, 10_000, 50);
    const firstAfter = viewer.arrivals.find((a) => a.at >= back)!;
    const resumedInMs = firstAfter.at - back;
    assert.ok(resumedInMs < 5_000, `RTP resumed ${resumedInMs} ms after the camera's return`);
    await waitFor('state live again', () => (ingest.state.state as string) === 'live', 5_000);
    // The restarted ffmpeg continues the sequence numbers forward: a browser would drop "older" packets.
    const ahead = (firstAfter.seq - lastBefore + 65_536) % 65_536;
    assert.ok(ahead > 0 && ahead < 10_000, `sequence moved ${ahead} forward across the restart`);
    assert.deepEqual(states.filter((s, i) => s !== states[i - 1]).slice(-2), ['offline', 'live']);
    console.log(`# live ingest: RTP resumed ${resumedInMs} ms after the camera's return`);
  });

  test('wrong password, wrong path and a refused port are told apart', async () => {
    const wrong = cam.urlWithAuth.replace(encodeURIComponent('p@ss#w0rd'), 'nope');
    const reasons: string[] = [];
    for (const url of [wrong, cam.urlWithAuth.replace('/stream', '/nothing'), 'rtsp://127.0.0.1:9/stream']) {
      await assert.rejects(LiveCameraIngest.create({ router, pullUrl: url, label: 'camera bad', rtspTimeoutMs: 2_000 }), (err: unknown) => {
        assert.ok(err instanceof CameraUnavailableError);
        assert.ok(!err.message.includes('p@ss') && !err.message.includes('nope'), 'no credentials in the error');
        reasons.push(err.failure.reason);
        return true;
      });
    }
    assert.deepEqual(reasons, ['auth', 'not_found', 'unreachable']);
  });

  test('a UDP-only H.265 camera is watched with transport auto (TCP refused with 461, then UDP, inside the restreamer)', async () => {
    const ingest = await LiveCameraIngest.create({ router, pullUrl: udpCam.url, label: 'camera udp', cameraProbeIntervalMs: 300, rtspTimeoutMs: 2_000, restartBackoffMinMs: 300 });
    closers.push(() => ingest.close());
    const failures: string[] = [];
    ingest.on('state', (s) => s.state === 'offline' && failures.push(s.failure.reason));
    assert.equal(ingest.passthrough, false, 'H.265 is transcoded for browsers');
    const viewer = await PlainViewer.open(router, ingest.videoProducer.id);
    closers.push(() => viewer.close());
    await waitFor('RTP from the UDP-only camera', () => viewer.arrivals.length > 20, 30_000);
    // The restreamer meets the camera's 461 itself and sets up UDP: ffmpeg never sees a refusal.
    assert.deepEqual(failures, [], 'no failed run on the way to UDP');
    const held = (await restreamer()).stats().find((s) => s.camera === `127.0.0.1:${udpCam.port}/stream`);
    assert.equal(held?.transport, 'udp', 'the camera session runs over UDP');
  });
});
