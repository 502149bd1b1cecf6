import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { createTestDatabase } from '../support/database.ts';
import { openPtyPair } from '../support/pty-pair.ts';
import { BeidouTerminalSim } from '../support/beidou-terminal-sim.ts';
import { BeidouTerminal } from '../../scheduler/channels/BeidouTerminal.ts';
import { ManualClock } from '../../scheduler/clock.ts';
import { SchedulerService } from '../../scheduler/service.ts';
import { defaultReminderPolicy } from '../../scheduler/reminders/policy.ts';
import { buildBeidouBranch, waitUntil } from './fixtures.ts';

// The terminal transmits a reminder but its feedback never reaches the driver (lost on the line). The
// driver does not resend blind: the send is failed as "uncertain" with its part left unconfirmed, and
// the dispatcher decides — here it falls back to the secretary's mobile. The card saw it once.

const cleanups: Array<() => Promise<unknown>> = [];
after(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => undefined);
});

test('no feedback for a Beidou frame: recorded uncertain, never retransmitted, the dispatcher falls back to SMS', async () => {
  const db = await createTestDatabase();
  cleanups.push(() => db.drop());
  const pty = await openPtyPair();
  cleanups.push(() => pty.close());
  const sim = new BeidouTerminalSim(pty.b, { protocol: '2.1', card: '0242407', intervalS: 1, level: 2, silentNext: 1 });
  await sim.open();
  cleanups.push(() => sim.close());
  const card = '0300001';
  await buildBeidouBranch(db.pool, card);

  const beidou = new BeidouTerminal({ path: pty.a, feedbackTimeoutMs: 800 });
  await beidou.open();
  cleanups.push(() => beidou.close());
  const service = new SchedulerService({
    pool: db.pool, databaseUrl: db.url, clock: new ManualClock(new Date('2026-03-25T00:00:00Z')),
    policy: defaultReminderPolicy, channels: { beidou }, periodsFrom: new Date('2025-12-31T16:00:00Z'),
    dispatcher: { maxAttempts: 5, retryBaseMs: 100, retryMaxMs: 1000 },
  });
  await service.start();
  cleanups.push(() => service.stop());

  assert.equal((await service.tick()).sends, 1);
  type Send = { id: number; channel: string; state: string; failure_reason: string | null; fallback_of: number | null };
  const sends = async () => (await db.pool.query<Send>(
    `SELECT id::int, channel, state, failure_reason, fallback_of::int FROM message_sends ORDER BY id`)).rows;
  await waitUntil(async () => (await sends()).length === 2, 20_000, 'the Beidou send failed and an SMS fallback queued');
  const [bd, sms] = await sends();
  assert.equal(bd!.state, 'failed');
  assert.match(bd!.failure_reason!, /uncertain/);
  assert.equal(sms!.channel, 'sms');
  assert.equal(sms!.fallback_of, bd!.id, 'the dispatcher chose the other channel');
  const parts = await db.pool.query<{ part_no: number; state: string }>(`SELECT part_no, state FROM message_send_parts WHERE send_id = $1 ORDER BY part_no`, [bd!.id]);
  assert.equal(parts.rows[0]?.state, 'unconfirmed', 'the frame is neither "sent" nor "not sent"');
  const events = await db.pool.query<{ state: string }>(`SELECT state FROM message_send_events WHERE send_id = $1 ORDER BY id`, [bd!.id]);
  assert.ok(!events.rows.some((e) => e.state === 'queued' && events.rows.indexOf(e) > 0), `no retry was queued: ${JSON.stringify(events.rows)}`);
  assert.equal(sim.accepted.length, 1, 'the terminal transmitted the frame exactly once');
  assert.equal(sim.accepted[0]!.silent, true);
});
