import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { createTestDatabase } from '../support/database.ts';
import { CmppIsmgSimulator } from '../support/cmpp-ismg-sim.ts';
import { CmppChannel } from '../../scheduler/channels/sms/CmppChannel.ts';
import type { DeliveryReceipt } from '../../scheduler/channels/types.ts';
import { ManualClock } from '../../scheduler/clock.ts';
import { SchedulerService } from '../../scheduler/service.ts';
import { setUnitRule } from '../../scheduler/obligations/rules.ts';
import { defaultReminderPolicy } from '../../scheduler/reminders/policy.ts';
import { recordReply, type ReplyResult } from '../../scheduler/replies/ReplyInbox.ts';
import { buildTown, keepOnlyObligations, waitUntil } from './fixtures.ts';

// CMPP (China Mobile 106 gateways) against an independent ISMG simulator written from the CMPP 3.0 /
// 2.0 specification (tests/support/cmpp-ismg-sim.ts): CONNECT authenticated both ways, a long reminder
// submitted as a 3-part TP_udhi message, status reports settling the parts, a secretary's reply (MO,
// itself in two parts) landing on the reminder, ACTIVE_TEST answered.

const cleanups: Array<() => Promise<unknown>> = [];
after(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => undefined);
});

test('CMPP 3.0: a wrong shared secret is refused (status 3); the right one connects and the link test is answered', async () => {
  const ismg = new CmppIsmgSimulator({ version: '3.0', sourceAddr: '901234', secret: 'right-secret' });
  await ismg.start();
  cleanups.push(() => ismg.stop());
  const wrong = new CmppChannel({ port: ismg.port, sourceAddr: '901234', sharedSecret: 'wrong-secret', srcId: '1065712' }, { onReceipt: () => undefined });
  cleanups.push(() => wrong.close());
  const r = await wrong.send('13800000001', '测试');
  assert.ok(!r.ok && r.unavailable && /status 3/.test(r.reason), JSON.stringify(r));
  assert.deepEqual(ismg.connects.map((c) => c.status), [3]);
  assert.equal(ismg.submits.length, 0);

  const receipts: DeliveryReceipt[] = [];
  const ok = new CmppChannel({ port: ismg.port, sourceAddr: '901234', sharedSecret: 'right-secret', srcId: '1065712' }, { onReceipt: (x) => receipts.push(x) });
  cleanups.push(() => ok.close());
  const sent = await ok.send('8613800000002', '请按时召开支部党员大会', 15);
  assert.ok(sent.ok, JSON.stringify(sent));
  assert.equal(ismg.connects.at(-1)!.ok, true);
  assert.equal(ismg.connects.at(-1)!.version, 0x30);
  await ismg.waitFor(() => ismg.activeTestAnswered.length >= 1, 5000, 'ACTIVE_TEST_RESP');
  const s = ismg.submits[0]!;
  assert.deepEqual([s.dests, s.srcId, s.msgFmt, s.pkTotal, s.udhi, s.registeredDelivery], [['13800000002'], '106571215', 8, 1, false, 1]);
  await waitUntil(() => receipts.length === 1, 5000, 'status report');
  assert.deepEqual([receipts[0]!.providerMessageId, receipts[0]!.stat, receipts[0]!.sendRef], [s.msgId, 'DELIVRD', 15]);
});

test('CMPP 2.0 layout (21-octet terminal ids, 1-octet results): submit and status report', async () => {
  const ismg = new CmppIsmgSimulator({ version: '2.0', sourceAddr: '901235', secret: 's2' });
  await ismg.start();
  cleanups.push(() => ismg.stop());
  const receipts: DeliveryReceipt[] = [];
  const ch = new CmppChannel({ port: ismg.port, version: '2.0', sourceAddr: '901235', sharedSecret: 's2', srcId: '1065713' }, { onReceipt: (x) => receipts.push(x) });
  cleanups.push(() => ch.close());
  const r = await ch.send('13800000003', '支部党员大会提醒');
  assert.ok(r.ok, JSON.stringify(r));
  assert.equal(ismg.messages[0]!.text, '支部党员大会提醒');
  await waitUntil(() => receipts.length === 1, 5000, 'status report');
  assert.equal(receipts[0]!.outcome, 'delivered');
});

test('CMPP through the scheduler: a 3-part reminder, status reports deliver it, flow control is waited out, the reply "2" becomes a postponement request', async () => {
  const db = await createTestDatabase();
  cleanups.push(() => db.drop());
  const ismg = new CmppIsmgSimulator({ version: '3.0', sourceAddr: '901234', secret: 'sek', flowControlFirst: 1 });
  await ismg.start();
  cleanups.push(() => ismg.stop());
  const town = await buildTown(db.pool, 1);
  await setUnitRule(db.pool, town.cityId, { obligation: 'member_meeting', period: 'quarter', requiredCount: 1, minDurationS: 8 });
  await keepOnlyObligations(db.pool, ['member_meeting']);
  await db.pool.query(`DELETE FROM members WHERE branch_id IN (SELECT id FROM branches WHERE name = '外村党支部')`);
  await db.pool.query(`DELETE FROM branches WHERE name = '外村党支部'`);
  await db.pool.query(`UPDATE branches SET name = name || repeat('第一网格党小组联合', 9)`);
  let service: SchedulerService | undefined;
  const replies: ReplyResult[] = [];
  const cmpp = new CmppChannel({ port: ismg.port, sourceAddr: '901234', sharedSecret: 'sek', srcId: '1065712' }, {
    onReceipt: (r) => service?.onReceipt(r),
    onMo: async (mo) => {
      replies.push(await recordReply(db.pool, { channel: 'sms', from: mo.from, text: mo.text, receivedAt: new Date('2026-03-26T01:00:00Z'), ...(mo.providerMessageId ? { providerMessageId: mo.providerMessageId } : {}) }));
    },
  });
  cleanups.push(() => cmpp.close());
  service = new SchedulerService({
    pool: db.pool, databaseUrl: db.url, clock: new ManualClock(new Date('2026-03-25T00:00:00Z')),
    policy: defaultReminderPolicy, channels: { sms: cmpp }, periodsFrom: new Date('2025-12-31T16:00:00Z'),
  });
  await service.start();
  cleanups.push(() => service!.stop());
  assert.equal((await service.tick()).sends, 1);
  await waitUntil(async () => (await db.pool.query(`SELECT 1 FROM message_sends WHERE state = 'delivered'`)).rowCount === 1, 15_000, 'delivered');
  const body = (await db.pool.query<{ body: string }>(`SELECT body FROM message_sends`)).rows[0]!.body;
  assert.equal(ismg.messages.length, 1);
  assert.equal(ismg.messages[0]!.text, body, 'the gateway reassembles exactly the reminder');
  assert.equal(ismg.messages[0]!.parts, 3);
  assert.ok(ismg.submits.every((s) => s.udhi && s.pkTotal === 3 && s.content[0] === 5), 'TP_udhi with the concatenation header');
  assert.deepEqual(ismg.submits.map((s) => s.pkNumber), [1, 2, 3], 'each part once, after one flow-control answer each');
  const rc = await db.pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM message_send_receipts WHERE stat = 'DELIVRD'`);
  assert.equal(rc.rows[0]!.n, 3);

  // The secretary answers; the phone splits the long reason in two parts.
  const reason = '因连日暴雨，村委会到各自然村的道路中断，党员无法集中，申请将本季度支部党员大会延期至下季度第一周召开，请上级党组织批准。';
  const results = await ismg.sendMo(town.branches[0]!.mobile, '1065712', `2 ${reason}`, { partChars: 40 });
  assert.ok(results.length >= 2 && results.every((x) => x === 0), JSON.stringify(results));
  assert.equal(replies.length, 1, 'one reply, reassembled');
  assert.equal(replies[0]!.outcome, 'postpone_requested');
  const p = await db.pool.query<{ reason: string; state: string; requested_via: string }>(`SELECT reason, state, requested_via FROM obligation_postponements`);
  assert.deepEqual(p.rows, [{ reason, state: 'requested', requested_via: 'sms' }]);
});
