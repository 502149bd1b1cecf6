import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createTestDatabase, type TestDatabase } from '../support/database.ts';
import { startHarness, type Harness } from '../api/harness.ts';
import { apiExtra } from '../../web/server.ts';
import { createCompletionRoutes } from '../../web/api/routes/completion.ts';
import { hashPassword } from '../../infra/auth/password.ts';
import { evaluateObligations } from '../../scheduler/obligations/evaluate.ts';
import { buildTown, keepOnlyObligations, type Town } from './fixtures.ts';

// The completion routes behind the real API app: real sign-in (scrypt password, signed token), the
// routes mounted as production mounts them (apiExtra), so they also appear in /api/openapi.json.

let db: TestDatabase;
let town: Town;
let h: Harness;
const tokens = new Map<string, string>();
const sessionOf = new Map<number, number>();

before(async () => {
  db = await createTestDatabase();
  town = await buildTown(db.pool, 6);
  // Only the member meeting is owed (switched off nationally for the rest; the 条例 floor forbids a city to).
  await keepOnlyObligations(db.pool, ['member_meeting']);
  await db.pool.query(`UPDATE obligation_rules SET min_duration_s = 8 WHERE obligation = 'member_meeting'`);
  // Branches 0-3 of the town held a passing member meeting in Q1 2026; branch 4's failed its check.
  const passed = async (branchId: number, ok: boolean) => {
    const { rows } = await db.pool.query<{ id: number }>(
      `INSERT INTO meeting_sessions (branch_id, obligation, starts_at, ends_at) VALUES ($1, 'member_meeting', '2026-02-01T02:00Z', '2026-02-01T03:00Z') RETURNING id`,
      [branchId],
    );
    sessionOf.set(branchId, rows[0]!.id);
    await db.pool.query(`INSERT INTO completion_checks (session_id, passed, covered_s, required_s, reasons) VALUES ($1, $2, $3, 8, $4)`,
      [rows[0]!.id, ok, ok ? 3600 : 5, ok ? '[]' : JSON.stringify([{ code: 'too_short', message: '录像覆盖5秒，少于要求的8秒' }])]);
    await db.pool.query(`UPDATE session_obligations SET passed = $2, reasons = $3 WHERE session_id = $1`,
      [rows[0]!.id, ok, ok ? '[]' : JSON.stringify([{ code: 'too_short', message: '录像覆盖5秒，少于要求的8秒' }])]);
  };
  for (let i = 0; i < 4; i++) await passed(town.branches[i]!.id, true);
  await passed(town.branches[4]!.id, false);
  // Branch 5's meeting could not be checked yet (storage down): neither done nor at risk, "checking".
  const held = await db.pool.query<{ id: number }>(
    `INSERT INTO meeting_sessions (branch_id, obligation, starts_at, ends_at) VALUES ($1, 'member_meeting', '2026-03-20T02:00Z', '2026-03-20T03:00Z') RETURNING id`,
    [town.branches[5]!.id],
  );
  await db.pool.query(
    `INSERT INTO completion_checks (session_id, passed, pending, covered_s, required_s, reasons) VALUES ($1, false, true, 0, 8, '[{"code":"storage_unavailable","message":"录像存储暂时无法访问"}]')`,
    [held.rows[0]!.id]);

  const hash = await hashPassword('completion-2026');
  for (const [username, unitId] of [['county', town.countyId], ['town', town.townId], ['other', town.otherTownId]] as const) {
    await db.pool.query(`INSERT INTO users (username, display_name, unit_id, role, password_hash) VALUES ($1, $1, $2, 'supervisor', $3)`, [username, unitId, hash]);
  }
  h = await startHarness({ extraRouters: [apiExtra(createCompletionRoutes({ pool: db.pool }))] }, db);
  for (const u of ['county', 'town', 'other']) tokens.set(u, await h.login(u, 'completion-2026'));
});
after(async () => {
  await h?.close(); // drops the database too
});

async function get(path: string, user: string): Promise<{ status: number; body: any }> {
  const token = tokens.get(user);
  const r = await h.call('GET', '/api' + path, token ? { token } : {});
  return { status: r.status, body: r.body };
}

test('completion rate of a unit for the period containing `at`', async () => {
  const r = await get(`/completion/units/${town.townId}?at=2026-03-28T00:00:00Z`, 'town');
  assert.equal(r.status, 200);
  assert.deepEqual(r.body.overall, { branches: 6, done: 4, atRisk: 1, overdue: 0, pending: 0, checking: 1, rate: 0.6667 });
  assert.deepEqual(r.body.obligations.map((o: { obligation: string; periodKeys: string[] }) => [o.obligation, o.periodKeys]), [['member_meeting', ['2026-Q1']]]);
  const later = await get(`/completion/units/${town.townId}?at=2026-04-10T00:00:00Z`, 'town');
  assert.equal(later.body.overall.done, 0, 'a new quarter starts from zero');
});

test('comparison of child units and of all units of one level within the caller\'s subtree', async () => {
  const c = await get(`/completion/units/${town.countyId}/children?at=2026-03-28T00:00:00Z`, 'county');
  assert.equal(c.status, 200);
  const byName = new Map(c.body.units.map((u: { unit: { name: string }; overall: unknown }) => [u.unit.name, u.overall]));
  assert.deepEqual(byName.get('宝城街道'), { branches: 6, done: 4, atRisk: 1, overdue: 0, pending: 0, checking: 1, rate: 0.6667 });
  assert.deepEqual(byName.get('朱刘街道'), { branches: 1, done: 0, atRisk: 1, overdue: 0, pending: 0, checking: 0, rate: 0 });
  // After the quarter, the unchecked meeting is still not reported overdue; the failed one is.
  const q1 = (await evaluateObligations(db.pool, { at: new Date('2026-04-02T00:00:00Z') })).filter((x) => x.period_key === '2026-Q1');
  assert.equal(q1.find((x) => x.branch_id === town.branches[5]!.id)!.status, 'checking');
  assert.equal(q1.find((x) => x.branch_id === town.branches[4]!.id)!.status, 'overdue');

  const v = await get(`/completion/compare?level=village&at=2026-03-28T00:00:00Z`, 'town');
  assert.equal(v.status, 200);
  assert.equal(v.body.units.length, 6, 'only the villages of the caller\'s town');
  assert.deepEqual(v.body.units.map((u: { overall: { rate: number } }) => u.overall.rate), [1, 1, 1, 1, 0, 0]);
  const t = await get(`/completion/compare?level=town&at=2026-03-28T00:00:00Z`, 'county');
  assert.deepEqual(t.body.units.map((u: { unit: { name: string } }) => u.unit.name), ['宝城街道', '朱刘街道']);
});

test('outside the caller\'s subtree is 404; bad input is 400; no user is 401', async () => {
  assert.equal((await get(`/completion/units/${town.townId}`, 'other')).status, 404);
  assert.equal((await get(`/completion/units/${town.countyId}/children`, 'town')).status, 404);
  assert.equal((await get(`/completion/units/${town.townId}?at=yesterday`, 'town')).status, 400);
  assert.equal((await get(`/completion/compare?level=planet`, 'town')).status, 400);
  assert.equal((await get(`/completion/units/${town.townId}`, 'nobody')).status, 401);
  const other = await get(`/completion/compare?level=village&at=2026-03-28T00:00:00Z`, 'other');
  assert.deepEqual(other.body.units.map((u: { unit: { name: string } }) => u.unit.name), ['外村']);
});

test('a signed-in token of another county is refused where the caller\'s own is answered; a forged token is 401', async () => {
  assert.equal((await h.call('GET', `/api/completion/units/${town.townId}`, { token: tokens.get('town')! + 'x' })).status, 401);
  assert.equal((await get(`/completion/units/${town.townId}`, 'town')).status, 200);
});

test('the completion routes are in /api/openapi.json', async () => {
  const doc = (await h.call('GET', '/api/openapi.json')).body as { paths: Record<string, unknown> };
  for (const p of ['/completion/units/{unitId}', '/completion/units/{unitId}/children', '/completion/compare', '/branches/{id}/completion']) {
    assert.ok(Object.keys(doc.paths).some((k) => k.endsWith(p)), `${p} in the OpenAPI document`);
  }
});

test('per branch, why: done with its session and evidence, flawed with reasons, checking, missing', async () => {
  const why = async (i: number) => {
    const r = await get(`/branches/${town.branches[i]!.id}/completion?period=2026-Q1`, 'town');
    assert.equal(r.status, 200);
    const mm = r.body.obligations.filter((o: { obligation: string }) => o.obligation === 'member_meeting');
    assert.equal(mm.length, 1);
    return mm[0];
  };
  const done = await why(0);
  assert.equal(done.status, 'done');
  assert.equal(done.periodKey, '2026-Q1');
  assert.deepEqual(done.sessions.map((x: { id: number; passed: boolean }) => [x.id, x.passed]), [[sessionOf.get(town.branches[0]!.id), true]]);
  assert.deepEqual(done.sessions[0].evidence, { recordingIds: [], thumbUrl: null });
  const flawed = await why(4);
  assert.equal(flawed.status, 'flawed');
  assert.deepEqual(flawed.sessions[0].reasons.map((x: { code: string }) => x.code), ['too_short']);
  const checking = await why(5);
  assert.equal(checking.status, 'checking');
  assert.equal(checking.sessions[0].passed, null);
  // The other town's branch held nothing in Q1: missing, and it is outside the town supervisor's subtree.
  const otherBranch = (await db.pool.query<{ id: number }>(`SELECT b.id FROM branches b JOIN units u ON u.id = b.unit_id WHERE u.path LIKE (SELECT path FROM units WHERE id = $1) || '%'`, [town.otherTownId])).rows[0]!.id;
  assert.equal((await get(`/branches/${otherBranch}/completion?period=2026-Q1`, 'town')).status, 404);
  const missing = await get(`/branches/${otherBranch}/completion?period=2026-Q1`, 'county');
  assert.equal(missing.body.obligations.find((o: { obligation: string }) => o.obligation === 'member_meeting').status, 'missing');
  assert.equal((await get(`/branches/${otherBranch}/completion?period=2026-Q5`, 'county')).status, 400);
});
