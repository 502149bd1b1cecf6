import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import type { EventEmitter } from 'node:events';
import * as mediasoup from 'mediasoup';
import type { types } from 'mediasoup';
import { ConferenceRecorder } from '../../recorder/ConferenceRecorder.ts';
import { LiveCameraIngest } from '../../recorder/LiveCameraIngest.ts';
import { Recorder } from '../../recorder/Recorder.ts';
import type { IndexedSegment } from '../../recorder/types.ts';
import { createTestDatabase, type TestDatabase } from '../support/database.ts';
import { RtspServer } from '../support/rtsp-server.ts';
import { TestCamera } from '../support/rtsp-camera.ts';
import { seedOrg, startS3Fixture, tempDir, waitFor, waitForEvent, type S3Fixture } from '../support/recorder-fixture.ts';
import { rtcPortRange } from '../support/rtc-ports.ts';

function rtcPorts(n: number): { rtcMinPort: number; rtcMaxPort: number } {
  const { rtcMinPort, rtcMaxPort } = rtcPortRange(n); // released when the process exits
  return { rtcMinPort, rtcMaxPort };
}

// The SFU's codecs (same shape as sfu/mediaCodecs.ts): Opus, VP8, constrained-baseline H.264.
const mediaCodecs: types.RouterRtpCodecCapability[] = [
  { kind: 'audio', mimeType: 'audio/opus', clockRate: 48000, channels: 2 },
  { kind: 'video', mimeType: 'video/VP8', clockRate: 90000 },
  { kind: 'video', mimeType: 'video/H264', clockRate: 90000, parameters: { 'packetization-mode': 1, 'profile-level-id': '42e01f', 'level-asymmetry-allowed': 1 } },
];

describe('recorder + mediasoup: live camera ingest and conference recording', () => {
  let worker: types.Worker;
  let router: types.Router;
  let rtsp: RtspServer;
  let cam: TestCamera;
  let db: TestDatabase;
  let s3: S3Fixture;
  let ingest: LiveCameraIngest | undefined;
  let recorder: Recorder | undefined;

  before(async () => {
    worker = await mediasoup.createWorker({ logLevel: 'error', ...rtcPorts(1000) });
    router = await worker.createRouter({ mediaCodecs });
    rtsp = await RtspServer.start();
    cam = new TestCamera({ server: rtsp, path: 'station', audio: 'pcm_mulaw' });
    await cam.start();
    db = await createTestDatabase();
    s3 = await startS3Fixture();
  });

  after(async () => {
    ingest?.close();
    await recorder?.close().catch(() => undefined);
    await cam?.stop();
    await rtsp?.close();
    worker?.close();
    await s3?.close();
    await db?.drop();
  });

  test('a camera enters the router as producers by stream copy (H.264 untouched, audio as Opus)', async () => {
    ingest = await LiveCameraIngest.create({ router, pullUrl: cam.url, label: 'camera test', restartBackoffMinMs: 500 });
    assert.equal(ingest.passthrough, true, 'constrained-baseline H.264 is forwarded without transcoding');
    assert.equal(ingest.videoProducer.rtpParameters.codecs[0]!.mimeType, 'video/H264');
    assert.ok(ingest.audioProducer, 'the camera microphone becomes an audio producer');
    await ingest.videoProducer.enableTraceEvent(['keyframe']);
    await waitForEvent(ingest.videoProducer as unknown as EventEmitter, 'trace', (t: types.ProducerTraceEventData) => t.type === 'keyframe', 15_000);
    const stats = await waitFor('video and audio RTP at the producers', async () => {
      const v = await ingest!.videoProducer.getStats();
      const a = await ingest!.audioProducer!.getStats();
      const vb = v.reduce((n, s) => n + s.byteCount, 0);
      const ab = a.reduce((n, s) => n + s.byteCount, 0);
      return vb > 50_000 && ab > 1_000 ? { vb, ab } : undefined;
    }, 15_000);
    assert.ok(stats.vb > 50_000);
  });

  test('a meeting room is recorded from a PlainTransport + SDP into segments that are verified, uploaded and indexed', async () => {
    assert.ok(ingest, 'needs the ingest from the previous test');
    const org = await seedOrg(db.pool);
    recorder = await Recorder.start({
      pool: db.pool,
      storage: s3.storage,
      config: { spoolDir: tempDir('rec-room-'), recorderId: 'room-test', segmentSeconds: 2, stallTimeoutMs: 6_000, restartBackoffMinMs: 500, restartBackoffMaxMs: 2_000, stripFrames: 3 },
    });
    const room = await ConferenceRecorder.create({
      router,
      recorder,
      roomId: 'county-meeting-1',
      unitId: org.countyId,
      videoProducerId: ingest.videoProducer.id,
      audioProducerId: ingest.audioProducer!.id,
      evidence: true,
    });
    const got: IndexedSegment[] = [];
    await waitForEvent(recorder, 'indexed', (s: IndexedSegment) => s.roomId === 'county-meeting-1' && got.push(s) >= 3, 30_000);
    await room.stop();
    await recorder.spool.idle();
    const rows = await db.pool.query<{ video_codec: string; audio_codec: string; unit_id: number; evidence: boolean; object_key: string; started_at: Date; ended_at: Date }>(
      'SELECT video_codec, audio_codec, unit_id, evidence, object_key, started_at, ended_at FROM recording_segments WHERE room_id = $1 ORDER BY started_at', ['county-meeting-1']);
    assert.ok(rows.rowCount! >= 4, 'segments, including the one flushed at stop');
    for (const r of rows.rows) {
      assert.equal(r.video_codec, 'h264');
      assert.equal(r.audio_codec, 'aac', 'Opus from the room is stored as AAC in MP4');
      assert.equal(Number(r.unit_id), org.countyId);
      assert.equal(r.evidence, true);
      assert.match(r.object_key, new RegExp(`^unit/${org.countyId}/room/county-meeting-1/`));
      assert.ok(await s3.storage.stat(r.object_key));
      const d = r.ended_at.getTime() - r.started_at.getTime();
      assert.ok(d > 0 && d < 6_000, `segment length ${d} ms (cut on requested keyframes)`);
    }
  });

  test('a VP8 room (what browsers send) is recorded too: transcoded to H.264 in MP4 segments', async () => {
    assert.ok(recorder, 'needs the recorder from the previous test');
    const org = await seedOrg(db.pool);
    // A browser-like VP8 sender: ffmpeg encodes a test pattern to VP8 and sends RTP to a comedia transport.
    const transport = await router.createPlainTransport({ listenInfo: { protocol: 'udp', ip: '127.0.0.1' }, rtcpMux: false, comedia: true });
    const ssrc = 22_334_455;
    const producer = await transport.produce({ kind: 'video', rtpParameters: { codecs: [{ mimeType: 'video/VP8', payloadType: 96, clockRate: 90000 }], encodings: [{ ssrc }] } });
    const sender = spawn('ffmpeg', ['-v', 'error', '-re', '-f', 'lavfi', '-i', 'testsrc2=size=320x180:rate=15', '-c:v', 'libvpx', '-deadline', 'realtime', '-cpu-used', '8', '-b:v', '300k', '-g', '15',
      '-ssrc', String(ssrc), '-payload_type', '96', '-f', 'rtp', `rtp://127.0.0.1:${transport.tuple.localPort}?rtcpport=${transport.rtcpTuple!.localPort}&pkt_size=1200`], { stdio: 'ignore' });
    let room: ConferenceRecorder | undefined;
    try {
      room = await ConferenceRecorder.create({ router, recorder, roomId: 'vp8-room', unitId: org.townAId, videoProducerId: producer.id });
      const seen: string[] = [];
      room.capture.on('state', (st) => seen.push(st));
      room.capture.on('runEnded', (r) => seen.push(`ended: ${r.reason}`));
      room.capture.on('segment', (sg) => seen.push(`segment ${sg.seq}`));
      recorder.on('rejected', (sg, why) => seen.push(`rejected ${sg.id}: ${why}`));
      let n = 0;
      await waitForEvent(recorder, 'indexed', (s: IndexedSegment) => s.roomId === 'vp8-room' && ++n >= 2, 30_000).catch((err: Error) => {
        throw new Error(`${err.message}; capture: ${seen.join(' | ')}`);
      });
      await room.stop();
      await recorder.spool.idle();
      const rows = await db.pool.query<{ video_codec: string; audio_codec: string | null }>('SELECT video_codec, audio_codec FROM recording_segments WHERE room_id = $1', ['vp8-room']);
      assert.ok(rows.rowCount! >= 2);
      for (const r of rows.rows) {
        assert.equal(r.video_codec, 'h264');
        assert.equal(r.audio_codec, null);
      }
    } finally {
      await room?.stop();
      sender.kill('SIGKILL');
      transport.close();
    }
  });
});
