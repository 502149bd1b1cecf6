import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import sharp from 'sharp';
import { recorderConfig } from '../../recorder/config.ts';
import { Retention } from '../../recorder/Retention.ts';
import { SegmentJournal } from '../../recorder/SegmentJournal.ts';
import { SegmentSpool, type SegmentStageTimes } from '../../recorder/SegmentSpool.ts';
import type { ClosedSegment, IndexedSegment } from '../../recorder/types.ts';
import { createLogger } from '../../infra/logger.ts';
import { createTestDatabase, type TestDatabase } from '../support/database.ts';
import { addCamera, seedOrg, startS3Fixture, tempDir, waitForEvent, type S3Fixture } from '../support/recorder-fixture.ts';

// Issue 15 item 9: the per-segment work cut so one core records 50 cameras. With real ffprobe,
// ffmpeg, S3 and PostgreSQL (the tools counted through wrapper scripts): a run's first segment is
// probed and the others only checked for MP4 structure, yet a damaged one is still caught and
// set aside; review images are made once per stretch and shared; retention keeps a shared image
// while a segment still names it.

describe('recorder spool, lean pipeline: one probe per run, shared review images, nothing corrupt let through', () => {
  let db: TestDatabase;
  let s3: S3Fixture;
  let sample: string;
  let cameraId: number;
  let unitId: number;
  let tools: string;
  const T0 = Date.UTC(2026, 10, 1, 8, 0, 0);

  before(async () => {
    db = await createTestDatabase();
    s3 = await startS3Fixture();
    const src = tempDir('lean-src-');
    sample = path.join(src, 'sample.mp4');
    // As the recorder's ffmpeg writes them: fragmented MP4, a keyframe a second.
    execFileSync('ffmpeg', ['-v', 'error', '-f', 'lavfi', '-i', 'testsrc2=size=320x180:rate=10', '-t', '2', '-c:v', 'libx264', '-preset', 'ultrafast', '-g', '10',
      '-movflags', 'frag_keyframe+empty_moov+default_base_moof', sample]);
    // ffprobe and ffmpeg as the spool runs them, each call logged.
    tools = src;
    for (const t of ['ffprobe', 'ffmpeg']) {
      fs.writeFileSync(path.join(src, t), `#!/bin/sh\necho x >> ${path.join(src, `${t}.calls`)}\nexec ${t} "$@"\n`, { mode: 0o755 });
    }
    const org = await seedOrg(db.pool);
    unitId = org.villageAId;
    cameraId = await addCamera(db.pool, unitId, 'rtsp://127.0.0.1:1/x');
  });

  after(async () => {
    await s3?.close();
    await db?.drop();
  });

  const calls = (t: string): number => {
    const f = path.join(tools, `${t}.calls`);
    return fs.existsSync(f) ? fs.readFileSync(f, 'utf8').split('\n').filter(Boolean).length : 0;
  };

  const make = (dir: string, i: number): ClosedSegment => {
    const f = path.join(dir, `seg_${String(i).padStart(6, '0')}.mp4`);
    fs.copyFileSync(sample, f);
    const t = T0 + i * 2_000;
    return { id: `lean-${i}`, runId: 'lean', seq: i, file: f, startedAt: t, endedAt: t + 2_000, bytes: fs.statSync(f).size, source: { kind: 'camera', cameraId, unitId }, captureJobId: null, sessionId: null, evidence: false };
  };

  test('a run\'s first segment with one keyframe makes its own strip but does not stand for the stretch', async () => {
    const dir = tempDir('lean-short-');
    // A run that starts 0.5 s before a segment boundary: its first segment holds one keyframe.
    const short = path.join(dir, 'short.mp4');
    execFileSync('ffmpeg', ['-v', 'error', '-f', 'lavfi', '-i', 'testsrc2=size=320x180:rate=10', '-t', '0.5', '-c:v', 'libx264', '-preset', 'ultrafast', '-g', '10',
      '-movflags', 'frag_keyframe+empty_moov+default_base_moof', short]);
    const config = recorderConfig({ spoolDir: dir, thumbnails: true, stripFrames: 4, thumbnailEverySeconds: 30, thumbnailKeyframesOnly: true, indexBatchMs: 50 });
    const { journal } = await SegmentJournal.open(path.join(dir, 'journal.jsonl'));
    const spool = new SegmentSpool({ pool: db.pool, storage: s3.storage, journal, config, log: createLogger('test') });
    // An hour after the other test's run, so its retention checks see only their own segments.
    const segs = [0, 1, 2].map((i) => {
      const m = make(dir, i);
      return { ...m, id: `short-${i}`, runId: 'short', startedAt: m.startedAt + 3_600_000, endedAt: m.endedAt + 3_600_000 };
    });
    fs.copyFileSync(short, segs[0]!.file);
    segs[0] = { ...segs[0]!, bytes: fs.statSync(short).size };
    // One at a time, as a camera's segments close.
    for (const seg of segs) {
      spool.enqueue(seg);
      await spool.idle();
    }
    spool.close();
    journal.close();
    const rows = (await db.pool.query<{ seq: number; strip_key: string }>(
      `SELECT seq, strip_key FROM recording_segments WHERE run_id = 'short' ORDER BY seq`)).rows;
    assert.equal(rows.length, 3);
    const tiles = async (key: string) => {
      const { width, height } = await sharp(await s3.storage.getBuffer(key)).metadata();
      return Math.round(width! / (height! * (16 / 9)));
    };
    assert.equal(await tiles(rows[0]!.strip_key), 1, 'the short first segment: one keyframe, one tile');
    assert.notEqual(rows[1]!.strip_key, rows[0]!.strip_key, 'the next segment made its own strip instead of sharing a one-frame one');
    assert.equal(await tiles(rows[1]!.strip_key), 2, 'two keyframes in 2 s');
    assert.equal(rows[2]!.strip_key, rows[1]!.strip_key, 'and that one stands for the stretch');
  });

  test('one probe and one set of review images per stretch; a damaged segment of the same run is still rejected', async () => {
    const dir = tempDir('lean-spool-');
    const config = recorderConfig({
      spoolDir: dir, thumbnails: true, stripFrames: 2, thumbnailEverySeconds: 30, indexBatchMs: 50,
      ffprobePath: path.join(tools, 'ffprobe'), ffmpegPath: path.join(tools, 'ffmpeg'),
    });
    const { journal } = await SegmentJournal.open(path.join(dir, 'journal.jsonl'));
    const spool = new SegmentSpool({ pool: db.pool, storage: s3.storage, journal, config, log: createLogger('test') });
    const indexed: IndexedSegment[] = [];
    spool.on('indexed', (s) => indexed.push(s));
    const stages: SegmentStageTimes[] = [];
    spool.on('stages', (t) => stages.push(t));
    const segs = [0, 1, 2, 3].map((i) => make(dir, i));
    // Segment 2's header is overwritten (a disk or writer fault): same run, same size, unreadable.
    const fd = fs.openSync(segs[2]!.file, 'r+');
    fs.writeSync(fd, Buffer.alloc(2_000, 0), 0, 2_000, 0);
    fs.closeSync(fd);
    const rejected = waitForEvent<[ClosedSegment, string]>(spool, 'rejected', () => true, 20_000);
    for (const s of segs) spool.enqueue(s);
    const [bad, reason] = await rejected;
    await spool.idle();
    assert.equal(bad.id, 'lean-2');
    assert.match(reason, /^corrupt/);
    assert.deepEqual(indexed.map((s) => s.segmentId), ['lean-0', 'lean-1', 'lean-3']);
    // Each indexed segment accounts for its time stage by stage; the stages add up to close -> indexed.
    assert.deepEqual(stages.map((t) => t.segmentId), ['lean-0', 'lean-1', 'lean-3']);
    for (const [i, t] of stages.entries()) {
      const sum = t.queuedMs + t.verifyMs + t.uploadWaitMs + t.uploadMs + t.finishWaitMs + t.imagesMs + t.indexMs;
      assert.ok(t.uploadMs > 0 && t.indexMs > 0, 'the upload and the index row take time');
      assert.ok(sum <= indexed[i]!.closeToIndexedMs + 5, `stages (${sum} ms) within close -> indexed (${indexed[i]!.closeToIndexedMs} ms)`);
      assert.ok(t.queuedMs + t.verifyMs + t.uploadWaitMs + t.uploadMs <= indexed[i]!.closeToStoredMs + 5, 'store stages within close -> stored');
    }
    assert.ok(stages[0]!.imagesMs > 0 && stages[1]!.imagesMs < stages[0]!.imagesMs, 'the first segment made the images, the next shared them');
    // ffprobe: only the damaged one that failed the structural check. The run's first segment is named
    // by its own boxes (codecs, size, samples), the rest likewise.
    assert.equal(calls('ffprobe'), 1, 'no probe of segments ffmpeg listed as closed');
    assert.equal(calls('ffmpeg'), 1, 'one thumbnail extraction for the stretch');
    const rows = (await db.pool.query<{ run_id: string; seq: number; thumb_key: string; strip_key: string; video_codec: string; width: number }>(
      `SELECT run_id, seq, thumb_key, strip_key, video_codec, width FROM recording_segments WHERE run_id = 'lean' ORDER BY seq`)).rows;
    assert.equal(rows.length, 3);
    assert.equal(new Set(rows.map((r) => r.thumb_key)).size, 1, 'the stretch shares its thumbnail');
    assert.ok(rows.every((r) => r.video_codec === 'h264' && r.width === 320), 'codec and size read from the MP4 boxes');
    assert.ok(await s3.storage.stat(rows[0]!.thumb_key) && await s3.storage.stat(rows[0]!.strip_key));
    spool.close();
    journal.close();

    // Retention: the segment that owns the images goes, the images stay while later segments name them.
    const now = new Date();
    const retention = new Retention({ pool: db.pool, storage: s3.storage, maxAgeMs: now.getTime() - (T0 + 1_000), minFreeBytes: 0, freeBytes: async () => Number.MAX_SAFE_INTEGER });
    const first = await retention.sweep(now);
    assert.equal(first.aged, 1);
    assert.ok(await s3.storage.stat(rows[0]!.thumb_key), 'a shared thumbnail stays while a segment names it');
    const all = new Retention({ pool: db.pool, storage: s3.storage, maxAgeMs: 1, minFreeBytes: 0, freeBytes: async () => Number.MAX_SAFE_INTEGER });
    await all.sweep(now);
    assert.equal(await s3.storage.stat(rows[0]!.thumb_key), undefined, 'and goes with the last of them');
    assert.equal(await s3.storage.stat(rows[0]!.strip_key), undefined);
  });
});
