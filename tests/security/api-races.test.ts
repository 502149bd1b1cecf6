import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { DEFAULT_LOGIN_LIMITS } from '../../web/api/login-throttle.ts';
import { RtspServer } from '../support/rtsp-server.ts';
import { TestCamera } from '../support/rtsp-camera.ts';
import { startSystemHarness, type SystemHarness } from '../support/system-harness.ts';
import { tempDir, waitFor } from '../support/recorder-fixture.ts';

// Check, then await, then count: three limits that parallel requests used to beat, because each was
// checked before an await and counted after it. Sign-in failures were counted after the scrypt check
// (40 parallel guesses were all checked), MP4 exports after the URLs were signed (12 parallel exports
// from one clerk started 12 ffmpegs), live pulls after the provider's start (one person's 4 parallel
// requests took 4 pulls). Real sign-in, routes, PostgreSQL, S3, ffmpeg, RTSP camera and SFU.

type Err = { error?: { code: string; message: string } };

/** ffmpegs exporting for this process's API (children of this process reading an export list). */
function exportFfmpegs(): number {
  let n = 0;
  for (const pid of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid !== process.pid) continue;
      const cmd = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8');
      if (cmd.includes('ffmpeg') && /export-[^\0]*\/list\.txt/.test(cmd)) n++;
    } catch {
      // gone meanwhile
    }
  }
  return n;
}

/** Samples `count` until stopped; returns the highest value seen. */
function sampleMax(count: () => number, everyMs = 15): () => number {
  let max = count();
  const timer = setInterval(() => (max = Math.max(max, count())), everyMs);
  return () => {
    clearInterval(timer);
    return Math.max(max, count());
  };
}

describe('parallel requests cannot beat a limit', { timeout: 240_000 }, () => {
  let h: SystemHarness;
  let rtsp: RtspServer;
  let camera: TestCamera;
  // Signed in only by the guessing test: never known at this address.
  let guessed: string;

  before(async () => {
    h = await startSystemHarness({ villages: 8, storage: true, liveCameras: { maxCameras: 3, maxPerUser: 2 } });
    rtsp = await RtspServer.start();
    camera = new TestCamera({ server: rtsp, path: 'races', audio: 'none' });
    await camera.start();
    guessed = h.demo.users.find((u) => u.level === 'town' && u.username.endsWith('.clerk'))!.username;
  });

  after(async () => {
    await h?.close();
    await camera?.stop();
    await rtsp?.close();
  });

  const signIn = async (username: string, password: string) => {
    const res = await fetch(`${h.baseUrl}/api/auth/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username, password }) });
    return { status: res.status, body: (await res.json()) as Err, retryAfter: res.headers.get('retry-after') };
  };

  test('40 parallel wrong passwords for one account: only the free failures and the one starting the delay are checked', async () => {
    const answers = await Promise.all(Array.from({ length: 40 }, (_, i) => signIn(guessed, `guess-${i}`)));
    const checked = answers.filter((a) => a.status === 401).length;
    const refused = answers.filter((a) => a.status === 429);
    // Sequential guessing checks accountFreeFailures + 1 passwords (the last starts the delay); parallel, no more.
    assert.equal(checked, DEFAULT_LOGIN_LIMITS.accountFreeFailures + 1, `checked ${checked}: ${answers.map((a) => a.status).join(',')}`);
    assert.equal(refused.length, 40 - checked);
    for (const r of refused) {
      assert.equal(r.body.error?.code, 'too_many_attempts');
      assert.ok(Number(r.retryAfter) >= 1);
    }
    const { rows } = await h.db.pool.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM audit_log WHERE action = 'login.fail' AND username = $1 AND detail->>'reason' = 'bad_password'`,
      [guessed],
    );
    assert.equal(rows[0]!.n, checked, 'each checked password is audited, refused ones were never checked');
    // The delay holds for the right password too.
    assert.equal((await signIn(guessed, h.demo.password)).status, 429);
  });

  test('one address runs at most 32 password checks at once; 100 people signing in together all get in', async () => {
    await h.db.pool.query(
      `INSERT INTO users (username, display_name, unit_id, role, password_hash)
       SELECT 'race.kiosk' || g, 'kiosk ' || g, x.unit_id, 'secretary', x.password_hash FROM users x, generate_series(1, 100) g WHERE x.username = 'wf.admin'`,
    );
    const names = Array.from({ length: 100 }, (_, i) => `race.kiosk${i + 1}`);
    const first = await Promise.all(names.map((n) => signIn(n, h.demo.password)));
    const ok = first.filter((a) => a.status === 200).length;
    const busy = first.filter((a) => a.status === 429);
    assert.equal(ok + busy.length, 100, `only 200 or 429: ${first.map((a) => a.status).join(',')}`);
    assert.ok(ok >= 32, `at least the 32 checks an address may run were admitted (${ok})`);
    assert.ok(busy.length > 0, 'beyond 32 checks in flight the address is asked to wait');
    for (const b of busy) {
      assert.equal(b.body.error?.code, 'sign_in_busy');
      assert.equal(b.retryAfter, '1', 'a short wait: nobody failed');
    }
    // Waiting as told, everyone gets in: the refusals counted as no failure.
    let pending = names.filter((_, i) => first[i]!.status === 429);
    for (let round = 0; pending.length > 0 && round < 20; round++) {
      await new Promise((r) => setTimeout(r, 1000)); // the Retry-After the server gave
      const again = await Promise.all(pending.map((n) => signIn(n, h.demo.password)));
      assert.ok(again.every((a) => a.status === 200 || a.status === 429), again.map((a) => a.status).join(','));
      pending = pending.filter((_, i) => again[i]!.status !== 200);
    }
    assert.deepEqual(pending, [], 'all signed in');
    console.log(`# 100 parallel sign-ins from one address: ${ok} at once, ${busy.length} asked to wait 1 s`);
  });

  test('live view: parallel requests cannot take more than the per-person and per-node pulls', async () => {
    const sup = h.demo.users.find((u) => u.role === 'supervisor' && u.level === 'county')!;
    const { rows } = await h.db.pool.query<{ id: number }>(
      `SELECT c.id FROM cameras c JOIN units u ON u.id = c.unit_id
        WHERE u.path LIKE (SELECT path FROM units WHERE id = $1) || '%' ORDER BY c.id LIMIT 4`,
      [sup.unitId],
    );
    assert.equal(rows.length, 4, 'the county has four cameras');
    const ids = rows.map((r) => r.id);
    await h.db.pool.query('UPDATE cameras SET rtsp_url = $1, username = NULL, password = NULL, enabled = true WHERE id = ANY($2)', [camera.url, ids]);
    const live = (token: string, id: number) => h.call<Err & { token?: string }>(token, 'POST', `/api/cameras/${id}/live`);
    const pulls = () => [...h.sfu.rooms.keys()].filter((r) => r.startsWith('camera-')).length;

    // One person, four cameras at once: two (maxPerUser) are pulled, two refused.
    const county = await h.login(sup.username);
    const mine = await Promise.all(ids.map((id) => live(county, id)));
    assert.deepEqual(mine.map((r) => r.status).sort(), [201, 201, 429, 429], JSON.stringify(mine.map((r) => r.body)));
    for (const r of mine.filter((x) => x.status === 429)) assert.equal(r.body.error?.code, 'live_limit');
    assert.equal(pulls(), 2);

    // Four other people at once: the node (maxCameras 3) pulls one more; the other new camera is busy.
    const others = h.demo.users.filter((u) => u.level === 'city').slice(0, 4);
    const tokens = await Promise.all(others.map((u) => h.login(u.username)));
    const theirs = await Promise.all(ids.map((id, i) => live(tokens[i]!, id)));
    const granted = theirs.filter((r) => r.status === 201).length;
    assert.ok(pulls() <= 3, `at most 3 pulls on the node (${pulls()})`);
    assert.equal(granted, 3, theirs.map((r) => `${r.status} ${r.body.error?.code ?? ''}`).join(','));
    for (const r of theirs.filter((x) => x.status !== 201)) assert.deepEqual([r.status, r.body.error?.code], [503, 'live_busy']);
  });

  test('MP4 export: 12 parallel from one person start one ffmpeg, 8 people at once at most 4', async () => {
    // Real recordings (as in recorder-capture-limits): 20 contiguous 6 s segments of a high-bitrate
    // clip, so an export nobody reads keeps its ffmpeg blocked on the pipe, holding its slot.
    const clip = path.join(tempDir('sec-race-'), 'clip.mp4');
    execFileSync('ffmpeg', ['-v', 'error', '-f', 'lavfi', '-i', 'testsrc2=size=1280x720:rate=25', '-t', '6', '-c:v', 'libx264', '-preset', 'ultrafast', '-crf', '8', '-g', '25', clip]);
    const cam = (await h.db.pool.query<{ id: number; unit_id: number }>(
      `SELECT c.id, c.unit_id FROM cameras c JOIN units u ON u.id = c.unit_id WHERE u.level = 'village' ORDER BY c.id DESC LIMIT 1`,
    )).rows[0]!;
    const t0 = Date.now() - 3_600_000;
    for (let i = 0; i < 20; i++) {
      const key = `unit/${cam.unit_id}/camera/${cam.id}/race/${i}.mp4`;
      await h.storage!.putFile(key, clip, 'video/mp4');
      await h.db.pool.query(
        `INSERT INTO recording_segments (camera_id, unit_id, started_at, ended_at, bytes, bucket, object_key, video_codec)
         VALUES ($1, $2, to_timestamp($3 / 1000.0), to_timestamp($4 / 1000.0), 1000, 'recordings', $5, 'h264')`,
        [cam.id, cam.unit_id, t0 + i * 6_000, t0 + (i + 1) * 6_000, key],
      );
    }
    // Nine people who may see the camera (city and county staff), signed in once each.
    const people = (await h.db.pool.query<{ username: string }>(
      `SELECT x.username FROM users x JOIN units u ON u.id = x.unit_id, cameras c JOIN units cu ON cu.id = c.unit_id
        WHERE c.id = $1 AND cu.path LIKE u.path || '%' AND x.username <> $2 ORDER BY x.id LIMIT 9`,
      [cam.id, guessed],
    )).rows.map((r) => r.username);
    assert.equal(people.length, 9);
    const tokens = new Map<string, string>();
    for (const p of people) tokens.set(p, await h.login(p));
    const url = `${h.baseUrl}/api/cameras/${cam.id}/playback?format=mp4&from=${new Date(t0).toISOString()}&to=${new Date(t0 + 120_000).toISOString()}`;
    const held: AbortController[] = [];
    const exportAs = async (user: string): Promise<{ status: number; code?: string }> => {
      const ac = new AbortController();
      held.push(ac);
      const r = await fetch(url, { headers: { authorization: `Bearer ${tokens.get(user)}` }, signal: ac.signal });
      // Accepted exports stay unread (their ffmpeg blocks); refusals are read.
      return r.status === 200 ? { status: 200 } : { status: r.status, code: ((await r.json()) as Err).error?.code };
    };
    const dropAll = async () => {
      for (const ac of held.splice(0)) ac.abort();
      await waitFor('export ffmpegs to end', () => exportFfmpegs() === 0, 20_000, 50);
    };

    try {
      let maxFfmpegs = sampleMax(exportFfmpegs);
      const same = await Promise.all(Array.from({ length: 12 }, () => exportAs(people[0]!)));
      let seen = maxFfmpegs();
      assert.equal(same.filter((r) => r.status === 200).length, 1, JSON.stringify(same));
      assert.deepEqual(same.filter((r) => r.status !== 200).map((r) => `${r.status} ${r.code}`), Array(11).fill('429 export_limit'));
      assert.ok(seen <= 1, `one person ran ${seen} export ffmpegs at once`);
      await dropAll();

      maxFfmpegs = sampleMax(exportFfmpegs);
      const many = await Promise.all(people.slice(1).map((p) => exportAs(p)));
      seen = maxFfmpegs();
      const accepted = many.filter((r) => r.status === 200).length;
      assert.ok(accepted >= 1 && accepted <= 4, `accepted ${accepted}: ${JSON.stringify(many)}`);
      for (const r of many.filter((x) => x.status !== 200)) assert.deepEqual([r.status, r.code], [503, 'export_busy']);
      assert.ok(seen <= 4, `the node ran ${seen} export ffmpegs at once`);
      console.log(`# exports: 12 parallel from one person -> 1 ffmpeg; 8 people -> ${accepted} accepted, at most ${seen} ffmpegs`);
    } finally {
      await dropAll();
    }
    // The slots came back on every path: an export now runs to its end.
    const done = await waitFor('an export slot', async () => {
      const r = await fetch(url, { headers: { authorization: `Bearer ${tokens.get(people[0]!)}` } });
      if (r.status !== 200) {
        await r.body?.cancel();
        return false;
      }
      return Buffer.from(await r.arrayBuffer());
    }, 20_000, 250);
    assert.ok(done.length > 1_000_000, `the export streamed ${done.length} bytes`);
  });
});
