import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { hashPassword } from '../../infra/auth/password.ts';
import { startHarness, type Harness } from './harness.ts';

// Bad input gets a clear, bilingual, field-level error and changes nothing; SFU nodes link into the
// cascade by the tree; the OpenAPI document describes the routes.

let h: Harness;
let token: string;
const ids: Record<string, number> = {};

before(async () => {
  h = await startHarness();
  const q = async (sql: string, p: unknown[] = []): Promise<number> => (await h.db.pool.query<{ id: number }>(sql, p)).rows[0]!.id;
  ids.city = await q(`INSERT INTO units (level, name) VALUES ('city', '潍坊市') RETURNING id`);
  ids.county = await q(`INSERT INTO units (parent_id, level, name) VALUES ($1, 'county', '寿光市') RETURNING id`, [ids.city]);
  ids.town = await q(`INSERT INTO units (parent_id, level, name) VALUES ($1, 'town', '洛城街道') RETURNING id`, [ids.county]);
  ids.village = await q(`INSERT INTO units (parent_id, level, name) VALUES ($1, 'village', '东斟灌村') RETURNING id`, [ids.town]);
  ids.branch = await q(`INSERT INTO branches (unit_id, name) VALUES ($1, '东斟灌村党支部') RETURNING id`, [ids.village]);
  await h.db.pool.query(`INSERT INTO users (username, display_name, unit_id, role, password_hash) VALUES ('root', '管理员', $1, 'admin', $2)`, [ids.city, await hashPassword('root-pass-2026')]);
  token = await h.login('root', 'root-pass-2026');
});

after(async () => {
  await h?.close();
});

test('invalid bodies, params and queries are refused with field paths and bilingual messages', async () => {
  const cases: Array<[string, string, unknown, string]> = [
    ['POST', '/api/cameras', { unit_id: ids.village, name: 'x', rtsp_url: 'http://x' }, 'body.rtsp_url'],
    ['POST', '/api/cameras', { unit_id: ids.village, name: 'x', rtsp_url: 'rtsp://h/x', extra: 1 }, 'body'],
    ['POST', '/api/members', { branch_id: ids.branch, name: '张三', mobile: 'abc' }, 'body.mobile'],
    ['POST', '/api/members', { branch_id: ids.branch, name: '张三', beidou_card: '12' }, 'body.beidou_card'],
    ['POST', '/api/units', { parent_id: ids.town, level: 'planet', name: 'x' }, 'body.level'],
    ['POST', '/api/users', { username: 'a b', display_name: 'x', unit_id: ids.town, role: 'clerk', password: 'longenough' }, 'body.username'],
    ['POST', '/api/users', { username: 'abc', display_name: 'x', unit_id: ids.town, role: 'king', password: 'longenough' }, 'body.role'],
    ['POST', '/api/users', { username: 'abc', display_name: 'x', unit_id: ids.town, role: 'clerk', password: 'short' }, 'body.password'],
    ['PATCH', `/api/branches/${ids.branch}`, {}, 'body'],
    ['GET', '/api/units/-3', undefined, 'params.id'],
    ['GET', '/api/cameras?limit=100000', undefined, 'query.limit'],
    ['GET', '/api/units?level=galaxy', undefined, 'query.level'],
  ];
  const before = await h.db.pool.query(`SELECT (SELECT count(*) FROM cameras) + (SELECT count(*) FROM members) + (SELECT count(*) FROM users) + (SELECT count(*) FROM units) AS n`);
  for (const [method, path, body, field] of cases) {
    const r = await h.call(method, path, { token, body });
    assert.equal(r.status, 400, `${method} ${path}: ${r.text}`);
    const e = (r.body as { error: { code: string; message: string; details: Array<{ path: string }> } }).error;
    assert.equal(e.code, 'invalid_request');
    assert.match(e.message, /[\u4e00-\u9fff].* \/ [a-z]/u, 'Chinese / English');
    assert.ok(e.details.some((d) => d.path === field || d.path.startsWith(field)), `${method} ${path} names ${field}: ${JSON.stringify(e.details)}`);
  }
  const bad = await h.call('POST', '/api/units', { token, raw: '{"parent_id": 1,', contentType: 'application/json' });
  assert.equal(bad.status, 400);
  assert.equal((bad.body as { error: { code: string } }).error.code, 'malformed_body');
  const big = await h.call('POST', '/api/units', { token, raw: JSON.stringify({ name: 'x'.repeat(2_000_000) }), contentType: 'application/json' });
  assert.equal(big.status, 413);
  const after = await h.db.pool.query(`SELECT (SELECT count(*) FROM cameras) + (SELECT count(*) FROM members) + (SELECT count(*) FROM users) + (SELECT count(*) FROM units) AS n`);
  assert.deepEqual(after.rows, before.rows, 'nothing written');
  // the server is still fine
  assert.equal((await h.call('GET', '/api/units', { token })).status, 200);
});

test('database rules become clear 4xx answers', async () => {
  const m = { branch_id: ids.branch, name: '李四', is_secretary: true, mobile: '13800000001' };
  assert.equal((await h.call('POST', '/api/members', { token, body: m })).status, 201);
  const second = await h.call('POST', '/api/members', { token, body: { ...m, name: '王五' } });
  assert.equal(second.status, 409, 'one secretary per branch');
  const noCard = await h.call('POST', '/api/members', { token, body: { branch_id: ids.branch, name: '赵六', preferred_channel: 'beidou' } });
  assert.equal(noCard.status, 422, noCard.text);
  assert.equal((noCard.body as { error: { code: string } }).error.code, 'contact_missing');
  const under = await h.call('POST', '/api/units', { token, body: { parent_id: ids.village, level: 'town', name: '倒挂镇' } });
  assert.equal(under.status, 422);
  const dupUser = await h.call('POST', '/api/users', { token, body: { username: 'root', display_name: 'x', unit_id: ids.town, role: 'clerk', password: 'longenough' } });
  assert.equal(dupUser.status, 409);
  // an account that has signed in has audit history: it can be disabled, not deleted
  const made = await h.call('POST', '/api/users', { token, body: { username: 'clerk1', display_name: '办事员', unit_id: ids.town, role: 'clerk', password: 'clerk-pass-1' } });
  assert.equal(made.status, 201);
  await h.login('clerk1', 'clerk-pass-1');
  const id = (made.body as { id: number }).id;
  const del = await h.call('DELETE', `/api/users/${id}`, { token });
  assert.equal(del.status, 409);
  assert.equal((del.body as { error: { code: string } }).error.code, 'has_history');
  assert.equal((await h.call('PATCH', `/api/users/${id}`, { token, body: { disabled: true } })).status, 200);
  assert.equal((await h.call('POST', '/api/auth/login', { body: { username: 'clerk1', password: 'clerk-pass-1' } })).status, 401);
});

test('SFU nodes attach to the nearest ancestor node and re-link when nodes come and go', async () => {
  const mk = async (unit: number, name: string): Promise<{ id: number; parent_node_id: number | null }> => {
    const r = await h.call('POST', '/api/sfu-nodes', { token, body: { unit_id: unit, name, signalling_url: `wss://${name}.example/ws` } });
    assert.equal(r.status, 201, r.text);
    return r.body as { id: number; parent_node_id: number | null };
  };
  const parentOf = async (id: number): Promise<number | null> => (await h.db.pool.query<{ p: number | null }>('SELECT parent_node_id AS p FROM sfu_nodes WHERE id = $1', [id])).rows[0]!.p;
  const city = await mk(ids.city!, 'city');
  const town = await mk(ids.town!, 'town');
  assert.equal(city.parent_node_id, null);
  assert.equal(town.parent_node_id, city.id, 'town attaches to the city while the county has no node');
  const county = await mk(ids.county!, 'county');
  assert.equal(county.parent_node_id, city.id);
  assert.equal(await parentOf(town.id), county.id, 'the new county node takes over the town');
  assert.equal((await h.call('POST', '/api/sfu-nodes', { token, body: { unit_id: ids.county, name: 'again', signalling_url: 'wss://x.example/ws' } })).status, 409, 'one node per unit');
  assert.equal((await h.call('DELETE', `/api/sfu-nodes/${county.id}`, { token })).status, 204);
  assert.equal(await parentOf(town.id), city.id, 'removing the county node hands the town back to the city');
});

test('the OpenAPI document describes every route with its schemas', async () => {
  const r = await h.call('GET', '/api/openapi.json');
  assert.equal(r.status, 200);
  const doc = r.body as { openapi: string; paths: Record<string, Record<string, { requestBody?: { content: Record<string, { schema: { properties?: Record<string, unknown> } }> }; parameters?: Array<{ name: string }> }>> };
  assert.equal(doc.openapi, '3.1.0');
  const createCamera = doc.paths['/api/cameras']!.post!;
  const props = createCamera.requestBody!.content['application/json']!.schema.properties!;
  assert.ok('rtsp_url' in props && 'unit_id' in props);
  assert.deepEqual(doc.paths['/api/units/{id}']!.get!.parameters!.map((p) => p.name), ['id']);
  assert.ok(doc.paths['/api/org/import']!.post!.requestBody!.content['text/csv']);
  assert.equal(doc.paths['/api/rooms/{room}/join-token'], undefined, 'no route signs a token for a room the caller names');
});
