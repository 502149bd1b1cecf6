import { test } from 'node:test';
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { classifyFfmpegOutput } from '../../recorder/CaptureFailure.ts';
import { streamsOf } from '../../recorder/CameraProbe.ts';
import { RtpRunJoiner } from '../../recorder/RtpRunJoiner.ts';

// What ffmpeg 5.1 (Debian 12) prints for each camera problem, as seen against gst-rtsp-server and
// through the auth relay; and the RTP joiner that makes successive ffmpeg runs one stream.

test('ffmpeg output is classified per reason; a bare timeout is left to the camera probe', () => {
  const r = (line: string) => classifyFfmpegOutput([line])?.reason;
  assert.equal(r('rtsp://127.0.0.1:40/x: Server returned 401 Unauthorized (authorization failed)'), 'auth');
  assert.equal(r('[rtsp @ 0x1] method DESCRIBE failed: 404 Not Found'), 'not_found');
  assert.equal(r('rtsp://127.0.0.1:40/x: Server returned 404 Not Found'), 'not_found');
  assert.equal(r('[rtsp @ 0x1] method SETUP failed: 461 Unsupported transport'), 'unsupported_transport');
  assert.equal(r('rtsp://127.0.0.1:40/x: Protocol not supported'), 'unsupported_transport');
  assert.equal(r('rtsp://127.0.0.1:9/x: Connection refused'), 'unreachable');
  assert.equal(r('rtsp://relay/x: Server returned 5XX Server Error reply'), 'unreachable');
  assert.equal(r('rtsp://127.0.0.1:40/x: Connection timed out'), undefined);
  const f = classifyFfmpegOutput(['rtsp://admin:secret@10.0.0.5/x: Server returned 401 Unauthorized'])!;
  assert.ok(!f.detail.includes('secret'), 'credentials never reach the detail');
});

test('the SDP tells codecs, the H.264 profile and whether parameter sets are out of band', () => {
  const sdp = ['v=0', 'm=video 0 RTP/AVP 96', 'a=rtpmap:96 H264/90000', 'a=fmtp:96 packetization-mode=1;profile-level-id=640028;sprop-parameter-sets=Z2QAKKzZQHgCJ+IQAAADABAAAAMDIPGDGWA=,aOvjyyLA', 'm=audio 0 RTP/AVP 0'].join('\r\n');
  assert.deepEqual(streamsOf(sdp), { videoCodec: 'h264', h264ProfileLevelId: '640028', audioCodec: 'pcm_mulaw', parameterSets: true });
  const hevc = ['m=video 0 RTP/AVP 96', 'a=rtpmap:96 H265/90000', 'm=audio 0 RTP/AVP 97', 'a=rtpmap:97 MPEG4-GENERIC/16000/1'].join('\n');
  assert.deepEqual(streamsOf(hevc), { videoCodec: 'hevc', h264ProfileLevelId: null, audioCodec: 'aac', parameterSets: false });
});

test('two ffmpeg runs from different ports become one stream: sequence and timestamps continue', async () => {
  const joiner = await RtpRunJoiner.open('127.0.0.1', 90_000);
  const sink = dgram.createSocket('udp4');
  await new Promise<void>((r) => sink.bind(0, '127.0.0.1', () => r()));
  joiner.connect('127.0.0.1', sink.address().port);
  const got: Array<{ seq: number; ts: number; port: number }> = [];
  sink.on('message', (m, from) => got.push({ seq: m.readUInt16BE(2), ts: m.readUInt32BE(4), port: from.port }));
  const packet = (seq: number, ts: number): Buffer => {
    const b = Buffer.alloc(20);
    b[0] = 0x80;
    b[1] = 102;
    b.writeUInt16BE(seq, 2);
    b.writeUInt32BE(ts, 4);
    return b;
  };
  const run = async (seq0: number, ts0: number): Promise<void> => {
    const s = dgram.createSocket('udp4');
    await new Promise<void>((r) => s.bind(0, '127.0.0.1', () => r()));
    for (let i = 0; i < 5; i++) await new Promise<void>((r) => s.send(packet((seq0 + i) & 0xffff, (ts0 + i * 3000) >>> 0), joiner.port, '127.0.0.1', () => r()));
    s.close();
  };
  joiner.newRun();
  await run(65_533, 4_000_000_000);
  const until = async (n: number) => { for (let i = 0; i < 100 && got.length < n; i++) await new Promise((r) => setTimeout(r, 10)); };
  await until(5);
  await new Promise((r) => setTimeout(r, 200));
  joiner.newRun();
  // The restarted ffmpeg starts "behind" (lower sequence number and timestamp): a browser would drop that.
  await run(100, 5_000);
  await until(10);
  joiner.close();
  sink.close();
  assert.equal(got.length, 10);
  for (let i = 1; i < got.length; i++) assert.equal(got[i]!.seq, (got[i - 1]!.seq + 1) & 0xffff, `sequence continues at ${i}`);
  const jump = (got[5]!.ts - got[4]!.ts) >>> 0;
  assert.ok(jump > 0 && jump < 90_000 * 5, `timestamps move forward by the time between runs (${jump})`);
  assert.equal(new Set(got.map((g) => g.port)).size, 1, 'one source port for the transport, whatever port ffmpeg used');
});
