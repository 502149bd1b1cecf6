import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { createTestDatabase, type TestDatabase } from '../support/database.ts';
import { SmscSimulator, type SmscOptions } from '../support/smsc-simulator.ts';
import { SmppChannel } from '../../scheduler/channels/SmppChannel.ts';
import { ManualClock } from '../../scheduler/clock.ts';
import { SchedulerService } from '../../scheduler/service.ts';
import { setUnitRule } from '../../scheduler/obligations/rules.ts';
import { defaultReminderPolicy } from '../../scheduler/reminders/policy.ts';
import { buildTown, keepOnlyObligations, waitUntil, type Town } from '../scheduler/fixtures.ts';

// Fault suite for SMS reminders: the real scheduler (planner, pg-boss workers, dispatcher, SMPP
// channel) against the SMPP simulator with faults injected on one part of a three-part message.
// Asserted at the SMSC: each part of each reminder taken exactly once; in the database: the send's
// final state, and never "delivered" while a part is unsent.

const cleanups: Array<() => Promise<unknown>> = [];
after(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => undefined);
});

interface Run {
  db: TestDatabase;
  smsc: SmscSimulator;
  service: SchedulerService;
  town: Town;
  /** The secretary the fault is aimed at, and one left alone as a control. */
  target: string;
  control: string;
}

const responseTimeoutMs = 400;
const uncertainGraceMs = 1500;

async function setUp(smscOpts: (target: string) => SmscOptions, opts: { smscDown?: boolean } = {}): Promise<Run> {
  const db = await createTestDatabase();
  cleanups.push(() => db.drop());
  const town = await buildTown(db.pool, 2);
  await setUnitRule(db.pool, town.cityId, { obligation: 'member_meeting', period: 'quarter', requiredCount: 1, minDurationS: 8 });
  await keepOnlyObligations(db.pool, ['member_meeting']);
  await db.pool.query(`DELETE FROM members WHERE branch_id IN (SELECT id FROM branches WHERE name = '外村党支部')`);
  await db.pool.query(`DELETE FROM branches WHERE name = '外村党支部'`);
  // Long branch names: each reminder is a three-part concatenated SMS.
  await db.pool.query(`UPDATE branches SET name = name || repeat('第一网格党小组联合', 9)`);
  const target = town.branches[0]!.mobile;
  const control = town.branches[1]!.mobile;
  const smsc = new SmscSimulator(smscOpts(target));
  await smsc.start();
  cleanups.push(() => smsc.stop());
  if (opts.smscDown) await smsc.stop();
  let service: SchedulerService | undefined;
  const sms = new SmppChannel(
    { port: smsc.port, systemId: 'sched', password: 'secret', responseTimeoutMs, reconnectMs: 100 },
    (r): Promise<void> | undefined => service?.onReceipt(r),
  );
  cleanups.push(() => sms.close());
  service = new SchedulerService({
    pool: db.pool, databaseUrl: db.url, clock: new ManualClock(new Date('2026-03-25T00:00:00Z')),
    policy: defaultReminderPolicy, channels: { sms }, periodsFrom: new Date('2025-12-31T16:00:00Z'),
    dispatcher: { maxAttempts: 3, retryBaseMs: 100, retryMaxMs: 1000, recoveryGraceMs: 1000, uncertainGraceMs },
  });
  await service.start();
  sms.start();
  cleanups.push(() => service.stop());
  return { db, smsc, service, town, target, control };
}

/** Each part of each reminder exactly once at the SMSC, every message complete and readable. */
function assertEachPartOnce(run: Run): void {
  const seen = new Map<string, number>();
  for (const p of run.smsc.partLog) seen.set(`${p.to}|${p.seq}/${p.total}`, (seen.get(`${p.to}|${p.seq}/${p.total}`) ?? 0) + 1);
  for (const to of [run.target, run.control]) {
    const mine = run.smsc.partLog.filter((p) => p.to === to);
    assert.equal(mine[0]?.total, 3, `three-part message to ${to}`);
    assert.equal(new Set(mine.map((p) => p.ref)).size, 1, `all parts of ${to}'s message share one concatenation reference`);
    for (let seq = 1; seq <= 3; seq++) assert.equal(seen.get(`${to}|${seq}/3`), 1, `part ${seq} to ${to} taken exactly once: ${JSON.stringify(mine)}`);
  }
  assert.equal(run.smsc.messages.length, 2, 'two complete messages reassembled');
}

async function sendStates(run: Run): Promise<Map<string, string>> {
  const { rows } = await run.db.pool.query<{ address: string; state: string }>(`SELECT address, state FROM message_sends`);
  return new Map(rows.map((r) => [r.address, r.state]));
}

/** The sends, their parts and events, for a failure message. */
async function dump(run: Run): Promise<string> {
  const { rows } = await run.db.pool.query(
    `SELECT s.id, s.address, s.state, s.attempts, s.failure_reason,
            (SELECT json_agg(json_build_object('no', p.part_no, 'state', p.state, 'id', p.provider_message_id, 'detail', p.detail) ORDER BY p.part_no) FROM message_send_parts p WHERE p.send_id = s.id) AS parts,
            (SELECT json_agg(e.state || ': ' || coalesce(e.detail, '') ORDER BY e.id) FROM message_send_events e WHERE e.send_id = s.id) AS events
       FROM message_sends s ORDER BY s.id`);
  return JSON.stringify({ sends: rows, smsc: run.smsc.partLog, receipts: run.smsc.receiptsSent });
}

async function waitDelivered(run: Run, timeoutMs = 15_000): Promise<void> {
  try {
    await waitUntil(async () => {
      const s = await sendStates(run);
      return s.get(run.target) === 'delivered' && s.get(run.control) === 'delivered';
    }, timeoutMs, 'both sends delivered');
  } catch (err) {
    throw new Error(`${(err as Error).message}: ${await dump(run)}`);
  }
}

test('SMSC takes part 2 but its submit_sm_resp never comes: the receipt confirms it, the send resumes at part 3', async () => {
  const run = await setUp((target) => ({ faults: [{ part: 2, to: target, action: 'drop', accept: true }] }));
  assert.equal((await run.service.tick()).sends, 2);
  await waitDelivered(run);
  assertEachPartOnce(run);
  const events = await run.db.pool.query<{ detail: string }>(
    `SELECT e.detail FROM message_send_events e JOIN message_sends s ON s.id = e.send_id WHERE s.address = $1 ORDER BY e.id`, [run.target]);
  assert.ok(events.rows.some((e) => /part 2 confirmed by receipt/.test(e.detail)), JSON.stringify(events.rows));
});

test('part 2 is lost (no answer, not taken) and part 1\'s receipt comes first: not delivered until every part is, part 2 resent once', async () => {
  const run = await setUp((target) => ({ faults: [{ part: 2, to: target, action: 'drop', accept: false }], receiptDelayMs: 0 }));
  await run.service.tick();
  // Part 1 was taken and receipted DELIVRD while parts 2 and 3 are unsent.
  const part1 = () => run.smsc.partLog.find((p) => p.to === run.target && p.seq === 1)?.id;
  await run.smsc.waitFor(() => part1() !== undefined && run.smsc.receiptsSent.includes(part1()!), 5000, 'receipt of part 1');
  await waitUntil(async () => {
    const q = await run.db.pool.query<{ state: string }>(`SELECT state FROM message_send_parts WHERE provider_message_id = $1`, [part1()]);
    return q.rows[0]?.state === 'delivered';
  }, 5000, 'part 1 delivered in the database');
  const during = await run.db.pool.query<{ state: string; parts: string[] }>(
    `SELECT s.state, array_agg(p.state ORDER BY p.part_no) AS parts FROM message_sends s JOIN message_send_parts p ON p.send_id = s.id
      WHERE s.address = $1 GROUP BY s.id`, [run.target]);
  assert.notEqual(during.rows[0]!.state, 'delivered', 'an early receipt does not complete a send with parts unsent');
  assert.notEqual(during.rows[0]!.state, 'sent');
  assert.equal(during.rows[0]!.parts[0], 'delivered');
  assert.notEqual(during.rows[0]!.parts[2], 'sent', 'part 3 not sent yet');
  await waitDelivered(run);
  assertEachPartOnce(run);
  const lost = run.smsc.submits.filter((s) => s.to === run.target && s.status === -1).length;
  assert.equal(lost, 1, 'the lost submit happened');
});

test('part 2\'s answer arrives after the timeout: the late answer confirms it, nothing is resent', async () => {
  const run = await setUp((target) => ({
    faults: [{ part: 2, to: target, action: 'delay', accept: true, delayMs: responseTimeoutMs + 300 }],
    // Receipts come late, so only the late submit_sm_resp can confirm part 2 within the grace.
    receiptDelayMs: uncertainGraceMs + 1500,
  }));
  await run.service.tick();
  await waitUntil(async () => (await sendStates(run)).get(run.target) === 'sent', 10_000, 'target sent');
  assertEachPartOnce(run);
  await waitDelivered(run);
  assertEachPartOnce(run);
});

test('the link drops after the SMSC took part 2: after reconnecting, the receipt held for the account confirms it', async () => {
  const run = await setUp((target) => ({ faults: [{ part: 2, to: target, action: 'disconnect', accept: true }] }));
  await run.service.tick();
  await waitDelivered(run, 20_000);
  assertEachPartOnce(run);
});

test('interim receipts (ENROUTE) are not delivery: the send stays "sent" until the final DELIVRD', async () => {
  const run = await setUp((target) => ({ interimOnly: [target] }));
  await run.service.tick();
  await waitUntil(async () => (await sendStates(run)).get(run.control) === 'delivered', 10_000, 'control delivered')
    .catch(async (err: Error) => { throw new Error(`${err.message}: ${await dump(run)}`); });
  // Read at each check: the target's last part may go out after the control send is delivered.
  const ids = () => run.smsc.partLog.filter((p) => p.to === run.target).map((p) => p.id);
  await run.smsc.waitFor(() => ids().length === 3 && ids().every((id) => run.smsc.receiptsSent.includes(id)), 5000, 'interim receipts');
  await waitUntil(async () => {
    const q = await run.db.pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM message_send_parts WHERE detail LIKE 'ENROUTE%'`);
    return q.rows[0]!.n === 3;
  }, 5000, 'interim receipts stored');
  // The worker records the send once its last part is answered, which may come after the receipts.
  await waitUntil(async () => !['queued', 'sending'].includes((await sendStates(run)).get(run.target) ?? ''), 5000, 'the target send recorded');
  assert.equal((await sendStates(run)).get(run.target), 'sent', 'ENROUTE does not make a send delivered');
  run.smsc.releaseFinalReceipts();
  await waitDelivered(run);
  assertEachPartOnce(run);
});

test('the SMSC is down far longer than the retry budget: reminders wait for it instead of failing, then go out once', async () => {
  const run = await setUp(() => ({}), { smscDown: true });
  await run.service.tick();
  // Three attempts at 100 ms backoff would be spent in well under a second; wait through several.
  await waitUntil(async () => {
    const q = await run.db.pool.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM message_send_events WHERE detail LIKE 'channel unavailable%'`);
    return q.rows[0]!.n >= 8;
  }, 15_000, 'retries during the outage');
  const during = await sendStates(run);
  assert.deepEqual([...during.values()], ['queued', 'queued'], 'an outage of the channel does not fail the send');
  const attempts = await run.db.pool.query<{ attempts: number }>(`SELECT attempts FROM message_sends`);
  assert.ok(attempts.rows.every((r) => r.attempts === 0), 'no attempt used up while the channel was down');
  await run.smsc.start(run.smsc.port);
  await waitDelivered(run, 20_000);
  assertEachPartOnce(run);
});

test('a queued send whose job was lost (queue retries exhausted during a database outage) is picked up by the tick', async () => {
  const run = await setUp(() => ({}));
  const { rows } = await run.db.pool.query<{ id: number }>(
    `INSERT INTO message_sends (recipient_kind, recipient_id, channel, address, body, created_at, updated_at)
     VALUES ('member', $1, 'sms', '13900009999', '【三会一课提醒】测试：任务丢失后重新提交。', now() - interval '1 hour', now() - interval '1 hour')
     RETURNING id`, [run.town.branches[0]!.secretaryId]);
  await run.service.tick();
  await waitUntil(async () => {
    const q = await run.db.pool.query<{ state: string }>(`SELECT state FROM message_sends WHERE id = $1`, [rows[0]!.id]);
    return q.rows[0]?.state === 'delivered';
  }, 10_000, 'the orphaned send delivered');
  assert.equal(run.smsc.messages.filter((m) => m.to === '13900009999').length, 1);
  // A second tick does not send it again.
  await run.service.tick();
  await waitDelivered(run);
  assert.equal(run.smsc.messages.filter((m) => m.to === '13900009999').length, 1);
});
