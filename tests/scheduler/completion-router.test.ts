import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import express, { type NextFunction, type Request, type Response } from 'express';
import { createTestDatabase, type TestDatabase } from '../support/database.ts';
import { createCompletionRouter } from '../../web/api/routes/completion.ts';
import { HttpError, type AuthUser } from '../../web/api/auth-context.ts';
import { setUnitRule } from '../../scheduler/obligations/rules.ts';
import { evaluateObligations } from '../../scheduler/obligations/evaluate.ts';
import { buildTown, type Town } from './fixtures.ts';

let db: TestDatabase;
let town: Town;
let server: Server;
let base: string;
const users = new Map<string, AuthUser>();

before(async () => {
  db = await createTestDatabase();
  town = await buildTown(db.pool, 6);
  await setUnitRule(db.pool, town.cityId, { obligation: 'member_meeting', period: 'quarter', requiredCount: 1, minDurationS: 8 });
  for (const ob of ['committee_meeting', 'group_meeting', 'party_lesson', 'theme_day', 'sunshine_day'] as const) {
    await setUnitRule(db.pool, town.cityId, { obligation: ob, period: 'quarter', requiredCount: 1, minDurationS: 8, enabled: false });
  }
  // Branches 0-3 of the town held a passing member meeting in Q1 2026; branch 4's failed its check.
  const passed = async (branchId: number, ok: boolean) => {
    const { rows } = await db.pool.query<{ id: number }>(
      `INSERT INTO meeting_sessions (branch_id, obligation, starts_at, ends_at) VALUES ($1, 'member_meeting', '2026-02-01T02:00Z', '2026-02-01T03:00Z') RETURNING id`,
      [branchId],
    );
    await db.pool.query(`INSERT INTO completion_checks (session_id, passed, covered_s, required_s) VALUES ($1, $2, 3600, 8)`, [rows[0]!.id, ok]);
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

  const paths = await db.pool.query<{ id: number; path: string }>(`SELECT id, path FROM units`);
  const pathOf = (id: number) => paths.rows.find((p) => p.id === id)!.path;
  const mk = (username: string, unitId: number): AuthUser => ({ id: 1, username, displayName: username, role: 'supervisor', unitId, unitPath: pathOf(unitId) });
  users.set('county', mk('county', town.countyId));
  users.set('town', mk('town', town.townId));
  users.set('other', mk('other', town.otherTownId));

  const app = express();
  app.use((req: Request, _res: Response, next: NextFunction) => {
    const u = users.get(String(req.headers['x-test-user']));
    if (u) req.user = u;
    next();
  });
  app.use(createCompletionRouter({ pool: db.pool }));
  app.use((err: unknown, _req: Request, res: Response, _next: NextFunction) => {
    if (err instanceof HttpError) res.status(err.status).json({ error: { code: err.code, message: err.message } });
    else res.status(500).json({ error: { code: 'internal', message: String(err) } });
  });
  server = app.listen(0, '127.0.0.1');
  await new Promise((r) => server.once('listening', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
after(async () => {
  await new Promise((r) => server?.close(r));
  await db?.drop();
});

async function get(path: string, user: string): Promise<{ status: number; body: any }> {
  const res = await fetch(base + path, { headers: { 'x-test-user': user } });
  return { status: res.status, body: await res.json() };
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
