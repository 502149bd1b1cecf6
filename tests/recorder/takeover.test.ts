import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { listTimeline } from '../../recorder/timeline.ts';
import { JobLease } from '../../recorder/JobLease.ts';
import { createLogger } from '../../infra/logger.ts';
import { createTestDatabase, type TestDatabase } from '../support/database.ts';
import { RtspServer } from '../support/rtsp-server.ts';
import { TestCamera } from '../support/rtsp-camera.ts';
import { addCamera, fastRecorderConfig, seedOrg, startS3Fixture, tempDir, waitFor, type S3Fixture } from '../support/recorder-fixture.ts';

// Recorders across hosts (issue 14, item 5): two recorder processes (recorder/main.ts, as deployed)
// share one PostgreSQL and one S3. Two capture jobs are spread one per host by load; the host of the
// first is SIGKILLed mid-capture; the other takes the job over once its lease runs out (lease 4 s
// here, 25 s by default) and records the rest of the same job: the camera's segments never overlap
// or repeat, and the only hole is the measured takeover gap.

const SEGMENT_S = 2;
const LEASE_MS = 4_000;
const HEARTBEAT_MS = 1_000;
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

describe('recorder leases: a killed host\'s job is taken over by another host within the lease bound', () => {
  let db: TestDatabase;
  let s3: S3Fixture;
  let rtsp: RtspServer;
  const cams: TestCamera[] = [];
  const children = new Set<ChildProcess>();

  before(async () => {
    db = await createTestDatabase();
    s3 = await startS3Fixture();
    rtsp = await RtspServer.start();
  });

  after(async () => {
    for (const c of children) c.kill('SIGKILL');
    for (const c of cams) await c.stop();
    await rtsp?.close();
    await s3?.close();
    await db?.drop();
  });

  const spawnRecorder = async (id: string): Promise<ChildProcess> => {
    const cfg = fastRecorderConfig(tempDir(`rec-${id}-`), SEGMENT_S, {
      recorderId: id, stripFrames: 2, leaseMs: LEASE_MS, leaseHeartbeatMs: HEARTBEAT_MS, claimGraceMs: 3_000, cameraProbeIntervalMs: 300,
    });
    const child = spawn(process.execPath, ['--import', 'tsx', path.join(root, 'recorder/main.ts')], {
      cwd: root,
      env: {
        ...process.env,
        DATABASE_URL: db.url,
        S3_ENDPOINT: '127.0.0.1',
        S3_PORT: String(s3.port),
        S3_ACCESS_KEY: s3.server!.accessKey,
        S3_SECRET_KEY: s3.server!.secretKey,
        RECORDER_CONFIG: JSON.stringify(cfg),
        LOG_LEVEL: 'error',
      },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    children.add(child);
    child.once('exit', () => children.delete(child));
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`recorder ${id} did not start`)), 60_000);
      child.stdout!.on('data', (d: Buffer) => {
        if (d.toString().includes('recorder ready')) {
          clearTimeout(t);
          resolve();
        }
      });
      child.once('exit', (code) => reject(new Error(`recorder ${id} exited early (${code})`)));
    });
    return child;
  };

  test('spread by load; one host SIGKILLed mid-capture; the other continues the job without overlap', async () => {
    const org = await seedOrg(db.pool);
    const camA = new TestCamera({ server: rtsp, path: 'takeover-a', audio: 'none' });
    const camB = new TestCamera({ server: rtsp, path: 'takeover-b', audio: 'none' });
    cams.push(camA, camB);
    await Promise.all([camA.start(), camB.start()]);
    const cameraA = await addCamera(db.pool, org.villageAId, camA.url);
    const cameraB = await addCamera(db.pool, org.villageBId, camB.url);

    const hosts = new Map<string, ChildProcess>();
    const [h1, h2] = await Promise.all([spawnRecorder('host-1'), spawnRecorder('host-2')]);
    hosts.set('host-1', h1);
    hosts.set('host-2', h2);
    await waitFor('both hosts registered', async () =>
      (await db.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM recorder_hosts WHERE accepting')).rows[0]!.n === 2, 20_000);

    // Claimed at once (start lead 6 s): ffmpeg connects before the window opens.
    const startsAt = new Date(Date.now() + 6_000);
    const endsAt = new Date(startsAt.getTime() + 30_000);
    const ins = async (cameraId: number): Promise<number> =>
      (await db.pool.query<{ id: number }>('INSERT INTO capture_jobs (camera_id, starts_at, ends_at) VALUES ($1, $2, $3) RETURNING id', [cameraId, startsAt, endsAt])).rows[0]!.id;
    const jobA = await ins(cameraA);
    const jobB = await ins(cameraB);
    const holderOf = async (id: number): Promise<string | null> =>
      (await db.pool.query<{ recorder_id: string | null }>('SELECT recorder_id FROM capture_jobs WHERE id = $1 AND lease_until > now()', [id])).rows[0]?.recorder_id ?? null;
    const first = await waitFor('both jobs claimed', async () => {
      const a = await holderOf(jobA);
      const b = await holderOf(jobB);
      return a && b ? { a, b } : undefined;
    }, 20_000, 100);
    assert.notEqual(first.a, first.b, `jobs spread over the two hosts by load (${JSON.stringify(first)})`);

    const count = async (): Promise<number> =>
      (await db.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM recording_segments WHERE capture_job_id = $1', [jobA])).rows[0]!.n;
    await waitFor('three segments of job A stored', async () => (await count()) >= 3, 40_000, 200);
    await new Promise((r) => setTimeout(r, 700)); // mid-segment: part of a segment is in flight
    const victim = hosts.get(first.a)!;
    const survivor = first.a === 'host-1' ? 'host-2' : 'host-1';
    const killedAt = Date.now();
    victim.kill('SIGKILL');
    await new Promise((r) => victim.once('exit', r));

    const takenAt = await waitFor('job A taken over', async () => ((await holderOf(jobA)) === survivor ? Date.now() : undefined), LEASE_MS + 20_000, 100);
    const takeoverMs = takenAt - killedAt;
    assert.ok(takeoverMs <= LEASE_MS + HEARTBEAT_MS + 3_000, `taken over ${takeoverMs} ms after the kill (lease ${LEASE_MS} ms)`);

    const final = await waitFor('both jobs finished', async () => {
      const r = await db.pool.query<{ id: number; state: string; takeovers: number; covered_s: number; reason: string | null }>(
        `SELECT id, state, takeovers, covered_s, reason FROM capture_jobs WHERE id = ANY($1) AND state NOT IN ('scheduled', 'recording') ORDER BY id`, [[jobA, jobB]]);
      return r.rowCount === 2 ? r.rows : undefined;
    }, endsAt.getTime() - Date.now() + 40_000, 250);
    const a = final.find((j) => Number(j.id) === jobA)!;
    const b = final.find((j) => Number(j.id) === jobB)!;
    assert.equal(a.takeovers, 1, 'job A changed hosts once');
    assert.equal(b.takeovers, 0, 'job B stayed where it was');
    // Job B's coverage depends only on its camera and this machine's load, not on the takeover.
    assert.ok(['done', 'partial'].includes(b.state), `job B recorded: ${JSON.stringify(b)}`);
    assert.ok(['partial', 'done'].includes(a.state), `job A recorded its window apart from the takeover gap: ${JSON.stringify(a)}`);

    // The job's segments, from both hosts, in time order: never overlapping or repeated.
    const rows = (await db.pool.query<{ started_at: Date; ended_at: Date; run_id: string; seq: number; capture_job_id: number }>(
      'SELECT started_at, ended_at, run_id, seq, capture_job_id FROM recording_segments WHERE camera_id = $1 ORDER BY started_at', [cameraA])).rows;
    const ids = rows.map((r) => `${r.run_id}-${r.seq}`);
    assert.equal(new Set(ids).size, ids.length, 'no segment stored twice');
    for (let i = 1; i < rows.length; i++) {
      const overlap = rows[i - 1]!.ended_at.getTime() - rows[i]!.started_at.getTime();
      assert.ok(overlap < 500, `segments do not overlap: ${overlap} ms at ${i}`);
    }
    // (Segments of the start lead before the window belong to no job.)
    const inWindow = rows.filter((r) => r.ended_at > startsAt && r.started_at < endsAt);
    assert.ok(inWindow.every((r) => Number(r.capture_job_id) === jobA), `every segment in the window, before and after the takeover, belongs to job A: ${JSON.stringify(inWindow.map((r) => r.capture_job_id))}`);
    assert.ok(new Set(inWindow.map((r) => r.run_id)).size >= 2, 'segments from both hosts');
    const tl = await listTimeline(db.pool, { cameraId: cameraA }, startsAt, endsAt, 1_000);
    const desc = `window from ${startsAt.toISOString()}; gaps ${JSON.stringify(tl.gaps)}; killed ${new Date(killedAt).toISOString()}, taken ${new Date(takenAt).toISOString()}`;
    assert.ok(tl.gaps.length <= 1, `one hole at most, the takeover: ${desc}`);
    const gapMs = tl.gaps[0]?.durationMs ?? 0;
    for (const g of tl.gaps) {
      assert.ok(g.from.getTime() >= killedAt - SEGMENT_S * 1000 - 1_500, `the hole starts at the kill: ${desc}`);
      assert.ok(g.to.getTime() <= takenAt + 8_000, `capture resumed promptly after the takeover: ${desc}`);
    }
    assert.ok(tl.segments.at(-1)!.endedAt >= endsAt, `the survivor recorded the job to its window's end: ${desc}`);
    assert.ok(Math.abs(a.covered_s - (30 - gapMs / 1000)) <= SEGMENT_S + 1, `covered seconds match the timeline: ${a.covered_s} s, gap ${gapMs} ms`);
    console.log(`# takeover: lease ${LEASE_MS} ms; taken over ${takeoverMs} ms after SIGKILL; gap ${gapMs} ms; job A ${a.state}, covered ${a.covered_s} of 30 s (job B ${b.state}, ${b.covered_s} s); ${rows.length} segments, none overlapping`);
    const last = hosts.get(survivor)!;
    const exited = new Promise((r) => last.once('exit', r));
    last.kill('SIGTERM');
    await exited;
  });

  test('a host that cannot renew stops its captures before another host may claim its job', async () => {
    const org = await seedOrg(db.pool);
    const cameraId = await addCamera(db.pool, org.villageAId, 'rtsp://127.0.0.1:9/fence');
    const log = createLogger('lease-test');
    const lease = (id: string) => new JobLease({ pool: db.pool, recorderId: id, leaseMs: 3_000, heartbeatMs: 1_000, claimGraceMs: 0, log });
    const a = lease('fence-a');
    const b = lease('fence-b');
    const jobId = (await db.pool.query<{ id: number }>('INSERT INTO capture_jobs (camera_id, starts_at, ends_at) VALUES ($1, now(), now() + interval \'1 minute\') RETURNING id', [cameraId])).rows[0]!.id;
    const held = await a.sync(0, true, 0);
    assert.deepEqual(held.map((j) => Number(j.id)), [jobId], 'A claimed the job');
    assert.deepEqual((await b.sync(0, true, 0)).map((j) => Number(j.id)), [], 'B may not claim a job A holds');
    // A stops renewing (its database link is gone): it must fence before B can claim.
    const t0 = Date.now();
    await waitFor('A must fence', () => a.mustFence(), 5_000, 20);
    const fencedAt = Date.now();
    const claimedAt = await waitFor('B claims', async () => ((await b.sync(0, true, 0)).some((j) => Number(j.id) === jobId) ? Date.now() : undefined), 10_000, 50);
    assert.ok(fencedAt < claimedAt, `A fenced ${fencedAt - t0} ms after its last renewal, B claimed at ${claimedAt - t0} ms`);
    assert.ok(claimedAt - fencedAt >= 500, `a heartbeat's margin between A stopping and B starting (${claimedAt - fencedAt} ms)`);
    const row = (await db.pool.query<{ recorder_id: string; takeovers: number }>('SELECT recorder_id, takeovers FROM capture_jobs WHERE id = $1', [jobId])).rows[0]!;
    assert.deepEqual(row, { recorder_id: 'fence-b', takeovers: 1 });
    // A comes back: its renewal does not take the job back, and it no longer sees it as held.
    assert.deepEqual((await a.sync(0, true, 0)).map((j) => Number(j.id)), [], 'A lost the job to B');
  });
});
