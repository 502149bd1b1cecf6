import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { verifyJoinToken } from '../../infra/tokens.ts';
import { Recorder } from '../../recorder/Recorder.ts';
import { liveRoomFor } from '../../web/api/routes/live-cameras.ts';
import { startSystemHarness, type SystemHarness } from '../support/system-harness.ts';
import { RtspServer } from '../support/rtsp-server.ts';
import { TestCamera } from '../support/rtsp-camera.ts';
import { addCamera, seedOrg, tempDir, waitFor, waitForEvent, type OrgFixture } from '../support/recorder-fixture.ts';
import { restreamer } from '../../recorder/RtspRestreamer.ts';
import { TEST_JOIN_KEYS } from '../support/join-keys.ts';

// Review, live-inspection and capture-job routes of the real web server (`createWebServer`, as in
// `npm start`): people sign in through /api/auth/login and call with their bearer tokens; live views
// go through the server's own NodeLiveCameraProvider, which pulls the camera (a real RTSP server that
// demands digest credentials) into the node's SFU room. Material is recorded for real first (a 10 s
// capture with 2 s segments). The tree under test (a city, a county with towns A and B) sits beside
// the demo organisation, whose county users are "another county".

describe('recordings and live-camera routers: subtree access, audit, review material', () => {
  let h: SystemHarness;
  let rtsp: RtspServer;
  let cam: TestCamera;
  let org: OrgFixture;
  let cameraId: number;
  let from: Date;
  let to: Date;
  /** Bearer tokens from the real sign-in, by username. */
  const tokens = new Map<string, string>();
  const userIds = new Map<string, number>();
  let otherCounty: string;
  let plays = 0;

  before(async () => {
    h = await startSystemHarness({ storage: true });
    rtsp = await RtspServer.start(0, '127.0.0.1', { auth: { scheme: 'digest', username: 'admin', password: 'cam-secret-pw' } });
    rtsp.on('play', () => plays++);
    cam = new TestCamera({ server: rtsp, path: 'east-village', audio: 'pcm_mulaw' });
    await cam.start();
    org = await seedOrg(h.db.pool);
    cameraId = await addCamera(h.db.pool, org.villageAId, cam.url);
    // The demo's published password (one hash for all its users) signs in these supervisors too.
    const hash = (await h.db.pool.query<{ password_hash: string }>(`SELECT password_hash FROM users WHERE username = 'wf.admin'`)).rows[0]!.password_hash;
    for (const [name, unit] of [
      ['county_sup', org.countyId],
      ['towna_sup', org.townAId],
      ['townb_sup', org.townBId],
    ] as const) {
      const r = await h.db.pool.query<{ id: number }>(
        `INSERT INTO users (username, display_name, unit_id, role, password_hash) VALUES ($1, $1, $2, 'supervisor', $3) RETURNING id`, [name, unit, hash]);
      userIds.set(name, r.rows[0]!.id);
    }
    // A leader of a county of the demo organisation: may schedule captures, but not of this county's cameras.
    otherCounty = (await h.db.pool.query<{ username: string }>(
      `SELECT x.username FROM users x JOIN units u ON u.id = x.unit_id WHERE u.level = 'county' AND x.role = 'leader' ORDER BY x.id LIMIT 1`)).rows[0]!.username;
    for (const name of [...userIds.keys(), otherCounty]) tokens.set(name, await h.login(name));

    // Real material: record 10 s.
    const rec = await Recorder.start({
      pool: h.db.pool, storage: h.storage!,
      config: { spoolDir: tempDir('rec-routes-'), recorderId: 'routes', segmentSeconds: 2, startLeadMs: 10_000, jobPollMs: 250, restartBackoffMinMs: 500, stripFrames: 3 },
    });
    const startsAt = new Date(Date.now() + 10_000);
    const job = await rec.scheduleCapture({ cameraId, startsAt, endsAt: new Date(startsAt.getTime() + 16_000) });
    await waitForEvent(rec, 'jobState', (id: number, s: string) => id === job.id && (s === 'done' || s === 'partial'), 60_000);
    await rec.spool.idle();
    await rec.close();
    // The range under review: 10 s from just after the first stored segment began (on a loaded machine
    // the camera pull may start late; these tests are about the routes, recorder timing has its own).
    const segs = (await h.db.pool.query<{ started_at: Date; ended_at: Date }>(
      'SELECT started_at, ended_at FROM recording_segments WHERE camera_id = $1 ORDER BY started_at', [cameraId])).rows;
    assert.ok(segs.length > 0, 'the capture stored segments');
    from = new Date(segs[0]!.started_at.getTime() + 100);
    to = new Date(from.getTime() + 10_000);
    assert.ok(segs.at(-1)!.ended_at >= to, `10 s recorded (${segs.length} segments, ${segs[0]!.started_at.toISOString()} to ${segs.at(-1)!.ended_at.toISOString()})`);
  });

  after(async () => {
    await h?.close();
    await cam?.stop();
    await rtsp?.close();
  });

  const call = async (user: string | undefined, method: string, p: string, body?: unknown): Promise<{ status: number; body: string; json: () => Record<string, unknown> }> => {
    const token = user ? tokens.get(user) : undefined;
    if (user) assert.ok(token, `signed in as ${user}`);
    const res = await fetch(`${h.baseUrl}/api${p}`, {
      method,
      headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    });
    const text = await res.text();
    // Never a camera credential or pull URL in any answer.
    assert.ok(!text.includes('cam-secret-pw') && !text.includes('rtsp://'), `answer leaks camera details: ${text.slice(0, 200)}`);
    return { status: res.status, body: text, json: () => JSON.parse(text) as Record<string, unknown> };
  };
  const audits = async (username: string, action: string): Promise<number> =>
    (await h.db.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM audit_log WHERE username = $1 AND action = $2', [username, action])).rows[0]!.n;
  const range = () => `from=${encodeURIComponent(from.toISOString())}&to=${encodeURIComponent(to.toISOString())}`;

  test('a supervisor whose subtree holds the camera lists its timeline with thumbnails, views a segment, and is audited', async () => {
    const r = await call('county_sup', 'GET', `/cameras/${cameraId}/recordings?${range()}`);
    assert.equal(r.status, 200, r.body);
    const tl = r.json() as { segments: { id: number; thumb_url: string; strip_url: string }[]; gaps: unknown[] };
    assert.ok(tl.segments.length >= 4, `segments over the range: ${tl.segments.length}`);
    assert.deepEqual(tl.gaps, []);
    const img = await fetch(tl.segments[0]!.thumb_url);
    assert.equal(img.status, 200);
    assert.equal((await img.arrayBuffer()).byteLength > 1000, true);
    const one = await call('towna_sup', 'GET', `/recordings/${tl.segments[1]!.id}`);
    assert.equal(one.status, 200);
    const media = await fetch(String(one.json().media_url));
    assert.equal(media.status, 200, 'presigned media URL serves the segment');
    assert.equal(await audits('county_sup', 'recording.list'), 1);
    assert.equal(await audits('towna_sup', 'recording.view'), 1);
  });

  test('a supervisor outside the camera subtree gets 404 for its recordings, segments, playback and live view', async () => {
    const playsBefore = plays;
    const requestsBefore = rtsp.requests.length;
    const seg = await h.db.pool.query<{ id: number }>('SELECT id FROM recording_segments WHERE camera_id = $1 LIMIT 1', [cameraId]);
    for (const [method, p] of [
      ['GET', `/cameras/${cameraId}/recordings?${range()}`],
      ['GET', `/recordings/${seg.rows[0]!.id}`],
      ['GET', `/cameras/${cameraId}/playback?${range()}`],
      ['GET', `/cameras/${cameraId}/playback?${range()}&format=mp4`],
      ['POST', `/cameras/${cameraId}/live`],
    ] as const) {
      const r = await call('townb_sup', method, p);
      assert.equal(r.status, 404, `${method} ${p}: ${r.body}`);
      assert.equal((r.json().error as { code: string }).code, 'not_found');
      // Indistinguishable from a camera that does not exist.
      const missing = await call('townb_sup', method, p.replace(`/cameras/${cameraId}/`, '/cameras/999999/').replace(/\/recordings\/\d+/, '/recordings/999999'));
      assert.equal(missing.status, 404);
      assert.equal(missing.body, r.body);
    }
    // The SFU never brought the camera in for an outsider: no live room, no pull of the camera.
    assert.equal(h.sfu.rooms.has(liveRoomFor(cameraId)), false, 'no live room for an outsider');
    assert.equal(plays, playsBefore, 'the camera was not pulled');
    assert.equal(rtsp.requests.length, requestsBefore, 'no request reached the camera');
    const n = await h.db.pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM audit_log WHERE username = 'townb_sup' AND action NOT LIKE 'login.%'`);
    assert.equal(n.rows[0]!.n, 0, 'nothing was shown, so nothing viewed');
    const unauth = await call(undefined, 'GET', `/cameras/${cameraId}/recordings?${range()}`);
    assert.equal(unauth.status, 401);
  });

  test('playback: a range across segments as a presigned playlist, and exported as one MP4 by stream copy', async () => {
    const a = new Date(from.getTime() + 1_500);
    const b = new Date(from.getTime() + 7_500);
    const q = `from=${encodeURIComponent(a.toISOString())}&to=${encodeURIComponent(b.toISOString())}`;
    const list = await call('county_sup', 'GET', `/cameras/${cameraId}/playback?${q}`);
    assert.equal(list.status, 200);
    const pl = list.json() as { segments: { url: string; in_s: number; out_s: number }[] };
    assert.ok(pl.segments.length >= 3, `the range spans several segments: ${pl.segments.length}`);
    assert.ok(pl.segments[0]!.in_s > 0, 'first segment entered part-way');
    const res = await fetch(`${h.baseUrl}/api/cameras/${cameraId}/playback?${q}&format=mp4`, { headers: { authorization: `Bearer ${tokens.get('county_sup')!}` } });
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('content-type'), 'video/mp4');
    const file = path.join(tempDir('export-'), 'x.mp4');
    fs.writeFileSync(file, Buffer.from(await res.arrayBuffer()));
    const dur = Number(execFileSync('ffprobe', ['-v', 'error', '-show_entries', 'format=duration', '-of', 'csv=p=0', file]).toString());
    // Stream copy cuts on keyframes (1 s apart here): the start snaps back to at most one GOP before
    // the range, and a live capture's segment times are wall-clock (jitter under load). Whole
    // segments untrimmed would be >= 8 s (the range spans four 2 s segments), so < 7.9 s proves the cut.
    assert.ok(dur > 5.4 && dur < 7.9, `exported duration ${dur} s for a 6 s range`);
    assert.equal(await audits('county_sup', 'recording.export'), 1);
    const bad = await call('county_sup', 'GET', `/cameras/${cameraId}/playback?from=${encodeURIComponent(b.toISOString())}&to=${encodeURIComponent(a.toISOString())}`);
    assert.equal(bad.status, 400, 'a reversed range is a clear 400');
  });

  test('live inspection: an in-subtree supervisor gets a viewer token for the camera room with its producers', async () => {
    // The recording's session with the camera ends a linger after its last reader (the restreamer would
    // otherwise hand the live pull that same session, and the camera would see no new pull to check).
    const shared = await restreamer();
    await waitFor('the recording\'s camera session closed', () => (shared.stats().length === 0 ? true : undefined), 15_000, 100);
    const playsBefore = plays;
    const requestsBefore = rtsp.requests.length;
    const r = await call('towna_sup', 'POST', `/cameras/${cameraId}/live`);
    assert.equal(r.status, 201, r.body);
    const body = r.json() as { room: string; token: string; producers: { kind: string; producerId: string }[] };
    const claims = await verifyJoinToken(TEST_JOIN_KEYS.publicKey, body.token);
    assert.equal(claims.room, liveRoomFor(cameraId));
    assert.equal(claims.role, 'viewer', 'watching only');
    assert.equal(claims.userId, userIds.get('towna_sup'));
    // The node's provider pulled the camera once, with its credentials (the camera demands digest
    // authentication), into the camera's SFU room: the producers answered are that room's.
    assert.equal(plays - playsBefore, 1, 'one pull of the camera');
    const asked = rtsp.requests.slice(requestsBefore);
    assert.ok(asked.some((q) => q.method === 'PLAY' && /^Digest /.test(q.authorization ?? '') && q.authorization!.includes('username="admin"')),
      'credentials go only to the server-side ingest, which presents them to the camera');
    const room = h.sfu.rooms.get(liveRoomFor(cameraId));
    assert.ok(room, 'the camera room is open on the node');
    const video = body.producers.find((p) => p.kind === 'video');
    assert.ok(video, 'a video producer is answered');
    const info = room.producerInfo(video.producerId);
    assert.deepEqual([info?.kind, info?.peerId, info?.source], ['video', `camera-${cameraId}`, 'camera']);
    assert.equal(room.localProducer(video.producerId)?.producer.closed, false, 'the producer is live');
    assert.equal(await audits('towna_sup', 'camera.live.view'), 1);
    // A second viewer shares the same pull.
    const again = await call('county_sup', 'POST', `/cameras/${cameraId}/live`);
    assert.equal(again.status, 201, again.body);
    assert.equal((again.json() as { producers: { producerId: string }[] }).producers.find((p) => p.producerId === video.producerId)?.producerId, video.producerId);
    assert.equal(plays - playsBefore, 1, 'still one pull of the camera');
  });

  test('a recorded meeting room is listed for supervisors above its unit and is 404 elsewhere', async () => {
    // A room segment owned by town A, reusing real stored media.
    const seg = await h.db.pool.query<{ object_key: string; bytes: number; started_at: Date; ended_at: Date }>(
      'SELECT object_key, bytes, started_at, ended_at FROM recording_segments WHERE camera_id = $1 AND started_at >= $2 ORDER BY started_at LIMIT 1', [cameraId, from]);
    const s = seg.rows[0]!;
    await h.db.pool.query(
      `INSERT INTO recording_segments (room_id, unit_id, started_at, ended_at, bytes, bucket, object_key, video_codec, evidence)
       VALUES ('town-a-meeting', $1, $2, $3, $4, 'recordings', $5, 'h264', true)`,
      [org.townAId, s.started_at, s.ended_at, s.bytes, `${s.object_key}.room-copy`]);
    const ok = await call('county_sup', 'GET', `/rooms/town-a-meeting/recordings?${range()}`);
    assert.equal(ok.status, 200, ok.body);
    assert.equal((ok.json().segments as unknown[]).length, 1);
    const no = await call('townb_sup', 'GET', `/rooms/town-a-meeting/recordings?${range()}`);
    assert.equal(no.status, 404);
    const missing = await call('townb_sup', 'GET', `/rooms/no-such-room/recordings?${range()}`);
    assert.equal(missing.body, no.body);
  });

  test('POST /cameras/:id/capture-jobs: bad bodies are 400 in both languages, another county 404, and the job row is written', async () => {
    const H = 3_600_000;
    const at = (ms: number): string => new Date(Date.now() + ms).toISOString();
    const bilingual = /[\u4e00-\u9fff].* \/ [A-Za-z]/;
    const jobs = async (): Promise<number> =>
      (await h.db.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM capture_jobs WHERE camera_id = $1', [cameraId])).rows[0]!.n;
    const before0 = await jobs();
    for (const [what, body] of [
      ['no endsAt', { startsAt: at(H) }],
      ['endsAt before startsAt', { startsAt: at(2 * H), endsAt: at(H) }],
      ['not a date', { startsAt: 'tomorrow-ish', endsAt: at(2 * H) }],
      ['negative pre-roll', { startsAt: at(H), endsAt: at(2 * H), preRollS: -5 }],
      ['post-roll over an hour', { startsAt: at(H), endsAt: at(2 * H), postRollS: 3601 }],
      ['evidence not a boolean', { startsAt: at(H), endsAt: at(2 * H), evidence: 'yes' }],
      ['session id not a number', { startsAt: at(H), endsAt: at(2 * H), sessionId: 'x' }],
      ['a window in the past', { startsAt: at(-2 * H), endsAt: at(-H) }],
    ] as const) {
      const r = await call('county_sup', 'POST', `/cameras/${cameraId}/capture-jobs`, body);
      assert.equal(r.status, 400, `${what}: ${r.body}`);
      const err = r.json().error as { code: string; message: string };
      assert.match(err.message, bilingual, `${what}: message "${err.message}" is Chinese / English`);
    }
    const notJson = await fetch(`${h.baseUrl}/api/cameras/${cameraId}/capture-jobs`, {
      method: 'POST', headers: { authorization: `Bearer ${tokens.get('county_sup')!}`, 'content-type': 'application/json' }, body: '{"startsAt":',
    });
    assert.equal(notJson.status, 400);
    assert.match(((await notJson.json()) as { error: { message: string } }).error.message, bilingual);
    assert.equal(await jobs(), before0, 'nothing written by refused bodies');

    // Scope: a leader of another county (who may schedule captures) sees no such camera, exactly as a missing one.
    const good = { startsAt: at(H), endsAt: at(H + 20 * 60_000), preRollS: 30, postRollS: 120 };
    const foreign = await call(otherCounty, 'POST', `/cameras/${cameraId}/capture-jobs`, good);
    assert.equal(foreign.status, 404, foreign.body);
    assert.equal((foreign.json().error as { code: string }).code, 'not_found');
    const missing = await call(otherCounty, 'POST', '/cameras/999999/capture-jobs', good);
    assert.equal(missing.body, foreign.body);
    assert.equal(await jobs(), before0, 'nothing written for the other county');

    // Effect: the job row over the asked window, scheduled, audited.
    const ok = await call('towna_sup', 'POST', `/cameras/${cameraId}/capture-jobs`, good);
    assert.equal(ok.status, 201, ok.body);
    const id = Number(ok.json().id);
    const row = (await h.db.pool.query<{ camera_id: number; starts_at: Date; ends_at: Date; pre_roll_s: number; post_roll_s: number; state: string; evidence: boolean }>(
      'SELECT camera_id, starts_at, ends_at, pre_roll_s, post_roll_s, state, evidence FROM capture_jobs WHERE id = $1', [id])).rows[0];
    assert.ok(row, 'the job row exists');
    assert.deepEqual(
      { camera: Number(row.camera_id), startsAt: row.starts_at.toISOString(), endsAt: row.ends_at.toISOString(), pre: row.pre_roll_s, post: row.post_roll_s, state: row.state, evidence: row.evidence },
      { camera: cameraId, startsAt: good.startsAt, endsAt: good.endsAt, pre: 30, post: 120, state: 'scheduled', evidence: false },
    );
    assert.equal(await jobs(), before0 + 1);
    assert.equal(await audits('towna_sup', 'capture.schedule'), 1);
  });
});
