import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { createTestDatabase, type TestDatabase } from '../support/database.ts';
import { startEmbeddedS3, type EmbeddedS3 } from '../../infra/storage/embedded-s3.ts';
import { ObjectStorage } from '../../infra/storage/ObjectStorage.ts';
import { CompletionChecker } from '../../scheduler/checks/completionCheck.ts';
import { ObjectStorageSegmentSource } from '../../scheduler/checks/segmentSource.ts';
import { ManualClock } from '../../scheduler/clock.ts';
import { SchedulerService } from '../../scheduler/service.ts';
import { setUnitRule } from '../../scheduler/obligations/rules.ts';
import { evaluateObligations } from '../../scheduler/obligations/evaluate.ts';
import { defaultReminderPolicy } from '../../scheduler/reminders/policy.ts';
import { buildTown, keepOnlyObligations, clipSeconds, makeClips, tempDir, type Clip, type Town } from '../scheduler/fixtures.ts';

// Fault suite for completion checks: the real scheduler (tick, pg-boss check worker, checker) judging
// real recordings in the embedded S3 while S3 is down, ffmpeg crashes, or the recording is still
// uploading. Asserted: such a session is "pending re-check", no reminder is decided from it, nothing
// is reported overdue, and after recovery it is judged on its recording.

let db: TestDatabase;
let root: string;
let town: Town;
let s3: EmbeddedS3 | undefined;
let s3Port = 0;
let storage: ObjectStorage;
let service: SchedulerService;
let clock: ManualClock;
/** ffmpeg wrapper: crashes (SIGSEGV) while the count in this file is above zero. */
let failFile: string;
let callsFile: string;

const Q1_END = new Date('2026-03-31T16:00:00Z');

async function s3Up(): Promise<void> {
  s3 = await startEmbeddedS3(path.join(root, 's3'), s3Port);
  s3Port = s3.port;
}

async function s3Down(): Promise<void> {
  await s3?.close();
  s3 = undefined;
}

before(async () => {
  [db, root] = await Promise.all([createTestDatabase(), tempDir('sched-check-faults-')]);
  await makeClips(root, 'clips', ['good', 'black', 'short']);
  town = await buildTown(db.pool, 2);
  await setUnitRule(db.pool, town.cityId, { obligation: 'member_meeting', period: 'quarter', requiredCount: 1, minDurationS: 8 });
  await keepOnlyObligations(db.pool, ['member_meeting']);
  await db.pool.query(`DELETE FROM members WHERE branch_id IN (SELECT id FROM branches WHERE name = '外村党支部')`);
  await db.pool.query(`DELETE FROM branches WHERE name = '外村党支部'`);
  await s3Up();
  storage = new ObjectStorage({ endPoint: s3!.endpoint, port: s3Port, useSSL: false, accessKey: s3!.accessKey, secretKey: s3!.secretKey, bucket: 'evidence' });
  await storage.ensureBucket();

  failFile = path.join(root, 'ffmpeg-fail-remaining');
  callsFile = path.join(root, 'ffmpeg-calls');
  await fs.writeFile(failFile, '0');
  const wrapper = path.join(root, 'ffmpeg-flaky.sh');
  await fs.writeFile(wrapper, `#!/bin/sh
echo x >> "${callsFile}"
n=$(cat "${failFile}")
if [ "$n" -gt 0 ]; then
  echo $((n - 1)) > "${failFile}"
  echo "simulated ffmpeg crash" >&2
  kill -SEGV $$
fi
exec ffmpeg "$@"
`, { mode: 0o755 });

  clock = new ManualClock(new Date('2026-03-20T02:40:00Z'));
  service = new SchedulerService({
    pool: db.pool, databaseUrl: db.url, clock, policy: defaultReminderPolicy, channels: {},
    checker: new CompletionChecker(db.pool, new ObjectStorageSegmentSource(storage), { maxBlackStretchS: 4, maxFrozenStretchS: 4 }, {
      retryBaseMs: 60_000, retryMaxMs: 3_600_000, ffmpegPath: wrapper, storageTimeoutMs: 5000, uploadWaitMs: 48 * 3_600_000,
    }),
    periodsFrom: new Date('2025-12-31T16:00:00Z'),
  });
  await service.start();
});

after(async () => {
  await service?.stop();
  await s3Down();
  await db?.drop();
  if (root) await fs.rm(root, { recursive: true, force: true });
});

/** A session of `branch` at `start` (12 s), with the given clips uploaded and indexed at offsets (s). */
async function session(branch: number, start: Date, clips: Array<[Clip, number]>): Promise<number> {
  const b = town.branches[branch]!;
  const { rows } = await db.pool.query<{ id: number }>(
    `INSERT INTO meeting_sessions (branch_id, obligation, starts_at, ends_at, camera_id) VALUES ($1, 'member_meeting', $2, $3, $4) RETURNING id`,
    [b.id, start, new Date(start.getTime() + 12_000), b.cameraId],
  );
  for (const [clip, offsetS] of clips) await indexSegment(branch, new Date(start.getTime() + offsetS * 1000), clip);
  return rows[0]!.id;
}

async function indexSegment(branch: number, at: Date, clip: Clip): Promise<void> {
  const b = town.branches[branch]!;
  const key = `cam${b.cameraId}/${at.getTime()}-${clip}.mp4`;
  await storage.putFile(key, path.join(root, 'clips', 'clips', `${clip}.mp4`), 'video/mp4');
  await db.pool.query(
    `INSERT INTO recording_segments (camera_id, started_at, ended_at, bytes, bucket, object_key) VALUES ($1, $2, $3, 1000, 'evidence', $4)`,
    [b.cameraId, at, new Date(at.getTime() + clipSeconds[clip] * 1000), key],
  );
}

interface CheckRow { pending: boolean; passed: boolean; attempts: number; reasons: Array<{ code: string; message: string }> }
async function checkOf(sessionId: number): Promise<CheckRow> {
  const { rows } = await db.pool.query<CheckRow>(`SELECT pending, passed, attempts, reasons FROM completion_checks WHERE session_id = $1`, [sessionId]);
  assert.ok(rows[0], `session ${sessionId} has a check row`);
  return rows[0];
}

async function tickAndDrain(): Promise<number> {
  const r = await service.tick();
  await service.drain(60_000);
  return r.reminders;
}

async function reminders(): Promise<string[]> {
  const { rows } = await db.pool.query<{ branch_id: number; period_key: string; step: string }>(`SELECT branch_id, period_key, step FROM reminders ORDER BY id`);
  return rows.map((r) => `${town.branches.findIndex((b) => b.id === r.branch_id)}|${r.period_key}|${r.step}`);
}

async function statusOf(branch: number, periodKey: string): Promise<string> {
  const st = await evaluateObligations(db.pool, { at: clock.now(), unitPath: '' });
  return st.find((s) => s.branch_id === town.branches[branch]!.id && s.obligation === 'member_meeting' && s.period_key === periodKey)!.status;
}

test('S3 down from the end of the meeting until after the quarter: pending re-check, no reminder, not overdue; judged on recovery', async () => {
  const good = await session(0, new Date('2026-03-20T02:00:00Z'), [['good', 0]]);
  const black = await session(1, new Date('2026-03-20T02:00:00Z'), [['black', 0]]);
  await s3Down();

  await tickAndDrain();
  for (const id of [good, black]) {
    const c = await checkOf(id);
    assert.equal(c.pending, true, `session ${id} pending, not failed: ${JSON.stringify(c)}`);
    assert.equal(c.passed, false);
    assert.deepEqual(c.reasons.map((r) => r.code), ['storage_unavailable']);
  }

  // Inside the 7-day reminder window: nothing is decided from a session that could not be checked.
  clock.set(new Date('2026-03-25T00:00:00Z'));
  assert.equal(await tickAndDrain(), 0, 'no reminder while the checks are pending');
  assert.equal(await statusOf(0, '2026-Q1'), 'checking');
  assert.equal((await checkOf(good)).attempts, 2, 'retried after its backoff');

  // After the quarter, past the escalation time: still not reported overdue.
  clock.set(new Date('2026-04-02T00:00:00Z'));
  assert.equal(await tickAndDrain(), 0, 'no escalation while the checks are pending');
  assert.equal(await statusOf(0, '2026-Q1'), 'checking');
  assert.equal(await statusOf(1, '2026-Q1'), 'checking');
  assert.ok(clock.now() > new Date(Q1_END.getTime() + 24 * 3_600_000));
  assert.deepEqual(await reminders(), []);

  // S3 is back: the next due re-check judges each session on its recording.
  await s3Up();
  clock.set(new Date('2026-04-02T02:00:00Z'));
  await tickAndDrain();
  const g = await checkOf(good);
  assert.equal(g.pending, false);
  assert.equal(g.passed, true, JSON.stringify(g));
  const bl = await checkOf(black);
  assert.equal(bl.pending, false);
  assert.deepEqual(bl.reasons.map((r) => r.code), ['black']);
  assert.equal(await statusOf(0, '2026-Q1'), 'done');
  assert.equal(await statusOf(1, '2026-Q1'), 'overdue');
  await tickAndDrain();
  assert.deepEqual(await reminders(), ['1|2026-Q1|escalate'], 'only the branch whose recording really failed is escalated');
});

test('ffmpeg crashes: a crash while ffmpeg itself is broken is not counted, one on the file is retried; then judged', async () => {
  clock.set(new Date('2026-04-10T02:00:00Z'));
  const id = await session(0, clock.now(), [['good', 0]]);
  await fs.writeFile(callsFile, '');
  // Three crashes: the probe and the self-test of the first try, the probe of the second.
  await fs.writeFile(failFile, '3');
  clock.set(new Date('2026-04-10T02:40:00Z'));
  await tickAndDrain();
  let c = await checkOf(id);
  assert.equal(c.pending, true);
  assert.deepEqual(c.reasons.map((r) => r.code), ['checker_unavailable'], JSON.stringify(c));
  assert.equal(await statusOf(0, '2026-Q2'), 'checking');

  clock.advance(61_000);
  await tickAndDrain();
  c = await checkOf(id);
  assert.equal(c.pending, true);
  assert.deepEqual(c.reasons.map((r) => r.code), ['probe_failed'], JSON.stringify(c));
  assert.match(c.reasons[0]!.message, /第1次/);

  clock.advance(121_000);
  await tickAndDrain();
  c = await checkOf(id);
  assert.equal(c.pending, false);
  assert.equal(c.passed, true, JSON.stringify(c));
  assert.equal(c.attempts, 3);
  assert.equal(await statusOf(0, '2026-Q2'), 'done');
  const calls = (await fs.readFile(callsFile, 'utf8')).split('\n').filter(Boolean).length;
  assert.equal(calls, 5, 'probe+self-test, probe+self-test, probe');
});

test('recording still uploading (spool backlog): pending until the upload wait; a failed verdict is replaced when the rest arrives late', async () => {
  const start = new Date('2026-04-15T02:00:00Z');
  // Only the first 4 s of the 12-s meeting are indexed so far.
  const id = await session(1, start, [['short', 0]]);
  clock.set(new Date('2026-04-15T02:40:00Z'));
  await tickAndDrain();
  let c = await checkOf(id);
  assert.equal(c.pending, true);
  assert.deepEqual(c.reasons.map((r) => r.code), ['awaiting_upload'], JSON.stringify(c));

  // Past the upload wait the index is judged as it stands: too short (a real verdict).
  clock.set(new Date(start.getTime() + 49 * 3_600_000));
  await tickAndDrain();
  c = await checkOf(id);
  assert.equal(c.pending, false);
  assert.deepEqual(c.reasons.map((r) => r.code), ['too_short']);
  assert.equal(await statusOf(1, '2026-Q2'), 'pending');

  // The rest of the meeting is uploaded late: the next tick re-checks and the verdict is replaced.
  await indexSegment(1, new Date(start.getTime() + 4000), 'good');
  await tickAndDrain();
  c = await checkOf(id);
  assert.equal(c.passed, true, JSON.stringify(c));
  assert.equal(await statusOf(1, '2026-Q2'), 'done');
});
