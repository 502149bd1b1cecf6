import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { Retention } from '../../recorder/Retention.ts';
import { createTestDatabase, type TestDatabase } from '../support/database.ts';
import { addCamera, seedOrg, startS3Fixture, tempDir, type S3Fixture } from '../support/recorder-fixture.ts';

// Retention against the real S3 server and PostgreSQL. The segments are one real 1 s MP4 made by
// ffmpeg, stored under several keys with back-dated index rows.

const DAY = 86_400_000;

describe('recorder retention: by age, emergency purge at low disk, evidence exempt', () => {
  let db: TestDatabase;
  let s3: S3Fixture;
  let file: string;
  let cameraId: number;
  let n = 0;

  before(async () => {
    db = await createTestDatabase();
    s3 = await startS3Fixture();
    file = path.join(tempDir('ret-'), 'seg.mp4');
    execFileSync('ffmpeg', ['-v', 'error', '-f', 'lavfi', '-i', 'testsrc2=size=160x90:rate=5', '-t', '1', '-c:v', 'libx264', '-preset', 'ultrafast', file]);
    const org = await seedOrg(db.pool);
    cameraId = await addCamera(db.pool, org.villageAId, 'rtsp://127.0.0.1:1/none');
  });

  after(async () => {
    await s3?.close();
    await db?.drop();
  });

  const segment = async (ageMs: number, opts: { evidence?: boolean; jobEvidence?: boolean } = {}): Promise<{ id: number; key: string }> => {
    const key = `unit/1/camera/${cameraId}/old/${++n}.mp4`;
    await s3.storage.putFile(key, file, 'video/mp4');
    await s3.storage.putBuffer(`${key}.thumb.jpg`, Buffer.from('jpg'), 'image/jpeg');
    let jobId: number | null = null;
    const start = new Date(Date.now() - ageMs);
    if (opts.jobEvidence !== undefined) {
      const j = await db.pool.query<{ id: number }>('INSERT INTO capture_jobs (camera_id, starts_at, ends_at, state) VALUES ($1, $2, $3, $4) RETURNING id',
        [cameraId, start, new Date(start.getTime() + 60_000), 'done']);
      jobId = j.rows[0]!.id;
      if (opts.jobEvidence) await Retention.markEvidence(db.pool, { captureJobId: jobId });
    }
    const r = await db.pool.query<{ id: number }>(
      `INSERT INTO recording_segments (camera_id, capture_job_id, started_at, ended_at, bytes, bucket, object_key, thumb_key, evidence)
       VALUES ($1, $2, $3, $4, 1000, 'recordings', $5, $6, $7) RETURNING id`,
      [cameraId, jobId, start, new Date(start.getTime() + 2_000), key, `${key}.thumb.jpg`, opts.evidence ?? false],
    );
    return { id: r.rows[0]!.id, key };
  };
  const exists = async (id: number): Promise<boolean> => ((await db.pool.query('SELECT 1 FROM recording_segments WHERE id = $1', [id])).rowCount ?? 0) > 0;

  test('segments past the retention age are deleted from S3 and the index; evidence and recent ones stay', async () => {
    const old = [await segment(40 * DAY), await segment(35 * DAY), await segment(31 * DAY, { jobEvidence: false })];
    const evidence = await segment(60 * DAY, { evidence: true });
    const jobEvidence = await segment(50 * DAY, { jobEvidence: true });
    const recent = await segment(2 * DAY);
    const r = new Retention({ pool: db.pool, storage: s3.storage, maxAgeMs: 30 * DAY, minFreeBytes: 0 });
    const res = await r.sweep();
    assert.equal(res.aged, 3);
    assert.equal(res.emergency, 0);
    for (const s of old) {
      assert.equal(await exists(s.id), false);
      assert.equal(await s3.storage.stat(s.key), undefined, 'object deleted');
      assert.equal(await s3.storage.stat(`${s.key}.thumb.jpg`), undefined, 'thumbnail deleted');
    }
    for (const s of [evidence, jobEvidence, recent]) {
      assert.equal(await exists(s.id), true);
      assert.ok(await s3.storage.stat(s.key));
    }
  });

  test('at low disk the oldest non-evidence recordings go first, only as many as needed', async () => {
    await db.pool.query('DELETE FROM recording_segments');
    const a = await segment(20 * DAY);
    const ev = await segment(25 * DAY, { evidence: true });
    const b = await segment(10 * DAY);
    const c = await segment(1 * DAY);
    // The disk measure: a 13,500-byte disk holding the indexed segments (1,000 bytes each): 4,000 used,
    // 9,500 free, 500 short of the 10,000 minimum, so one segment must go.
    const r = new Retention({
      pool: db.pool, storage: s3.storage, maxAgeMs: 365 * DAY, minFreeBytes: 10_000, emergencyBatch: 1,
      freeBytes: async () => 13_500 - (await db.pool.query<{ b: number }>('SELECT COALESCE(sum(bytes), 0)::int AS b FROM recording_segments')).rows[0]!.b,
    });
    const res = await r.sweep();
    assert.equal(res.emergency, 1, 'exactly enough was purged');
    assert.equal(await exists(b.id), true);
    assert.equal(await exists(ev.id), true, 'evidence survives the emergency');
    assert.equal(await exists(a.id), false, 'oldest first');
    assert.equal(await exists(c.id), true, 'the newest is kept once enough is free');
  });
});
