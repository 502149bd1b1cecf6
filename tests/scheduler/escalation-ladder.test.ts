import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import type PgBoss from 'pg-boss';
import { startHarness, type Harness } from '../api/harness.ts';
import { buildDutiesWorld, type DutiesWorld } from './duties-world.ts';
import { keepOnlyObligations } from './fixtures.ts';
import { planReminders } from '../../scheduler/reminders/plan.ts';
import { defaultReminderPolicy } from '../../scheduler/reminders/policy.ts';
import { startQueue } from '../../scheduler/jobs/queue.ts';

// The escalation ladder is data: the city's own ladder (set through the API) decides who is reminded at
// which step — the secretary twice before the end, then the direct higher organisation (the community
// party committee for villages under a community, the town otherwise), then the county only for a
// branch that also missed the previous quarter. Every reminder also lands as an in-app to-do.

let h: Harness;
let w: DutiesWorld;
let boss: PgBoss;
let otherCityBranch: number;

before(async () => {
  h = await startHarness();
  w = await buildDutiesWorld(h);
  boss = await startQueue(h.db.url);
  // Only the quarterly member meeting is owed in this scenario (switched nationally, see fixtures).
  await keepOnlyObligations(h.db.pool, ['member_meeting']);
  // Branches that existed through 2025; the branch of 12 held its Q4 2025 meeting, the branch of 5 did not.
  await h.db.pool.query(`UPDATE branches SET created_at = '2025-01-01T00:00:00Z'`);
  const s = await h.db.pool.query<{ id: number }>(
    `INSERT INTO meeting_sessions (branch_id, obligation, starts_at, ends_at) VALUES ($1, 'member_meeting', '2025-11-10T02:00Z', '2025-11-10T03:00Z') RETURNING id`,
    [w.branches.twelve]);
  await h.db.pool.query(`INSERT INTO completion_checks (session_id, passed, covered_s, required_s) VALUES ($1, true, 3600, 3600)`, [s.rows[0]!.id]);
  // A second city keeps the default ladder.
  const q = async (sql: string, p: unknown[]) => (await h.db.pool.query<{ id: number }>(sql, p)).rows[0]!.id;
  const city2 = await q(`INSERT INTO units (level, name) VALUES ('city', '烟台市') RETURNING id`, []);
  const county2 = await q(`INSERT INTO units (parent_id, level, name) VALUES ($1, 'county', '莱阳市') RETURNING id`, [city2]);
  const town2 = await q(`INSERT INTO units (parent_id, level, name) VALUES ($1, 'town', '城厢街道') RETURNING id`, [county2]);
  const vil2 = await q(`INSERT INTO units (parent_id, level, name) VALUES ($1, 'village', '前村') RETURNING id`, [town2]);
  otherCityBranch = await q(`INSERT INTO branches (unit_id, name, created_at) VALUES ($1, '前村党支部', '2025-01-01T00:00Z') RETURNING id`, [vil2]);
  await h.db.pool.query(`INSERT INTO members (branch_id, name, is_secretary, mobile) VALUES ($1, '前村书记', true, '13911112222')`, [otherCityBranch]);
  const sup2 = await q(`INSERT INTO users (username, display_name, unit_id, role, password_hash) VALUES ('yt.town', '城厢督导', $1, 'supervisor', 'x') RETURNING id`, [town2]);
  await h.db.pool.query(`INSERT INTO notification_contacts (user_id, mobile) VALUES ($1, '13911113333')`, [sup2]);
});
after(async () => {
  await boss?.stop({ graceful: false, wait: true });
  await h?.close();
});

test('a city\'s ladder as data: secretary steps, the community/town supervisor, the county only after repeated misses; to-dos beside SMS', async () => {
  const steps = [
    { key: 's10', anchor: 'before_end', offsetHours: 240, target: 'secretary' },
    { key: 's3', anchor: 'before_end', offsetHours: 72, target: 'secretary' },
    { key: 'direct', anchor: 'after_end', offsetHours: 12, target: 'supervisor', level: 'direct' },
    { key: 'county', anchor: 'after_end', offsetHours: 48, target: 'supervisor', level: 'county', minConsecutiveMissed: 1 },
  ];
  const bad = await h.call('PUT', `/api/escalation-ladder/${w.cityId}`, { token: w.tokens.cityAdmin, body: { steps: [{ ...steps[2], anchor: 'before_end' }] } });
  assert.equal(bad.status, 400, 'a supervisor step before the end is refused');
  const put = await h.call('PUT', `/api/escalation-ladder/${w.cityId}`, { token: w.tokens.cityAdmin, body: { steps } });
  assert.equal(put.status, 200, put.text);
  const seen = await h.call('GET', `/api/escalation-ladder?unitId=${w.villages.east}`, { token: w.tokens.secretaryFive });
  assert.equal(seen.status, 200);
  assert.deepEqual((seen.body as { own: boolean; steps: Array<{ key: string }> }).steps.map((s) => s.key), ['s10', 's3', 'direct', 'county']);

  // Q1 2026 ends 2026-03-31T16:00Z (China Standard Time). Nobody held the Q1 member meeting.
  const at = ['2026-03-22T00:00:00Z', '2026-03-29T00:00:00Z', '2026-04-01T06:00:00Z', '2026-04-02T18:00:00Z'];
  const periodsFrom = new Date('2025-12-31T16:00:00Z');
  for (const t of at) await planReminders(h.db.pool, boss, defaultReminderPolicy, new Date(t), { periodsFrom });
  // Exactly once: the same instants again decide nothing new.
  for (const t of at) assert.equal((await planReminders(h.db.pool, boss, defaultReminderPolicy, new Date(t), { periodsFrom })).reminders, 0);

  const { rows } = await h.db.pool.query<{ id: number; branch_id: number; step: string; target: string; target_unit_id: number | null }>(
    `SELECT id, branch_id, step, target, target_unit_id FROM reminders WHERE period_key = '2026-Q1' ORDER BY branch_id, due_at`);
  const of = (b: number) => rows.filter((r) => r.branch_id === b).map((r) => `${r.step}:${r.target}:${r.target_unit_id ?? '-'}`);
  // East village (branch of 5) under the community, missed Q4 2025 too: all four steps, the county last.
  assert.deepEqual(of(w.branches.five), ['s10:secretary:-', 's3:secretary:-', `direct:supervisor:${w.communityId}`, `county:supervisor:${w.countyId}`]);
  // West village held its Q4 2025 meeting: no county step.
  assert.deepEqual(of(w.branches.twelve), ['s10:secretary:-', 's3:secretary:-', `direct:supervisor:${w.communityId}`]);
  // South village hangs directly under the town: the town is its direct higher organisation.
  assert.deepEqual(of(w.branches.south).slice(0, 3), ['s10:secretary:-', 's3:secretary:-', `direct:supervisor:${w.townId}`]);
  // Another city without its own ladder follows the default: d7 (from 7 days before; the 10-day instant is
  // too early), no d2 (no instant in the last 2 days), escalate at +24h (the +50h instant), county not yet (+72h).
  assert.deepEqual(of(otherCityBranch).map((s) => s.split(':')[0]), ['d7', 'escalate']);

  // SMS went to the people the ladder names.
  const sends = await h.db.pool.query<{ address: string; body: string }>(
    `SELECT ms.address, ms.body FROM message_sends ms JOIN reminders r ON r.id = ms.reminder_id WHERE r.branch_id = $1 ORDER BY r.due_at`,
    [w.branches.five]);
  assert.equal(sends.rows.length, 4);
  assert.equal(sends.rows[2]!.address, w.mobiles.communitySupervisor);
  assert.equal(sends.rows[3]!.address, w.mobiles.countySupervisor);
  assert.match(sends.rows[3]!.body, /^三会一课督办：东村东村党支部2026年第1季度「支部党员大会」逾期未完成/);

  // To-dos beside SMS: one per reminder, for its target unit and role, visible to those users.
  const todoCount = await h.db.pool.query<{ n: number; r: number }>(
    `SELECT (SELECT count(*)::int FROM todos WHERE reminder_id IS NOT NULL) AS n, (SELECT count(*)::int FROM reminders WHERE target_unit_id IS NOT NULL OR target = 'secretary') AS r`);
  assert.equal(todoCount.rows[0]!.n, todoCount.rows[0]!.r, 'every reminder with a target has its to-do');
  const community = (await h.call('GET', '/api/todos', { token: w.tokens.communitySupervisor })).body as { items: Array<{ id: number; kind: string; titleZh: string; objectId: string }> };
  assert.deepEqual(community.items.map((t) => t.objectId).sort(),
    [`${w.branches.five}:member_meeting:2026-Q1`, `${w.branches.twelve}:member_meeting:2026-Q1`].sort());
  assert.ok(community.items.every((t) => t.kind === 'obligation_reminder' && t.titleZh.startsWith('督办：')));
  const town = (await h.call('GET', '/api/todos', { token: w.tokens.townSupervisor })).body as { items: Array<{ objectId: string }> };
  assert.deepEqual(town.items.map((t) => t.objectId), [`${w.branches.south}:member_meeting:2026-Q1`]);
  const sec = (await h.call('GET', '/api/todos', { token: w.tokens.secretaryFive })).body as { items: Array<{ id: number; titleZh: string }> };
  assert.equal(sec.items.length, 2, 'the secretary: s10 and s3');
  assert.match(sec.items[0]!.titleZh, /2026年第1季度「支部党员大会」已完成0\/1次/);
  // Another unit's user cannot close it; the secretary can, and it leaves the list.
  assert.equal((await h.call('POST', `/api/todos/${sec.items[0]!.id}/done`, { token: w.tokens.secretaryTwelve })).status, 404);
  const done = await h.call('POST', `/api/todos/${sec.items[0]!.id}/done`, { token: w.tokens.secretaryFive });
  assert.equal(done.status, 200, done.text);
  const left = (await h.call('GET', '/api/todos', { token: w.tokens.secretaryFive })).body as { items: unknown[] };
  assert.equal(left.items.length, 1);

  // A session of the quarter claimed afterwards (from the recording) and passed: the to-do about it goes away.
  const late = await h.db.pool.query<{ id: number }>(
    `INSERT INTO meeting_sessions (branch_id, obligation, starts_at, ends_at) VALUES ($1, 'member_meeting', '2026-03-20T02:00Z', '2026-03-20T03:00Z') RETURNING id`,
    [w.branches.twelve]);
  await h.db.pool.query(`INSERT INTO completion_checks (session_id, passed, covered_s, required_s) VALUES ($1, true, 3600, 3600)`, [late.rows[0]!.id]);
  const after = (await h.call('GET', '/api/todos', { token: w.tokens.communitySupervisor })).body as { items: Array<{ objectId: string }> };
  assert.deepEqual(after.items.map((t) => t.objectId), [`${w.branches.five}:member_meeting:2026-Q1`]);
});
