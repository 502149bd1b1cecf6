import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { createTestDatabase, type TestDatabase } from '../support/database.ts';
import { SmscSimulator } from '../support/smsc-simulator.ts';
import { setUnitRule } from '../../scheduler/obligations/rules.ts';
import { buildTown, keepOnlyObligations, waitUntil } from './fixtures.ts';
import { SchedulerProcesses } from './scheduler-process.ts';

let db: TestDatabase | undefined;
const smsc = new SmscSimulator({ respondDelayMs: 40 });
const schedulers = new SchedulerProcesses();

after(async () => {
  schedulers.killAll();
  await smsc.stop();
  await db?.drop();
});

test('the scheduler is SIGKILLed mid-run and restarted: no reminder lost, none duplicated', async () => {
  db = await createTestDatabase();
  await smsc.start();
  const town = await buildTown(db.pool, 30, { committee: true });
  await setUnitRule(db.pool, town.cityId, { obligation: 'member_meeting', period: 'quarter', requiredCount: 1, minDurationS: 8 });
  await setUnitRule(db.pool, town.cityId, { obligation: 'committee_meeting', period: 'month', requiredCount: 1, minDurationS: 8 });
  await keepOnlyObligations(db.pool, ['member_meeting', 'committee_meeting']);
  // Simulated time: one real second is one day, from shortly before the 7-day reminders of March / Q1
  // to after the escalations. Both processes share the epoch, so time runs on across the restart.
  const env = {
    DATABASE_URL: db.url,
    SMPP_PORT: String(smsc.port), SMPP_SYSTEM_ID: 'sched', SMPP_PASSWORD: 'secret',
    TICK_MS: '100',
    CLOCK_SIM_START: '2026-03-24T12:00:00.000Z',
    CLOCK_REAL_EPOCH: String(Date.now() + 4000),
    CLOCK_SCALE: '86400',
    PERIODS_FROM: '2025-12-31T16:00:00.000Z',
    SEND_RECOVERY_GRACE_MS: '1500',
    SEND_RETRY_BASE_MS: '200',
  };
  const branches = 31; // 30 in the town, one in the other town
  // Two obligations x (d7, d2, escalate) for March / Q1, plus February's committee-meeting escalation,
  // still within the policy's 30-day late window when the clock starts.
  const expected = branches * 2 * 3 + branches;

  const first = await schedulers.start(env);
  await smsc.waitFor(() => smsc.messages.length >= 25, 30_000, 'first reminders');
  first.kill('SIGKILL');
  await new Promise((r) => first.once('exit', r));
  const atKill = smsc.messages.length;
  const inFlight = (await db.pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM message_sends WHERE state IN ('sending', 'queued')`)).rows[0]!.n;

  await schedulers.start(env);
  await smsc.waitFor(() => smsc.messages.length >= expected, 60_000, 'all reminders');
  // Let anything that would be a duplicate arrive before judging.
  await waitUntil(async () => {
    const { rows } = await db!.pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM message_sends WHERE state NOT IN ('sent', 'delivered')`);
    return rows[0]!.n === 0;
  }, 20_000, 'all sends settled');
  await new Promise((r) => setTimeout(r, 2000));

  assert.ok(atKill < expected, `killed mid-run (${atKill} of ${expected} sent, ${inFlight} in flight)`);
  const rem = await db.pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM reminders`);
  assert.equal(rem.rows[0]!.n, expected, 'every reminder decided exactly once');
  const todos = await db.pool.query<{ n: number }>(`SELECT count(DISTINCT reminder_id)::int AS n FROM todos`);
  assert.equal(todos.rows[0]!.n, expected, 'one to-do per reminder, none lost or doubled by the kill');
  assert.equal((await db.pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM todos`)).rows[0]!.n, expected);
  assert.equal(smsc.messages.length, expected, `the SMSC received each reminder once (got ${smsc.messages.length})`);
  const perRecipient = new Map<string, number>();
  for (const m of smsc.messages) perRecipient.set(m.to, (perRecipient.get(m.to) ?? 0) + 1);
  for (const b of town.branches) assert.equal(perRecipient.get(b.mobile), 4, `secretary ${b.mobile}: d7 and d2 of two obligations`);
  assert.equal(perRecipient.get(town.townSupervisor.mobile), 90, 'town supervisor: 30 branches x 3 escalations');
  assert.equal(perRecipient.get(town.otherTownSupervisor.mobile), 3);
  assert.equal(perRecipient.get(town.countySupervisor.mobile), undefined);
  const sends = await db.pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM message_sends`);
  assert.equal(sends.rows[0]!.n, expected);
  // The kill fired right after the SMSC accepted a message whose submit_sm_resp the scheduler had not
  // yet recorded, so some sends were caught mid-flight: settled by their tagged receipts, not resent.
  const ev = await db.pool.query<{ recovered: number; confirmed: number }>(
    `SELECT count(*) FILTER (WHERE detail = 'recovered after restart')::int AS recovered,
            count(*) FILTER (WHERE detail = 'confirmed by receipt after restart')::int AS confirmed
       FROM message_send_events`,
  );
  const { recovered, confirmed } = ev.rows[0]!;
  assert.ok(recovered >= 1, 'the kill interrupted at least one send mid-flight');
  console.log(`killed after ${atKill} messages (${inFlight} queued/in flight, ${recovered} mid-flight, ${confirmed} of them settled by receipt instead of resent); ${expected} delivered once each after restart`);
});
