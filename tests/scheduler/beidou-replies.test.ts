import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { createTestDatabase } from '../support/database.ts';
import { openPtyPair } from '../support/pty-pair.ts';
import { BeidouTerminalSim } from '../support/beidou-terminal-sim.ts';
import { BeidouTerminal } from '../../scheduler/channels/BeidouTerminal.ts';
import { beidouHooks } from '../../scheduler/channels/beidou/replies.ts';
import { ManualClock } from '../../scheduler/clock.ts';
import { SchedulerService } from '../../scheduler/service.ts';
import { defaultReminderPolicy } from '../../scheduler/reminders/policy.ts';
import { buildBeidouBranch, waitUntil } from './fixtures.ts';

// A BD-3 terminal (independent simulator) with a level-0 card; the secretary has an 8-digit card.
// The scheduler's reminder goes out over Beidou; the secretary answers "1 03-28" from the handset;
// the terminal's $BDTCI reaches recordReply (scheduler/replies/ReplyInbox.ts) and the real database
// records it on that reminder, with the date. Receipts (BD-3 confirm flag) settle the frames.

const cleanups: Array<() => Promise<unknown>> = [];
after(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => undefined);
});

test('a reminder to an 8-digit card over a BD-3 terminal; receipts settle it; the reply "1 03-28" lands on the reminder', async () => {
  const db = await createTestDatabase();
  cleanups.push(() => db.drop());
  const pty = await openPtyPair();
  cleanups.push(() => pty.close());
  const sim = new BeidouTerminalSim(pty.b, { protocol: 'bd3', card: '15240507', intervalS: 1, level: 0, receipts: true });
  await sim.open();
  cleanups.push(() => sim.close());
  const card = '16000001';
  const { secretaryId: secretary } = await buildBeidouBranch(db.pool, card);

  let service: SchedulerService | null = null;
  const clock = new ManualClock(new Date('2026-03-25T00:00:00Z'));
  const beidou = new BeidouTerminal({ path: pty.a, feedbackTimeoutMs: 3000 }, beidouHooks(db.pool, (r) => service?.onReceipt(r), clock));
  cleanups.push(() => beidou.close());
  const info = await beidou.open();
  assert.equal(info.protocol, 'bd3');
  assert.equal(info.capacityBits, 110, 'level 0: the level-1 figure');
  service = new SchedulerService({
    pool: db.pool, databaseUrl: db.url, clock,
    policy: defaultReminderPolicy, channels: { beidou }, periodsFrom: new Date('2025-12-31T16:00:00Z'),
  });
  await service.start();
  cleanups.push(() => service!.stop());

  assert.equal((await service.tick()).sends, 1);
  // 'delivered' directly when the last frame's receipt beat the worker's own commit (one transaction does both).
  await waitUntil(async () => (await db.pool.query(`SELECT 1 FROM message_sends WHERE state IN ('sent', 'delivered')`)).rowCount === 1, 60_000, 'the Beidou send'); // numbered 110-bit frames, 1 s apart, until the short form is used
  assert.ok(sim.accepted.length >= 1 && sim.accepted.every((m) => m.to === card && m.bytes * 8 <= 110), JSON.stringify(sim.accepted));

  // The BD-3 confirm flag was set; the recipient's confirmation settles each frame of the send.
  assert.ok(sim.accepted.every((m) => m.receiptRequested));
  await waitUntil(async () => (await db.pool.query(`SELECT 1 FROM message_send_parts WHERE state <> 'delivered'`)).rowCount === 0, 10_000, 'every frame delivered');
  const receipts = await db.pool.query<{ stat: string }>(`SELECT stat FROM message_send_receipts`);
  assert.deepEqual(receipts.rows.map((r) => r.stat), sim.accepted.map(() => 'DELIVRD'), 'one receipt per frame, recorded for the delivery view');

  // An unknown card's message is recorded as such, not attached to anyone's reminder.
  sim.deliver('16000999', '1 03-28');
  sim.deliver(card, '1 03-28');
  type Reply = { outcome: string; from_address: string; reminder_id: number | null; member_id: number | null; scheduled_for: string | null };
  const replies = async () => (await db.pool.query<Reply>(
    `SELECT outcome, from_address, reminder_id::int, member_id::int, to_char(scheduled_for, 'YYYY-MM-DD') AS scheduled_for
       FROM reminder_replies WHERE channel = 'beidou' ORDER BY id`)).rows;
  await waitUntil(async () => (await replies()).length === 2, 10_000, 'both replies recorded');
  const reminder = (await db.pool.query<{ id: number }>(`SELECT reminder_id::int AS id FROM message_sends`)).rows[0]!.id;
  const [unknown, mine] = await replies();
  assert.equal(unknown!.outcome, 'unknown_sender');
  assert.equal(unknown!.reminder_id, null);
  assert.deepEqual({ ...mine, from_address: mine!.from_address.replace(/^0+/, '') },
    { outcome: 'scheduled', from_address: card, reminder_id: reminder, member_id: secretary, scheduled_for: '2026-03-28' });
});
