// Recorder benchmark: how many cameras one core records by stream copy, and how long a closed
// segment takes to be an object in S3 with its index row.
//
//   node --import tsx tests/bench/recorder-capacity.ts [--counts 4,8,16,32] [--window 20] [--segment 4] [--no-thumbs]
//
// One pre-encoded H.264+AAC clip (640x360, 15 fps) is published to the test RTSP server by stream
// copy (so the source costs almost nothing) and N camera rows pull it, each through its own RTSP
// session and ffmpeg, exactly as N real cameras would. For each N the recorder runs a capture window;
// we measure the CPU used by the recorder process and its ffmpeg children, segment lateness (wall
// clock from the media's end to ffmpeg listing the segment) and close -> indexed latency. N is raised
// until segments arrive late (p99 lateness above the limit) or the spool is still behind at the end.
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Recorder } from '../../recorder/Recorder.ts';
import type { IndexedSegment } from '../../recorder/types.ts';
import { createTestDatabase } from '../support/database.ts';
import { RtspServer } from '../support/rtsp-server.ts';
import { addCamera, seedOrg, startS3Fixture, tempDir } from '../support/recorder-fixture.ts';

const arg = (name: string, def: string): string => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? (process.argv[i + 1] ?? def) : def;
};
const counts = arg('counts', '4,8,16').split(',').map(Number);
const windowS = Number(arg('window', '20'));
const segmentS = Number(arg('segment', '4'));
const thumbs = !process.argv.includes('--no-thumbs');
const LATE_MS = 1_500;

const pct = (xs: number[], p: number): number => {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
};

/** CPU seconds of this process plus every child it has reaped (capture ffmpegs, probes, thumbnails). */
function cpuSeconds(): number {
  const f = fs.readFileSync('/proc/self/stat', 'utf8').split(') ')[1]!.split(' ');
  // fields after the command: utime=11, stime=12, cutime=13, cstime=14 (0-based from state)
  return (Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14])) / 100;
}

function ffmpegPidsWriting(dir: string): number[] {
  const out: number[] = [];
  for (const p of fs.readdirSync('/proc').filter((x) => /^\d+$/.test(x))) {
    try {
      if (fs.readFileSync(`/proc/${p}/cmdline`, 'utf8').includes(dir)) out.push(Number(p));
    } catch {
      // gone
    }
  }
  return out;
}

const clipDir = tempDir('bench-clip-');
const clip = path.join(clipDir, 'clip.mp4');
execFileSync('ffmpeg', ['-v', 'error', '-f', 'lavfi', '-i', 'testsrc2=size=640x360:rate=15', '-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=16000',
  '-t', '20', '-c:v', 'libx264', '-preset', 'ultrafast', '-tune', 'zerolatency', '-g', '15', '-pix_fmt', 'yuv420p', '-c:a', 'aac', '-b:a', '32k', '-shortest', clip]);

const db = await createTestDatabase();
const s3 = await startS3Fixture();
const rtsp = await RtspServer.start();
const publisher: ChildProcess = spawn('ffmpeg', ['-v', 'error', '-re', '-stream_loop', '-1', '-i', clip, '-c', 'copy', '-f', 'rtsp', '-rtsp_transport', 'tcp', rtsp.url('bench')], { stdio: 'ignore' });
const rows: string[] = [];
try {
  await rtsp.waitForPublish('bench');
  const org = await seedOrg(db.pool);
  console.log(`recorder bench: ${os.availableParallelism()} cores, window ${windowS} s, segments ${segmentS} s, thumbnails ${thumbs ? 'on' : 'off'}`);
  console.log('cameras | cpu cores used | cameras/core | segments | lateness p50/p99 ms | close->object in S3 p50/p99 ms | close->indexed p50/p99 ms | spool left');
  for (const n of counts) {
    const spoolDir = tempDir('bench-rec-');
    const rec = await Recorder.start({
      pool: db.pool, storage: s3.storage,
      config: { spoolDir, recorderId: `bench-${n}`, segmentSeconds: segmentS, startLeadMs: 0, uploadRetryMinMs: 200, jobPollMs: 250, thumbnails: thumbs, stripFrames: 4, uploadConcurrency: 8, stallTimeoutMs: 20_000, rtspTimeoutMs: 10_000 },
    });
    const got: { seg: IndexedSegment; at: number }[] = [];
    rec.on('indexed', (seg) => got.push({ seg, at: Date.now() }));
    const cams: number[] = [];
    for (let i = 0; i < n; i++) cams.push(await addCamera(db.pool, org.villageAId, rtsp.url('bench'), `bench ${n}/${i}`));
    const startsAt = new Date(Date.now() + 500);
    const endsAt = new Date(startsAt.getTime() + windowS * 1000);
    // CPU from scheduling to fully drained: capture, verification, thumbnails, uploads, indexing.
    const c0 = cpuSeconds();
    const t0 = Date.now();
    for (const c of cams) await rec.scheduleCapture({ cameraId: c, startsAt, endsAt });
    await new Promise((r) => setTimeout(r, Math.max(1_000, endsAt.getTime() - Date.now() - 2_000)));
    const ffmpegs = ffmpegPidsWriting(spoolDir).length;
    const spoolLeft = rec.spool.pendingSegments;
    await rec.close({ drain: true, drainTimeoutMs: 60_000 });
    const cores = (cpuSeconds() - c0) / ((Date.now() - t0) / 1000);
    // Leave out each camera's first segment (connect/probe) from the latency figures.
    const firstSeen = new Set<number | null>();
    const steady = got.filter((g) => (firstSeen.has(g.seg.cameraId) ? true : (firstSeen.add(g.seg.cameraId), false)));
    const lateness = steady.map((g) => g.at - g.seg.closeToIndexedMs - g.seg.endedAt.getTime());
    const latency = steady.map((g) => g.seg.closeToIndexedMs);
    const stored = steady.map((g) => g.seg.closeToStoredMs);
    const perCore = cores > 0 ? n / cores : NaN;
    const line = `${String(n).padStart(7)} | ${cores.toFixed(2).padStart(14)} | ${perCore.toFixed(1).padStart(12)} | ${String(got.length).padStart(8)} | ${pct(lateness, 50).toFixed(0)}/${pct(lateness, 99).toFixed(0)} | ${pct(stored, 50).toFixed(0)}/${pct(stored, 99).toFixed(0)} | ${pct(latency, 50).toFixed(0)}/${pct(latency, 99).toFixed(0)} | ${spoolLeft}${ffmpegs < n ? ` (only ${ffmpegs} ffmpeg running)` : ''}`;
    console.log(line);
    rows.push(line);
    fs.rmSync(spoolDir, { recursive: true, force: true });
    // Late: ffmpeg lists segments late, or the store falls behind (p99 close -> object longer than
    // a segment, i.e. the backlog grows).
    if (pct(lateness, 99) > LATE_MS || pct(stored, 99) > segmentS * 1000 || spoolLeft > 2 * n) {
      console.log(`segments arrive late at ${n} cameras (p99 listing lateness > ${LATE_MS} ms, p99 close->object > ${segmentS} s, or spool behind): stopping`);
      break;
    }
  }
} finally {
  publisher.kill('SIGKILL');
  await rtsp.close();
  await s3.close();
  await db.drop();
  fs.rmSync(clipDir, { recursive: true, force: true });
}
