import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import type PgBoss from 'pg-boss';
import { startHarness, type Harness } from '../api/harness.ts';
import { createTestDatabase } from '../support/database.ts';
import { SmscSimulator } from '../support/smsc-simulator.ts';
import { buildDutiesWorld, type DutiesWorld } from './duties-world.ts';
import { keepOnlyObligations } from './fixtures.ts';
import { apiExtra } from '../../web/server.ts';
import { createReminderRoutes } from '../../web/api/routes/reminders.ts';
import { planReminders } from '../../scheduler/reminders/plan.ts';
import { defaultReminderPolicy } from '../../scheduler/reminders/policy.ts';
import { startQueue } from '../../scheduler/jobs/queue.ts';
import { SmppChannel } from '../../scheduler/channels/SmppChannel.ts';
import { parseReply, recordReply } from '../../scheduler/replies/ReplyInbox.ts';

// A secretary answers a reminder by SMS: the SMSC simulator writes the reply as an SMPP deliver_sm
// (mobile-originated) to the scheduler's bound session; the channel hands it to recordReply, which
// finds the reminder sent to that number. "2 <reason>" becomes a postponement request that the
// supervisor above approves through the real API; "1 <date>" marks the obligation scheduled; both
// stop the escalation of that period; the delivery view shows the replies to supervisors in the subtree.

let h: Harness;
let w: DutiesWorld;
let boss: PgBoss;
let smsc: SmscSimulator;
let sms: SmppChannel;
const moResults: Array<Awaited<ReturnType<typeof recordReply>>> = [];

const Q1_REMIND = new Date('2026-03-25T00:00:00Z'); // 7 days before the end of Q1 (China time)
const REPLY_AT = new Date('2026-03-26T02:00:00Z');
const Q1_ESCALATE = new Date('2026-04-01T20:00:00Z'); // Q1 ended 2026-03-31T16:00Z; +24 h step (04-02 in China)

before(async () => {
  const db = await createTestDatabase();
  h = await startHarness({ extraRouters: [apiExtra(createReminderRoutes(db.pool))] }, db);
  w = await buildDutiesWorld(h);
  await keepOnlyObligations(db.pool, ['member_meeting']);
  boss = await startQueue(db.url);
  smsc = new SmscSimulator();
  await smsc.start();
  sms = new SmppChannel({ port: smsc.port, systemId: 'sched', password: 'secret', reconnectMs: 100 }, () => undefined, async (mo) => {
    // The test world runs on the scheduler's clock, not the wall clock the channel stamps.
    moResults.push(await recordReply(db.pool, { channel: 'sms', from: mo.from, text: mo.text, receivedAt: REPLY_AT, ...(mo.providerMessageId ? { providerMessageId: mo.providerMessageId } : {}) }));
  });
  sms.start();
  // Bound before the SMSC writes any MO.
  assert.ok((await sms.send('13900000000', '绑定检查')).ok);
});
after(async () => {
  await sms?.close();
  await smsc?.stop();
  await boss?.stop({ graceful: false, wait: true });
  await h?.close();
});

const mobileOf = async (memberId: number) =>
  (await h.db.pool.query<{ mobile: string }>(`SELECT mobile FROM members WHERE id = $1`, [memberId])).rows[0]!.mobile;

test('reply parsing: "1 <date>" in the forms phones type, "2 <reason>", anything else unrecognised', () => {
  const at = new Date('2026-12-10T02:00:00Z');
  assert.deepEqual(parseReply('1 12-20', at), { kind: 'scheduled', date: '2026-12-20' });
  assert.deepEqual(parseReply('1 2026-12-20', at), { kind: 'scheduled', date: '2026-12-20' });
  assert.deepEqual(parseReply('１　12月20日', at), { kind: 'scheduled', date: '2026-12-20' }, 'full-width digits and 月日');
  assert.deepEqual(parseReply('1 1-5', at), { kind: 'scheduled', date: '2027-01-05' }, 'a January date in December is next year');
  assert.deepEqual(parseReply('2 暴雨路断', at), { kind: 'postpone', reason: '暴雨路断' });
  assert.deepEqual(parseReply('2', at), { kind: 'postpone', reason: '' });
  assert.equal(parseReply('1 2-30', at), null, 'no such date');
  assert.equal(parseReply('1', at), null, '"1" needs a date');
  assert.equal(parseReply('12-20', at), null);
  assert.equal(parseReply('好的', at), null);
});

test('an SMS reply "2" records a postponement request that the town approves; "1 <date>" schedules; answered periods are not escalated', async () => {
  const planned = await planReminders(h.db.pool, boss, defaultReminderPolicy, Q1_REMIND, { periodsFrom: new Date('2025-12-31T16:00:00Z') });
  assert.ok(planned.reminders >= 3, JSON.stringify(planned));
  const five = await mobileOf(w.members.five[0]!);
  const twelve = await mobileOf(w.members.twelve[0]!);

  // "2" with a reason, from the handset as the SMSC writes it (86 + national number), UCS-2.
  assert.equal(await smsc.sendMo(`86${five}`, '1069000012', '2 村委会议室维修，申请延期', { messageId: 'MO-1' }), 0);
  assert.equal(moResults.at(-1)!.outcome, 'postpone_requested');
  const reminderFive = moResults.at(-1)!.reminderId!;
  // The SMSC resends the same MO (it did not see our answer): recorded once, same outcome.
  assert.equal(await smsc.sendMo(`86${five}`, '1069000012', '2 村委会议室维修，申请延期', { messageId: 'MO-1' }), 0);
  assert.equal(moResults.at(-1)!.postponementId, moResults.at(-2)!.postponementId);
  const stored = await h.db.pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM reminder_replies WHERE provider_message_id = 'MO-1'`);
  assert.equal(stored.rows[0]!.n, 1);

  // "1 4-3" in GBK (data_coding 15, as Chinese SMSCs send): the meeting is set for April 3.
  const gbk = Buffer.from([0x31, 0x20, 0x34, 0x2d, 0x33, 0x20, 0xbf, 0xaa, 0xbb, 0xe1]); // "1 4-3 开会"
  assert.equal(await smsc.sendMo(twelve, '1069000012', gbk, { dataCoding: 15 }), 0);
  assert.deepEqual({ o: moResults.at(-1)!.outcome, d: moResults.at(-1)!.scheduledFor }, { o: 'scheduled', d: '2026-04-03' });
  // An unknown number and a reply that says nothing usable.
  assert.equal(await smsc.sendMo('13712345678', '1069000012', '2 test'), 0);
  assert.equal(moResults.at(-1)!.outcome, 'unknown_sender');
  const south = await mobileOf(w.members.south[0]!);
  assert.equal(await smsc.sendMo(south, '1069000012', '收到'), 0);
  assert.equal(moResults.at(-1)!.outcome, 'unrecognised');

  // The request is the ordinary one: the community supervisor sees it and approves it through the API.
  const listed = await h.call('GET', `/api/postponements?under=${w.townId}&state=requested`, { token: w.tokens.townSupervisor });
  assert.equal(listed.status, 200, listed.text);
  const items = (listed.body as { items: Array<{ id: number; branchId: number; obligation: string; periodKey: string; reason: string }> }).items;
  const req = items.find((i) => i.branchId === w.branches.five);
  assert.ok(req, JSON.stringify(items));
  assert.deepEqual([req.obligation, req.periodKey, req.reason], ['member_meeting', '2026-Q1', '村委会议室维修，申请延期']);
  const via = await h.db.pool.query<{ requested_via: string; requested_by_member: number }>(`SELECT requested_via, requested_by_member FROM obligation_postponements WHERE id = $1`, [req.id]);
  assert.deepEqual(via.rows[0], { requested_via: 'sms', requested_by_member: w.members.five[0] });
  const decided = await h.call('POST', `/api/postponements/${req.id}/decision`, { token: w.tokens.communitySupervisor, body: { decision: 'approve', note: '同意' } });
  assert.equal(decided.status, 200, decided.text);
  assert.equal((decided.body as { state: string }).state, 'approved');

  // Escalation after the period: the south branch (no usable answer) is escalated; five (postponed) and
  // twelve (answered "1 4-3", a date not yet passed) are not.
  await planReminders(h.db.pool, boss, defaultReminderPolicy, Q1_ESCALATE, { periodsFrom: new Date('2025-12-31T16:00:00Z') });
  const esc = await h.db.pool.query<{ branch_id: number }>(`SELECT branch_id FROM reminders WHERE target = 'supervisor' AND period_key = '2026-Q1'`);
  const escalated = new Set(esc.rows.map((r) => Number(r.branch_id)));
  assert.ok(escalated.has(w.branches.south), `south escalated: ${JSON.stringify([...escalated])}`);
  assert.ok(!escalated.has(w.branches.five), 'postponed: not escalated');
  assert.ok(!escalated.has(w.branches.twelve), 'answered "1 4-3": not escalated');

  // The delivery view shows the reply and the request's fate to the supervisor; 404 outside the subtree.
  const view = await h.call('GET', `/api/reminders/${reminderFive}/delivery`, { token: w.tokens.townSupervisor });
  assert.equal(view.status, 200, view.text);
  const v = view.body as { attempts: Array<{ channel: string; address: string }>; replies: Array<{ outcome: string; postponementState: string; text: string }> };
  assert.equal(v.replies.length, 1);
  assert.deepEqual([v.replies[0]!.outcome, v.replies[0]!.postponementState], ['postpone_requested', 'approved']);
  assert.equal(v.attempts[0]!.channel, 'sms');
  assert.match(v.attempts[0]!.address, /^\d{3}\*{4}\d{4}$/, 'the number is masked');
  const outside = await h.call('GET', `/api/reminders/${reminderFive}/delivery`, { token: w.tokens.otherCountyAdmin });
  assert.equal(outside.status, 404);
  const bad = await h.call('GET', `/api/reminders/abc/delivery`, { token: w.tokens.townSupervisor });
  assert.equal(bad.status, 400);
});

test('a cloud provider\'s reply push (Alibaba SmsUp, Tencent reply callback) lands on the reminder; a wrong token is 404', async () => {
  const token = 'cb-token-0123456789abcdef';
  // Set up as the city's admin does it (credentials, the callback token among them, are write-only).
  const put = await h.call('PUT', `/api/units/${w.cityId}/sms-providers`, { token: w.tokens.cityAdmin, body: { providers: [
    { name: '阿里云', kind: 'aliyun', priority: 1, signature: '【潍坊市委组织部】', templates: { secretary: 'SMS_1', supervisor: 'SMS_2' },
      credentials: { accessKeyId: 'a', accessKeySecret: 'b', callbackToken: token } },
    { name: '腾讯云', kind: 'tencent', priority: 2, signature: '【潍坊市委组织部】', templates: { secretary: '1', supervisor: '2' },
      settings: { smsSdkAppId: '1400000001' }, credentials: { secretId: 'a', secretKey: 'b', callbackToken: token } },
  ] } });
  assert.equal(put.status, 200, put.text);
  const [ali, tc] = (put.body as { providers: Array<{ id: number }> }).providers.map((r) => r.id);
  const south = await mobileOf(w.members.south[0]!);
  const wrong = await h.call('POST', `/api/sms/callback/${ali}/wrong-token-0123456789`, { body: [{ phone_number: south, content: '1 4-6', send_time: '2026-03-27 10:00:00', sequence_id: 1 }] });
  assert.equal(wrong.status, 404, wrong.text);
  const pushed = await h.call('POST', `/api/sms/callback/${ali}/${token}`, { body: [{ phone_number: south, content: '1 4-6', send_time: '2026-03-27 10:00:00', sequence_id: 77, dest_code: '01', sign_name: '潍坊市委组织部' }] });
  assert.equal(pushed.status, 200, pushed.text);
  assert.deepEqual(pushed.body, { code: 0, msg: '成功', recorded: 1 });
  const r = await h.db.pool.query<{ outcome: string; scheduled_for: string; provider_message_id: string }>(
    `SELECT outcome, to_char(scheduled_for, 'YYYY-MM-DD') AS scheduled_for, provider_message_id FROM reminder_replies WHERE provider_message_id = 'aliyun:77'`);
  assert.deepEqual(r.rows, [{ outcome: 'scheduled', scheduled_for: '2026-04-06', provider_message_id: 'aliyun:77' }]);
  const tcPush = await h.call('POST', `/api/sms/callback/${tc}/${token}`, { body: { extend: '', mobile: south, nationcode: '86', sign: '潍坊市委组织部', text: '2 道路结冰', time: Date.parse('2026-03-27T03:00:00Z') / 1000 } });
  assert.equal(tcPush.status, 200, tcPush.text);
  assert.deepEqual(tcPush.body, { result: 0, errmsg: 'OK', recorded: 1 });
  const bad = await h.call('POST', `/api/sms/callback/${tc}/${token}`, { raw: 'not json', contentType: 'application/json' });
  assert.equal(bad.status, 400);
});
