import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import { createTestDatabase, type TestDatabase } from '../support/database.ts';
import { SmscSimulator } from '../support/smsc-simulator.ts';
import { ManualClock } from '../../scheduler/clock.ts';
import { SchedulerService } from '../../scheduler/service.ts';
import { SmppChannel } from '../../scheduler/channels/SmppChannel.ts';
import { CompletionChecker } from '../../scheduler/checks/completionCheck.ts';
import { LocalFileSegmentSource } from '../../scheduler/checks/segmentSource.ts';
import { RuleError, setUnitRule, effectiveRule } from '../../scheduler/obligations/rules.ts';
import { evaluateObligations } from '../../scheduler/obligations/evaluate.ts';
import { defaultReminderPolicy } from '../../scheduler/reminders/policy.ts';
import { addSegment, buildTown, keepOnlyObligations, makeClips, tempDir, type Town } from './fixtures.ts';

let db: TestDatabase;
let root: string;
let town: Town;
const smsc = new SmscSimulator();
let sms: SmppChannel | undefined;
let service: SchedulerService | undefined;

const Q1_START = new Date('2025-12-31T16:00:00Z'); // 2026-01-01 00:00 China Standard Time
const END = new Date('2026-04-05T00:00:00Z');

before(async () => {
  [db, root] = await Promise.all([createTestDatabase(), tempDir('sched-quarter-')]);
  await Promise.all([makeClips(root, 'recordings', ['good', 'black']), smsc.start()]);
  town = await buildTown(db.pool, 30, { committee: true });
});
after(async () => {
  await service?.stop();
  await sms?.close();
  await smsc.stop();
  await db?.drop();
  if (root) await fs.rm(root, { recursive: true, force: true });
});

test('a city may change obligation rules, a county may only tighten them, a town may not set them', async () => {
  await setUnitRule(db.pool, town.cityId, { obligation: 'member_meeting', period: 'quarter', requiredCount: 1, minDurationS: 8 });
  await setUnitRule(db.pool, town.cityId, { obligation: 'committee_meeting', period: 'month', requiredCount: 1, minDurationS: 8 });
  await keepOnlyObligations(db.pool, ['member_meeting', 'committee_meeting']);
  await assert.rejects(
    setUnitRule(db.pool, town.countyId, { obligation: 'member_meeting', period: 'half_year', requiredCount: 1, minDurationS: 8 }),
    (e: unknown) => e instanceof RuleError && e.code === 'not_tighter',
  );
  await assert.rejects(
    setUnitRule(db.pool, town.townId, { obligation: 'member_meeting', period: 'month', requiredCount: 2, minDurationS: 8 }),
    (e: unknown) => e instanceof RuleError && e.code === 'level_not_allowed',
  );
  // Tightening is accepted (then undone so the quarter below runs on the city's rules).
  await setUnitRule(db.pool, town.countyId, { obligation: 'member_meeting', period: 'quarter', requiredCount: 2, minDurationS: 10 });
  assert.equal((await effectiveRule(db.pool, town.branches[0]!.unitId, 'member_meeting')).requiredCount, 2);
  await db.pool.query(`DELETE FROM obligation_rules WHERE unit_id = $1`, [town.countyId]);
  assert.equal((await effectiveRule(db.pool, town.branches[0]!.unitId, 'member_meeting')).requiredCount, 1);
});

test('a quarter for a town of 30 branches: the right reminders, escalations to the right supervisor, none twice, passing recordings done', async () => {
  const clock = new ManualClock(Q1_START);
  sms = new SmppChannel({ port: smsc.port, systemId: 'sched', password: 'secret' }, (r) => service?.onReceipt(r));
  service = new SchedulerService({
    pool: db.pool, databaseUrl: db.url, clock, policy: defaultReminderPolicy, channels: { sms },
    checker: new CompletionChecker(db.pool, new LocalFileSegmentSource(root), { maxBlackStretchS: 4, maxFrozenStretchS: 4 }),
    periodsFrom: Q1_START,
    // Ticks are 6 simulated hours apart here; in production they run every minute.
    captureLeadMs: 12 * 3_600_000,
  });
  await service.start();

  // Sessions: member meeting (quarterly) by branches 0-9 in January with good recordings, 10-11 with
  // black ones, branch 12 late in March (between the 7-day and 2-day reminders); committee meeting
  // (monthly) by branches 0-4 every month. Recordings appear as the recorder would index them.
  const b = town.branches;
  const session = async (i: number, ob: string, at: string, clip: 'good' | 'black') => {
    const start = new Date(at);
    await db.pool.query(
      `INSERT INTO meeting_sessions (branch_id, obligation, starts_at, ends_at, camera_id, expected_attendance)
       VALUES ($1, $2, $3, $4, $5, 15)`,
      [b[i]!.id, ob, start, new Date(start.getTime() + 12_000), b[i]!.cameraId],
    );
    await addSegment(db.pool, root, b[i]!.cameraId, start, clip);
  };
  for (let i = 0; i < 10; i++) await session(i, 'member_meeting', '2026-01-15T02:00:00Z', 'good');
  for (const i of [10, 11]) await session(i, 'member_meeting', '2026-01-15T02:00:00Z', 'black');
  await session(12, 'member_meeting', '2026-03-27T02:00:00Z', 'good');
  for (let i = 0; i < 5; i++) {
    for (const day of ['2026-01-10', '2026-02-10', '2026-03-10']) await session(i, 'committee_meeting', `${day}T02:00:00Z`, 'good');
  }

  const t0 = Date.now();
  let ticks = 0;
  let statusChecked = false;
  const drains: number[] = [];
  while (clock.now() < END) {
    const r = await service.tick();
    ticks++;
    if (r.sends > 0 || r.checks > 0) {
      const d0 = Date.now();
      await service.drain(30_000);
      drains.push(Date.now() - d0);
    }
    if (!statusChecked && clock.now() >= new Date('2026-03-26T00:00:00Z')) {
      statusChecked = true;
      const st = await evaluateObligations(db.pool, { at: clock.now(), unitPath: '' });
      const get = (i: number) => st.find((s) => s.branch_id === b[i]!.id && s.obligation === 'member_meeting' && s.period_key === '2026-Q1')!.status;
      assert.equal(get(0), 'done');
      assert.equal(get(20), 'at_risk');
    }
    clock.advance(6 * 3_600_000);
  }
  await service.drain(30_000);
  const simMs = Date.now() - t0;

  // Expected reminders, computed independently of the scheduler.
  const expected = new Set<string>();
  const add = (i: number | 'other', ob: string, period: string, steps: string[]) => {
    const id = i === 'other' ? -1 : b[i]!.id;
    for (const s of steps) expected.add(`${id}|${ob}|${period}|${s}`);
  };
  for (let i = 10; i < 30; i++) add(i, 'member_meeting', '2026-Q1', i === 12 ? ['d7'] : ['d7', 'd2', 'escalate']);
  for (let i = 5; i < 30; i++) for (const m of ['2026-01', '2026-02', '2026-03']) add(i, 'committee_meeting', m, ['d7', 'd2', 'escalate']);
  const otherBranch = (await db.pool.query<{ id: number }>(`SELECT id FROM branches WHERE name = '外村党支部'`)).rows[0]!.id;
  const { rows: rem } = await db.pool.query<{ id: number; branch_id: number; obligation: string; period_key: string; step: string; target_unit_id: number | null }>(
    `SELECT id, branch_id, obligation, period_key, step, target_unit_id FROM reminders ORDER BY id`,
  );
  const actual = new Set(rem.filter((r) => r.branch_id !== otherBranch).map((r) => `${r.branch_id}|${r.obligation}|${r.period_key}|${r.step}`));
  assert.deepEqual([...actual].sort(), [...expected].sort(), 'the reminders decided are exactly the expected ones');
  assert.equal(rem.filter((r) => r.branch_id === otherBranch).length, 4 * 3, 'the other town\'s branch: 2 obligations x 3 steps... per period');

  // Escalations name the supervising town; messages reach the right people exactly once.
  for (const r of rem) {
    if (r.step === 'escalate') assert.equal(r.target_unit_id, r.branch_id === otherBranch ? town.otherTownId : town.townId);
    else assert.equal(r.target_unit_id, null);
  }
  const sends = await db.pool.query<{ reminder_id: number; n: number; states: string[] }>(
    `SELECT reminder_id, count(*)::int AS n, array_agg(state) AS states FROM message_sends GROUP BY reminder_id`,
  );
  assert.equal(sends.rows.length, rem.length, 'every reminder has a send');
  assert.ok(sends.rows.every((s) => s.n === 1), 'one send per reminder');
  // Beside each message, one in-app to-do for the reminder's target (the branch's unit or the town).
  const todos = await db.pool.query<{ reminder_id: number; unit_id: number; role: string }>(`SELECT reminder_id, unit_id, role FROM todos WHERE reminder_id IS NOT NULL`);
  assert.equal(todos.rows.length, rem.length, 'one to-do per reminder');
  assert.equal(new Set(todos.rows.map((t) => Number(t.reminder_id))).size, rem.length);
  const escalationTodos = todos.rows.filter((t) => t.role === 'supervisor');
  assert.equal(escalationTodos.length, rem.filter((r) => r.step === 'escalate').length);
  assert.ok(escalationTodos.every((t) => Number(t.unit_id) === town.townId || Number(t.unit_id) === town.otherTownId));
  await smsc.waitFor(() => smsc.messages.length === rem.length, 10_000, 'all messages');
  assert.equal(smsc.messages.length, rem.length, 'the SMSC received one message per reminder, no more');

  const byTo = new Map<string, string[]>();
  for (const m of smsc.messages) byTo.set(m.to, [...(byTo.get(m.to) ?? []), m.text]);
  for (let i = 0; i < 30; i++) {
    const mine = [...expected].filter((k) => k.startsWith(`${b[i]!.id}|`) && !k.endsWith('|escalate')).length;
    assert.equal(byTo.get(b[i]!.mobile)?.length ?? 0, mine, `secretary of branch ${i} reminded ${mine} times`);
  }
  const escalations = [...expected].filter((k) => k.endsWith('|escalate')).length;
  const townSup = byTo.get(town.townSupervisor.mobile) ?? [];
  assert.equal(townSup.length, escalations, 'the town supervisor receives every escalation of the town');
  assert.ok(townSup.every((t) => t.startsWith('三会一课督办：') && !t.includes('外村')));
  const otherSup = byTo.get(town.otherTownSupervisor.mobile) ?? [];
  assert.equal(otherSup.length, 4, 'the other town supervisor only hears about its own branch');
  assert.ok(otherSup.every((t) => t.includes('外村党支部')));
  assert.equal(byTo.get(town.countySupervisor.mobile), undefined, 'the county supervisor is not the town-level escalation target');
  assert.ok(byTo.get(b[20]!.mobile)!.some((t) => t.includes('2026年第1季度「支部党员大会」已完成0/1次')));

  // Completion: passing recordings mark branches done; black ones do not, with the reason stored.
  const st = await evaluateObligations(db.pool, { at: END, unitPath: '' });
  const member = st.filter((s) => s.obligation === 'member_meeting' && s.period_key === '2026-Q1');
  const doneIdx = member.filter((s) => s.status === 'done').map((s) => b.findIndex((x) => x.id === s.branch_id)).sort((x, y) => x - y);
  assert.deepEqual(doneIdx, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 12]);
  assert.equal(member.find((s) => s.branch_id === b[20]!.id)!.status, 'overdue');
  const black = await db.pool.query<{ passed: boolean; reasons: Array<{ code: string }> }>(
    `SELECT c.passed, c.reasons FROM completion_checks c JOIN meeting_sessions s ON s.id = c.session_id WHERE s.branch_id = $1`, [b[10]!.id]);
  assert.equal(black.rows[0]!.passed, false);
  assert.equal(black.rows[0]!.reasons[0]!.code, 'black');
  const captures = await db.pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM capture_jobs WHERE session_id IS NOT NULL`);
  assert.equal(captures.rows[0]!.n, 28, 'the recorder was asked to capture every session');

  await smsc.waitFor(() => smsc.receiptsSent.length === rem.length, 10_000, 'receipts');
  await service.drain();
  const delivered = async () => (await db.pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM message_sends WHERE state = 'delivered'`)).rows[0]!.n;
  const deadline = Date.now() + 10_000;
  while ((await delivered()) < rem.length && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  const stuck = await db.pool.query(`SELECT s.id, s.state, s.parts, (SELECT json_agg(p) FROM message_send_parts p WHERE p.send_id = s.id) AS parts_rows,
      (SELECT json_agg(e ORDER BY e.id) FROM message_send_events e WHERE e.send_id = s.id) AS events FROM message_sends s WHERE s.state <> 'delivered'`);
  assert.equal(await delivered(), rem.length, `delivery receipts mark every send delivered: ${JSON.stringify(stuck.rows)}`);
  console.log(`simulated ${ticks} ticks (6 h each) in ${simMs} ms; ${rem.length} reminders; ${drains.length} drains, ${drains.reduce((a, x) => a + x, 0)} ms`);
});
