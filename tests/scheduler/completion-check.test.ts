import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import { createTestDatabase, type TestDatabase } from '../support/database.ts';
import { CompletionChecker } from '../../scheduler/checks/completionCheck.ts';
import path from 'node:path';
import { LocalFileSegmentSource, ObjectStorageSegmentSource } from '../../scheduler/checks/segmentSource.ts';
import { startEmbeddedS3 } from '../../infra/storage/embedded-s3.ts';
import { ObjectStorage } from '../../infra/storage/ObjectStorage.ts';
import { setUnitRule } from '../../scheduler/obligations/rules.ts';
import { evaluateObligations } from '../../scheduler/obligations/evaluate.ts';
import { addSegment, buildTown, makeClips, tempDir, type Clip, type Town } from './fixtures.ts';

let db: TestDatabase;
let root: string;
let town: Town;

before(async () => {
  [db, root] = await Promise.all([createTestDatabase(), tempDir('sched-check-')]);
  await makeClips(root);
  town = await buildTown(db.pool, 6);
  // The city shortens the minimum duration so 12-second test recordings can pass (and 4-second ones cannot).
  await setUnitRule(db.pool, town.cityId, { obligation: 'member_meeting', period: 'quarter', requiredCount: 1, minDurationS: 8 });
});
after(async () => {
  await db?.drop();
  if (root) await fs.rm(root, { recursive: true, force: true });
});

test('a session is judged from its recording: black, too short, frozen and silent ones are not counted, with reasons', async () => {
  const checker = new CompletionChecker(db.pool, new LocalFileSegmentSource(root), {
    maxBlackStretchS: 4, maxFrozenStretchS: 4, detectMinS: 2,
  });
  const clips: Array<Clip | null> = ['good', 'black', 'short', 'frozen', 'silent', null];
  const start = new Date('2026-02-10T02:00:00Z');
  const sessions: number[] = [];
  for (const [i, clip] of clips.entries()) {
    const b = town.branches[i]!;
    const { rows } = await db.pool.query<{ id: number }>(
      `INSERT INTO meeting_sessions (branch_id, obligation, starts_at, ends_at, camera_id, expected_attendance)
       VALUES ($1, 'member_meeting', $2, $3, $4, 20) RETURNING id`,
      [b.id, start, new Date(start.getTime() + 12_000), b.cameraId],
    );
    sessions.push(rows[0]!.id);
    if (clip) await addSegment(db.pool, root, b.cameraId, start, clip);
  }
  const t0 = Date.now();
  for (const id of sessions) await checker.check(id);
  const elapsed = Date.now() - t0;

  const { rows } = await db.pool.query<{ session_id: number; passed: boolean; covered_s: number; reasons: Array<{ code: string; message: string }> }>(
    `SELECT session_id, passed, covered_s, reasons FROM completion_checks ORDER BY session_id`,
  );
  const byClip = new Map(rows.map((r, i) => [clips[i] ?? 'none', r]));
  const codes = (c: string) => byClip.get(c)!.reasons.map((r) => r.code);
  assert.equal(byClip.get('good')!.passed, true, `good recording passes: ${JSON.stringify(byClip.get('good'))}`);
  assert.ok(byClip.get('good')!.covered_s >= 11.5);
  assert.equal(byClip.get('black')!.passed, false);
  assert.deepEqual(codes('black'), ['black']);
  assert.match(byClip.get('black')!.reasons[0]!.message, /黑屏/);
  assert.equal(byClip.get('short')!.passed, false);
  assert.deepEqual(codes('short'), ['too_short']);
  assert.match(byClip.get('short')!.reasons[0]!.message, /少于要求的8秒/);
  assert.deepEqual(codes('frozen'), ['frozen']);
  assert.deepEqual(codes('silent'), ['silent']);
  assert.deepEqual(codes('none'), ['no_recording']);

  // Only the good session counts for its branch; the others stay not done for the quarter.
  const status = await evaluateObligations(db.pool, { at: new Date('2026-02-20T00:00:00Z'), unitPath: '' });
  const q1 = status.filter((s) => s.obligation === 'member_meeting' && s.period_key === '2026-Q1');
  const done = q1.filter((s) => s.status === 'done').map((s) => s.branch_id);
  assert.deepEqual(done, [town.branches[0]!.id]);
  console.log(`checked ${sessions.length} sessions in ${elapsed} ms`);
});

test('the same check reads segments over HTTP from presigned S3 URLs (production path)', async () => {
  const s3 = await startEmbeddedS3(path.join(root, 's3'));
  try {
    const storage = new ObjectStorage({ endPoint: s3.endpoint, port: s3.port, useSSL: false, accessKey: s3.accessKey, secretKey: s3.secretKey, bucket: 'evidence' });
    await storage.ensureBucket();
    const b = town.branches[0]!;
    const start = new Date('2026-03-03T02:00:00Z');
    const ids: number[] = [];
    for (const clip of ['good', 'black'] as const) {
      const key = `cam${b.cameraId}/${clip}-${start.getTime()}.mp4`;
      await storage.putFile(key, path.join(root, 'recordings', 'clips', `${clip}.mp4`), 'video/mp4');
      const cam = (await db.pool.query<{ id: number }>(`INSERT INTO cameras (unit_id, name, rtsp_url) VALUES ($1, $2, 'rtsp://127.0.0.1/x') RETURNING id`, [b.unitId, clip])).rows[0]!.id;
      await db.pool.query(
        `INSERT INTO recording_segments (camera_id, started_at, ended_at, bytes, bucket, object_key) VALUES ($1, $2, $3, 1000, 'evidence', $4)`,
        [cam, start, new Date(start.getTime() + 12_000), key],
      );
      const { rows } = await db.pool.query<{ id: number }>(
        `INSERT INTO meeting_sessions (branch_id, obligation, starts_at, ends_at, camera_id) VALUES ($1, 'member_meeting', $2, $3, $4) RETURNING id`,
        [b.id, start, new Date(start.getTime() + 12_000), cam],
      );
      ids.push(rows[0]!.id);
    }
    const checker = new CompletionChecker(db.pool, new ObjectStorageSegmentSource(storage), { maxBlackStretchS: 4, maxFrozenStretchS: 4 });
    const [good, black] = [await checker.evaluate(ids[0]!), await checker.evaluate(ids[1]!)];
    assert.equal(good.passed, true, JSON.stringify(good));
    assert.deepEqual(black.reasons.map((r) => r.code), ['black']);
  } finally {
    await s3.close();
  }
});

test('per obligation: a 主题党日 that was also the 党员大会 fails only the meeting without quorum (4 of 10), passes at 6 of 10', async () => {
  // The city's 主题党日 needs 10 s, the 党员大会 8 s: the session must cover the longer.
  await setUnitRule(db.pool, town.cityId, { obligation: 'theme_day', period: 'month', requiredCount: 1, minDurationS: 10 });
  const b = town.branches[1]!;
  // 10 full members (the secretary and 9), and 2 probationary members, who attend but do not vote.
  const full = [b.secretaryId];
  for (let i = 0; i < 9; i++) {
    full.push((await db.pool.query<{ id: number }>(`INSERT INTO members (branch_id, name) VALUES ($1, $2) RETURNING id`, [b.id, `党员${i}`])).rows[0]!.id);
  }
  const probationary: number[] = [];
  for (let i = 0; i < 2; i++) {
    probationary.push((await db.pool.query<{ id: number }>(`INSERT INTO members (branch_id, name, membership) VALUES ($1, $2, 'probationary') RETURNING id`, [b.id, `预备党员${i}`])).rows[0]!.id);
  }
  const start = new Date('2026-05-08T02:00:00Z');
  const { rows } = await db.pool.query<{ id: number }>(
    `INSERT INTO meeting_sessions (branch_id, obligation, starts_at, ends_at, camera_id) VALUES ($1, 'theme_day', $2, $3, $4) RETURNING id`,
    [b.id, start, new Date(start.getTime() + 12_000), b.cameraId]);
  const id = rows[0]!.id;
  await db.pool.query(`INSERT INTO session_obligations (session_id, obligation) VALUES ($1, 'member_meeting') ON CONFLICT DO NOTHING`, [id]);
  await addSegment(db.pool, root, b.cameraId, start, 'good');
  const attend = async (ids: number[]) => {
    for (const m of [...full, ...probationary]) {
      await db.pool.query(
        `INSERT INTO session_attendance (session_id, member_id, status, source) VALUES ($1, $2, $3, 'secretary')
         ON CONFLICT (session_id, member_id) DO UPDATE SET status = EXCLUDED.status`, [id, m, ids.includes(m) ? 'present' : 'absent']);
    }
  };
  const kinds = async () => new Map((await db.pool.query<{ obligation: string; passed: boolean | null; reasons: Array<{ code: string; message: string }> }>(
    `SELECT obligation, passed, reasons FROM session_obligations WHERE session_id = $1`, [id])).rows.map((r) => [r.obligation, r]));
  const checker = new CompletionChecker(db.pool, new LocalFileSegmentSource(root), { maxBlackStretchS: 4, maxFrozenStretchS: 4 });

  await attend([...full.slice(0, 4), ...probationary]);
  await checker.check(id);
  let k = await kinds();
  assert.equal(k.get('theme_day')!.passed, true, JSON.stringify(k.get('theme_day')));
  assert.equal(k.get('member_meeting')!.passed, false);
  assert.deepEqual(k.get('member_meeting')!.reasons.map((r) => r.code), ['no_quorum']);
  assert.equal(k.get('member_meeting')!.reasons[0]!.message, '到会4人，应到10人，未超过半数');
  let c = (await db.pool.query<{ passed: boolean; required_s: number }>(`SELECT passed, required_s FROM completion_checks WHERE session_id = $1`, [id])).rows[0]!;
  assert.equal(c.passed, false, 'the session as a whole: not every obligation passed');
  assert.equal(c.required_s, 10, 'the longest minimum of its kinds');
  let st = await evaluateObligations(db.pool, { at: new Date('2026-05-20T00:00:00Z'), unitPath: '' });
  const of = (ob: string, key: string) => st.find((s) => s.branch_id === b.id && s.obligation === ob && s.period_key === key)!.status;
  assert.equal(of('theme_day', '2026-05'), 'done');
  assert.notEqual(of('member_meeting', '2026-Q2'), 'done');

  await attend([...full.slice(0, 6)]);
  await checker.check(id);
  k = await kinds();
  assert.equal(k.get('member_meeting')!.passed, true, JSON.stringify(k.get('member_meeting')));
  c = (await db.pool.query<{ passed: boolean; required_s: number }>(`SELECT passed, required_s FROM completion_checks WHERE session_id = $1`, [id])).rows[0]!;
  assert.equal(c.passed, true);
  st = await evaluateObligations(db.pool, { at: new Date('2026-05-20T00:00:00Z'), unitPath: '' });
  assert.equal(of('member_meeting', '2026-Q2'), 'done', 'the 主题党日 satisfies the 党员大会 of its quarter');
});
