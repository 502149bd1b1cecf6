import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { hashPassword } from '../../infra/auth/password.ts';
import { createRecordingRoutes } from '../../web/api/routes/recordings.ts';
import { createTestDatabase } from '../support/database.ts';
import { startS3Fixture, type S3Fixture } from '../support/recorder-fixture.ts';
import { startHarness, type Harness } from './harness.ts';

// Audit rows for logins, for every view of a camera and of a recording, and for changes. Each action is
// done through its own route, and the proof is read back through the audit reader (GET /api/audit),
// never from a row the test wrote.

type AuditItem = { id: number; user_id: number | null; username: string | null; action: string; object_type: string | null; object_id: string | null; unit_id: number | null; ip: string | null; detail: Record<string, unknown> | null };

let h: Harness;
let s3: S3Fixture;
let token: string;
let supId: number;
let cameraId: number;
let townId: number;

/** The audit as its reader route shows it (newest first). */
async function readAudit(query: string, as = token): Promise<AuditItem[]> {
  const r = await h.call('GET', `/api/audit?${query}`, { token: as });
  assert.equal(r.status, 200, r.text);
  return (r.body as { items: AuditItem[] }).items;
}

before(async () => {
  const db = await createTestDatabase();
  s3 = await startS3Fixture();
  // The recordings routes as web/server.ts mounts them (an extra router under /api), over a real S3.
  h = await startHarness({ extraRouters: [{ path: '/api', router: createRecordingRoutes({ pool: db.pool, storage: s3.storage }).router }] }, db);
  const q = async (sql: string, p: unknown[] = []): Promise<number> => (await h.db.pool.query<{ id: number }>(sql, p)).rows[0]!.id;
  const city = await q(`INSERT INTO units (level, name) VALUES ('city', '潍坊市') RETURNING id`);
  townId = await q(`INSERT INTO units (parent_id, level, name) VALUES ($1, 'town', '柳疃镇') RETURNING id`, [city]);
  cameraId = await q(`INSERT INTO cameras (unit_id, name, rtsp_url, username, password) VALUES ($1, '会议室', 'rtsp://10.0.0.7/ch1', 'admin', 'Hk12345!') RETURNING id`, [townId]);
  supId = await q(`INSERT INTO users (username, display_name, unit_id, role, password_hash) VALUES ('sup', '督导', $1, 'supervisor', $2) RETURNING id`, [townId, await hashPassword('supervise-2026')]);
  token = await h.login('sup', 'supervise-2026');
});

after(async () => {
  await h?.close();
  await s3?.close();
});

test('every camera view writes an audit row naming who, what, where', async () => {
  for (let i = 0; i < 3; i++) assert.equal((await h.call('GET', `/api/cameras/${cameraId}`, { token })).status, 200);
  const items = await readAudit('action=camera.view');
  assert.equal(items.length, 3);
  for (const it of items) {
    assert.deepEqual({ user_id: it.user_id, username: it.username, action: it.action, object_type: it.object_type, object_id: it.object_id, unit_id: it.unit_id, ip: it.ip },
      { user_id: supId, username: 'sup', action: 'camera.view', object_type: 'camera', object_id: String(cameraId), unit_id: townId, ip: '127.0.0.1' });
  }
  // a view that is refused (no such camera) records nothing
  assert.equal((await h.call('GET', `/api/cameras/${cameraId + 1000}`, { token })).status, 404);
  assert.equal((await readAudit('action=camera.view')).length, 3);
});

test('logins are audited, and the audit API shows them to a supervisor', async () => {
  assert.equal((await h.call('POST', '/api/auth/login', { body: { username: 'sup', password: 'wrong-password' } })).status, 401);
  const r = await h.call('GET', '/api/audit?action=login.fail', { token });
  assert.equal(r.status, 200);
  const items = (r.body as { items: Array<{ username: string; detail: { reason: string } }> }).items;
  assert.equal(items.length, 1);
  assert.equal(items[0]!.detail.reason, 'bad_password');
  assert.equal(items[0]!.username, 'sup', 'the failed login names the account tried');
  const ok = await h.call('GET', '/api/audit?action=login.ok', { token });
  assert.equal((ok.body as { items: unknown[] }).items.length, 1);
  const views = await h.call('GET', `/api/audit?object_type=camera&object_id=${cameraId}`, { token });
  assert.equal((views.body as { items: unknown[] }).items.length, 3);
});

test('a recording view through its route is audited, a refused one is not, and the log is append-only', async () => {
  // The segment is fixture data (the recorder would have written it); the audit row is the route's.
  const seg = (await h.db.pool.query<{ id: number }>(
    `INSERT INTO recording_segments (camera_id, started_at, ended_at, bytes, bucket, object_key)
     VALUES ($1, '2026-03-01T02:00:00Z', '2026-03-01T02:00:04Z', 4096, 'recordings', 'cam/audit-test/0001.mp4') RETURNING id`, [cameraId])).rows[0]!.id;
  assert.deepEqual(await readAudit('action=recording.view'), [], 'no recording view before the request');
  const r = await h.call('GET', `/api/recordings/${seg}`, { token });
  assert.equal(r.status, 200, r.text);
  assert.match((r.body as { media_url: string }).media_url, /audit-test/);
  const items = await readAudit('action=recording.view');
  assert.equal(items.length, 1);
  assert.deepEqual({ user_id: items[0]!.user_id, username: items[0]!.username, action: items[0]!.action, object_type: items[0]!.object_type, object_id: items[0]!.object_id, unit_id: items[0]!.unit_id },
    { user_id: supId, username: 'sup', action: 'recording.view', object_type: 'recording', object_id: String(seg), unit_id: townId });
  assert.equal(items[0]!.detail?.camera_id, cameraId);
  // The reader's object filter finds it too; a refused view (not found) adds nothing.
  assert.equal((await readAudit(`object_type=recording&object_id=${seg}`)).length, 1);
  assert.equal((await h.call('GET', `/api/recordings/${seg + 1000}`, { token })).status, 404);
  assert.equal((await readAudit('action=recording.view')).length, 1);
  await assert.rejects(h.db.pool.query(`UPDATE audit_log SET action = 'x'`), /append-only/);
  await assert.rejects(h.db.pool.query(`DELETE FROM audit_log`), /append-only/);
});

test('changes are audited with field names but never values', async () => {
  await h.db.pool.query(`UPDATE users SET role = 'admin' WHERE username = 'sup'`);
  const r = await h.call('PATCH', `/api/cameras/${cameraId}`, { token, body: { password: 'NewSecret-99' } });
  assert.equal(r.status, 200, r.text);
  assert.equal((r.body as { has_credentials: boolean }).has_credentials, true);
  const items = await readAudit('action=camera.update');
  assert.equal(items.length, 1);
  assert.deepEqual([items[0]!.username, items[0]!.object_type, items[0]!.object_id], ['sup', 'camera', String(cameraId)]);
  const d = JSON.stringify(items[0]!.detail);
  assert.match(d, /password/);
  assert.ok(!d.includes('NewSecret-99'));
});
