import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { startSystemHarness, type SystemHarness } from '../support/system-harness.ts';
import { tempDir, waitFor } from '../support/recorder-fixture.ts';

// Issue 12, item 7 (recorder share): capture jobs asked for through the API are bounded (window, how
// far ahead, open jobs per camera, who may mark evidence, which session), and MP4 exports - an ffmpeg
// each - are capped per user (429) and per node (503). Real sign-in, routes, PostgreSQL, S3, ffmpeg.

describe('recorder security: capture jobs and exports are bounded', () => {
  let h: SystemHarness;
  let cameraId: number;
  const tokens = new Map<string, string>();
  const token = async (user: string): Promise<string> => {
    if (!tokens.has(user)) tokens.set(user, await h.login(user));
    return tokens.get(user)!;
  };

  before(async () => {
    h = await startSystemHarness({ storage: true });
    cameraId = (await h.db.pool.query<{ id: number }>("SELECT c.id FROM cameras c JOIN units u ON u.id = c.unit_id WHERE u.level = 'village' ORDER BY c.id LIMIT 1")).rows[0]!.id;
  });

  after(async () => {
    await h?.close();
  });

  const job = (user: string, body: Record<string, unknown>, cam = cameraId) => token(user).then((t) => h.call<{ error?: { code: string }; id?: number }>(t, 'POST', `/api/cameras/${cam}/capture-jobs`, body));
  const at = (ms: number): string => new Date(Date.now() + ms).toISOString();

  test('capture jobs: window, lead time, past windows, evidence role, foreign session and open-job count are refused', async () => {
    const H = 3_600_000;
    const farFuture = await job('wf.leader', { startsAt: '2098-01-01T00:00:00Z', endsAt: '2099-12-31T00:00:00Z' });
    assert.equal(farFuture.status, 400);
    const longWindow = await job('wf.leader', { startsAt: at(H), endsAt: at(30 * H) });
    assert.deepEqual([longWindow.status, longWindow.body.error?.code], [400, 'window_too_long']);
    const rolls = await job('wf.leader', { startsAt: at(H), endsAt: at(4 * H), preRollS: 3600, postRollS: 3600 });
    assert.deepEqual([rolls.status, rolls.body.error?.code], [400, 'window_too_long'], 'pre/post-roll count toward the window');
    const ahead = await job('wf.leader', { startsAt: at(60 * 24 * H), endsAt: at(60 * 24 * H + H) });
    assert.deepEqual([ahead.status, ahead.body.error?.code], [400, 'too_far_ahead']);
    const past = await job('wf.leader', { startsAt: at(-2 * H), endsAt: at(-H) });
    assert.deepEqual([past.status, past.body.error?.code], [400, 'window_past']);
    const evidence = await job('wf.supervisor', { startsAt: at(H), endsAt: at(2 * H), evidence: true });
    assert.deepEqual([evidence.status, evidence.body.error?.code], [403, 'evidence_forbidden']);
    // A session of another county cannot be attached to this camera's job.
    const camPath = (await h.db.pool.query<{ path: string }>('SELECT u.path FROM cameras c JOIN units u ON u.id = c.unit_id WHERE c.id = $1', [cameraId])).rows[0]!.path;
    const county = camPath.split('.').slice(0, 2).join('.') + '.';
    const otherBranch = (await h.db.pool.query<{ id: number }>(
      `SELECT b.id FROM branches b JOIN units u ON u.id = b.unit_id WHERE u.path NOT LIKE $1 LIMIT 1`, [`${county}%`])).rows[0];
    const countyLeader = (await h.db.pool.query<{ username: string }>(
      `SELECT x.username FROM users x JOIN units u ON u.id = x.unit_id WHERE u.path = $1 AND x.role = 'leader'`, [county])).rows[0]!.username;
    if (otherBranch) {
      const s = (await h.db.pool.query<{ id: number }>(
        `INSERT INTO meeting_sessions (branch_id, obligation, starts_at, ends_at) VALUES ($1, (SELECT code FROM obligation_types LIMIT 1), now() + interval '1 hour', now() + interval '2 hours') RETURNING id`,
        [otherBranch.id])).rows[0]!.id;
      const foreign = await job(countyLeader, { startsAt: at(H), endsAt: at(2 * H), sessionId: s });
      assert.equal(foreign.status, 404, 'a session outside the caller\'s subtree is not found');
    } else {
      assert.fail('the demo organisation has a second county');
    }
    // Evidence by a leader, and at most 4 open jobs per camera.
    const ok = [];
    for (let i = 0; i < 4; i++) ok.push(await job('wf.leader', { startsAt: at(H + i * 1000), endsAt: at(2 * H), evidence: i === 0 }));
    assert.deepEqual(ok.map((r) => r.status), [201, 201, 201, 201]);
    const fifth = await job('wf.leader', { startsAt: at(H), endsAt: at(2 * H) });
    assert.deepEqual([fifth.status, fifth.body.error?.code], [409, 'too_many_jobs']);
    const open = await h.db.pool.query<{ n: number }>("SELECT count(*)::int AS n FROM capture_jobs WHERE camera_id = $1 AND state = 'scheduled'", [cameraId]);
    assert.equal(open.rows[0]!.n, 4, 'nothing written by the refused requests');
    // Concurrent requests cannot race past the count either.
    const cam2 = (await h.db.pool.query<{ id: number }>('SELECT id FROM cameras WHERE id <> $1 ORDER BY id LIMIT 1', [cameraId])).rows[0]!.id;
    const burst = await Promise.all(Array.from({ length: 10 }, () => job('wf.leader', { startsAt: at(H), endsAt: at(2 * H) }, cam2)));
    assert.equal(burst.filter((r) => r.status === 201).length, 4);
    assert.equal(burst.filter((r) => r.status === 409).length, 6);
  });

  test('MP4 exports: a second at once per user is 429, a fifth on the node is 503, and slots come back', async () => {
    // Real recordings: 20 contiguous 6 s segments of a high-bitrate clip, so an export that is not
    // read blocks its ffmpeg on the pipe (held open by the attacker).
    const clip = path.join(tempDir('sec-exp-'), 'clip.mp4');
    execFileSync('ffmpeg', ['-v', 'error', '-f', 'lavfi', '-i', 'testsrc2=size=1280x720:rate=25', '-t', '6', '-c:v', 'libx264', '-preset', 'ultrafast', '-crf', '8', '-g', '25', clip]);
    const cam = (await h.db.pool.query<{ id: number; unit_id: number }>('SELECT id, unit_id FROM cameras ORDER BY id LIMIT 1 OFFSET 2')).rows[0]!;
    const t0 = Date.now() - 3_600_000;
    for (let i = 0; i < 20; i++) {
      const key = `unit/${cam.unit_id}/camera/${cam.id}/exp/${i}.mp4`;
      await h.storage!.putFile(key, clip, 'video/mp4');
      await h.db.pool.query(
        `INSERT INTO recording_segments (camera_id, unit_id, started_at, ended_at, bytes, bucket, object_key, video_codec)
         VALUES ($1, $2, to_timestamp($3 / 1000.0), to_timestamp($4 / 1000.0), 1000, 'recordings', $5, 'h264')`,
        [cam.id, cam.unit_id, t0 + i * 6_000, t0 + (i + 1) * 6_000, key]);
    }
    const url = `${h.baseUrl}/api/cameras/${cam.id}/playback?format=mp4&from=${new Date(t0).toISOString()}&to=${new Date(t0 + 120_000).toISOString()}`;
    const held: AbortController[] = [];
    const start = async (user: string): Promise<Response> => {
      const ac = new AbortController();
      held.push(ac);
      return fetch(url, { headers: { authorization: `Bearer ${await token(user)}` }, signal: ac.signal });
    };
    try {
      const first = await start('wf.leader');
      assert.equal(first.status, 200);
      const again = await start('wf.leader');
      assert.equal(again.status, 429);
      assert.equal(((await again.json()) as { error: { code: string } }).error.code, 'export_limit');
      assert.ok(again.headers.get('retry-after'));
      for (const u of ['wf.supervisor', 'wf.admin', 'wf.operator']) assert.equal((await start(u)).status, 200, u);
      const fifth = await start('wf.clerk');
      assert.equal(fifth.status, 503);
      assert.equal(((await fifth.json()) as { error: { code: string } }).error.code, 'export_busy');
      const ffmpegs = Number(execFileSync('sh', ['-c', "pgrep -f -c '[e]xport-.*/list.txt' || true"], { encoding: 'utf8' }).trim());
      assert.ok(ffmpegs >= 1 && ffmpegs <= 4, `1 to 4 export ffmpegs run (${ffmpegs})`);
    } finally {
      for (const ac of held) ac.abort();
    }
    // Dropping the connections frees the slots: a full export now runs to its end.
    const done = await waitFor('an export slot', async () => {
      const r = await fetch(url, { headers: { authorization: `Bearer ${await token('wf.clerk')}` } });
      if (r.status !== 200) {
        await r.body?.cancel();
        return false;
      }
      return Buffer.from(await r.arrayBuffer());
    }, 20_000, 250);
    assert.ok(done.length > 1_000_000, `the export streamed ${done.length} bytes`);
  });
});
