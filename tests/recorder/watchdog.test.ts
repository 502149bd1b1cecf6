import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createLogger } from '../../infra/logger.ts';
import { recorderConfig } from '../../recorder/config.ts';
import { SegmentCapture, type RawSegment } from '../../recorder/SegmentCapture.ts';
import { RtspServer } from '../support/rtsp-server.ts';
import { TestCamera } from '../support/rtsp-camera.ts';
import { tempDir, waitForEvent } from '../support/recorder-fixture.ts';

// The watchdog outside ffmpeg: a camera that keeps its connection open but stops sending (hung
// firmware) never trips ffmpeg's own socket timeout when that is long; the watchdog must notice the
// lack of progress, kill ffmpeg and restart it. Scaled: stall timeout 4 s (production 15 s).

describe('recorder watchdog', () => {
  let rtsp: RtspServer;
  let cam: TestCamera;
  let capture: SegmentCapture | undefined;

  before(async () => {
    rtsp = await RtspServer.start();
    cam = new TestCamera({ server: rtsp, path: 'hung', audio: 'none' });
    await cam.start();
  });

  after(async () => {
    await capture?.stop();
    await cam?.stop();
    await rtsp?.close();
  });

  test('a stalled ffmpeg (camera connected but silent) is killed and restarted; segments resume', async () => {
    const config = recorderConfig({ spoolDir: tempDir('wd-'), segmentSeconds: 2, rtspTimeoutMs: 60_000, stallTimeoutMs: 4_000, restartBackoffMinMs: 300, restartBackoffMaxMs: 1_000 });
    capture = new SegmentCapture({
      name: 'hung-camera',
      dir: config.spoolDir,
      config,
      log: createLogger('test'),
      input: async () => ({ url: cam.url, label: 'hung camera', inputOptions: ['-rtsp_transport', 'tcp', '-timeout', String(config.rtspTimeoutMs * 1000), '-use_wallclock_as_timestamps', '1'] }),
    });
    const segs: RawSegment[] = [];
    capture.on('segment', (s) => segs.push(s));
    capture.start();
    await waitForEvent(capture, 'segment', () => true, 20_000);
    const frozenAt = Date.now();
    rtsp.freeze('hung');
    const [ended] = await waitForEvent<[{ runId: string; reason: string }]>(capture, 'runEnded', () => true, 15_000);
    const detectedMs = Date.now() - frozenAt;
    assert.match(ended.reason, /SIGKILL/, 'the watchdog killed it (ffmpeg itself would have waited 60 s)');
    assert.ok(detectedMs >= 3_500 && detectedMs < 8_000, `stall noticed after ${detectedMs} ms`);
    rtsp.freeze('hung', false);
    const [next] = await waitForEvent<[RawSegment]>(capture, 'segment', (s: RawSegment) => s.runId !== ended.runId && s.startedAt > frozenAt, 20_000);
    assert.notEqual(next.runId, ended.runId, 'a new ffmpeg run records again');
    await capture.stop();
    capture = undefined;
    console.log(`# watchdog: stall detected after ${detectedMs} ms, recording again ${next.startedAt - frozenAt - detectedMs} ms later`);
  });
});
