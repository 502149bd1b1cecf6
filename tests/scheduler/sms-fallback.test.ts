import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import smpp from 'smpp';
import { createTestDatabase, type TestDatabase } from '../support/database.ts';
import { SmscSimulator } from '../support/smsc-simulator.ts';
import { openPtyPair, type PtyPair } from '../support/pty-pair.ts';
import { BeidouTerminalSim } from '../support/beidou-terminal-sim.ts';
import { SmppChannel } from '../../scheduler/channels/SmppChannel.ts';
import { splitUcs2 } from '../../scheduler/channels/smsEncoding.ts';
import { BeidouTerminal } from '../../scheduler/channels/BeidouTerminal.ts';
import { ManualClock } from '../../scheduler/clock.ts';
import { SchedulerService } from '../../scheduler/service.ts';
import { setUnitRule } from '../../scheduler/obligations/rules.ts';
import { defaultReminderPolicy } from '../../scheduler/reminders/policy.ts';
import { buildTown, waitUntil } from './fixtures.ts';

const cleanups: Array<() => Promise<unknown>> = [];
after(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => undefined);
});

test('UCS-2 splitting: 70 characters in one SMS, 67 per concatenated part, surrogate pairs kept whole', () => {
  assert.equal(splitUcs2('党'.repeat(70), 1).length, 1);
  assert.equal(splitUcs2('党'.repeat(70), 1)[0]!.udh, null);
  const parts = splitUcs2('党'.repeat(71), 9);
  assert.equal(parts.length, 2);
  assert.deepEqual([...parts[0]!.udh!], [0x05, 0x00, 0x03, 9, 2, 1]);
  assert.equal(parts[0]!.payload.length, 134);
  const emoji = splitUcs2('a'.repeat(66) + '😀' + 'b'.repeat(10), 3);
  assert.equal(emoji[0]!.text.length, 66, 'the pair is moved to the next part');
  assert.equal(emoji.map((p) => p.text).join(''), 'a'.repeat(66) + '😀' + 'b'.repeat(10));
});

test('SMPP: long Chinese text is concatenated, throttling is retried with backoff, receipts come back', async () => {
  const smsc = new SmscSimulator({ throttleFirst: 2 });
  await smsc.start();
  cleanups.push(() => smsc.stop());
  const receipts: string[] = [];
  const ch = new SmppChannel({ port: smsc.port, systemId: 'sched', password: 'secret', throttleBackoffMs: 20 }, (r) => receipts.push(r.providerMessageId));
  cleanups.push(() => ch.close());
  const text = '【三会一课提醒】' + '请按时召开支部党员大会并全程录像。'.repeat(8);
  assert.ok(text.length > 134 && text.length <= 201);
  const r = await ch.send('13800000001', text, 42);
  assert.ok(r.ok, JSON.stringify(r));
  assert.equal(r.ok && r.parts.length, 3);
  assert.equal(smsc.messages.length, 1);
  assert.equal(smsc.messages[0]!.text, text, 'the SMSC reassembles exactly the text sent');
  const accepted = smsc.submits.filter((s) => s.status === 0);
  assert.ok(accepted.every((s) => s.dataCoding === 8 && s.esmClass === 0x40 && s.udh));
  assert.equal(smsc.submits.filter((s) => s.status === 0x58).length, 6, 'each part throttled twice, then accepted');
  await waitUntil(() => receipts.length === 3, 5000, 'three receipts');
  assert.deepEqual(receipts.sort(), smsc.messages[0]!.messageIds.sort());

  // An unexpected PDU from the SMSC is answered or ignored, never fatal.
  for (const s of (smsc as unknown as { bound: Set<{ send(p: unknown): boolean }> }).bound) {
    s.send(new smpp.PDU('alert_notification', { source_addr: '1', esme_addr: '2' }));
    s.send(new smpp.PDU('deliver_sm', { source_addr: '13800000001', destination_addr: '10690000', short_message: 'hello', esm_class: 0 }));
  }
  const again = await ch.send('13800000001', '短信', 43);
  assert.ok(again.ok);
});

test('reminders go out on each secretary\'s channel; a failed SMS falls back to Beidou; every send state is recorded', async () => {
  const db: TestDatabase = await createTestDatabase();
  cleanups.push(() => db.drop());
  // b1's number is refused at submit; b2's is accepted but never delivered (receipt UNDELIV).
  const smsc = new SmscSimulator({ rejectDestinations: ['13800000001'], undeliverable: ['13800000002'] });
  await smsc.start();
  cleanups.push(() => smsc.stop());
  const pty: PtyPair = await openPtyPair();
  cleanups.push(() => pty.close());
  const sim = new BeidouTerminalSim(pty.b, { card: '0242407', intervalS: 1, level: 2 });
  await sim.open();
  cleanups.push(() => sim.close());

  const town = await buildTown(db.pool, 4);
  await setUnitRule(db.pool, town.cityId, { obligation: 'member_meeting', period: 'quarter', requiredCount: 1, minDurationS: 8 });
  for (const ob of ['committee_meeting', 'group_meeting', 'party_lesson', 'theme_day', 'sunshine_day'] as const) {
    await setUnitRule(db.pool, town.cityId, { obligation: ob, period: 'quarter', requiredCount: 1, minDurationS: 8, enabled: false });
  }
  const [b0, b1] = town.branches;
  await db.pool.query(`UPDATE members SET preferred_channel = 'beidou', beidou_card = '0300001' WHERE id = $1`, [b0!.secretaryId]);
  await db.pool.query(`UPDATE members SET beidou_card = '0300002' WHERE id = $1`, [b1!.secretaryId]); // SMS to b1 is rejected
  await db.pool.query(`UPDATE members SET beidou_card = '0300003' WHERE id = $1`, [town.branches[2]!.secretaryId]); // SMS to b2 undelivered
  await db.pool.query(`DELETE FROM members WHERE branch_id IN (SELECT id FROM branches WHERE name = '外村党支部')`);
  await db.pool.query(`DELETE FROM branches WHERE name = '外村党支部'`);

  const sms = new SmppChannel({ port: smsc.port, systemId: 'sched', password: 'secret' }, (r): Promise<void> => service.onReceipt(r));
  cleanups.push(() => sms.close());
  const beidou = new BeidouTerminal({ path: pty.a, feedbackTimeoutMs: 2000 });
  await beidou.open();
  cleanups.push(() => beidou.close());
  const clock = new ManualClock(new Date('2026-03-25T00:00:00Z')); // inside the 7-day window of Q1
  const service = new SchedulerService({
    pool: db.pool, databaseUrl: db.url, clock, policy: defaultReminderPolicy, channels: { sms, beidou },
    periodsFrom: new Date('2025-12-31T16:00:00Z'),
  });
  await service.start();
  cleanups.push(() => service.stop());

  const r = await service.tick();
  assert.equal(r.reminders, 4);
  await service.drain(20_000);
  const { rows } = await db.pool.query<{ recipient_id: number; channel: string; state: string; failure_reason: string | null; fallback_of: number | null; body: string }>(
    `SELECT recipient_id, channel, state, failure_reason, fallback_of, body FROM message_sends ORDER BY id`,
  );
  const of = (memberId: number) => rows.filter((x) => x.recipient_id === memberId).map((x) => `${x.channel}:${x.state}`);
  assert.deepEqual(of(b0!.secretaryId), ['beidou:sent'], 'preferred Beidou');
  assert.deepEqual(of(b1!.secretaryId), ['sms:failed', 'beidou:sent'], 'SMS rejected, then Beidou');
  assert.match(rows.find((x) => x.recipient_id === b1!.secretaryId && x.channel === 'sms')!.failure_reason!, /0x000b/);
  await waitUntil(async () => {
    const q = await db.pool.query<{ state: string }>(`SELECT state FROM message_sends WHERE recipient_id = $1`, [town.branches[3]!.secretaryId]);
    return q.rows[0]?.state === 'delivered';
  }, 5000, 'receipt for branch 3');
  // The UNDELIV receipt fails b2's SMS and sends the reminder by Beidou instead.
  const channelStates = async (memberId: number): Promise<string[]> => {
    const q = await db.pool.query<{ channel: string; state: string }>(`SELECT channel, state FROM message_sends WHERE recipient_id = $1 ORDER BY id`, [memberId]);
    return q.rows.map((x) => `${x.channel}:${x.state}`);
  };
  await waitUntil(async () => (await channelStates(town.branches[2]!.secretaryId)).join() === 'sms:failed,beidou:sent', 10_000, 'b2: SMS undelivered, then Beidou');
  const undeliv = await db.pool.query<{ failure_reason: string }>(`SELECT failure_reason FROM message_sends WHERE recipient_id = $1 AND channel = 'sms'`, [town.branches[2]!.secretaryId]);
  assert.match(undeliv.rows[0]!.failure_reason, /UNDELIV/);
  assert.deepEqual(await channelStates(town.branches[3]!.secretaryId), ['sms:delivered']);
  assert.deepEqual(sim.accepted.map((m) => m.to).sort(), ['0300001', '0300002', '0300003']);
  assert.ok(sim.accepted.every((m) => m.text.includes('支部党员大会')), JSON.stringify(sim.accepted.map((m) => m.text)));
  const events = await db.pool.query<{ state: string }>(`SELECT state FROM message_send_events ORDER BY id`);
  const states = events.rows.map((e) => e.state);
  for (const s of ['queued', 'sent', 'failed', 'delivered']) assert.ok(states.includes(s), `event ${s} recorded`);
  // A second tick on the same day decides nothing new.
  assert.equal((await service.tick()).reminders, 0);
});
