import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { RtspServer } from '../support/rtsp-server.ts';
import { TestCamera } from '../support/rtsp-camera.ts';
import { startSystemHarness, type SystemHarness } from '../support/system-harness.ts';

// Live inspection starts an ffmpeg pull per camera on the node. Before the caps one supervisor could
// ask for every camera of the county and take all of the node's pulls; a full node answered 502
// "camera unreachable", so an operator chased a camera fault that was not there. Here (caps lowered
// to 2 per person and 3 per node) a person's third camera gets 429, a full node 503, and cameras the
// person already watches stay available.

let h: SystemHarness;
let rtsp: RtspServer;
let camera: TestCamera;
let cameraIds: number[];
let countySupervisor: string;
let citySupervisor: string;

before(async () => {
  h = await startSystemHarness({ villages: 8, liveCameras: { maxCameras: 3, maxPerUser: 2 } });
  rtsp = await RtspServer.start();
  camera = new TestCamera({ server: rtsp, path: 'wall', audio: 'none' });
  await camera.start();
  const sup = h.demo.users.find((u) => u.role === 'supervisor' && u.level === 'county')!;
  countySupervisor = sup.username;
  citySupervisor = h.demo.users.find((u) => u.role === 'supervisor' && u.level === 'city')!.username;
  const { rows } = await h.db.pool.query<{ id: number }>(
    `SELECT c.id FROM cameras c JOIN units u ON u.id = c.unit_id
      WHERE u.path LIKE (SELECT path FROM units WHERE id = $1) || '%' ORDER BY c.id LIMIT 4`,
    [sup.unitId],
  );
  assert.equal(rows.length, 4, 'the county has four cameras');
  cameraIds = rows.map((r) => r.id);
  // Four cameras on one real RTSP stream (each is its own pull on the node).
  await h.db.pool.query('UPDATE cameras SET rtsp_url = $1, username = NULL, password = NULL, enabled = true WHERE id = ANY($2)', [camera.url, cameraIds]);
});

after(async () => {
  await h?.close();
  await camera?.stop();
  await rtsp?.close();
});

type Live = { token?: string; room?: string; error?: { code: string; message: string } };
const live = async (token: string, id: number) => h.call<Live>(token, 'POST', `/api/cameras/${id}/live`);

test('one person cannot take every pull, and a full node says busy, not unreachable', async () => {
  const county = await h.login(countySupervisor);
  const city = await h.login(citySupervisor);
  const [a, b, c, d] = cameraIds as [number, number, number, number];

  assert.equal((await live(county, a)).status, 201);
  assert.equal((await live(county, b)).status, 201);
  const third = await live(county, c);
  assert.equal(third.status, 429, JSON.stringify(third.body));
  assert.equal(third.body.error?.code, 'live_limit');
  assert.match(third.body.error!.message, /每人.*\/ at most 2 live cameras per person/);
  // A camera the person already watches is not a new one (token refresh, page reload).
  const again = await live(county, a);
  assert.equal(again.status, 201);
  assert.ok(again.body.token);

  // Someone else fills the node's third pull; the fourth camera finds the node full.
  assert.equal((await live(city, c)).status, 201);
  const full = await live(city, d);
  assert.equal(full.status, 503, JSON.stringify(full.body));
  assert.equal(full.body.error?.code, 'live_busy');
  // Cameras already pulled are still served to anyone in scope.
  assert.equal((await live(city, a)).status, 201);

  const { rows } = await h.db.pool.query<{ n: string }>(`SELECT count(*) AS n FROM audit_log WHERE action = 'camera.live.view'`);
  assert.equal(Number(rows[0]!.n), 5, 'only granted views are audited as views');
});
