import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { CameraNetworks } from '../../infra/net/CameraNetworks.ts';
import { loadConfig } from '../../infra/config.ts';
import { probe } from '../../recorder/probe.ts';
import { pullSource, RtspRestreamer } from '../../recorder/RtspRestreamer.ts';
import { DebianRtspServer } from '../support/debian-rtsp.ts';
import { startSystemHarness, type SystemHarness } from '../support/system-harness.ts';

// The attack: a county operator may add cameras and press "test now" or "read ONVIF". Each makes the
// server open a connection to the address typed. Without a list of camera networks the operator
// could point it at the database, the S3 server, a cloud's metadata service (169.254.169.254) or
// another county's network, and read open ports off the answers. CAMERA_NETWORKS bounds where the
// server connects on a camera's behalf: an IP outside it is refused when typed; a name is resolved
// when connecting and refused unless every address it gives is listed; nothing is ever sent.

/** A service the attacker wants to reach: it counts the connections it is offered and drops them. */
class Listener {
  connections = 0;
  readonly #server: net.Server;
  constructor(readonly host: string) {
    this.#server = net.createServer((s) => {
      this.connections++;
      s.destroy();
    });
  }
  async listen(): Promise<number> {
    await new Promise<void>((r) => this.#server.listen(0, this.host, r));
    return (this.#server.address() as net.AddressInfo).port;
  }
  close(): Promise<void> {
    return new Promise((r) => this.#server.close(() => r()));
  }
}

describe('CAMERA_NETWORKS: which addresses count as a camera network', () => {
  test('private ranges without link-local or public addresses; loopback by default only on a loopback server; mapped IPv6 and names unwrapped', async () => {
    const list = new CameraNetworks('private');
    for (const ip of ['10.1.2.3', '172.16.0.9', '192.168.1.64', '100.64.1.1', 'fd00::5']) assert.equal(list.literalRefusal(ip), undefined, ip);
    for (const ip of ['127.0.0.1', '169.254.169.254', '8.8.8.8', '0.0.0.0', '::1', '::ffff:127.0.0.1', '[::ffff:7f00:1]', '172.32.0.1']) {
      assert.match(list.literalRefusal(ip) ?? '', /CAMERA_NETWORKS/, ip);
    }
    assert.equal(list.literalRefusal('cam1.county.lan'), undefined, 'a name is judged when it is resolved');
    assert.match((await list.refusal('localhost')) ?? '', /resolves outside/);
    assert.equal(await new CameraNetworks('private,localhost').refusal('localhost'), undefined, 'a listed name is trusted as it resolves');
    assert.equal(CameraNetworks.defaultFor('127.0.0.1'), 'private,loopback');
    assert.equal(CameraNetworks.defaultFor('0.0.0.0'), 'private');
    assert.equal(CameraNetworks.defaultFor('203.0.113.7'), 'private');
    assert.throws(() => loadConfig({ CAMERA_NETWORKS: 'private,10.0.0.0/99' }), /CAMERA_NETWORKS.*bad prefix length/s);
    assert.equal(loadConfig({ CAMERA_NETWORKS: 'private, 203.0.113.0/24, *.cam.example' }).CAMERA_NETWORKS, 'private, 203.0.113.0/24, *.cam.example');
  });
});

describe('the server connects on a camera\'s behalf only inside CAMERA_NETWORKS', () => {
  let h: SystemHarness;
  let cam: DebianRtspServer;
  let db: Listener;
  let dbPort: number;
  let operator: string;
  let unitId: number;
  let unitCode: string;

  before(async () => {
    // 127.0.0.2 stands for the county's camera network; 127.0.0.1 for the server's own services.
    h = await startSystemHarness({ villages: 2, cameraNetworks: '10.0.0.0/8,192.168.0.0/16,127.0.0.2/32' });
    cam = await DebianRtspServer.start({ codec: 'h264', fps: 10, host: '127.0.0.2' });
    db = new Listener('127.0.0.1');
    dbPort = await db.listen();
    const op = h.demo.users.find((u) => u.role === 'operator' && u.level === 'county')!;
    operator = await h.login(op.username);
    unitId = op.unitId;
    unitCode = (await h.db.pool.query<{ code: string }>('SELECT code FROM units WHERE id = $1', [unitId])).rows[0]!.code;
  });

  after(async () => {
    await h?.close();
    await cam?.close();
    await db?.close();
  });

  type Answer = { id?: number; ok?: boolean; reason?: string; message?: string; video_codec?: string; error?: { code: string; message: string; details?: unknown } };
  const create = (rtsp_url: string) => h.call<Answer>(operator, 'POST', '/api/cameras', { unit_id: unitId, name: `网段测试 ${rtsp_url.slice(7, 40)}`, rtsp_url });

  test('an address outside the list is refused when typed, by the field; in a CSV import the line is named and nothing is written', async () => {
    for (const url of [`rtsp://127.0.0.1:${dbPort}/x`, 'rtsp://169.254.169.254/latest', `rtsp://[::ffff:127.0.0.1]:${dbPort}/x`, 'rtsp://8.8.8.8/live']) {
      const r = await create(url);
      assert.equal(r.status, 400, `${url}: ${JSON.stringify(r.body)}`);
      const details = r.body.error?.details as Array<{ path: string; message: string }>;
      assert.ok(details.some((d) => d.path === 'body.rtsp_url' && /CAMERA_NETWORKS/.test(d.message)), JSON.stringify(details));
    }
    const inside = await create('rtsp://192.168.1.64:554/Streaming/Channels/101');
    assert.equal(inside.status, 201, JSON.stringify(inside.body));
    const snap = await h.call<Answer>(operator, 'PATCH', `/api/cameras/${inside.body.id}`, { snapshot_url: `http://127.0.0.1:${dbPort}/snapshot.jpg` });
    assert.equal(snap.status, 400, JSON.stringify(snap.body));
    assert.match(JSON.stringify(snap.body.error?.details), /body\.snapshot_url.*CAMERA_NETWORKS/);

    const before = (await h.db.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM cameras')).rows[0]!.n;
    const csv = `unit_code,name,rtsp_url,username,password,location\n${unitCode},大门,rtsp://192.168.1.65/ch1,,,\n${unitCode},机房,rtsp://127.0.0.1:${dbPort}/x,,,\n`;
    const res = await fetch(`${h.baseUrl}/api/cameras/import`, { method: 'POST', headers: { authorization: `Bearer ${operator}`, 'content-type': 'text/csv' }, body: csv });
    const body = (await res.json()) as { error: { code: string; details: { issues: Array<{ line: number; field?: string; message: string }> } } };
    assert.equal(res.status, 422, JSON.stringify(body));
    assert.deepEqual(body.error.details.issues.map((i) => [i.line, i.field]), [[3, 'rtsp_url']]);
    assert.equal((await h.db.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM cameras')).rows[0]!.n, before, 'nothing written');
    assert.equal(db.connections, 0);
  });

  test('a name that resolves outside the list: "test now" and ONVIF refuse it without a packet; refusals are audited', async () => {
    // Names are accepted when typed (the camera's DNS may not exist yet) and judged at each connection.
    const named = await create(`rtsp://localhost:${dbPort}/x`);
    assert.equal(named.status, 201, JSON.stringify(named.body));
    const tested = await h.call<Answer>(operator, 'POST', `/api/cameras/${named.body.id}/test`);
    assert.equal(tested.status, 200, JSON.stringify(tested.body));
    assert.deepEqual([tested.body.ok, tested.body.reason], [false, 'not_allowed'], JSON.stringify(tested.body));
    assert.match(tested.body.message ?? '', /CAMERA_NETWORKS/);

    for (const host of ['127.0.0.1', 'localhost', '169.254.169.254']) {
      const probed = await h.call<Answer>(operator, 'POST', `/api/units/${unitId}/onvif/probe`, { host, port: dbPort, username: 'admin', password: 'x' });
      assert.equal(probed.status, 422, `${host}: ${JSON.stringify(probed.body)}`);
      assert.equal(probed.body.error?.code, 'camera_network_refused');
    }
    const discovered = await h.call<Answer>(operator, 'POST', `/api/cameras/${named.body.id}/onvif/discover`, { port: dbPort });
    assert.equal(discovered.status, 422, JSON.stringify(discovered.body));
    assert.equal(db.connections, 0, 'the service behind the refused addresses was never connected to');

    const { rows } = await h.db.pool.query<{ action: string; detail: { reason?: string; ok?: boolean } }>(
      `SELECT action, detail FROM audit_log WHERE action IN ('camera.test', 'camera.onvif.probe', 'camera.onvif.discover') ORDER BY id`,
    );
    assert.deepEqual(rows.map((r) => [r.action, r.detail.reason]), [
      ['camera.test', 'not_allowed'],
      ['camera.onvif.probe', 'not_allowed'],
      ['camera.onvif.probe', 'not_allowed'],
      ['camera.onvif.probe', 'not_allowed'],
      ['camera.onvif.discover', 'not_allowed'],
    ]);
  });

  test('a camera inside the list is tested as before (the check can pass)', async () => {
    const inside = await create(`rtsp://127.0.0.2:${cam.port}/stream`);
    assert.equal(inside.status, 201, JSON.stringify(inside.body));
    const tested = await h.call<Answer>(operator, 'POST', `/api/cameras/${inside.body.id}/test`);
    assert.deepEqual([tested.status, tested.body.ok, tested.body.video_codec], [200, true, 'h264'], JSON.stringify(tested.body).slice(0, 300));
  });

  test('the recorder\'s restreamer (recordings, live views) never connects outside its list: the reader is told 403', async () => {
    const r = await RtspRestreamer.start({ networks: new CameraNetworks('127.0.0.2/32'), lingerMs: 100 });
    try {
      const refused = await pullSource(`rtsp://127.0.0.1:${dbPort}/stream`, { restreamer: r });
      await assert.rejects(probe(refused.url, { rtspTimeoutMs: 3_000, timeoutMs: 6_000 }), /403|Forbidden/);
      await refused.close();
      const viaName = await pullSource(`rtsp://localhost:${dbPort}/x`, { restreamer: r });
      await assert.rejects(probe(viaName.url, { rtspTimeoutMs: 3_000, timeoutMs: 6_000 }), /403|Forbidden/);
      await viaName.close();
      assert.equal(db.connections, 0, 'nothing connected to the service outside the list');
      const allowed = await pullSource(`rtsp://127.0.0.2:${cam.port}/stream`, { restreamer: r });
      const info = await probe(allowed.url, { rtspTimeoutMs: 5_000, timeoutMs: 10_000 });
      assert.equal(info.videoCodec, 'h264');
      await allowed.close();
    } finally {
      await r.close();
    }
  });
});
