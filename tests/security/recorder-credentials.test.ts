import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import * as mediasoup from 'mediasoup';
import type { types } from 'mediasoup';
import { LiveCameraIngest } from '../../recorder/LiveCameraIngest.ts';
import { probe } from '../../recorder/probe.ts';
import { cameraPullUrl, Recorder } from '../../recorder/Recorder.ts';
import type { IndexedSegment } from '../../recorder/types.ts';
import { createTestDatabase, type TestDatabase } from '../support/database.ts';
import { RtspServer } from '../support/rtsp-server.ts';
import { TestCamera } from '../support/rtsp-camera.ts';
import { addCamera, fastRecorderConfig, seedOrg, startS3Fixture, tempDir, waitFor, type OrgFixture, type S3Fixture } from '../support/recorder-fixture.ts';
import { rtcPortRange } from '../support/rtc-ports.ts';

function rtcPorts(n: number): { rtcMinPort: number; rtcMaxPort: number } {
  const { rtcMinPort, rtcMaxPort } = rtcPortRange(n); // released when the process exits
  return { rtcMinPort, rtcMaxPort };
}

// Issue 12, item 11 (recorder share): a camera's password must not be readable from the argv of the
// ffmpeg/ffprobe the recorder and the live view run (/proc/<pid>/cmdline, `ps`), while recording
// from a camera that demands Digest or Basic authentication still works. Real RTSP servers with
// authentication, real ffmpeg, PostgreSQL, S3 and mediasoup.

const PASSWORD = 'cam-secret-pw'; // what addCamera stores

function parentOf(pid: number): number {
  try {
    // Field 4 of /proc/<pid>/stat, after the parenthesised command name.
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
  } catch {
    return 0;
  }
}

/** Whether `pid` was started (directly or not) by this test process: other tests run alongside. */
function ours(pid: number): boolean {
  for (let p = pid, hops = 0; p > 1 && hops < 20; p = parentOf(p), hops++) if (p === process.pid) return true;
  return false;
}

/** Command lines of every ffmpeg/ffprobe this process runs now. */
function mediaToolArgv(): string[] {
  const out: string[] = [];
  for (const pid of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    let cmd: string;
    try {
      cmd = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ');
    } catch {
      continue;
    }
    if (/ffmpeg|ffprobe/.test(cmd) && !cmd.includes('testsrc2') && ours(Number(pid))) out.push(cmd);
  }
  return out;
}

/** Samples the media tools' argv every 50 ms until stopped. */
function watchArgv(): { seen: string[]; stop(): void } {
  const seen = new Set<string>();
  const timer = setInterval(() => {
    for (const c of mediaToolArgv()) seen.add(c);
  }, 50);
  return { get seen() { return [...seen]; }, stop: () => clearInterval(timer) };
}

describe('recorder security: camera credentials never reach an ffmpeg command line', () => {
  let db: TestDatabase;
  let s3: S3Fixture;
  let org: OrgFixture;
  const servers: RtspServer[] = [];
  const cams: TestCamera[] = [];

  before(async () => {
    db = await createTestDatabase();
    s3 = await startS3Fixture();
    org = await seedOrg(db.pool);
  });

  after(async () => {
    for (const c of cams) await c.stop();
    for (const s of servers) await s.close();
    await s3?.close();
    await db?.drop();
  });

  const authCamera = async (scheme: 'basic' | 'digest'): Promise<{ server: RtspServer; cameraId: number; url: string }> => {
    const server = await RtspServer.start(0, '127.0.0.1', { auth: { scheme, username: 'admin', password: PASSWORD } });
    servers.push(server);
    const cam = new TestCamera({ server, path: `auth-${scheme}`, audio: 'pcm_mulaw' });
    cams.push(cam);
    await cam.start();
    return { server, cameraId: await addCamera(db.pool, org.villageAId, cam.url), url: cam.url };
  };

  test('recording from Digest and Basic cameras works and no password appears in /proc/<pid>/cmdline', async () => {
    const digest = await authCamera('digest');
    const basic = await authCamera('basic');
    // The servers really demand credentials: without them nothing is served.
    await assert.rejects(probe(digest.url, { rtspTimeoutMs: 3_000 }), /401|Unauthorized|ffprobe failed/);
    await assert.rejects(probe(basic.url, { rtspTimeoutMs: 3_000 }), /401|Unauthorized|ffprobe failed/);

    const spoolDir = tempDir('rec-cred-');
    const rec = await Recorder.start({ pool: db.pool, storage: s3.storage, config: fastRecorderConfig(spoolDir, 2, { thumbnails: false }) });
    const indexed: IndexedSegment[] = [];
    rec.on('indexed', (s) => indexed.push(s));
    const watch = watchArgv();
    try {
      const from = new Date(Date.now() + 500);
      for (const c of [digest, basic]) await rec.scheduleCapture({ cameraId: c.cameraId, startsAt: from, endsAt: new Date(from.getTime() + 8_000) });
      // A local user who read the relay's URL from ps but lacks its token gets nothing.
      const capture = await waitFor('a running capture ffmpeg', () => mediaToolArgv().find((c) => c.includes(spoolDir) && c.includes('rtsp://127.0.0.1:')), 30_000, 50);
      const relayPort = Number(/rtsp:\/\/127\.0\.0\.1:(\d+)\//.exec(capture)![1]);
      const answer = await new Promise<string>((resolve, reject) => {
        const s = net.connect(relayPort, '127.0.0.1', () => s.write(`DESCRIBE rtsp://127.0.0.1:${relayPort}/auth-digest RTSP/1.0\r\nCSeq: 1\r\n\r\n`));
        let text = '';
        s.on('data', (d) => (text += d.toString()));
        s.on('close', () => resolve(text));
        s.on('error', reject);
      });
      assert.match(answer, /^RTSP\/1\.0 403/, 'no token, no camera');
      await waitFor('segments from both cameras', () => [digest, basic].every((c) => indexed.filter((s) => s.cameraId === c.cameraId).length >= 3), 45_000, 200);
    } finally {
      watch.stop();
      await rec.close({ drain: true, drainTimeoutMs: 10_000 });
    }
    const argv = watch.seen;
    assert.ok(argv.filter((c) => c.includes(spoolDir)).length >= 2, 'one capture ffmpeg per camera was observed');
    // Stream info comes from an in-process DESCRIBE now (recorder/CameraProbe.ts); any ffprobe of a camera sees only the relay.
    assert.ok(argv.filter((c) => /ffprobe/.test(c) && c.includes('rtsp://')).every((c) => c.includes('rtsp://127.0.0.1:')), 'ffprobe, where it runs, sees the relay only');
    for (const c of argv) assert.ok(!c.includes(PASSWORD), `no password in: ${c.slice(0, 200)}`);
    for (const c of argv) assert.ok(!/rtsp:\/\/[^/\s]*:[^/\s]*@/.test(c), `no user:password@ in: ${c.slice(0, 200)}`);
    const rows = await db.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM recording_segments WHERE camera_id = ANY($1::bigint[])', [[digest.cameraId, basic.cameraId]]);
    assert.ok(rows.rows[0]!.n >= 6, `${rows.rows[0]!.n} segments recorded through the relay`);
  });

  test('the live view pulls a Digest camera into the SFU without the password in its ffmpeg argv', async () => {
    const server = await RtspServer.start(0, '127.0.0.1', { auth: { scheme: 'digest', username: 'admin', password: PASSWORD } });
    servers.push(server);
    const cam = new TestCamera({ server, path: 'live', audio: 'none' });
    cams.push(cam);
    await cam.start();
    const worker = await mediasoup.createWorker({ logLevel: 'error', ...rtcPorts(1000) });
    const router: types.Router = await worker.createRouter({
      mediaCodecs: [{ kind: 'video', mimeType: 'video/H264', clockRate: 90000, parameters: { 'packetization-mode': 1, 'profile-level-id': '42e01f', 'level-asymmetry-allowed': 1 } }],
    });
    const watch = watchArgv();
    let ingest: LiveCameraIngest | undefined;
    try {
      const pullUrl = cameraPullUrl({ rtsp_url: cam.url, username: 'admin', password: PASSWORD });
      assert.ok(pullUrl.includes(PASSWORD), 'the URL handed to the ingest holds the password');
      ingest = await LiveCameraIngest.create({ router, pullUrl, label: 'camera live' });
      const producer = ingest.videoProducer;
      await waitFor('RTP from the camera reaching the producer', async () => (await producer.getStats()).some((s) => s.byteCount > 50_000), 20_000, 200);
    } finally {
      watch.stop();
      ingest?.close();
      worker.close();
    }
    const live = watch.seen.filter((c) => /ffmpeg/.test(c) && c.includes('rtp://'));
    assert.ok(live.length >= 1, 'the live ffmpeg was observed');
    for (const c of watch.seen) assert.ok(!c.includes(PASSWORD), `no password in: ${c.slice(0, 200)}`);
    assert.ok(server.unauthorised >= 1, 'the camera challenged and the relay answered');
  });
});
