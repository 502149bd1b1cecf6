import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { createTestDatabase, type TestDatabase } from '../support/database.ts';
import { SmscSimulator } from '../support/smsc-simulator.ts';
import { openPtyPair, type PtyPair } from '../support/pty-pair.ts';
import { BeidouTerminalSim } from '../support/beidou-terminal-sim.ts';
import { setUnitRule } from '../../scheduler/obligations/rules.ts';
import { buildTown, keepOnlyObligations, startSmsAndBeidouScheduler, waitUntil } from './fixtures.ts';

// Beidou -> SMS: the other direction of sms-fallback.test.ts. The terminal simulator (independent of the
// driver, RDSS 2.1) refuses one recipient card with $BDFKI,TXA,N,Y,0 (not executed, no suppression: card
// error / no permission); the scheduler records the Beidou send as failed and sends the reminder by SMS
// through the SMSC simulator (independent SMPP 3.4), whose delivery receipt marks it delivered.

const cleanups: Array<() => Promise<unknown>> = [];
after(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => undefined);
});

test('a reminder the Beidou terminal refuses goes out by SMS; both sends are recorded and the SMS is delivered', async () => {
  const db: TestDatabase = await createTestDatabase();
  cleanups.push(() => db.drop());
  const smsc = new SmscSimulator();
  await smsc.start();
  cleanups.push(() => smsc.stop());
  const pty: PtyPair = await openPtyPair();
  cleanups.push(() => pty.close());
  const sim = new BeidouTerminalSim(pty.b, { card: '0242407', intervalS: 1, level: 2, refuseCards: ['0300001'] });
  await sim.open();
  cleanups.push(() => sim.close());

  const town = await buildTown(db.pool, 2);
  await setUnitRule(db.pool, town.cityId, { obligation: 'member_meeting', period: 'quarter', requiredCount: 1, minDurationS: 8 });
  await keepOnlyObligations(db.pool, ['member_meeting']);
  const [b0, b1] = town.branches;
  // Both secretaries prefer Beidou; the terminal refuses b0's card, b1's goes through (the control).
  await db.pool.query(`UPDATE members SET preferred_channel = 'beidou', beidou_card = '0300001' WHERE id = $1`, [b0!.secretaryId]);
  await db.pool.query(`UPDATE members SET preferred_channel = 'beidou', beidou_card = '0300002' WHERE id = $1`, [b1!.secretaryId]);
  await db.pool.query(`DELETE FROM members WHERE branch_id IN (SELECT id FROM branches WHERE name = '外村党支部')`);
  await db.pool.query(`DELETE FROM branches WHERE name = '外村党支部'`);

  const service = await startSmsAndBeidouScheduler(db, smsc.port, pty.a, cleanups);

  assert.equal((await service.tick()).reminders, 2, 'the scheduler decides one reminder per branch');
  await service.drain(20_000);

  type Send = { id: number; channel: string; state: string; failure_reason: string | null; fallback_of: number | null; address: string; reminder_id: number };
  const sendsOf = async (memberId: number): Promise<Send[]> => (await db.pool.query<Send>(
    `SELECT id::int, channel, state, failure_reason, fallback_of::int, address, reminder_id::int FROM message_sends WHERE recipient_id = $1 ORDER BY id`,
    [memberId])).rows;
  await waitUntil(async () => (await sendsOf(b0!.secretaryId)).map((s) => `${s.channel}:${s.state}`).join() === 'beidou:failed,sms:delivered',
    10_000, 'b0: Beidou refused, then SMS delivered');
  const [bd, fb] = await sendsOf(b0!.secretaryId);
  assert.match(bd!.failure_reason!, /refused/, 'the Beidou failure names the terminal\'s refusal');
  assert.equal(bd!.address, '0300001');
  assert.equal(fb!.fallback_of, bd!.id, 'the SMS is recorded as the fallback of the refused Beidou send');
  assert.equal(fb!.reminder_id, bd!.reminder_id, 'same reminder');
  assert.equal(fb!.address, b0!.mobile);
  assert.deepEqual(sim.refusedCards, ['0300001'], 'the terminal refused b0\'s card exactly once (a refusal is not retried)');

  // The SMSC received the fallback text and its Appendix B receipt said DELIVRD.
  const got = smsc.messages.filter((m) => m.to === b0!.mobile);
  assert.equal(got.length, 1, 'one SMS to b0');
  assert.ok(got[0]!.text.includes('支部党员大会'), got[0]!.text);
  assert.ok(smsc.receiptPdus.some((p) => / stat:DELIVRD /.test(p.text) && got[0]!.messageIds.includes(p.receiptedId)), 'the SMSC sent a DELIVRD receipt for it');
  const events = await db.pool.query<{ state: string }>(`SELECT state FROM message_send_events WHERE send_id = $1 ORDER BY id`, [fb!.id]);
  assert.deepEqual(events.rows.map((e) => e.state), ['queued', 'sent', 'delivered']);

  // Control: the card the terminal accepts gets Beidou only, no SMS.
  assert.deepEqual((await sendsOf(b1!.secretaryId)).map((s) => `${s.channel}:${s.state}`), ['beidou:sent']);
  // One reminder to b1's card: one frame, or numbered frames each once and in order when it does not fit the card.
  assert.ok(sim.accepted.length > 0 && sim.accepted.every((m) => m.to === '0300002'), JSON.stringify(sim.accepted.map((m) => m.to)));
  const n = sim.accepted.length;
  if (n > 1) assert.deepEqual(sim.accepted.map((m) => /^\((\d+)\/(\d+)\)/.exec(m.text)?.slice(1).join('/')), Array.from({ length: n }, (_, i) => `${i + 1}/${n}`));
  assert.equal(smsc.messages.filter((m) => m.to === b1!.mobile).length, 0);
});
