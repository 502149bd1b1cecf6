import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { recorderConfig } from '../../recorder/config.ts';
import { SegmentJournal } from '../../recorder/SegmentJournal.ts';
import { SegmentSpool } from '../../recorder/SegmentSpool.ts';
import type { ClosedSegment, IndexedSegment } from '../../recorder/types.ts';
import { createLogger } from '../../infra/logger.ts';
import { createTestDatabase, type TestDatabase } from '../support/database.ts';
import { addCamera, seedOrg, startS3Fixture, tempDir, waitForEvent, type S3Fixture } from '../support/recorder-fixture.ts';

// The spool on its own, with a real S3 server (taken down) and PostgreSQL: its bound and what it does
// when full, a segment that fails verification, and replay of its journal.

describe('recorder spool: bounded, journalled, and explicit about what it discards', () => {
  let db: TestDatabase;
  let s3: S3Fixture;
  let sample: string;
  let cameraId: number;
  let unitId: number;

  before(async () => {
    db = await createTestDatabase();
    s3 = await startS3Fixture();
    sample = path.join(tempDir('spool-src-'), 'sample.mp4');
    execFileSync('ffmpeg', ['-v', 'error', '-f', 'lavfi', '-i', 'testsrc2=size=320x180:rate=10', '-t', '2', '-c:v', 'libx264', '-preset', 'ultrafast', '-g', '10', sample]);
    const org = await seedOrg(db.pool);
    unitId = org.villageAId;
    cameraId = await addCamera(db.pool, unitId, 'rtsp://127.0.0.1:1/x');
  });

  after(async () => {
    await s3?.close();
    await db?.drop();
  });

  const make = (dir: string, i: number, evidence = false, file?: string): ClosedSegment => {
    const f = path.join(dir, `seg_${String(i).padStart(6, '0')}.mp4`);
    fs.copyFileSync(file ?? sample, f);
    const t = Date.UTC(2026, 10, 1, 8, 0, 0) + i * 2_000;
    return { id: `run1-${i}`, runId: 'run1', seq: i, file: f, startedAt: t, endedAt: t + 2_000, bytes: fs.statSync(f).size, source: { kind: 'camera', cameraId, unitId }, captureJobId: null, sessionId: null, evidence };
  };

  test('when full, the oldest waiting non-evidence segment is discarded and journalled; evidence and the in-flight one are kept', async () => {
    const dir = tempDir('spool-');
    const config = recorderConfig({ spoolDir: dir, spoolMaxSegments: 3, uploadRetryMinMs: 100, uploadRetryMaxMs: 300, thumbnails: false });
    const { journal } = await SegmentJournal.open(path.join(dir, 'journal.jsonl'));
    const spool = new SegmentSpool({ pool: db.pool, storage: s3.storage, journal, config, log: createLogger('test') });
    const dropped: string[] = [];
    spool.on('dropped', (s) => dropped.push(s.id));
    await s3.stop();
    try {
      const segs = [make(dir, 0), make(dir, 1, true), make(dir, 2), make(dir, 3), make(dir, 4)];
      spool.enqueue(segs[0]!); // goes in flight and starts failing against the stopped S3
      await waitForEvent(spool, 'retry', () => true, 10_000);
      for (const s of segs.slice(1)) spool.enqueue(s);
      assert.deepEqual(dropped, ['run1-2', 'run1-3'], 'the oldest waiting non-evidence segments go (0 is in flight, 1 is evidence)');
      assert.equal(spool.pendingSegments, 3);
      assert.equal(fs.existsSync(segs[2]!.file), false, 'a discarded segment frees its disk space');
      const lines = fs.readFileSync(path.join(dir, 'journal.jsonl'), 'utf8');
      assert.match(lines, /"t":"dropped","id":"run1-2"/);
    } finally {
      await s3.start();
    }
    const indexed: IndexedSegment[] = [];
    spool.on('indexed', (s) => indexed.push(s));
    await spool.idle();
    assert.deepEqual(indexed.map((s) => s.segmentId).sort(), ['run1-0', 'run1-1', 'run1-4']);
    spool.close();
    journal.close();
    // A reopened journal has nothing pending.
    const again = await SegmentJournal.open(path.join(dir, 'journal.jsonl'));
    assert.equal(again.state.pending.length, 0);
    again.journal.close();
  });

  test('a segment that fails verification is set aside with its reason, never indexed, and the queue moves on', async () => {
    const dir = tempDir('spool-bad-');
    const config = recorderConfig({ spoolDir: dir, thumbnails: true, stripFrames: 2 });
    const { journal } = await SegmentJournal.open(path.join(dir, 'journal.jsonl'));
    const spool = new SegmentSpool({ pool: db.pool, storage: s3.storage, journal, config, log: createLogger('test') });
    const junk = path.join(dir, 'junk.bin');
    fs.writeFileSync(junk, Buffer.alloc(50_000, 7));
    const bad = { ...make(dir, 10, false, junk), id: 'bad-10', runId: 'bad' };
    const good = { ...make(dir, 11), id: 'good-11', runId: 'good' };
    const rejected = waitForEvent<[ClosedSegment, string]>(spool, 'rejected', () => true, 10_000);
    spool.enqueue(bad);
    spool.enqueue(good);
    const [seg, reason] = await rejected;
    assert.equal(seg.id, 'bad-10');
    assert.match(reason, /^corrupt: (ffprobe failed|no video)/);
    await spool.idle();
    assert.ok(fs.existsSync(path.join(dir, 'rejected', 'bad-10.mp4')), 'kept aside for an operator');
    const rows = await db.pool.query<{ run_id: string; thumb_key: string | null }>("SELECT run_id, thumb_key FROM recording_segments WHERE run_id IN ('bad', 'good')");
    assert.deepEqual(rows.rows.map((r) => r.run_id), ['good']);
    assert.ok(rows.rows[0]!.thumb_key && (await s3.storage.stat(rows.rows[0]!.thumb_key)));
    spool.close();
    journal.close();
    const again = await SegmentJournal.open(path.join(dir, 'journal.jsonl'));
    assert.equal(again.state.pending.length, 0);
    assert.ok(again.state.known.has('bad-10'));
    again.journal.close();
  });

  test('a journal replays what was closed but not yet indexed, in order, ignoring a torn last line', async () => {
    const dir = tempDir('journal-');
    const file = path.join(dir, 'journal.jsonl');
    const { journal } = await SegmentJournal.open(file);
    const a = make(dir, 1);
    const b = make(dir, 2);
    const c = make(dir, 3);
    journal.append({ t: 'run', runId: 'run1', dir, inputStartMs: 1, ctx: { source: a.source, captureJobId: null, sessionId: null, evidence: false } });
    for (const s of [a, b, c]) journal.append({ t: 'seg', seg: s });
    journal.append({ t: 'done', id: a.id });
    journal.close();
    fs.appendFileSync(file, '{"t":"done","id":"run1-');
    const { journal: j2, state } = await SegmentJournal.open(file);
    assert.deepEqual(state.pending.map((s) => s.id), ['run1-2', 'run1-3']);
    assert.deepEqual(state.openRuns.map((r) => r.runId), ['run1']);
    j2.close();
    // Compacted: only live entries remain (the open run, what it already handled, the two pending).
    assert.equal(fs.readFileSync(file, 'utf8').trim().split('\n').length, 4);
  });
});
