import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { RtspServer } from '../support/rtsp-server.ts';
import { startSystemHarness, type SystemHarness } from '../support/system-harness.ts';

// A camera's stored username/password are write-only, but the recorder's loopback relay answers the
// Basic challenge of whatever server the camera's address names. Before the fix an operator could
// PATCH only the address to a server of their own, press "test now", and read the camera's password
// from the Authorization header it received. Now a PATCH that points the camera at another host, port
// or scheme without giving credentials drops the stored ones (credentials_cleared, audited); a new
// path on the same host keeps them; credentials given with the new address are stored. Addresses
// carrying credentials themselves (user:pass@, ?user=&password=) are refused.

const USER = 'admin';
const SECRET = 'Cam-Secret-2026!';

let h: SystemHarness;
let attacker: RtspServer;
let operator: string;
let cameraId: number;

type Camera = { id?: number; rtsp_url?: string; has_credentials?: boolean; credentials_cleared?: boolean; error?: { code: string; message: string; details?: Array<{ path: string; message: string }> } };
type TestResult = { ok: boolean; reason?: string };

before(async () => {
  h = await startSystemHarness({ villages: 2 });
  // The hostile server demands Basic credentials of every reader, as a real camera would.
  attacker = await RtspServer.start(0, '127.0.0.1', { auth: { scheme: 'basic', username: 'attacker', password: 'Attacker-Pass-1' } });
  const op = h.demo.users.find((u) => u.role === 'operator' && u.level === 'county')!;
  operator = await h.login(op.username);
  const { rows } = await h.db.pool.query<{ id: number }>(
    `SELECT c.id FROM cameras c JOIN units u ON u.id = c.unit_id
      WHERE u.path LIKE (SELECT path FROM units WHERE id = $1) || '%' ORDER BY c.id LIMIT 1`,
    [op.unitId],
  );
  cameraId = rows[0]!.id;
});

after(async () => {
  await h?.close();
  await attacker?.close();
});

async function setCamera(url: string, username: string | null, password: string | null): Promise<void> {
  await h.db.pool.query('UPDATE cameras SET rtsp_url = $1, username = $2, password = $3 WHERE id = $4', [url, username, password, cameraId]);
}

async function stored(): Promise<{ rtsp_url: string; username: string | null; password: string | null }> {
  const { rows } = await h.db.pool.query<{ rtsp_url: string; username: string | null; password: string | null }>('SELECT rtsp_url, username, password FROM cameras WHERE id = $1', [cameraId]);
  return rows[0]!;
}

const patch = (body: unknown) => h.call<Camera>(operator, 'PATCH', `/api/cameras/${cameraId}`, body);

test("pointing a camera at another server and pressing 'test now' does not hand that server the camera's password", { timeout: 60_000 }, async () => {
  await setCamera('rtsp://10.20.0.1:554/Streaming/Channels/101', USER, SECRET);
  const moved = await patch({ rtsp_url: attacker.url('steal') });
  assert.equal(moved.status, 200, JSON.stringify(moved.body));
  assert.equal(moved.body.credentials_cleared, true);
  assert.equal(moved.body.has_credentials, false);
  assert.deepEqual(await stored(), { rtsp_url: attacker.url('steal'), username: null, password: null });

  const before = attacker.requests.length;
  const tested = await h.call<TestResult>(operator, 'POST', `/api/cameras/${cameraId}/test`);
  assert.equal(tested.status, 200, JSON.stringify(tested.body));
  assert.deepEqual([tested.body.ok, tested.body.reason], [false, 'unauthorized'], 'the hostile server asked for credentials and got none it accepts');
  const seen = attacker.requests.slice(before);
  assert.ok(seen.some((r) => r.method === 'DESCRIBE'), `the test reached the hostile server: ${JSON.stringify(seen)}`);
  const leaked = seen.filter((r) => r.authorization !== undefined);
  assert.deepEqual(leaked, [], 'no Authorization header at all was sent to the new address');
  const oldBasic = Buffer.from(`${USER}:${SECRET}`).toString('base64');
  assert.ok(!attacker.requests.some((r) => r.authorization?.includes(oldBasic)), 'the old credentials never reached it');

  const { rows } = await h.db.pool.query<{ detail: { fields: string[]; credentials_cleared: boolean; endpoint_changed: { from: string; to: string } } }>(
    `SELECT detail FROM audit_log WHERE action = 'camera.update' AND object_id = $1 ORDER BY id DESC LIMIT 1`,
    [cameraId],
  );
  assert.equal(rows[0]?.detail.credentials_cleared, true, JSON.stringify(rows[0]));
  assert.deepEqual(rows[0]!.detail.endpoint_changed, { from: 'rtsp://10.20.0.1:554', to: `rtsp://127.0.0.1:${attacker.port}` });
  assert.ok(!JSON.stringify(rows[0]).includes(SECRET));
});

test('a new path on the same host and port keeps the credentials', async () => {
  await setCamera('rtsp://10.20.0.1/Streaming/Channels/101', USER, SECRET);
  // The same endpoint spelt with its default port: still the same camera.
  const r = await patch({ rtsp_url: 'rtsp://10.20.0.1:554/Streaming/Channels/102', name: '大门' });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  assert.deepEqual([r.body.credentials_cleared, r.body.has_credentials], [false, true]);
  assert.deepEqual(await stored(), { rtsp_url: 'rtsp://10.20.0.1:554/Streaming/Channels/102', username: USER, password: SECRET });
  // A change that leaves the address alone keeps them too.
  assert.equal((await patch({ location: '村委会门口' })).body.credentials_cleared, false);
  assert.deepEqual((await stored()).password, SECRET);
});

test('a change of port or scheme alone counts as another endpoint', async () => {
  await setCamera('rtsp://10.20.0.1:554/ch1', USER, SECRET);
  assert.equal((await patch({ rtsp_url: 'rtsp://10.20.0.1:8554/ch1' })).body.credentials_cleared, true);
  assert.equal((await stored()).password, null);
  await setCamera('rtsps://10.20.0.1/ch1', USER, SECRET);
  assert.equal((await patch({ rtsp_url: 'rtsp://10.20.0.1/ch1' })).body.credentials_cleared, true, 'no downgrade from TLS with the old password');
  assert.equal((await stored()).password, null);
});

test('a new address with new credentials stores the new ones, and they are what the new server receives', { timeout: 60_000 }, async () => {
  await setCamera('rtsp://10.20.0.1:554/Streaming/Channels/101', USER, SECRET);
  const r = await patch({ rtsp_url: attacker.url('cam2'), username: 'attacker', password: 'Attacker-Pass-1' });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  assert.deepEqual([r.body.credentials_cleared, r.body.has_credentials], [false, true]);
  assert.deepEqual(await stored(), { rtsp_url: attacker.url('cam2'), username: 'attacker', password: 'Attacker-Pass-1' });
  const tested = await h.call<TestResult>(operator, 'POST', `/api/cameras/${cameraId}/test`);
  // The server checks credentials before looking the path up: 404 means it accepted them.
  assert.deepEqual([tested.body.ok, tested.body.reason], [false, 'not_found'], JSON.stringify(tested.body));

  // Only a new user name with the new address: the old password is dropped, not paired with it.
  await setCamera('rtsp://10.20.0.1:554/Streaming/Channels/101', USER, SECRET);
  const half = await patch({ rtsp_url: attacker.url('cam3'), username: 'someone' });
  assert.equal(half.body.credentials_cleared, true);
  assert.deepEqual(await stored(), { rtsp_url: attacker.url('cam3'), username: 'someone', password: null });
});

test('addresses that carry credentials themselves are refused, and nothing changes', async () => {
  await setCamera('rtsp://10.20.0.1:554/ch1', USER, SECRET);
  for (const url of [
    'rtsp://admin:secret@10.20.0.9/ch1',
    'rtsp://10.20.0.9/cam/realmonitor?channel=1&user=admin&password=secret',
    'rtsp://10.20.0.9/ch1?pass%77ord=secret',
    'rtsp://10.20.0.9/user=admin_password=secret_channel=1_stream=0.sdp',
    'rtsp://10.20.0.9:99999/ch1',
  ]) {
    const r = await patch({ rtsp_url: url });
    assert.equal(r.status, 400, `${url}: ${JSON.stringify(r.body)}`);
    assert.equal(r.body.error?.code, 'invalid_request');
    assert.ok(r.body.error?.details?.some((d) => d.path === 'body.rtsp_url' && / \/ /.test(d.message)), JSON.stringify(r.body));
  }
  const created = await h.call<Camera>(operator, 'POST', '/api/cameras', { unit_id: h.demo.users.find((u) => u.role === 'operator' && u.level === 'county')!.unitId, name: 'x', rtsp_url: 'rtsp://10.20.0.9/ch1?user=admin&pwd=1' });
  assert.equal(created.status, 400);
  assert.deepEqual(await stored(), { rtsp_url: 'rtsp://10.20.0.1:554/ch1', username: USER, password: SECRET });
  // Ordinary vendor addresses with query parameters still pass.
  const ok = await patch({ rtsp_url: 'rtsp://10.20.0.1/cam/realmonitor?channel=1&subtype=0' });
  assert.equal(ok.status, 200, JSON.stringify(ok.body));
  assert.equal(ok.body.credentials_cleared, false);
});
