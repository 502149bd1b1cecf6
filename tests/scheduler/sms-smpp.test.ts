import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { createTestDatabase } from '../support/database.ts';
import { SmscSimulator } from '../support/smsc-simulator.ts';
import { STATUS } from '../support/smpp-pdu.ts';
import { SmppChannel, SmppConfig, receiptOutcome } from '../../scheduler/channels/SmppChannel.ts';
import { messageIdVariants } from '../../scheduler/channels/smsEncoding.ts';
import { ManualClock } from '../../scheduler/clock.ts';
import { SchedulerService } from '../../scheduler/service.ts';
import { setUnitRule } from '../../scheduler/obligations/rules.ts';
import { defaultReminderPolicy } from '../../scheduler/reminders/policy.ts';
import { buildTown, keepOnlyObligations, waitUntil } from './fixtures.ts';

// The SMPP corrections of issue 13, each against the independent SMSC simulator (tests/support/
// smsc-simulator.ts, written from SMPP 3.4) on a real socket: national numbers with their TON/NPI,
// numeric 106 source codes not sent as alphanumeric, field limits without the NUL, interim receipts
// counted once and never taken for delivery, and receipt ids matched across hex and decimal.
// (A 3-part message with a timeout after part 2 sending part 3 once and parts 1-2 never again:
// tests/security/scheduler-smsc-faults.test.ts, first case, against the same simulator.)

const cleanups: Array<() => Promise<unknown>> = [];
after(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => undefined);
});

test('field limits are the usable characters: system_id 15, password 8, source_addr 20 (the NUL is not usable)', () => {
  const base = { port: 2775, password: 'secret' };
  assert.ok(SmppConfig.safeParse({ ...base, systemId: 'a'.repeat(15) }).success);
  assert.ok(!SmppConfig.safeParse({ ...base, systemId: 'a'.repeat(16) }).success, '16 characters leave no room for the NUL');
  assert.ok(SmppConfig.safeParse({ port: 2775, systemId: 'x', password: 'p'.repeat(8) }).success);
  assert.ok(!SmppConfig.safeParse({ port: 2775, systemId: 'x', password: 'p'.repeat(9) }).success);
  assert.ok(SmppConfig.safeParse({ ...base, systemId: 'x', sourceAddr: '1'.repeat(20) }).success);
  assert.ok(!SmppConfig.safeParse({ ...base, systemId: 'x', sourceAddr: '1'.repeat(21) }).success);
});

test('receipt states: only DELIVRD delivers; ACCEPTD, ENROUTE and UNKNOWN are interim; ids match across hex and decimal', () => {
  assert.equal(receiptOutcome('DELIVRD'), 'delivered');
  for (const s of ['ACCEPTD', 'ENROUTE', 'UNKNOWN']) assert.equal(receiptOutcome(s), 'interim', s);
  for (const s of ['UNDELIV', 'REJECTD', 'EXPIRED', 'DELETED']) assert.equal(receiptOutcome(s), 'failed', s);
  // 1000000001 = 0x3B9ACA01, in both directions, whatever the case or zero padding.
  assert.ok(messageIdVariants('1000000001').includes('3B9ACA01'));
  assert.ok(messageIdVariants('3b9aca01').includes('1000000001'));
  assert.ok(messageIdVariants('003B9ACA01').includes('1000000001'));
  assert.ok(!messageIdVariants('1000000001').includes('1000000002'));
});

test('SMPP numbering: 11-digit national numbers go as TON 2 / NPI 1, or with 86 as TON 1 / NPI 1; a numeric 106 code is not alphanumeric', async () => {
  const smsc = new SmscSimulator(); // strict numbering, as a domestic SMSC routes
  await smsc.start();
  cleanups.push(() => smsc.stop());
  const national = new SmppChannel({ port: smsc.port, systemId: 'sched', password: 'secret', sourceAddr: '1069012345' }, () => undefined);
  cleanups.push(() => national.close());
  const r1 = await national.send('13800000001', '请于本季度召开支部党员大会', 7);
  assert.ok(r1.ok, JSON.stringify(r1));
  const s1 = smsc.submits.at(-1)!;
  assert.deepEqual([s1.to, s1.destTon, s1.destNpi], ['13800000001', 2, 1]);
  assert.deepEqual([s1.source, s1.sourceTon, s1.sourceNpi], ['10690123457', 0, 1], 'numeric service code + extension, not TON 5');

  const intl = new SmppChannel({ port: smsc.port, systemId: 'sched', password: 'secret', numbering: 'international', sourceAddr: 'XXZZB' }, () => undefined);
  cleanups.push(() => intl.close());
  const r2 = await intl.send('+8613800000002', '请于本季度召开支部党员大会');
  assert.ok(r2.ok, JSON.stringify(r2));
  const s2 = smsc.submits.at(-1)!;
  assert.deepEqual([s2.to, s2.destTon, s2.destNpi], ['8613800000002', 1, 1]);
  assert.deepEqual([s2.sourceTon, s2.sourceNpi], [5, 0], 'an alphanumeric sender is TON 5');

  // What the old client did — TON 1/NPI 1 with a national number, TON 5 for digits — is refused here.
  const wrong = new SmppChannel({ port: smsc.port, systemId: 'sched', password: 'secret', destTon: 1, destNpi: 1 }, () => undefined);
  cleanups.push(() => wrong.close());
  const r3 = await wrong.send('13800000003', '测试');
  assert.ok(!r3.ok && /0x000b/.test(r3.reason), JSON.stringify(r3));
  const wrongSrc = new SmppChannel({ port: smsc.port, systemId: 'sched', password: 'secret', sourceTon: 5, sourceNpi: 0 }, () => undefined);
  cleanups.push(() => wrongSrc.close());
  const r4 = await wrongSrc.send('13800000004', '测试');
  assert.ok(!r4.ok && r4.reason.includes(`0x00${STATUS.ESME_RINVSRCTON.toString(16)}`), JSON.stringify(r4));

  // A 15-character system_id binds (the simulator reads the C-Octet String up to its NUL).
  const long = new SmscSimulator({ systemId: 'sched-123456789' });
  await long.start();
  cleanups.push(() => long.stop());
  const ch15 = new SmppChannel({ port: long.port, systemId: 'sched-123456789', password: 'secret' }, () => undefined);
  cleanups.push(() => ch15.close());
  assert.ok((await ch15.send('13800000005', '测试')).ok);
});

test('SMPP receipts through the scheduler: ACCEPTD and ENROUTE before DELIVRD (sent twice) deliver once; hex submit ids match decimal receipts', async () => {
  const db = await createTestDatabase();
  cleanups.push(() => db.drop());
  // The SMSC answers submits in hex, writes receipts in decimal and sends no receipted_message_id TLV.
  const smsc = new SmscSimulator({
    idFormat: { resp: 'hex', receipt: 'dec', tlv: false }, interimFirst: ['ACCEPTD', 'ENROUTE'], duplicateFinal: true,
  });
  await smsc.start();
  cleanups.push(() => smsc.stop());
  const town = await buildTown(db.pool, 2);
  await setUnitRule(db.pool, town.cityId, { obligation: 'member_meeting', period: 'quarter', requiredCount: 1, minDurationS: 8 });
  await keepOnlyObligations(db.pool, ['member_meeting']);
  await db.pool.query(`DELETE FROM members WHERE branch_id IN (SELECT id FROM branches WHERE name = '外村党支部')`);
  await db.pool.query(`DELETE FROM branches WHERE name = '外村党支部'`);
  // Branch 0's reminder is a 3-part message, branch 1's a single one.
  await db.pool.query(`UPDATE branches SET name = name || repeat('第一网格党小组联合', 9) WHERE id = $1`, [town.branches[0]!.id]);
  let service: SchedulerService | undefined;
  const sms = new SmppChannel({ port: smsc.port, systemId: 'sched', password: 'secret', reconnectMs: 100 },
    (r): Promise<void> | undefined => service?.onReceipt(r));
  cleanups.push(() => sms.close());
  service = new SchedulerService({
    pool: db.pool, databaseUrl: db.url, clock: new ManualClock(new Date('2026-03-25T00:00:00Z')),
    policy: defaultReminderPolicy, channels: { sms }, periodsFrom: new Date('2025-12-31T16:00:00Z'),
  });
  await service.start();
  cleanups.push(() => service!.stop());
  sms.start();
  assert.equal((await service.tick()).sends, 2);
  // 4 parts, each receipted ACCEPTD, ENROUTE, DELIVRD, DELIVRD.
  await smsc.waitFor(() => smsc.receiptsSent.length === 16, 15_000, 'all receipts written');
  await waitUntil(async () => {
    const q = await db.pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM message_sends WHERE state = 'delivered'`);
    return q.rows[0]!.n === 2;
  }, 15_000, 'both sends delivered');
  assert.ok(smsc.partLog.every((p) => /^\d+$/.test(p.id)), 'ids decimal inside the SMSC');
  const parts = await db.pool.query<{ provider_message_id: string; state: string }>(`SELECT provider_message_id, state FROM message_send_parts ORDER BY send_id, part_no`);
  assert.equal(parts.rows.length, 4);
  // Each part holds the SMSC's id for it: in hex from its submit_sm_resp, or in decimal when its receipt
  // overtook that answer (the receipt then confirmed the part itself). Hex ones were matched by decimal receipts.
  const known = new Set(smsc.partLog.flatMap((p) => [p.id, BigInt(p.id).toString(16).toUpperCase()]));
  assert.ok(parts.rows.every((p) => known.has(p.provider_message_id.toUpperCase()) && p.state === 'delivered'), `the SMSC's ids stored, all delivered: ${JSON.stringify(parts.rows)}`);
  assert.ok(parts.rows.some((p) => /[A-F]/.test(p.provider_message_id)), `hex submit ids delivered by decimal receipts: ${JSON.stringify(parts.rows)}`);
  // An interim receipt that overtook its part's submit_sm_resp waits (250 ms steps) for the id while a
  // later DELIVRD may already have matched it: wait for the 12 states, then check each came once.
  await waitUntil(async () => (await db.pool.query(`SELECT 1 FROM message_send_receipts`)).rowCount! >= 12, 10_000, 'every receipt state noted');
  const receipts = await db.pool.query<{ stat: string; n: number }>(`SELECT stat, count(*)::int AS n FROM message_send_receipts GROUP BY stat ORDER BY stat`);
  assert.deepEqual(receipts.rows, [{ stat: 'ACCEPTD', n: 4 }, { stat: 'DELIVRD', n: 4 }, { stat: 'ENROUTE', n: 4 }], 'each state once per part');
  const delivered = await db.pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM message_send_events WHERE state = 'delivered'`);
  assert.equal(delivered.rows[0]!.n, 2, 'one delivered event per send, despite the repeated DELIVRD');
  // While only interim receipts had come, nothing was delivered: the events' order says so.
  const order = await db.pool.query<{ state: string; detail: string }>(
    `SELECT e.state, e.detail FROM message_send_events e JOIN message_sends s ON s.id = e.send_id WHERE s.parts = 1 ORDER BY e.id`);
  const states = order.rows.map((e) => e.state);
  assert.ok(states.indexOf('receipt') < states.indexOf('delivered'), JSON.stringify(order.rows));
});
