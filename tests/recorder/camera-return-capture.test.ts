import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { SegmentCapture, type RawSegment } from '../../recorder/SegmentCapture.ts';
import type { CaptureFailure } from '../../recorder/CaptureFailure.ts';
import { recorderConfig } from '../../recorder/config.ts';
import { DebianRtspServer } from '../support/debian-rtsp.ts';
import { cameraCapture, tempDir, waitFor } from '../support/recorder-fixture.ts';

// Capture from gst-rtsp-server (Debian) through a 20 s outage: while the camera is down a cheap
// DESCRIBE probe watches for it, so the footage lost is the outage plus seconds — not the doubled
// restart wait (30 s) on top. Also: failures are classified, and a UDP-only camera is recorded with
// transport auto.

function captureOf(name: string, url: string, transport: 'tcp' | 'udp' | 'auto', overrides: Record<string, unknown> = {}): SegmentCapture {
  const config = recorderConfig({
    spoolDir: tempDir('cam-return-'),
    segmentSeconds: 2,
    rtspTimeoutMs: 2_000,
    stallTimeoutMs: 5_000,
    restartBackoffMinMs: 500,
    // The old worst case: without the probe a long outage waits up to 30 s after the camera is back.
    restartBackoffMaxMs: 30_000,
    cameraProbeIntervalMs: 500,
    audio: 'drop',
    ...overrides,
  });
  return cameraCapture(name, url, transport, config);
}

describe('capture follows a Debian RTSP camera through outages', () => {
  let cam: DebianRtspServer;
  let udpCam: DebianRtspServer;
  const captures: SegmentCapture[] = [];

  before(async () => {
    cam = await DebianRtspServer.start({ codec: 'h264', profile: 'high', auth: { user: 'admin', password: 'p@ss#w0rd' } });
    udpCam = await DebianRtspServer.start({ codec: 'h264', profile: 'main', protocols: 'udp' });
  });

  after(async () => {
    await Promise.all(captures.map((c) => c.stop(1_000)));
    await cam?.close();
    await udpCam?.close();
  });

  test('a 20 s outage costs at most 25 s of footage; the failure says unreachable', async () => {
    const capture = captureOf('outage', cam.urlWithAuth, 'auto');
    captures.push(capture);
    const segs: RawSegment[] = [];
    const failures: CaptureFailure[] = [];
    capture.on('segment', (s) => segs.push(s));
    capture.on('failure', (f) => failures.push(f));
    capture.start();
    await waitFor('two segments before the outage', () => segs.length >= 2, 30_000);
    await cam.stop();
    const down = Date.now();
    await new Promise((r) => setTimeout(r, 20_000));
    await cam.resume();
    const back = Date.now();
    await waitFor('two segments after the return', () => segs.filter((s) => s.startedAt >= back - 1_000).length >= 2, 30_000);
    const sorted = [...segs].sort((a, b) => a.startedAt - b.startedAt);
    let gap = 0;
    for (let i = 1; i < sorted.length; i++) gap = Math.max(gap, sorted[i]!.startedAt - sorted[i - 1]!.endedAt);
    console.log(`# capture: outage ${back - down} ms, largest gap ${gap} ms`);
    assert.ok(gap >= 15_000, `the outage shows as a gap (${gap} ms)`);
    assert.ok(gap <= 25_000, `gap ${gap} ms for a 20 s outage (at most 20 s + 5 s)`);
    assert.ok(failures.length > 0 && failures.every((f) => f.reason === 'unreachable'), `failures: ${failures.map((f) => f.reason).join(',')}`);
  });

  test('wrong password, 404 path and a refused port each fail with their reason', async () => {
    const cases: Array<[string, CaptureFailure['reason']]> = [
      [cam.urlWithAuth.replace(encodeURIComponent('p@ss#w0rd'), 'wrong'), 'auth'],
      [cam.urlWithAuth.replace('/stream', '/missing'), 'not_found'],
      ['rtsp://127.0.0.1:9/stream', 'unreachable'],
    ];
    for (const [url, reason] of cases) {
      const capture = captureOf(`bad-${reason}`, url, 'tcp');
      captures.push(capture);
      const p = new Promise<CaptureFailure>((r) => capture.once('failure', r));
      capture.start();
      const f = await p;
      assert.equal(f.reason, reason, `${reason}: got ${f.reason} (${f.detail})`);
      assert.ok(!f.detail.includes('wrong') && !f.detail.includes('p@ss'), 'no credentials in the detail');
      await capture.stop(500);
    }
  });

  test('a UDP-only camera is recorded with transport auto, and fails with unsupported_transport on tcp', async () => {
    const tcpOnly = captureOf('udp-cam-tcp', udpCam.url, 'tcp');
    captures.push(tcpOnly);
    const f = new Promise<CaptureFailure>((r) => tcpOnly.once('failure', r));
    tcpOnly.start();
    assert.equal((await f).reason, 'unsupported_transport');
    await tcpOnly.stop(500);

    const auto = captureOf('udp-cam-auto', udpCam.url, 'auto');
    captures.push(auto);
    const segs: RawSegment[] = [];
    auto.on('segment', (s) => segs.push(s));
    auto.start();
    await waitFor('segments from the UDP-only camera', () => segs.length >= 2, 30_000);
    assert.ok(segs.every((s) => s.bytes > 0));
  });
});
