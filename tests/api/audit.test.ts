import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { hashPassword } from '../../infra/auth/password.ts';
import { audit } from '../../web/api/audit.ts';
import { startHarness, type Harness } from './harness.ts';

// Audit rows for logins and for every view of a camera (and, through the shared helper, of a recording).

let h: Harness;
let token: string;
let cameraId: number;
let townId: number;

before(async () => {
  h = await startHarness();
  const q = async (sql: string, p: unknown[] = []): Promise<number> => (await h.db.pool.query<{ id: number }>(sql, p)).rows[0]!.id;
  const city = await q(`INSERT INTO units (level, name) VALUES ('city', '潍坊市') RETURNING id`);
  townId = await q(`INSERT INTO units (parent_id, level, name) VALUES ($1, 'town', '柳疃镇') RETURNING id`, [city]);
  cameraId = await q(`INSERT INTO cameras (unit_id, name, rtsp_url, username, password) VALUES ($1, '会议室', 'rtsp://10.0.0.7/ch1', 'admin', 'Hk12345!') RETURNING id`, [townId]);
  await h.db.pool.query(`INSERT INTO users (username, display_name, unit_id, role, password_hash) VALUES ('sup', '督导', $1, 'supervisor', $2)`, [townId, await hashPassword('supervise-2026')]);
  token = await h.login('sup', 'supervise-2026');
});

after(async () => {
  await h?.close();
});

test('every camera view writes an audit row naming who, what, where', async () => {
  for (let i = 0; i < 3; i++) assert.equal((await h.call('GET', `/api/cameras/${cameraId}`, { token })).status, 200);
  const { rows } = await h.db.pool.query(`SELECT username, object_type, object_id, unit_id, ip FROM audit_log WHERE action = 'camera.view' ORDER BY id`);
  assert.equal(rows.length, 3);
  assert.deepEqual(rows[0], { username: 'sup', object_type: 'camera', object_id: String(cameraId), unit_id: townId, ip: '127.0.0.1' });
  // a view that is refused (no such camera) records nothing
  assert.equal((await h.call('GET', `/api/cameras/${cameraId + 1000}`, { token })).status, 404);
  const after = await h.db.pool.query(`SELECT count(*)::int AS n FROM audit_log WHERE action = 'camera.view'`);
  assert.equal(after.rows[0].n, 3);
});

test('logins are audited, and the audit API shows them to a supervisor', async () => {
  assert.equal((await h.call('POST', '/api/auth/login', { body: { username: 'sup', password: 'wrong-password' } })).status, 401);
  const r = await h.call('GET', '/api/audit?action=login.fail', { token });
  assert.equal(r.status, 200);
  const items = (r.body as { items: Array<{ username: string; detail: { reason: string } }> }).items;
  assert.equal(items.length, 1);
  assert.equal(items[0]!.detail.reason, 'bad_password');
  const ok = await h.call('GET', '/api/audit?action=login.ok', { token });
  assert.equal((ok.body as { items: unknown[] }).items.length, 1);
  const views = await h.call('GET', `/api/audit?object_type=camera&object_id=${cameraId}`, { token });
  assert.equal((views.body as { items: unknown[] }).items.length, 3);
});

test('the shared audit helper records recording views, and the log is append-only', async () => {
  await audit(h.db.pool, { action: 'recording.view', user: { id: 1, username: 'sup' }, objectType: 'recording', objectId: 42, unitId: townId, detail: { camera_id: cameraId } });
  const { rows } = await h.db.pool.query(`SELECT object_id, detail FROM audit_log WHERE action = 'recording.view'`);
  assert.deepEqual(rows, [{ object_id: '42', detail: { camera_id: cameraId } }]);
  await assert.rejects(h.db.pool.query(`UPDATE audit_log SET action = 'x'`), /append-only/);
  await assert.rejects(h.db.pool.query(`DELETE FROM audit_log`), /append-only/);
});

test('changes are audited with field names but never values', async () => {
  await h.db.pool.query(`UPDATE users SET role = 'admin' WHERE username = 'sup'`);
  const r = await h.call('PATCH', `/api/cameras/${cameraId}`, { token, body: { password: 'NewSecret-99' } });
  assert.equal(r.status, 200, r.text);
  assert.equal((r.body as { has_credentials: boolean }).has_credentials, true);
  const { rows } = await h.db.pool.query(`SELECT detail::text AS d FROM audit_log WHERE action = 'camera.update'`);
  assert.equal(rows.length, 1);
  assert.match(rows[0].d, /password/);
  assert.ok(!rows[0].d.includes('NewSecret-99'));
});
