import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { livePull, liveRoomFor } from '../../web/api/routes/live-cameras.ts';
import { DebianRtspServer } from '../support/debian-rtsp.ts';
import { OnvifCameraSim } from '../support/onvif-camera-sim.ts';
import { startSystemHarness, type SystemHarness } from '../support/system-harness.ts';

// ONVIF through the API of the full web server (as `npm start` runs it): an operator of the county
// reads a camera's profiles over ONVIF (tests/support/onvif-camera-sim.ts, written from the
// specifications) and applies them; the stored addresses carry no credentials; another county's
// operator gets 404 and the camera hears nothing; every read is audited. Then the live wall's tile
// (stream 'sub') pulls the sub-stream and the inspection view the main stream — told apart on the
// RTSP servers' side (two real gst-rtsp-server streams, each counting its PLAYs).

const CAM_USER = 'onvif-op-7Qx';
const CAM_PASS = 'Cam#Pass&2026-Zr4';
let h: SystemHarness;
let main: DebianRtspServer;
let sub: DebianRtspServer;
let sim: OnvifCameraSim;
let cameraId: number;
let countyA: number;
const tokens: Record<string, string> = {};

before(async () => {
  [h, main, sub] = await Promise.all([
    startSystemHarness(),
    DebianRtspServer.start({ width: 1280, height: 720, profile: 'high', fps: 15, path: '/Streaming/Channels/101', auth: { user: CAM_USER, password: CAM_PASS } }),
    DebianRtspServer.start({ width: 320, height: 180, profile: 'baseline', fps: 15, path: '/Streaming/Channels/102', auth: { user: CAM_USER, password: CAM_PASS } }),
  ]);
  sim = await OnvifCameraSim.start({
    username: CAM_USER,
    password: CAM_PASS,
    profiles: [
      { token: 'Profile_101', name: 'mainStream', encoding: 'H264', h264Profile: 'High', width: 1280, height: 720, fps: 15, bitrateKbps: 2048, streamUri: main.url },
      { token: 'Profile_102', name: 'subStream', encoding: 'H264', h264Profile: 'Baseline', width: 320, height: 180, fps: 15, bitrateKbps: 256, streamUri: sub.url },
    ],
  });
  const pool = h.db.pool;
  countyA = h.demo.unitIds.county[0]!;
  const countyB = h.demo.unitIds.county[1]!;
  const hash = (await pool.query<{ password_hash: string }>(`SELECT password_hash FROM users WHERE username = 'wf.admin'`)).rows[0]!.password_hash;
  for (const [name, role, unit] of [
    ['onvif.opA', 'operator', countyA],
    ['onvif.opB', 'operator', countyB],
    ['onvif.supA', 'supervisor', countyA],
  ] as const) {
    await pool.query(`INSERT INTO users (username, display_name, unit_id, role, password_hash) VALUES ($1, $1, $2, $3, $4)`, [name, unit, role, hash]);
    tokens[name] = await h.login(name);
  }
  // As an operator typed it: the camera's address (a path that is not the stream) and its credentials.
  cameraId = (
    await pool.query<{ id: number }>(`INSERT INTO cameras (unit_id, name, rtsp_url, username, password) VALUES ($1, 'ONVIF摄像机', $2, $3, $4) RETURNING id`, [
      countyA,
      `rtsp://127.0.0.1:${main.port}/typed-by-hand`,
      CAM_USER,
      CAM_PASS,
    ])
  ).rows[0]!.id;
});

after(async () => {
  await h?.close();
  await sim?.close();
  await Promise.all([main?.close(), sub?.close()]);
});

async function call(user: string, method: string, path: string, body?: unknown): Promise<{ status: number; body: Record<string, unknown>; text: string }> {
  const res = await fetch(`${h.baseUrl}${path}`, {
    method,
    headers: { authorization: `Bearer ${tokens[user]!}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  const text = await res.text();
  assert.ok(!text.includes(CAM_PASS) && !text.includes(CAM_USER), `no camera credential in the answer to ${method} ${path}: ${text.slice(0, 200)}`);
  return { status: res.status, body: (text ? JSON.parse(text) : {}) as Record<string, unknown>, text };
}

const audits = async (username: string, action: string): Promise<Array<{ detail: Record<string, unknown> }>> =>
  (await h.db.pool.query<{ detail: Record<string, unknown> }>('SELECT detail FROM audit_log WHERE username = $1 AND action = $2 ORDER BY id', [username, action])).rows;

test('the county operator discovers and applies; stored addresses carry no credentials; another county gets 404', async () => {
  // Another county's operator: 404 like a missing camera, and the camera is not asked anything.
  const heard = sim.requests.length;
  const outsider = await call('onvif.opB', 'POST', `/api/cameras/${cameraId}/onvif/discover`, { port: sim.port });
  assert.equal(outsider.status, 404, outsider.text);
  assert.equal((outsider.body.error as { code: string }).code, 'not_found');
  const missing = await call('onvif.opB', 'POST', '/api/cameras/999999/onvif/discover', { port: sim.port });
  assert.equal(missing.text, outsider.text, 'indistinguishable from a camera that does not exist');
  assert.equal(sim.requests.length, heard, 'the camera heard nothing');
  // A supervisor may watch but not read ONVIF.
  assert.equal((await call('onvif.supA', 'POST', `/api/cameras/${cameraId}/onvif/discover`, { port: sim.port })).status, 403);

  // Read only first: nothing stored.
  const read = await call('onvif.opA', 'POST', `/api/cameras/${cameraId}/onvif/discover`, { port: sim.port, snapshot: true });
  assert.equal(read.status, 200, read.text);
  assert.equal(read.body.applied, false);
  assert.deepEqual((read.body.profiles as Array<{ token: string; width: number }>).map((p) => [p.token, p.width]), [['Profile_101', 1280], ['Profile_102', 320]]);
  assert.equal(read.body.main_stream_uri, main.url);
  assert.equal(read.body.sub_stream_uri, sub.url);
  assert.match(String(read.body.snapshot), /^data:image\/jpeg;base64,\/9j\//, 'the snapshot, fetched server-side with the stored credentials');
  const untouched = (await h.db.pool.query('SELECT rtsp_url, sub_stream_url FROM cameras WHERE id = $1', [cameraId])).rows[0];
  assert.deepEqual(untouched, { rtsp_url: `rtsp://127.0.0.1:${main.port}/typed-by-hand`, sub_stream_url: null });

  const applied = await call('onvif.opA', 'POST', `/api/cameras/${cameraId}/onvif/discover`, { port: sim.port, apply: true });
  assert.equal(applied.status, 200, applied.text);
  assert.equal(applied.body.applied, true);
  const row = (
    await h.db.pool.query<{ rtsp_url: string; sub_stream_url: string; snapshot_url: string; onvif_port: number; onvif_profiles: { profiles: unknown[] }; onvif_checked_at: Date | null; username: string }>(
      'SELECT rtsp_url, sub_stream_url, snapshot_url, onvif_port, onvif_profiles, onvif_checked_at, username FROM cameras WHERE id = $1',
      [cameraId],
    )
  ).rows[0]!;
  assert.equal(row.rtsp_url, main.url);
  assert.equal(row.sub_stream_url, sub.url);
  assert.equal(row.snapshot_url, `http://127.0.0.1:${sim.port}/onvif/snapshot?token=Profile_101`);
  assert.equal(row.onvif_port, sim.port);
  assert.equal(row.onvif_profiles.profiles.length, 2);
  assert.ok(row.onvif_checked_at);
  assert.equal(row.username, CAM_USER, 'the camera keeps its credentials (same host)');
  for (const u of [row.rtsp_url, row.sub_stream_url, row.snapshot_url, JSON.stringify(row.onvif_profiles)]) {
    assert.ok(!u.includes('@') && !u.includes(CAM_PASS) && !u.includes(CAM_USER), `stored without credentials: ${u}`);
  }
  // The camera list shows the addresses (no credentials, as ever).
  const listed = await call('onvif.opA', 'GET', `/api/cameras/${cameraId}`);
  assert.equal(listed.body.sub_stream_url, sub.url);

  const rows = await audits('onvif.opA', 'camera.onvif.discover');
  assert.deepEqual(rows.map((r) => [r.detail.ok, r.detail.apply]), [[true, false], [true, true]]);
  assert.deepEqual(await audits('onvif.opB', 'camera.onvif.discover'), [], 'nothing was read for the outsider');
});

test('probe before the camera exists: stored nothing, audited; wrong password is onvif_auth_failed; outsider 404', async () => {
  const before = Number((await h.db.pool.query<{ n: string }>('SELECT count(*) AS n FROM cameras')).rows[0]!.n);
  const body = { host: '127.0.0.1', port: sim.port, username: CAM_USER, password: CAM_PASS };
  const ok = await call('onvif.opA', 'POST', `/api/units/${countyA}/onvif/probe`, body);
  assert.equal(ok.status, 200, ok.text);
  assert.equal(ok.body.main_stream_uri, main.url);
  assert.equal(ok.body.sub_stream_uri, sub.url);
  const wrong = await call('onvif.opA', 'POST', `/api/units/${countyA}/onvif/probe`, { ...body, password: 'not-it' });
  assert.equal(wrong.status, 502, wrong.text);
  assert.equal((wrong.body.error as { code: string }).code, 'onvif_auth_failed');
  assert.match((wrong.body.error as { message: string }).message, /用户名或密码错误/);
  const outsider = await call('onvif.opB', 'POST', `/api/units/${countyA}/onvif/probe`, body);
  assert.equal(outsider.status, 404, outsider.text);
  const bad = await call('onvif.opA', 'POST', `/api/units/${countyA}/onvif/probe`, { ...body, host: 'x y', extra: 1 });
  assert.equal(bad.status, 400, 'the body is validated');
  assert.equal(Number((await h.db.pool.query<{ n: string }>('SELECT count(*) AS n FROM cameras')).rows[0]!.n), before, 'nothing stored');
  const rows = await audits('onvif.opA', 'camera.onvif.probe');
  assert.deepEqual(rows.map((r) => [r.detail.ok, r.detail.reason ?? null]), [[true, null], [false, 'auth']]);
  assert.ok(rows.every((r) => !JSON.stringify(r.detail).includes(CAM_PASS)), 'the audit holds no password');
});

test("the wall's tile pulls the sub-stream, the inspection view the main stream", async () => {
  const mainPlays = main.plays;
  const subPlays = sub.plays;
  const tile = await call('onvif.supA', 'POST', `/api/cameras/${cameraId}/live`, { stream: 'sub' });
  assert.equal(tile.status, 201, tile.text);
  assert.equal(tile.body.stream, 'sub');
  assert.equal(tile.body.room, liveRoomFor(cameraId, 'sub'));
  await sub.waitForSessions((s) => s.plays > subPlays);
  assert.equal(main.plays, mainPlays, 'the main stream was not pulled for the tile');
  assert.ok(h.sfu.rooms.get(liveRoomFor(cameraId, 'sub')), 'the sub-stream room is open');

  const inspect = await call('onvif.supA', 'POST', `/api/cameras/${cameraId}/live`);
  assert.equal(inspect.status, 201, inspect.text);
  assert.equal(inspect.body.stream, 'main');
  assert.equal(inspect.body.room, liveRoomFor(cameraId));
  await main.waitForSessions((s) => s.plays > mainPlays);
  assert.equal(sub.plays, subPlays + 1, 'one pull of the sub-stream, shared');

  const views = await audits('onvif.supA', 'camera.live.view');
  assert.deepEqual(views.map((v) => v.detail.stream), ['sub', 'main']);
  const state = await call('onvif.supA', 'GET', `/api/cameras/${cameraId}/live?stream=sub`);
  assert.equal(state.status, 200);
  assert.notEqual(state.body.state, 'idle');
});

test("the camera's credentials go to a sub-stream only on the main stream's host; no sub-stream falls back to main", () => {
  const row = { rtsp_url: 'rtsp://10.1.2.3:554/main', username: 'u1', password: 'p@ss' };
  assert.deepEqual(livePull({ ...row, sub_stream_url: 'rtsp://10.1.2.3:8554/sub' }, 'sub'), { stream: 'sub', pullUrl: 'rtsp://u1:p%40ss@10.1.2.3:8554/sub' });
  // An address pointed elsewhere (by a PATCH of sub_stream_url) is pulled without them.
  assert.deepEqual(livePull({ ...row, sub_stream_url: 'rtsp://203.0.113.9/sub' }, 'sub'), { stream: 'sub', pullUrl: 'rtsp://203.0.113.9/sub' });
  assert.deepEqual(livePull({ ...row, sub_stream_url: null }, 'sub'), { stream: 'main', pullUrl: 'rtsp://u1:p%40ss@10.1.2.3:554/main' });
  assert.deepEqual(livePull({ ...row, sub_stream_url: 'rtsp://10.1.2.3:8554/sub' }, 'main').stream, 'main');
});
