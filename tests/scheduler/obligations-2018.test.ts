import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import type PgBoss from 'pg-boss';
import { startHarness, type Harness } from '../api/harness.ts';
import { buildDutiesWorld, type DutiesWorld } from './duties-world.ts';
import { planReminders } from '../../scheduler/reminders/plan.ts';
import { defaultReminderPolicy } from '../../scheduler/reminders/policy.ts';
import { startQueue } from '../../scheduler/jobs/queue.ts';
import { evaluateObligations, evaluateObligationsNaive } from '../../scheduler/obligations/evaluate.ts';

// Obligations as the 2018 条例 defines them, set up and read through the API as a secretary, a city
// and a town would: committee and group obligations follow the branch's facts, annual items appear
// from Q4, a city may tighten but not loosen, one session counts for several kinds, and an approved
// postponement stops the reminder.

let h: Harness;
let w: DutiesWorld;
let boss: PgBoss;

interface Row { obligation: string; partyGroupId: number | null; periodKey: string; status: string; nameZh: string; doneCount: number }
const Q2 = '2026-05-15T04:00:00.000Z';
const Q4 = '2026-11-15T04:00:00.000Z';

before(async () => {
  h = await startHarness();
  w = await buildDutiesWorld(h);
  boss = await startQueue(h.db.url);
});
after(async () => {
  await boss?.stop({ graceful: false, wait: true });
  await h?.close();
});

const obligations = async (branchId: number, at: string, token = w.tokens.townSupervisor): Promise<Row[]> => {
  const r = await h.call('GET', `/api/branches/${branchId}/obligations?at=${encodeURIComponent(at)}`, { token });
  assert.equal(r.status, 200, r.text);
  return (r.body as { rows: Row[] }).rows;
};
const kinds = (rows: Row[]) => [...new Set(rows.map((r) => r.obligation))].sort();

/** A session of `kinds` whose completion check passed (the check itself is tested in completion-check). */
async function heldSession(branchId: number, kindsHeld: string[], startsAt: string, verdict: 'per_kind' | 'session_only', groupId: number | null = null): Promise<number> {
  const start = new Date(startsAt);
  const { rows } = await h.db.pool.query<{ id: number }>(
    `INSERT INTO meeting_sessions (branch_id, obligation, party_group_id, starts_at, ends_at) VALUES ($1, $2, $3, $4, $5) RETURNING id`,
    [branchId, kindsHeld[0], groupId, start, new Date(start.getTime() + 3_600_000)],
  );
  const id = rows[0]!.id;
  for (const k of kindsHeld) {
    await h.db.pool.query(
      `INSERT INTO session_obligations (session_id, obligation, party_group_id, passed) VALUES ($1, $2, $3, $4)
       ON CONFLICT (session_id, obligation) DO UPDATE SET passed = EXCLUDED.passed`,
      [id, k, k === 'group_meeting' ? groupId : null, verdict === 'per_kind' ? true : null],
    );
  }
  await h.db.pool.query(`INSERT INTO completion_checks (session_id, passed, covered_s, required_s) VALUES ($1, true, 3600, 3600)`, [id]);
  return id;
}

test('a branch of 5 gets no committee or group obligations; one of 12 with a committee and two groups gets them, per group', async () => {
  const t = w.tokens.secretaryFive;
  const refused = await h.call('PATCH', `/api/branches/${w.branches.five}/facts`, { token: t, body: { hasCommittee: true } });
  assert.equal(refused.status, 422);
  assert.equal((refused.body as { error: { code: string; message: string } }).error.code, 'committee_needs_seven');
  assert.match((refused.body as { error: { message: string } }).error.message, /正式党员5人.* \/ a branch committee needs at least 7/);

  const five = await obligations(w.branches.five, Q2);
  assert.ok(five.length > 0);
  assert.deepEqual(kinds(five).filter((k) => k === 'committee_meeting' || k === 'group_meeting'), [], 'no committee, no groups');
  assert.ok(kinds(five).includes('member_meeting') && kinds(five).includes('party_lesson'));

  // The branch of 12: two probationary members, ten full ones -> a committee; two party groups.
  const s = w.tokens.secretaryTwelve;
  const m = w.members.twelve;
  for (const id of [m[10]!, m[11]!]) {
    const r = await h.call('PATCH', `/api/members/${id}/duties`, { token: s, body: { membership: 'probationary' } });
    assert.equal(r.status, 200, r.text);
  }
  const ok = await h.call('PATCH', `/api/branches/${w.branches.twelve}/facts`, { token: s, body: { hasCommittee: true } });
  assert.equal(ok.status, 200, ok.text);
  assert.equal((ok.body as { fullMembers: number }).fullMembers, 10);
  const groups: number[] = [];
  for (const [name, leader] of [['第一党小组', m[1]!], ['第二党小组', m[2]!]] as const) {
    const g = await h.call('POST', `/api/branches/${w.branches.twelve}/groups`, { token: s, body: { name, leaderMemberId: leader } });
    assert.equal(g.status, 201, g.text);
    groups.push((g.body as { id: number }).id);
  }
  for (const [i, id] of m.slice(3).entries()) {
    const r = await h.call('PATCH', `/api/members/${id}/duties`, { token: s, body: { partyGroupId: groups[i % 2] } });
    assert.equal(r.status, 200, r.text);
  }
  const facts = (await h.call('GET', `/api/branches/${w.branches.twelve}/facts`, { token: s })).body as { hasCommittee: boolean; groups: Array<{ id: number; members: number[] }> };
  assert.equal(facts.hasCommittee, true);
  assert.deepEqual(facts.groups.map((g) => g.members.length), [6, 5]);

  const twelve = await obligations(w.branches.twelve, Q2);
  const committee = twelve.filter((r) => r.obligation === 'committee_meeting');
  assert.deepEqual(committee.map((r) => r.periodKey).sort(), ['2026-04', '2026-05']);
  assert.equal(committee[0]!.nameZh, '支委会');
  const group = twelve.filter((r) => r.obligation === 'group_meeting');
  assert.deepEqual(group.map((r) => `${r.partyGroupId}|${r.periodKey}`).sort(),
    groups.flatMap((g) => [`${g}|2026-04`, `${g}|2026-05`]).sort(), 'a group meeting row per group and month');

  // A group's meeting counts for that group only.
  await heldSession(w.branches.twelve, ['group_meeting'], '2026-05-06T02:00:00Z', 'per_kind', groups[0]!);
  const after = (await obligations(w.branches.twelve, Q2)).filter((r) => r.obligation === 'group_meeting' && r.periodKey === '2026-05');
  assert.equal(after.find((r) => r.partyGroupId === groups[0])!.status, 'done');
  assert.equal(after.find((r) => r.partyGroupId === groups[1])!.status, 'pending');

  // Retiring a group removes its obligation; the set-based and the naive evaluation agree.
  const at = new Date(Q2);
  const set = await evaluateObligations(h.db.pool, { at });
  const naive = await evaluateObligationsNaive(h.db.pool, { at });
  const key = (r: { branch_id: number; obligation: string; party_group_id: number | null; period_key: string; status: string; done_count: number }) =>
    `${r.branch_id}|${r.obligation}|${r.party_group_id}|${r.period_key}|${r.status}|${r.done_count}`;
  assert.deepEqual(set.map(key).sort(), naive.map(key).sort(), 'set-based and naive evaluation give the same rows');
});

test('the annual items appear in Q4, not in Q2 unless already done', async () => {
  const q2 = await obligations(w.branches.five, Q2);
  const thisYear = (rows: Row[], ob: string) => rows.filter((r) => r.obligation === ob && r.periodKey === '2026');
  assert.equal(thisYear(q2, 'org_life_meeting').length, 0, '组织生活会 is not listed in Q2');
  assert.equal(thisYear(q2, 'member_review').length, 0, '民主评议党员 is not listed in Q2');
  const q4 = await obligations(w.branches.five, Q4);
  assert.equal(thisYear(q4, 'org_life_meeting')[0]?.status, 'pending');
  assert.equal(thisYear(q4, 'member_review')[0]?.nameZh, '民主评议党员');
  // Held early (in April): listed in Q2 as done.
  await heldSession(w.branches.five, ['org_life_meeting'], '2026-04-20T02:00:00Z', 'per_kind');
  const early = await obligations(w.branches.five, Q2);
  assert.equal(thisYear(early, 'org_life_meeting')[0]?.status, 'done');
  assert.equal(thisYear(early, 'member_review').length, 0);
});

test('a city may tighten a 条例 frequency and switch 阳光议事日 on, not loosen; a county only tightens', async () => {
  const put = (unitId: number, ob: string, body: unknown, token = w.tokens.cityLeader) =>
    h.call('PUT', `/api/obligation-rules/${unitId}/${ob}`, { token, body });
  const loose = await put(w.cityId, 'member_meeting', { period: 'half_year', requiredCount: 1, minDurationS: 3600 });
  assert.equal(loose.status, 422, loose.text);
  const err = (loose.body as { error: { code: string; message: string; details: { looser: string[] } } }).error;
  assert.equal(err.code, 'looser_than_statute');
  assert.match(err.message, /条例.* \/ .*regulations/);
  assert.deepEqual(err.details.looser, ['period']);
  assert.equal((await put(w.cityId, 'party_lesson', { period: 'quarter', requiredCount: 1, minDurationS: 2700, enabled: false })).status, 422);

  const before = await obligations(w.branches.south, Q2);
  assert.ok(!kinds(before).includes('sunshine_day'), '阳光议事日 is off nationally');
  const tight = await put(w.cityId, 'member_meeting', { period: 'month', requiredCount: 1, minDurationS: 3600 });
  assert.equal(tight.status, 200, tight.text);
  const on = await put(w.cityId, 'sunshine_day', { period: 'month', requiredCount: 1, minDurationS: 1800, enabled: true });
  assert.equal(on.status, 200, on.text);
  const rows = await obligations(w.branches.south, Q2);
  assert.deepEqual(rows.filter((r) => r.obligation === 'member_meeting').map((r) => r.periodKey).sort(), ['2026-04', '2026-05'], 'monthly now');
  assert.ok(kinds(rows).includes('sunshine_day'), 'the city switched 阳光议事日 on');

  const county = await put(w.countyId, 'member_meeting', { period: 'quarter', requiredCount: 1, minDurationS: 3600 }, w.tokens.countyLeader);
  assert.equal(county.status, 422);
  assert.equal((county.body as { error: { code: string } }).error.code, 'not_tighter');
  const listed = await h.call('GET', `/api/obligation-rules?unitId=${w.countyId}`, { token: w.tokens.countyLeader });
  const mm = (listed.body as { rules: Array<{ obligation: string; period: string; statutory: boolean; setByUnitId: number; national: { period: string } }> }).rules
    .find((r) => r.obligation === 'member_meeting')!;
  assert.deepEqual([mm.period, mm.statutory, mm.setByUnitId, mm.national.period], ['month', true, w.cityId, 'quarter']);
  // Back to the 条例's floor for the tests below.
  assert.equal((await put(w.cityId, 'member_meeting', { period: 'quarter', requiredCount: 1, minDurationS: 3600 })).status, 200);
});

test('a session held as 主题党日 and 党员大会 satisfies the member meeting of its quarter', async () => {
  const b = w.branches.south;
  const beforeRows = await obligations(b, Q2);
  assert.equal(beforeRows.find((r) => r.obligation === 'member_meeting' && r.periodKey === '2026-Q2')!.status, 'pending');
  await heldSession(b, ['theme_day', 'member_meeting'], '2026-05-08T01:00:00Z', 'per_kind');
  const rows = await obligations(b, Q2);
  assert.equal(rows.find((r) => r.obligation === 'member_meeting' && r.periodKey === '2026-Q2')!.status, 'done');
  assert.equal(rows.find((r) => r.obligation === 'theme_day' && r.periodKey === '2026-05')!.status, 'done');
  assert.equal(rows.find((r) => r.obligation === 'party_lesson' && r.periodKey === '2026-Q2')!.status, 'pending', 'only the kinds it was held for');
  // A session judged before per-kind verdicts (passed only on completion_checks) counts for its kinds too.
  await heldSession(w.branches.five, ['party_lesson', 'theme_day'], '2026-05-09T01:00:00Z', 'session_only');
  const five = await obligations(w.branches.five, Q2);
  assert.equal(five.find((r) => r.obligation === 'party_lesson' && r.periodKey === '2026-Q2')!.status, 'done');
});

test('an approved postponement gives "postponed" and no reminder; a refused one does not', async () => {
  const b = w.branches.five;
  const ask = (obligation: string, reason: string) =>
    h.call('POST', '/api/postponements', { token: w.tokens.secretaryFive, body: { branchId: b, obligation, periodKey: '2026-Q2', reason } });
  const a = await ask('member_meeting', '麦收农忙，党员外出务工');
  assert.equal(a.status, 201, a.text);
  const r = await ask('secretary_lesson', 'x');
  assert.equal(r.status, 422, 'a yearly item takes a year key');
  const lesson = await h.call('POST', '/api/postponements', { token: w.tokens.secretaryFive, body: { branchId: b, obligation: 'theme_day', periodKey: '2026-06', reason: '暴雨' } });
  assert.equal(lesson.status, 201, lesson.text);
  const aid = (a.body as { id: number }).id;
  const lid = (lesson.body as { id: number }).id;
  // The community party committee (the direct higher organisation) has a to-do and decides.
  const todos = (await h.call('GET', '/api/todos', { token: w.tokens.communitySupervisor })).body as { items: Array<{ kind: string; objectId: string }> };
  assert.deepEqual(todos.items.filter((t) => t.kind === 'postponement_request').map((t) => t.objectId).sort(), [String(aid), String(lid)].sort());
  const ok = await h.call('POST', `/api/postponements/${aid}/decision`, { token: w.tokens.communitySupervisor, body: { decision: 'approve', note: '同意延期至7月' } });
  assert.equal(ok.status, 200, ok.text);
  assert.equal((ok.body as { state: string }).state, 'approved');
  const no = await h.call('POST', `/api/postponements/${lid}/decision`, { token: w.tokens.townSupervisor, body: { decision: 'refuse', note: '可改为线上开展' } });
  assert.equal(no.status, 200, no.text);
  const listed = (await h.call('GET', `/api/postponements?under=${w.townId}`, { token: w.tokens.townSupervisor })).body as { items: Array<{ id: number; state: string }> };
  assert.deepEqual(listed.items.map((p) => `${p.id}:${p.state}`).sort(), [`${aid}:approved`, `${lid}:refused`].sort());

  const end = '2026-06-29T00:00:00.000Z'; // within the last week of June / Q2
  const rows = await obligations(b, end);
  assert.equal(rows.find((x) => x.obligation === 'member_meeting' && x.periodKey === '2026-Q2')!.status, 'postponed');
  assert.equal(rows.find((x) => x.obligation === 'theme_day' && x.periodKey === '2026-06')!.status, 'at_risk');

  // Reminders at the 7-day step and after the end: none for the postponed period, the refused one is reminded.
  for (const at of ['2026-06-25T00:00:00Z', '2026-07-01T18:00:00Z']) {
    await planReminders(h.db.pool, boss, defaultReminderPolicy, new Date(at), { periodsFrom: new Date('2026-03-31T16:00:00Z') });
  }
  const rem = await h.db.pool.query<{ obligation: string; period_key: string; step: string }>(
    `SELECT obligation, period_key, step FROM reminders WHERE branch_id = $1 AND period_key IN ('2026-Q2', '2026-06') ORDER BY 1, 3`, [b]);
  const got = rem.rows.map((x) => `${x.obligation}|${x.period_key}|${x.step}`);
  assert.ok(!got.some((x) => x.startsWith('member_meeting|')), `no reminder for the postponed member meeting: ${got.join(', ')}`);
  assert.deepEqual(got.filter((x) => x.startsWith('theme_day|')), ['theme_day|2026-06|d7', 'theme_day|2026-06|escalate']);

  // Group meetings are reminded per group (the branch of 12 has two).
  const groupRem = await h.db.pool.query<{ party_group_id: number }>(
    `SELECT DISTINCT party_group_id FROM reminders WHERE branch_id = $1 AND obligation = 'group_meeting' AND period_key = '2026-06' AND step = 'd7'`,
    [w.branches.twelve]);
  assert.equal(groupRem.rows.length, 2);
  assert.ok(groupRem.rows.every((x) => x.party_group_id !== null));
});
