import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { createTestDatabase, type TestDatabase } from '../support/database.ts';
import { SmscSimulator } from '../support/smsc-simulator.ts';
import { setUnitRule } from '../../scheduler/obligations/rules.ts';
import { buildTown, keepOnlyObligations, waitUntil } from '../scheduler/fixtures.ts';
import { SchedulerProcesses } from '../scheduler/scheduler-process.ts';

// The scheduler process is SIGKILLed while part 2 of a three-part reminder is at the SMSC without an
// answer; the receipts of parts 1 and 2 only arrive after the restart. The restarted scheduler must
// resume at part 3: every part reaches the SMSC exactly once and the send ends delivered.

let db: TestDatabase | undefined;
let smsc: SmscSimulator | undefined;
const schedulers = new SchedulerProcesses();

after(async () => {
  schedulers.killAll();
  await smsc?.stop();
  await db?.drop();
});

test('SIGKILL while part 2 of 3 awaits its answer: the restarted scheduler resumes at part 3, no part twice', async () => {
  db = await createTestDatabase();
  const town = await buildTown(db.pool, 1);
  await setUnitRule(db.pool, town.cityId, { obligation: 'member_meeting', period: 'quarter', requiredCount: 1, minDurationS: 8 });
  await keepOnlyObligations(db.pool, ['member_meeting']);
  await db.pool.query(`DELETE FROM members WHERE branch_id IN (SELECT id FROM branches WHERE name = '外村党支部')`);
  await db.pool.query(`DELETE FROM branches WHERE name = '外村党支部'`);
  await db.pool.query(`UPDATE branches SET name = name || repeat('第一网格党小组联合', 9)`);
  const target = town.branches[0]!.mobile;
  // Part 2 is taken but never answered; receipts come 1.5 s after each part, after the kill.
  smsc = new SmscSimulator({ faults: [{ part: 2, to: target, action: 'drop', accept: true }], receiptDelayMs: 1500 });
  await smsc.start();
  const env = {
    DATABASE_URL: db.url,
    SMPP_PORT: String(smsc.port), SMPP_SYSTEM_ID: 'sched', SMPP_PASSWORD: 'secret',
    TICK_MS: '100',
    CLOCK_SIM_START: '2026-03-25T00:00:00.000Z', CLOCK_REAL_EPOCH: String(Date.now()), CLOCK_SCALE: '1',
    PERIODS_FROM: '2025-12-31T16:00:00.000Z',
    SEND_RECOVERY_GRACE_MS: '4000', SEND_RETRY_BASE_MS: '200',
  };

  const first = await schedulers.start(env, 'error');
  await smsc.waitFor(() => smsc!.partLog.some((p) => p.to === target && p.seq === 2), 30_000, 'part 2 taken');
  first.kill('SIGKILL');
  await new Promise((r) => first.once('exit', r));
  const parts = await db.pool.query<{ part_no: number; state: string }>(
    `SELECT p.part_no, p.state FROM message_send_parts p JOIN message_sends s ON s.id = p.send_id WHERE s.address = $1 ORDER BY p.part_no`, [target]);
  assert.deepEqual(parts.rows.map((p) => p.state), ['sent', 'unconfirmed', 'pending'], 'progress survived the crash part by part');

  await schedulers.start(env, 'error');
  await waitUntil(async () => {
    const q = await db!.pool.query<{ state: string }>(`SELECT state FROM message_sends WHERE address = $1`, [target]);
    return q.rows[0]?.state === 'delivered';
  }, 30_000, 'the send delivered after the restart');
  const mine = smsc.partLog.filter((p) => p.to === target);
  assert.deepEqual(mine.map((p) => p.seq), [1, 2, 3], `each part once, in order: ${JSON.stringify(mine)}`);
  assert.equal(new Set(mine.map((p) => p.ref)).size, 1, 'part 3 joins the same concatenated message');
  assert.equal(smsc.messages.filter((m) => m.to === target).length, 1);
});
