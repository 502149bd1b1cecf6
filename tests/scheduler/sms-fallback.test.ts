import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { CMD, cstr, encodeSm, u8 } from '../support/smpp-pdu.ts';
import { createTestDatabase, type TestDatabase } from '../support/database.ts';
import { SmscSimulator } from '../support/smsc-simulator.ts';
import { openPtyPair, type PtyPair } from '../support/pty-pair.ts';
import { BeidouTerminalSim } from '../support/beidou-terminal-sim.ts';
import { SmppChannel } from '../../scheduler/channels/SmppChannel.ts';
import { splitUcs2 } from '../../scheduler/channels/smsEncoding.ts';
import { setUnitRule } from '../../scheduler/obligations/rules.ts';
import { buildTown, keepOnlyObligations, startSmsAndBeidouScheduler, waitUntil } from './fixtures.ts';

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
  // §4.12.1 alert_notification (0x00000102) and a mobile-originated deliver_sm (esm_class 0), encoded by the simulator's own codec.
  const alert = Buffer.concat([u8(1), u8(1), cstr('1'), u8(1), u8(1), cstr('2')]);
  assert.equal(smsc.injectToBound(0x00000102, alert), 1, 'one bound session');
  smsc.injectToBound(CMD.deliver_sm, encodeSm({
    serviceType: '', sourceTon: 1, sourceNpi: 1, source: '13800000001', destTon: 0, destNpi: 0, dest: '10690000', esmClass: 0, protocolId: 0,
    priority: 0, scheduleDeliveryTime: '', validityPeriod: '', registeredDelivery: 0, replaceIfPresent: 0, dataCoding: 0, smDefaultMsgId: 0,
    shortMessage: Buffer.from('hello', 'latin1'),
  }));
  const again = await ch.send('13800000001', '短信', 43);
  assert.ok(again.ok);
});

test('SMPP: receipts in the Appendix B format still settle parts when the SMSC rewrites the sender address', async () => {
  // Operator SMSCs often replace the submitted (extended) source number by their service number; the
  // receipt then comes back addressed to that number, so only receipted_message_id / "id:" identify the part.
  const smsc = new SmscSimulator({ rewriteSourceTo: '10690000' });
  await smsc.start();
  cleanups.push(() => smsc.stop());
  const receipts: Array<{ id: string; stat: string }> = [];
  const ch = new SmppChannel({ port: smsc.port, systemId: 'sched', password: 'secret' }, (r) => receipts.push({ id: r.providerMessageId, stat: r.stat }));
  cleanups.push(() => ch.close());
  const r = await ch.send('13800000009', '请于本季度召开支部党员大会', 77);
  assert.ok(r.ok, JSON.stringify(r));
  await waitUntil(() => receipts.length === 1, 5000, 'the receipt');
  const part = smsc.partLog[0]!;
  assert.notEqual(part.from, '10690000', 'the client submitted its own (extended) source address');
  const pdu = smsc.receiptPdus[0]!;
  assert.equal(pdu.dest, '10690000', 'the receipt is addressed to the rewritten number');
  assert.match(pdu.text, /^id:\d{10} sub:001 dlvrd:001 submit date:\d{10} done date:\d{10} stat:DELIVRD err:000 Text:/);
  assert.deepEqual(receipts, [{ id: part.id, stat: 'DELIVRD' }], 'the part is settled by its message id');
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
  await keepOnlyObligations(db.pool, ['member_meeting']);
  const [b0, b1] = town.branches;
  await db.pool.query(`UPDATE members SET preferred_channel = 'beidou', beidou_card = '0300001' WHERE id = $1`, [b0!.secretaryId]);
  await db.pool.query(`UPDATE members SET beidou_card = '0300002' WHERE id = $1`, [b1!.secretaryId]); // SMS to b1 is rejected
  await db.pool.query(`UPDATE members SET beidou_card = '0300003' WHERE id = $1`, [town.branches[2]!.secretaryId]); // SMS to b2 undelivered
  await db.pool.query(`DELETE FROM members WHERE branch_id IN (SELECT id FROM branches WHERE name = '外村党支部')`);
  await db.pool.query(`DELETE FROM branches WHERE name = '外村党支部'`);

  const service = await startSmsAndBeidouScheduler(db, smsc.port, pty.a, cleanups);

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
  // A level-2 card gets the short form that fits one frame (scheduler/channels/beidou/shortForms.ts).
  assert.ok(sim.accepted.every((m) => m.text.includes('大会')), JSON.stringify(sim.accepted.map((m) => m.text)));
  const events = await db.pool.query<{ state: string }>(`SELECT state FROM message_send_events ORDER BY id`);
  const states = events.rows.map((e) => e.state);
  for (const s of ['queued', 'sent', 'failed', 'delivered']) assert.ok(states.includes(s), `event ${s} recorded`);
  // A second tick on the same day decides nothing new.
  assert.equal((await service.tick()).reminders, 0);
});
