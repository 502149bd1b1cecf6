import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { createTestDatabase } from '../support/database.ts';
import { CloudSmsServer, demoCloudSmsOptions, type CloudMessage } from '../support/cloud-sms-server.ts';
import { startHarness, TEST_SECRET } from '../api/harness.ts';
import { apiExtra } from '../../web/server.ts';
import { createReminderRoutes } from '../../web/api/routes/reminders.ts';
import { signAccessToken } from '../../infra/tokens.ts';
import { queues } from '../../scheduler/jobs/queue.ts';
import { setUnitRule } from '../../scheduler/obligations/rules.ts';
import { addOtherCounty, adminToken, buildTown, startCloudSmsScheduler, keepOnlyObligations, waitUntil } from './fixtures.ts';

// Cloud SMS status reports, end to end: the scheduler sends reminders through the official SDKs to the
// local cloud SMS server (tests/support/cloud-sms-server.ts), which then PUSHES status reports in the
// providers' documented formats (Alibaba SmsReport, Tencent 短信下发状态回调) to the real API route
// POST /api/sms/callback/:id/:token; the API queues them (pg-boss, scheduler-sms-receipt) and the
// scheduler's dispatcher applies them: delivered, or failed and the Beidou fallback queued.

const cleanups: Array<() => Promise<unknown>> = [];
after(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => undefined);
});

test('cloud status reports pushed to the API settle sends: Alibaba DELIVERED => delivered, Tencent FAIL => failed + Beidou fallback; wrong token 404; duplicates change nothing', async () => {
  const db = await createTestDatabase();
  const h = await startHarness({ extraRouters: [apiExtra(createReminderRoutes(db.pool))] }, db);
  cleanups.push(() => h.close());
  const srv = new CloudSmsServer(demoCloudSmsOptions());
  await srv.start();
  cleanups.push(() => srv.stop());

  // 1村 (and 外村) in 昌乐县 send through the county's Alibaba account; 北村 in 寿光市 through the city's Tencent one.
  const town = await buildTown(db.pool, 1);
  await setUnitRule(db.pool, town.cityId, { obligation: 'member_meeting', period: 'quarter', requiredCount: 1, minDurationS: 8 });
  await keepOnlyObligations(db.pool, ['member_meeting']);
  await addOtherCounty(db.pool, town.cityId, { beidouCard: '0412345' });
  const token = 'cb-token-0123456789abcdef';
  // The city's admin sets both accounts up as from the console: PUT /api/units/:id/sms-providers.
  const cityAdmin = await adminToken(db.pool, TEST_SECRET, town.cityId, 'city_admin');
  const provider = async (unit: number, name: string, kind: string, signature: string, settings: object, templates: object, credentials: object) => {
    const put = await h.call('PUT', `/api/units/${unit}/sms-providers`, { token: cityAdmin, body: { providers: [
      { name, kind, priority: 1, signature, ratePerS: 50, settings, templates, credentials: { ...credentials, callbackToken: token } },
    ] } });
    assert.equal(put.status, 200, put.text);
    const got = (put.body as { providers: Array<{ id: number; credentialsSet: string[] }> }).providers[0]!;
    assert.ok(got.credentialsSet.includes('callbackToken'), 'the callback token is stored, write-only');
    assert.ok(!put.text.includes(token), 'and never returned');
    return got.id;
  };
  const ali = await provider(town.countyId, '阿里云', 'aliyun', '【昌乐县委组织部】', { endpoint: `127.0.0.1:${srv.port}`, protocol: 'http' },
    { secretary: 'SMS_1001', supervisor: 'SMS_1002' }, { accessKeyId: 'LTAI-test', accessKeySecret: 'ali-secret' });
  const tc = await provider(town.cityId, '市腾讯云', 'tencent', '【潍坊市委组织部】', { endpoint: `sms.tencentcloudapi.com:${srv.port}`, protocol: 'http://', smsSdkAppId: '1400000001' },
    { secretary: '200001', supervisor: '200002' }, { secretId: 'AKID-test', secretKey: 'tc-secret' });

  const service = await startCloudSmsScheduler(db, cleanups);
  assert.equal((await service.tick()).sends, 3);
  await waitUntil(async () => (await db.pool.query(`SELECT 1 FROM message_sends WHERE state = 'sent'`)).rowCount === 3, 15_000, 'three sends accepted');

  type Send = { id: number; reminder_id: number; state: string; failure_reason: string | null; channel: string; fallback_of: number | null };
  const sendTo = async (address: string) => (await db.pool.query<Send>(
    `SELECT id::int, reminder_id::int, state, failure_reason, channel, fallback_of::int FROM message_sends WHERE address = $1 ORDER BY id LIMIT 1`, [address])).rows[0]!;
  const msg = (phone: string): CloudMessage => srv.accepted.find((m) => m.phone === phone)!;
  const first = msg(town.branches[0]!.mobile);
  assert.equal(first.provider, 'aliyun');
  assert.equal(first.ref, String((await sendTo(town.branches[0]!.mobile)).id), 'OutId is the send id');
  const north = msg('13600000001');
  assert.equal(north.provider, 'tencent');
  const url = (id: number, t = token) => `${h.base}/api/sms/callback/${id}/${t}`;
  const receiptJobs = async () => Number((await db.pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM pgboss.job WHERE name = $1`, [queues.receipt])).rows[0]!.n);
  const snapshot = async () => JSON.stringify((await db.pool.query(
    `SELECT s.id, s.state, s.failure_reason, (SELECT count(*) FROM message_send_receipts x WHERE x.send_id = s.id) AS receipts,
            (SELECT count(*) FROM message_send_events e WHERE e.send_id = s.id) AS events FROM message_sends s ORDER BY s.id`)).rows);

  // A wrong token: 404, nothing queued, nothing changed.
  const before = await snapshot();
  const wrong = await srv.pushReports(url(ali, 'wrong-token-0123456789abc'), [CloudSmsServer.report(first, { delivered: true })]);
  assert.equal(wrong.status, 404);
  const tcForAli = await srv.pushReports(url(tc, 'wrong-token-0123456789abc'), [CloudSmsServer.report(north, { delivered: false })]);
  assert.equal(tcForAli.status, 404);
  assert.equal(await receiptJobs(), 0);
  assert.equal(await snapshot(), before);

  // Alibaba SmsReport DELIVERED => delivered, shown in the delivery view.
  const okPush = await srv.pushReports(url(ali), [CloudSmsServer.report(first, { delivered: true })]);
  assert.equal(okPush.status, 200, JSON.stringify(okPush.body));
  assert.deepEqual(okPush.body, { code: 0, msg: '成功', recorded: 0, reports: 1 });
  await waitUntil(async () => (await sendTo(first.phone)).state === 'delivered', 15_000, 'the Alibaba send delivered');
  const sup = town.countySupervisor;
  const supToken = await signAccessToken(TEST_SECRET, { userId: sup.id, username: 'sup_county', role: 'supervisor', unitId: town.countyId }, 3600);
  const view = await h.call('GET', `/api/reminders/${(await sendTo(first.phone)).reminder_id}/delivery`, { token: supToken });
  assert.equal(view.status, 200, view.text);
  const att = (view.body as { attempts: Array<{ state: string; provider: string; deliveredAt: string | null; receipts: Array<{ partNo: number; stat: string; err: string }>; partStates: Array<{ state: string }> }> }).attempts;
  assert.equal(att.length, 1);
  assert.equal(att[0]!.state, 'delivered');
  assert.equal(att[0]!.provider, 'aliyun:阿里云');
  assert.ok(att[0]!.deliveredAt);
  assert.deepEqual(att[0]!.receipts.map((r) => [r.partNo, r.stat, r.err]), [[1, 'DELIVERED', '用户接收成功']]);
  assert.deepEqual(att[0]!.partStates.map((p) => p.state), ['delivered']);

  // Tencent FAIL => failed, and the message goes out on the secretary's Beidou card.
  const failPush = await srv.pushReports(url(tc), [CloudSmsServer.report(north, { delivered: false, code: 'MK:0001', text: '用户关机' })]);
  assert.equal(failPush.status, 200, JSON.stringify(failPush.body));
  assert.deepEqual(failPush.body, { result: 0, errmsg: 'OK', recorded: 0, reports: 1 });
  await waitUntil(async () => (await sendTo(north.phone)).state === 'failed', 15_000, 'the Tencent send failed');
  const failed = await sendTo(north.phone);
  assert.match(failed.failure_reason ?? '', /MK:0001/);
  const fb = (await db.pool.query<Send>(`SELECT id::int, reminder_id::int, state, failure_reason, channel, fallback_of::int FROM message_sends WHERE fallback_of = $1`, [failed.id])).rows;
  assert.equal(fb.length, 1, 'one fallback');
  assert.deepEqual([fb[0]!.channel, fb[0]!.reminder_id], ['beidou', failed.reminder_id]);
  assert.equal((await db.pool.query(`SELECT 1 FROM message_sends WHERE address = '0412345'`)).rowCount, 1, 'to the Beidou card');

  // The same reports again, and one for a message nobody sent: accepted, applied, nothing changes.
  await waitUntil(async () => (await db.pool.query(`SELECT 1 FROM message_sends WHERE state IN ('queued', 'sending')`)).rowCount === 0, 15_000, 'the fallback settled');
  const settled = await snapshot();
  const dup = await srv.pushReports(url(ali), [
    CloudSmsServer.report(first, { delivered: true }), CloudSmsServer.report(first, { delivered: false }),
    CloudSmsServer.report({ ...first, id: '999999999999^0', ref: '' }, { delivered: true }),
  ]);
  assert.equal(dup.status, 200);
  const dupTc = await srv.pushReports(url(tc), [CloudSmsServer.report(north, { delivered: false, code: 'MK:0001', text: '用户关机' }), CloudSmsServer.report(north, { delivered: true })]);
  assert.equal(dupTc.status, 200);
  await waitUntil(async () => (await db.pool.query(`SELECT 1 FROM pgboss.job WHERE name = $1 AND state <> 'completed'`, [queues.receipt])).rowCount === 0, 15_000, 'every report job worked');
  assert.equal(await receiptJobs(), 7);
  const later = JSON.parse(await snapshot()) as Array<{ id: number; receipts: string }>;
  const settledRows = JSON.parse(settled) as Array<{ id: number; receipts: string }>;
  // A final state is never undone; only the late reports' own states are noted (once) for the view.
  assert.deepEqual(later.map((r) => ({ ...r, receipts: undefined })), settledRows.map((r) => ({ ...r, receipts: undefined })));
  const receipts = await db.pool.query<{ stat: string }>(`SELECT stat FROM message_send_receipts ORDER BY id`);
  // Reports of one push are applied by the worker in any order: which ones were noted counts, not their order.
  assert.deepEqual(receipts.rows.map((r) => r.stat).sort(), ['DELIVERED', 'DELIVRD', 'MK:0001', 'MK:0001']);
  assert.equal((await sendTo(first.phone)).state, 'delivered');
  assert.equal((await sendTo(north.phone)).state, 'failed');

  // A body that is not an array of objects is refused before anything is queued.
  const junk = await srv.pushReports(url(ali), 'x'.repeat(10) as unknown as Array<Record<string, unknown>>);
  assert.equal(junk.status, 400);

  // Without the scheduler's queue (as on a database where the scheduler never ran) reports are not lost:
  // 503, and the provider pushes again later.
  await service.stop();
  await db.pool.query(`DROP SCHEMA pgboss CASCADE`);
  const noQueue = await srv.pushReports(url(ali), [CloudSmsServer.report(first, { delivered: true })]);
  assert.equal(noQueue.status, 503, JSON.stringify(noQueue.body));
  assert.match(JSON.stringify(noQueue.body), /稍后重推.*push again later/);
});
