import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { createTestDatabase, type TestDatabase } from '../support/database.ts';
import { ManualClock } from '../../scheduler/clock.ts';
import { SchedulerService } from '../../scheduler/service.ts';
import { CompletionChecker } from '../../scheduler/checks/completionCheck.ts';
import { ObjectStorageSegmentSource } from '../../scheduler/checks/segmentSource.ts';
import { defaultReminderPolicy } from '../../scheduler/reminders/policy.ts';
import { evaluateObligations } from '../../scheduler/obligations/evaluate.ts';
import { startEmbeddedS3, type EmbeddedS3 } from '../../infra/storage/embedded-s3.ts';
import { ObjectStorage } from '../../infra/storage/ObjectStorage.ts';
import { buildTown, keepOnlyObligations, makeClips, tempDir, type Town } from './fixtures.ts';

// Re-check through the scheduler's own tick and check worker, against the real embedded S3:
// - a recording indexed after a "no recording" verdict turns the branch from missing to done;
// - an S3 outage at check time gives no verdict and no reminder; once S3 is back the session is judged.

let db: TestDatabase;
let root: string;
let town: Town;
let s3: EmbeddedS3 | undefined;
let service: SchedulerService | undefined;

before(async () => {
  [db, root] = await Promise.all([createTestDatabase(), tempDir('sched-recheck-')]);
  await makeClips(root, 'recordings', ['good']);
  town = await buildTown(db.pool, 3);
  await keepOnlyObligations(db.pool, ['member_meeting']);
  await db.pool.query(`UPDATE obligation_rules SET min_duration_s = 8 WHERE obligation = 'member_meeting'`);
});
after(async () => {
  await service?.stop();
  await s3?.close();
  await db?.drop();
  if (root) await fs.rm(root, { recursive: true, force: true });
});

test('a late recording turns missing into done; an S3 outage gives no verdict and no reminder, then the session is judged', async () => {
  const s3dir = path.join(root, 's3');
  s3 = await startEmbeddedS3(s3dir);
  const port = s3.port;
  const storage = new ObjectStorage({ endPoint: s3.endpoint, port, useSSL: false, accessKey: s3.accessKey, secretKey: s3.secretKey, bucket: 'evidence' });
  await storage.ensureBucket();
  const clip = path.join(root, 'recordings', 'clips', 'good.mp4');

  const clock = new ManualClock(new Date('2026-03-10T03:00:00Z'));
  service = new SchedulerService({
    pool: db.pool, databaseUrl: db.url, clock, policy: defaultReminderPolicy, channels: {},
    checker: new CompletionChecker(db.pool, new ObjectStorageSegmentSource(storage), { maxBlackStretchS: 4, maxFrozenStretchS: 4 },
      // Judged as soon as it ended (no upload wait). The stopped store refuses at once; the timeout is for a
      // store that is up but slow on a loaded machine, which must not count as down.
      { uploadWaitMs: 0, storageTimeoutMs: 20_000, retryBaseMs: 5 * 60_000 }),
    periodsFrom: new Date('2025-12-31T16:00:00Z'),
  });
  await service.start();

  const [late, outage] = [town.branches[0]!, town.branches[1]!];
  const start = new Date('2026-03-10T02:00:00Z');
  const end = new Date(start.getTime() + 12_000);
  const session = async (b: typeof late) => (await db.pool.query<{ id: number }>(
    `INSERT INTO meeting_sessions (branch_id, obligation, starts_at, ends_at, camera_id) VALUES ($1, 'member_meeting', $2, $3, $4) RETURNING id`,
    [b.id, start, end, b.cameraId])).rows[0]!.id;
  const index = async (b: typeof late) => {
    const key = `cam${b.cameraId}/${start.getTime()}.mp4`;
    await storage.putFile(key, clip, 'video/mp4');
    await db.pool.query(
      `INSERT INTO recording_segments (camera_id, started_at, ended_at, bytes, bucket, object_key) VALUES ($1, $2, $3, 1000, 'evidence', $4)`,
      [b.cameraId, start, end, key]);
  };
  const lateId = await session(late);
  const outageId = await session(outage);
  await index(outage); // recorded and uploaded; the store goes down before the check
  await s3.close();
  s3 = undefined;

  const status = async (branchId: number) => (await evaluateObligations(db.pool, { at: clock.now(), unitPath: '' }))
    .find((r) => r.branch_id === branchId && r.obligation === 'member_meeting' && r.period_key === '2026-Q1')!.status;
  const check = async (id: number) => (await db.pool.query<{ passed: boolean; pending: boolean; reasons: Array<{ code: string }> }>(
    `SELECT passed, pending, reasons FROM completion_checks WHERE session_id = $1`, [id])).rows[0];
  const kindVerdict = async (id: number) => (await db.pool.query<{ passed: boolean | null }>(
    `SELECT passed FROM session_obligations WHERE session_id = $1 AND obligation = 'member_meeting'`, [id])).rows[0]!.passed;
  const remindersOf = async (branchId: number) => (await db.pool.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM reminders WHERE branch_id = $1`, [branchId])).rows[0]!.n;

  // First tick after the sessions: both checked.
  assert.equal((await service.tick()).checks, 2);
  await service.drain(60_000);
  assert.deepEqual((await check(lateId))!.reasons.map((r) => r.code), ['no_recording']);
  assert.equal((await check(lateId))!.passed, false);
  const o1 = (await check(outageId))!;
  assert.equal(o1.pending, true, 'S3 down: no verdict');
  assert.deepEqual(o1.reasons.map((r) => r.code), ['storage_unavailable']);
  assert.equal(await kindVerdict(outageId), null, 'the obligation is not judged either');
  assert.equal(await status(outage.id), 'checking');

  // After the quarter, while S3 is still down: the late branch is overdue (reminded), the outage branch
  // is "checking" — retried, never failed, never reminded.
  clock.set(new Date('2026-04-03T00:00:00Z'));
  await service.tick();
  await service.drain(60_000);
  assert.equal(await status(late.id), 'overdue');
  assert.ok((await remindersOf(late.id)) > 0, 'the branch with no recording is reminded');
  const o2 = (await check(outageId))!;
  assert.equal(o2.pending, true);
  assert.equal(await status(outage.id), 'checking');
  assert.equal(await remindersOf(outage.id), 0, 'no reminder while the check cannot run');

  // The recording of the late branch arrives (recorder spool drained) and S3 is back on its port.
  s3 = await startEmbeddedS3(s3dir, port);
  await index(late);
  clock.advance(6 * 3_600_000); // past the pending check's backoff
  const t = await service.tick();
  assert.equal(t.checks, 2, 'the late recording and the pending check are both checked again');
  await service.drain(60_000);
  assert.equal((await check(lateId))!.passed, true, JSON.stringify(await check(lateId)));
  assert.equal(await kindVerdict(lateId), true);
  assert.equal(await status(late.id), 'done', 'missing turned done');
  const o3 = (await check(outageId))!;
  assert.deepEqual([o3.pending, o3.passed], [false, true], JSON.stringify(o3));
  assert.equal(await status(outage.id), 'done');
  await service.tick();
  assert.equal(await remindersOf(outage.id), 0, 'and never reminded');
});
