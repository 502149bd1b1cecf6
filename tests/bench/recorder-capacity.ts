// Recorder benchmark: how many cameras one core records by stream copy, and how long a closed
// segment takes to be an object in S3 with its index row — today's per-segment pipeline beside the
// lean one (issue 15 item 9) in the same run.
//
//   node --import tsx tests/bench/recorder-capacity.ts [--counts 16,32,48,64] [--window 40] [--segment 4] [--pipelines today,lean] [--no-thumbs]
//   node --import tsx tests/bench/recorder-capacity.ts --quick      (16 and 48 cameras, 20 s window: a few minutes)
//
// Every row is a county's evening: all N jobs have the same window, scheduled together one start
// lead (5 s) ahead, as the scheduler inserts them.
//
// One pre-encoded H.264+AAC clip (640x360, 15 fps) is published to the test RTSP server by stream
// copy and N camera rows pull it, each through its own RTSP session and ffmpeg, exactly as N real
// cameras would. The S3 server, the RTSP server and the publisher run in a child process
// (support/recorder-media-host.ts) that is reaped only at the end, so the CPU counted per row is the
// recorder's alone: this Node process (spool, uploads, index) and its reaped children (capture
// ffmpegs, ffprobes, thumbnail ffmpegs).
//   today: ffprobe every closed segment, thumbnail + strip (every frame decoded) for every segment,
//          one INSERT per segment, every capture started at once.
//   lean:  no ffprobe for segments ffmpeg listed (the MP4's own boxes: structure, codecs, size,
//          samples); review images every 30 s per camera from keyframes only, in their own stage
//          after the upload; index rows batched (50 ms); capture starts spread over the start lead.
// Both run through the same spool stages (uploads and tool processes each limited).
import { spawn, execFileSync } from 'node:child_process';
import readline from 'node:readline';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Recorder } from '../../recorder/Recorder.ts';
import type { IndexedSegment } from '../../recorder/types.ts';
import type { SegmentStageTimes } from '../../recorder/SegmentSpool.ts';
import { createTestDatabase } from '../support/database.ts';
import { ObjectStorage } from '../../infra/storage/ObjectStorage.ts';
import { addCamera, seedOrg, tempDir } from '../support/recorder-fixture.ts';

const arg = (name: string, def: string): string => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? (process.argv[i + 1] ?? def) : def;
};
const quick = process.argv.includes('--quick');
const counts = arg('counts', quick ? '16,48' : '16,32,48,64').split(',').map(Number);
const pipelines = arg('pipelines', 'today,lean').split(',') as ('today' | 'lean')[];
const PIPELINE = {
  today: { probeEverySegment: true, thumbnailEverySeconds: 0, thumbnailKeyframesOnly: false, indexBatchMs: 0, startSpreadMs: 0, imageBatchMs: 0, streamUploads: false },
  lean: { probeEverySegment: false, thumbnailEverySeconds: 30, thumbnailKeyframesOnly: true, indexBatchMs: 50, startSpreadMs: 4_000, imageBatchMs: 100, streamUploads: true },
} as const;
const windowS = Number(arg('window', quick ? '20' : '40'));
const LEAD_MS = 5_000;
const segmentS = Number(arg('segment', '4'));
const thumbs = !process.argv.includes('--no-thumbs');
const LATE_MS = 1_500;

const pct = (xs: number[], p: number): number => {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
};

/**
 * CPU seconds from /proc/self/stat: `own` is this Node process (the recorder: spool, uploads, index;
 * S3 and RTSP run in the media host), `children` every child it has reaped — the recorder's own
 * processes (capture ffmpegs, probes, thumbnails); the media host is reaped only after the last row.
 */
function cpuSeconds(): { own: number; children: number } {
  const f = fs.readFileSync('/proc/self/stat', 'utf8').split(') ')[1]!.split(' ');
  // fields after the command: utime=11, stime=12, cutime=13, cstime=14 (0-based from state)
  return { own: (Number(f[11]) + Number(f[12])) / 100, children: (Number(f[13]) + Number(f[14])) / 100 };
}

/** CPU seconds of another process (the media host: S3 + RTSP relay), to see whether the test's world keeps up. */
function cpuOf(pid: number): number {
  const f = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(f[11]) + Number(f[12])) / 100;
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
// S3, RTSP server and publisher in their own process (see the header).
const host = spawn(process.execPath, ['--import', 'tsx', path.join(import.meta.dirname, 'support', 'recorder-media-host.ts'), tempDir('bench-s3-'), clip], { stdio: ['pipe', 'pipe', 'inherit'] });
const hello = await new Promise<string>((resolve, reject) => {
  readline.createInterface({ input: host.stdout! }).once('line', resolve);
  host.once('exit', (code) => reject(new Error(`media host exited (${code})`)));
});
const world = JSON.parse(hello) as { s3: { endpoint: string; port: number; accessKey: string; secretKey: string }; rtspUrl: string };
const storage = new ObjectStorage({ endPoint: world.s3.endpoint, port: world.s3.port, accessKey: world.s3.accessKey, secretKey: world.s3.secretKey, bucket: 'recordings' });
await storage.ensureBucket();
const rows: string[] = [];
try {
  const org = await seedOrg(db.pool);
  console.log(`recorder bench: ${os.availableParallelism()} cores, window ${windowS} s, segments ${segmentS} s, thumbnails ${thumbs ? 'on' : 'off'}; CPU of the recorder only (this process + its reaped ffmpegs)`);
  console.log('cameras | pipeline | ffmpeg/probe/thumb cores | recorder node cores | cameras per core | video s per CPU s | segments | lateness p50/p99 ms | close->object in S3 p50/p99 ms | close->indexed p50/p99 ms | p99 <= segment | spool left | S3+RTSP host cores | verdict');
  for (const n of counts) for (const pipeline of pipelines) {
    const spoolDir = tempDir('bench-rec-');
    const rec = await Recorder.start({
      pool: db.pool, storage,
      config: { spoolDir, recorderId: `bench-${n}-${pipeline}`, segmentSeconds: segmentS, startLeadMs: LEAD_MS, uploadRetryMinMs: 200, jobPollMs: 250, thumbnails: thumbs, stripFrames: 4, uploadConcurrency: 8, toolConcurrency: 8, stallTimeoutMs: 20_000, rtspTimeoutMs: 10_000, ...PIPELINE[pipeline] },
    });
    const got: { seg: IndexedSegment; at: number }[] = [];
    rec.on('indexed', (seg) => got.push({ seg, at: Date.now() }));
    const stages: SegmentStageTimes[] = [];
    rec.spool.on('stages', (t) => stages.push(t));
    const cams: number[] = [];
    // A URL per camera (the server ignores the query): each is its own upstream session in the restreamer, as real cameras are.
    for (let i = 0; i < n; i++) cams.push(await addCamera(db.pool, org.villageAId, `${world.rtspUrl}?cam=${i}`, `bench ${n}/${pipeline}/${i}`));
    // The county's evening: every window opens together, one start lead from now.
    const startsAt = new Date(Date.now() + LEAD_MS);
    const endsAt = new Date(startsAt.getTime() + windowS * 1000);
    // CPU from scheduling to fully drained: capture, verification, thumbnails, uploads, indexing.
    const c0 = cpuSeconds();
    const h0 = cpuOf(host.pid!);
    const t0 = Date.now();
    const jobIds: number[] = [];
    for (const c of cams) jobIds.push((await rec.scheduleCapture({ cameraId: c, startsAt, endsAt })).id);
    await new Promise((r) => setTimeout(r, Math.max(1_000, endsAt.getTime() - Date.now() - 2_000)));
    const ffmpegs = ffmpegPidsWriting(spoolDir).length;
    const spoolLeft = rec.spool.pendingSegments;
    await rec.close({ drain: true, drainTimeoutMs: 60_000 });
    // A row that could not drain leaves tool processes running: wait them out, so the next row starts clean.
    for (let i = 0; i < 300 && ffmpegPidsWriting(spoolDir).length > 0; i++) await new Promise((r) => setTimeout(r, 100));
    // The row ends before its jobs' windows do: they must not be leased to the next row's recorder.
    await db.pool.query(`UPDATE capture_jobs SET state = 'cancelled' WHERE id = ANY($1) AND state IN ('scheduled', 'recording')`, [jobIds]);
    const c1 = cpuSeconds();
    const wall = (Date.now() - t0) / 1000;
    const hostCores = (cpuOf(host.pid!) - h0) / wall;
    const childCores = (c1.children - c0.children) / wall;
    const ownCores = (c1.own - c0.own) / wall;
    // Every segment counts, each run's first included: the start-up burst is what a county's evening is.
    const lateness = got.map((g) => g.at - g.seg.closeToIndexedMs - g.seg.endedAt.getTime());
    const latency = got.map((g) => g.seg.closeToIndexedMs);
    const stored = got.map((g) => g.seg.closeToStoredMs);
    const perCamera = new Set(got.map((g) => g.seg.cameraId)).size;
    const recordedS = got.reduce((t, g) => t + (g.seg.endedAt.getTime() - g.seg.startedAt.getTime()) / 1000, 0);
    const cpuS = (c1.children - c0.children) + (c1.own - c0.own);
    // Cameras per core: N over the cores the row used (as the README's table); and the stricter video
    // seconds recorded per CPU-second (start-up and drain included, so lower in a short window).
    const perCore = n / Math.max(0.01, childCores + ownCores);
    const videoPerCpu = recordedS / Math.max(0.01, cpuS);
    const p99Ok = pct(stored, 99) <= segmentS * 1000;
    // Holds: every camera delivered segments, p99 close -> object within one segment length, ffmpeg
    // listed segments on time, the spool kept up and every ffmpeg ran.
    const fails = perCamera < n || !(pct(lateness, 99) <= LATE_MS) || !p99Ok || spoolLeft > 2 * n || ffmpegs < n;
    const line = `${String(n).padStart(7)} | ${pipeline.padEnd(8)} | ${childCores.toFixed(2).padStart(24)} | ${ownCores.toFixed(2).padStart(19)} | ${perCore.toFixed(0).padStart(16)} | ${videoPerCpu.toFixed(0).padStart(17)} | ${String(got.length).padStart(8)} | ${pct(lateness, 50).toFixed(0)}/${pct(lateness, 99).toFixed(0)} | ${pct(stored, 50).toFixed(0)}/${pct(stored, 99).toFixed(0)} | ${pct(latency, 50).toFixed(0)}/${pct(latency, 99).toFixed(0)} | ${p99Ok ? 'yes' : 'NO'} | ${spoolLeft}${ffmpegs < n ? ` (only ${ffmpegs} ffmpeg running)` : ''} | ${hostCores.toFixed(2)} | ${fails ? 'FAILS' : 'holds'}`;
    console.log(line);
    rows.push(line);
    // Where close -> indexed went, p50/p99 per stage (ms).
    const keys = ['queuedMs', 'verifyMs', 'uploadWaitMs', 'uploadMs', 'finishWaitMs', 'imagesMs', 'indexMs'] as const;
    console.log(`        stages p50/p99 ms: ${keys.map((k) => `${k.replace(/Ms$/, '')} ${pct(stages.map((t) => t[k]), 50).toFixed(0)}/${pct(stages.map((t) => t[k]), 99).toFixed(0)}`).join(', ')}`);
    fs.rmSync(spoolDir, { recursive: true, force: true });
  }
} finally {
  host.stdin!.end();
  await new Promise((r) => host.once('exit', r));
  await db.drop();
  fs.rmSync(clipDir, { recursive: true, force: true });
}
console.log(`\n${rows.join('\n')}`);
// A row whose drain timed out leaves its spool's retries behind; the figures are printed.
process.exit(0);
