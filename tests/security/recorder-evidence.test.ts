import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { createLogger } from '../../infra/logger.ts';
import { recorderConfig } from '../../recorder/config.ts';
import { Retention } from '../../recorder/Retention.ts';
import { SegmentJournal } from '../../recorder/SegmentJournal.ts';
import { SegmentSpool } from '../../recorder/SegmentSpool.ts';
import type { ClosedSegment } from '../../recorder/types.ts';
import { startSystemHarness, type SystemHarness } from '../support/system-harness.ts';
import { tempDir, waitForEvent } from '../support/recorder-fixture.ts';

// Issue 12, item 5: ordinary deletes through the API must not destroy evidence or history, what
// retention deletes from the index is deleted from S3 too, and a spooled segment whose camera is gone
// does not retry for ever. Real API (sign-in, routes), real PostgreSQL, real S3 server.

const DAY = 86_400_000;

describe('recorder security: evidence survives deletes', () => {
  let h: SystemHarness;
  let operator: string;
  let admin: string;
  let sample: string;
  let n = 0;

  before(async () => {
    h = await startSystemHarness({ storage: true });
    operator = await h.login('wf.operator');
    admin = await h.login('wf.admin');
    sample = path.join(tempDir('sec-ev-'), 'seg.mp4');
    execFileSync('ffmpeg', ['-v', 'error', '-f', 'lavfi', '-i', 'testsrc2=size=160x90:rate=5', '-t', '1', '-c:v', 'libx264', '-preset', 'ultrafast', sample]);
  });

  after(async () => {
    await h?.close();
  });

  const storage = () => h.storage!;
  const count = async (sql: string, params: unknown[]): Promise<number> => (await h.db.pool.query<{ n: number }>(sql, params)).rows[0]!.n;

  /** One indexed segment of `cameraId` with its media and thumbnail really in S3. */
  const segment = async (cameraId: number, ageMs: number, evidence: boolean, jobId: number | null = null): Promise<{ id: number; key: string; thumb: string }> => {
    const key = `unit/sec/camera/${cameraId}/${++n}.mp4`;
    const thumb = key.replace(/\.mp4$/, '.thumb.jpg');
    await storage().putFile(key, sample, 'video/mp4');
    await storage().putBuffer(thumb, Buffer.from('jpeg'), 'image/jpeg');
    const start = new Date(Date.now() - ageMs);
    const r = await h.db.pool.query<{ id: number }>(
      `INSERT INTO recording_segments (camera_id, unit_id, capture_job_id, started_at, ended_at, bytes, bucket, object_key, thumb_key, evidence)
       VALUES ($1, (SELECT unit_id FROM cameras WHERE id = $1), $2, $3, $4, 1000, 'recordings', $5, $6, $7) RETURNING id`,
      [cameraId, jobId, start, new Date(start.getTime() + 2_000), key, thumb, evidence],
    );
    return { id: r.rows[0]!.id, key, thumb };
  };

  test('DELETE of a camera with evidence retires it: segments, S3 objects, jobs and sessions stay; review still works', async () => {
    const cam = (await h.db.pool.query<{ id: number; unit_id: number }>('SELECT id, unit_id FROM cameras ORDER BY id LIMIT 1')).rows[0]!;
    const job = (await h.db.pool.query<{ id: number }>(
      `INSERT INTO capture_jobs (camera_id, starts_at, ends_at, evidence) VALUES ($1, now() + interval '1 hour', now() + interval '2 hours', true) RETURNING id`, [cam.id])).rows[0]!.id;
    const branch = (await h.db.pool.query<{ id: number }>('SELECT id FROM branches WHERE unit_id = $1 LIMIT 1', [cam.unit_id])).rows[0]
      ?? (await h.db.pool.query<{ id: number }>('SELECT id FROM branches LIMIT 1')).rows[0]!;
    const session = (await h.db.pool.query<{ id: number }>(
      `INSERT INTO meeting_sessions (branch_id, obligation, starts_at, ends_at, camera_id) VALUES ($1, (SELECT code FROM obligation_types LIMIT 1), now() - interval '2 hours', now() - interval '1 hour', $2) RETURNING id`,
      [branch.id, cam.id])).rows[0]!.id;
    const segs = [await segment(cam.id, 3_600_000, true, job), await segment(cam.id, 3_000_000, false), await segment(cam.id, 2_000_000, false)];

    const del = await h.call<{ retired: boolean; kept: Record<string, number> }>(operator, 'DELETE', `/api/cameras/${cam.id}`);
    assert.equal(del.status, 200, JSON.stringify(del.body));
    assert.equal(del.body.retired, true);
    assert.deepEqual(del.body.kept, { recording_segments: 3, evidence_segments: 1, capture_jobs: 1, meeting_sessions: 1 });

    // Every piece of history is still there, in the index and in S3.
    assert.equal(await count('SELECT count(*)::int AS n FROM recording_segments WHERE camera_id = $1', [cam.id]), 3);
    for (const s of segs) {
      assert.ok(await storage().stat(s.key), `media ${s.key} still in S3`);
      assert.ok(await storage().stat(s.thumb), `thumbnail ${s.thumb} still in S3`);
    }
    assert.equal(await count('SELECT count(*)::int AS n FROM meeting_sessions WHERE id = $1 AND camera_id = $2', [session, cam.id]), 1);
    const j = (await h.db.pool.query<{ state: string }>('SELECT state FROM capture_jobs WHERE id = $1', [job])).rows[0]!;
    assert.equal(j.state, 'cancelled', 'a retired camera records nothing more, but its job is kept');

    // Gone from lists and reads and changes; no capture, no live view; the recordings stay reviewable.
    assert.equal((await h.call(operator, 'GET', `/api/cameras/${cam.id}`)).status, 404);
    const list = await h.call<{ items: Array<{ id: number }> }>(operator, 'GET', `/api/cameras?unit_id=${cam.unit_id}`);
    assert.equal(list.body.items.some((c) => c.id === cam.id), false);
    assert.equal((await h.call(operator, 'PATCH', `/api/cameras/${cam.id}`, { name: 'back' })).status, 404);
    assert.equal((await h.call(operator, 'DELETE', `/api/cameras/${cam.id}`)).status, 404, 'a retired camera is not retired twice');
    const from = new Date(Date.now() - 2 * 3_600_000).toISOString();
    const to = new Date().toISOString();
    const leader = await h.login('wf.leader');
    const tl = await h.call<{ segments: unknown[] }>(leader, 'GET', `/api/cameras/${cam.id}/recordings?from=${from}&to=${to}`);
    assert.equal(tl.status, 200);
    assert.equal(tl.body.segments.length, 3);
    const cj = await h.call(leader, 'POST', `/api/cameras/${cam.id}/capture-jobs`, { startsAt: new Date(Date.now() + 60_000), endsAt: new Date(Date.now() + 120_000) });
    assert.equal(cj.status, 409, 'no capture job for a retired camera');

    // Even the database itself refuses to delete the camera while history refers to it.
    await assert.rejects(h.db.pool.query('DELETE FROM cameras WHERE id = $1', [cam.id]), /foreign key/);
    assert.equal(await count(`SELECT count(*)::int AS n FROM audit_log WHERE action = 'camera.retire' AND object_id = $1::text`, [cam.id]), 1, 'the retirement is audited');
  });

  test('a camera nothing refers to is really deleted (204)', async () => {
    const unit = (await h.db.pool.query<{ unit_id: number }>('SELECT unit_id FROM cameras ORDER BY id DESC LIMIT 1')).rows[0]!.unit_id;
    const c = await h.call<{ id: number }>(operator, 'POST', '/api/cameras', { unit_id: unit, name: '新摄像机', rtsp_url: 'rtsp://10.0.0.9/stream' });
    assert.equal(c.status, 201);
    assert.equal((await h.call(operator, 'DELETE', `/api/cameras/${c.body.id}`)).status, 204);
    assert.equal(await count('SELECT count(*)::int AS n FROM cameras WHERE id = $1', [c.body.id]), 0);
  });

  test('DELETE of a branch with sessions, checks and reminders retires it; nothing of its history goes', async () => {
    const b = (await h.db.pool.query<{ id: number }>('SELECT id FROM branches ORDER BY id DESC LIMIT 1')).rows[0]!.id;
    const ob = (await h.db.pool.query<{ code: string }>('SELECT code FROM obligation_types LIMIT 1')).rows[0]!.code;
    const s = (await h.db.pool.query<{ id: number }>(
      `INSERT INTO meeting_sessions (branch_id, obligation, starts_at, ends_at) VALUES ($1, $2, now() - interval '3 days', now() - interval '3 days' + interval '1 hour') RETURNING id`, [b, ob])).rows[0]!.id;
    await h.db.pool.query(`INSERT INTO completion_checks (session_id, passed, covered_s, required_s) VALUES ($1, true, 3600, 1800)`, [s]);
    await h.db.pool.query(
      `INSERT INTO reminders (branch_id, obligation, period_key, period_end, step, target, due_at) VALUES ($1, $2, '2026-Q4', now() + interval '7 days', 'd7', 'secretary', now())`, [b, ob]);
    const members = await count('SELECT count(*)::int AS n FROM members WHERE branch_id = $1', [b]);
    const del = await h.call<{ retired: boolean; kept: Record<string, number> }>(admin, 'DELETE', `/api/branches/${b}`);
    assert.equal(del.status, 200, JSON.stringify(del.body));
    assert.deepEqual(del.body.kept, { members, meeting_sessions: 1, completion_checks: 1, reminders: 1 });
    assert.equal(await count('SELECT count(*)::int AS n FROM meeting_sessions WHERE branch_id = $1', [b]), 1);
    assert.equal(await count('SELECT count(*)::int AS n FROM completion_checks WHERE session_id = $1', [s]), 1);
    assert.equal(await count('SELECT count(*)::int AS n FROM reminders WHERE branch_id = $1', [b]), 1);
    assert.equal(await count('SELECT count(*)::int AS n FROM members WHERE branch_id = $1', [b]), members);
    assert.equal((await h.call(admin, 'GET', `/api/branches/${b}`)).status, 404);
    assert.equal(await count('SELECT count(*)::int AS n FROM branch_obligation_rules WHERE branch_id = $1', [b]), 0, 'a retired branch has no obligations any more');
  });

  test('DELETE of a service point with calls retires it; its calls stay and it takes no new ones', async () => {
    const st = (await h.db.pool.query<{ id: number; unit_id: number }>("SELECT id, unit_id FROM service_points WHERE kind = 'station' ORDER BY id LIMIT 1")).rows[0]!;
    const ce = (await h.db.pool.query<{ id: number }>("SELECT id FROM service_points WHERE kind = 'centre' ORDER BY id LIMIT 1")).rows[0]!;
    await h.db.pool.query(`INSERT INTO service_calls (station_id, centre_id, service, state) VALUES ($1, $2, 'civil_affairs', 'closed')`, [st.id, ce.id]);
    const del = await h.call<{ retired: boolean; kept: { service_calls: number } }>(admin, 'DELETE', `/api/service-points/${st.id}`);
    assert.equal(del.status, 200, JSON.stringify(del.body));
    assert.equal(del.body.kept.service_calls, 1);
    assert.equal(await count('SELECT count(*)::int AS n FROM service_calls WHERE station_id = $1', [st.id]), 1);
    const call = await h.call(admin, 'POST', '/api/service-calls', { stationId: st.id, service: 'civil_affairs' });
    assert.equal(call.status, 404, 'a retired station cannot queue');
  });

  test('retention deletes the S3 objects and the index row together; an S3 failure leaves both for the next sweep', async () => {
    const cam = (await h.db.pool.query<{ id: number }>('SELECT id FROM cameras WHERE retired_at IS NULL ORDER BY id DESC LIMIT 1')).rows[0]!.id;
    const old = await segment(cam, 100 * DAY, false);
    const kept = await segment(cam, 100 * DAY, true);
    // An S3 endpoint that does not answer: the sweep fails and deletes no row (no index entry loses its object).
    const { ObjectStorage } = await import('../../infra/storage/ObjectStorage.ts');
    const dead = new ObjectStorage({ endPoint: '127.0.0.1', port: 1, useSSL: false, accessKey: 'x', secretKey: 'y'.repeat(8), bucket: 'recordings' });
    await assert.rejects(new Retention({ pool: h.db.pool, storage: dead, maxAgeMs: 90 * DAY, minFreeBytes: 0, log: createLogger('t') }).sweep());
    assert.equal(await count('SELECT count(*)::int AS n FROM recording_segments WHERE id = $1', [old.id]), 1);
    assert.ok(await storage().stat(old.key));
    const r = await new Retention({ pool: h.db.pool, storage: storage(), maxAgeMs: 90 * DAY, minFreeBytes: 0, log: createLogger('t') }).sweep();
    assert.ok(r.aged >= 1);
    assert.equal(await count('SELECT count(*)::int AS n FROM recording_segments WHERE id = $1', [old.id]), 0);
    assert.equal(await storage().stat(old.key), undefined, 'media object removed');
    assert.equal(await storage().stat(old.thumb), undefined, 'thumbnail removed');
    assert.equal(await count('SELECT count(*)::int AS n FROM recording_segments WHERE id = $1', [kept.id]), 1, 'evidence is exempt');
    assert.ok(await storage().stat(kept.key));
  });

  test('a spooled segment: of a retired camera it is still indexed; of a camera gone for good it is quarantined, not retried for ever', async () => {
    const unit = (await h.db.pool.query<{ unit_id: number }>('SELECT unit_id FROM cameras ORDER BY id DESC LIMIT 1')).rows[0]!.unit_id;
    const mk = async (): Promise<number> => (await h.call<{ id: number }>(operator, 'POST', '/api/cameras', { unit_id: unit, name: '临时', rtsp_url: 'rtsp://10.0.0.8/s' })).body.id;
    const retiredCam = await mk();
    const goneCam = await mk();
    await segment(retiredCam, 1000, false); // history: its DELETE retires it
    assert.equal((await h.call(operator, 'DELETE', `/api/cameras/${retiredCam}`)).status, 200);
    assert.equal((await h.call(operator, 'DELETE', `/api/cameras/${goneCam}`)).status, 204);

    const dir = tempDir('sec-spool-');
    const config = recorderConfig({ spoolDir: dir, thumbnails: false, uploadRetryMinMs: 50, uploadRetryMaxMs: 100, permanentErrorAttempts: 3, recorderId: 'sec' });
    const { journal } = await SegmentJournal.open(path.join(dir, 'journal.jsonl'));
    const spool = new SegmentSpool({ pool: h.db.pool, storage: storage(), journal, config, log: createLogger('t') });
    let retries = 0;
    spool.on('retry', () => retries++);
    const seg = (cameraId: number, seq: number): ClosedSegment => {
      const file = path.join(dir, `seg_${seq}.mp4`);
      fs.copyFileSync(sample, file);
      const t = Date.now() - 10_000 + seq * 1000;
      return { id: `sec-${seq}`, runId: 'sec', seq, file, startedAt: t, endedAt: t + 1000, bytes: fs.statSync(file).size, source: { kind: 'camera', cameraId, unitId: unit }, captureJobId: null, sessionId: null, evidence: false };
    };
    const quarantined = waitForEvent<[ClosedSegment, string]>(spool, 'quarantined', () => true, 15_000);
    spool.enqueue(seg(goneCam, 1));
    spool.enqueue(seg(retiredCam, 2));
    const [q, reason] = await quarantined;
    assert.equal(q.id, 'sec-1');
    assert.match(reason, /refused after 3 attempts/);
    await spool.idle();
    assert.equal(retries, 2, 'two retries, then quarantine: no endless loop');
    const after = retries;
    await new Promise((r) => setTimeout(r, 500));
    assert.equal(retries, after, 'nothing retried after quarantine');
    assert.ok(fs.existsSync(path.join(dir, 'quarantine', 'sec-1.mp4')), 'the file is kept for an operator');
    assert.equal(await count("SELECT count(*)::int AS n FROM recorder_quarantine WHERE segment_id = 'sec-1'", []), 1);
    assert.equal(spool.quarantinedSegments, 1);
    const { objectKeyFor } = await import('../../recorder/SegmentSpool.ts');
    assert.equal(await storage().stat(objectKeyFor(q)), undefined, 'no S3 object left without its index row');
    assert.equal(await count("SELECT count(*)::int AS n FROM recording_segments WHERE camera_id = $1 AND run_id = 'sec'", [retiredCam]), 1, 'retired camera: its evidence is indexed');
    spool.close();
    journal.close();
    const again = await SegmentJournal.open(path.join(dir, 'journal.jsonl'));
    assert.equal(again.state.pending.length, 0, 'a restart does not pick the quarantined segment up again');
    again.journal.close();
  });
});
