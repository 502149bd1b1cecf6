import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { createTestDatabase } from '../support/database.ts';
import { CloudSmsServer, demoCloudSmsOptions, localCloudAgent, SECRETARY_TEMPLATE_PARAMS } from '../support/cloud-sms-server.ts';
import { startHarness, TEST_SECRET } from '../api/harness.ts';
import { buildDutiesWorld } from './duties-world.ts';
import { apiExtra } from '../../web/server.ts';
import { createReminderRoutes } from '../../web/api/routes/reminders.ts';
import { AliyunSmsProvider } from '../../scheduler/channels/sms/AliyunSmsProvider.ts';
import { TencentSmsProvider } from '../../scheduler/channels/sms/TencentSmsProvider.ts';
import { setUnitRule } from '../../scheduler/obligations/rules.ts';
import { signatureProblem } from '../../scheduler/reminders/messages.ts';
import { addOtherCounty, adminToken, buildTown, startCloudSmsScheduler, keepOnlyObligations, waitUntil } from './fixtures.ts';

// Cloud SMS through the providers' OFFICIAL SDKs (@alicloud/dysmsapi20170525, tencentcloud-sdk-nodejs-sms)
// against a local server that checks their documented signatures (ACS3-HMAC-SHA256, TC3-HMAC-SHA256)
// and answers as they document, throttling included (tests/support/cloud-sms-server.ts). Then the
// per-unit provider table: template + signature per city or county, fallback order, through the scheduler.

const cleanups: Array<() => Promise<unknown>> = [];
after(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => undefined);
});

const serverOpts = demoCloudSmsOptions;
const agent = localCloudAgent;
const P: Record<string, string> = { branch: '东村党支部', period: '2026年第1季度', item: '支部党员大会', done: '0', required: '1', deadline: '3月31日' };
const facts = async () => ({ kind: 'secretary' as const, params: P });

test('signatures name the sending organisation: 【三会一课提醒】 is refused, 【昌乐县委组织部】 accepted', () => {
  assert.equal(signatureProblem('【昌乐县委组织部】'), null);
  assert.equal(signatureProblem('宝城街道党工委'), null);
  assert.match(signatureProblem('【三会一课提醒】')!, /发送单位/);
  assert.match(signatureProblem('智慧党建平台')!, /organisation/);
  assert.ok(signatureProblem('x'));
});

test('official SDKs: signed requests verified, wrong secrets refused, throttling answered as the providers document', async () => {
  const srv = new CloudSmsServer(serverOpts({ aliyunThrottleFirst: 1, tencentRequestLimitFirst: 1, tencentDailyLimited: ['13800000009'] }));
  await srv.start();
  cleanups.push(() => srv.stop());
  const ali = (secret: string) => new AliyunSmsProvider({
    endpoint: `127.0.0.1:${srv.port}`, protocol: 'http', accessKeyId: 'LTAI-test', accessKeySecret: secret, signName: '昌乐县委组织部',
    templates: { secretary: 'SMS_1001', supervisor: 'SMS_1002' }, throttleRetryMs: 5000,
  }, facts);
  const tc = (key: string) => new TencentSmsProvider({
    endpoint: `sms.tencentcloudapi.com:${srv.port}`, protocol: 'http://', secretId: 'AKID-test', secretKey: key, smsSdkAppId: '1400000001',
    signName: '昌乐县委组织部', templates: { secretary: '200001', supervisor: '200002' }, throttleRetryMs: 5000,
  }, facts, agent);

  const badAli = await ali('not-the-secret').send('13800000001', '', 1);
  assert.ok(!badAli.ok && /SignatureDoesNotMatch/.test(badAli.reason), JSON.stringify(badAli));
  const badTc = await tc('not-the-key').send('13800000001', '', 1);
  assert.ok(!badTc.ok && /AuthFailure.SignatureFailure/.test(badTc.reason), JSON.stringify(badTc));
  assert.deepEqual(srv.calls.map((c) => c.signatureOk), [false, false]);

  const throttled = await ali('ali-secret').send('13800000001', '', 2);
  assert.ok(!throttled.ok && throttled.retryable && throttled.retryAfterMs === 5000 && /BUSINESS_LIMIT_CONTROL/.test(throttled.reason), JSON.stringify(throttled));
  const okAli = await ali('ali-secret').send('8613800000001', '', 3);
  assert.ok(okAli.ok && /\^0$/.test(okAli.parts[0]!.providerMessageId!), JSON.stringify(okAli));

  const limited = await tc('tc-secret').send('13800000002', '', 4);
  assert.ok(!limited.ok && limited.retryable && limited.retryAfterMs === 5000 && /RequestLimitExceeded/.test(limited.reason), JSON.stringify(limited));
  const daily = await tc('tc-secret').send('13800000009', '', 5);
  assert.ok(!daily.ok && !daily.retryable && /PhoneNumberDailyLimit/.test(daily.reason), 'a per-number daily limit is not retried here');
  const okTc = await tc('tc-secret').send('13800000002', '', 6);
  assert.ok(okTc.ok, JSON.stringify(okTc));

  assert.deepEqual(srv.accepted.map((m) => [m.provider, m.phone, m.sign, m.template]), [
    ['aliyun', '13800000001', '昌乐县委组织部', 'SMS_1001'], ['tencent', '13800000002', '昌乐县委组织部', '200001'],
  ]);
  assert.deepEqual(srv.accepted[0]!.params, P, 'Alibaba: named parameters');
  assert.deepEqual(srv.accepted[1]!.params, SECRETARY_TEMPLATE_PARAMS.map((k) => P[k]), 'Tencent: positional parameters');
  assert.ok(srv.calls.slice(2).every((c) => c.signatureOk), 'every other call carried a valid signature');
});

test('per-unit providers through the scheduler: a county\'s own signature and order, the city\'s elsewhere; a throttled provider falls back to the next', async () => {
  const db = await createTestDatabase();
  cleanups.push(() => db.drop());
  const srv = new CloudSmsServer(serverOpts({ aliyunThrottleFirst: 1 }));
  await srv.start();
  cleanups.push(() => srv.stop());
  const town = await buildTown(db.pool, 2);
  await setUnitRule(db.pool, town.cityId, { obligation: 'member_meeting', period: 'quarter', requiredCount: 1, minDurationS: 8 });
  await keepOnlyObligations(db.pool, ['member_meeting']);
  // 外村 is in the same county; a branch in another county of the city uses the city's providers.
  await addOtherCounty(db.pool, town.cityId);
  // The county's and the city's admins set their tables up through the API, as from the console.
  const h = await startHarness({ extraRouters: [apiExtra(createReminderRoutes(db.pool))] }, db);
  cleanups.push(() => h.close());
  const put = async (token: string, unit: number, providers: object[]) => {
    const r = await h.call('PUT', `/api/units/${unit}/sms-providers`, { token, body: { providers } });
    assert.equal(r.status, 200, r.text);
  };
  const entry = (name: string, kind: string, priority: number, signature: string, settings: object, templates: object, credentials: object) =>
    ({ name, kind, priority, signature, ratePerS: 50, settings, templates, credentials });
  const aliSettings = { endpoint: `127.0.0.1:${srv.port}`, protocol: 'http', throttleRetryMs: 500 };
  const tcSettings = { endpoint: `sms.tencentcloudapi.com:${srv.port}`, protocol: 'http://', smsSdkAppId: '1400000001', throttleRetryMs: 500 };
  await put(await adminToken(db.pool, TEST_SECRET, town.countyId, 'county_admin'), town.countyId, [
    entry('阿里云', 'aliyun', 1, '【昌乐县委组织部】', aliSettings, { secretary: 'SMS_1001', supervisor: 'SMS_1002' }, { accessKeyId: 'LTAI-test', accessKeySecret: 'ali-secret' }),
    entry('腾讯云', 'tencent', 2, '【昌乐县委组织部】', tcSettings, { secretary: '200001', supervisor: '200002' }, { secretId: 'AKID-test', secretKey: 'tc-secret' }),
  ]);
  await put(await adminToken(db.pool, TEST_SECRET, town.cityId, 'city_admin'), town.cityId, [
    entry('市腾讯云', 'tencent', 1, '【潍坊市委组织部】', tcSettings, { secretary: '200001', supervisor: '200002' }, { secretId: 'AKID-test', secretKey: 'tc-secret' }),
  ]);

  const service = await startCloudSmsScheduler(db, cleanups);
  assert.equal((await service.tick()).sends, 4); // 2 villages + 外村 in 昌乐县, 北村 in 寿光市
  await waitUntil(async () => (await db.pool.query(`SELECT 1 FROM message_sends WHERE state = 'sent'`)).rowCount === 4, 15_000, 'four sends accepted');
  const byPhone = new Map(srv.accepted.map((m) => [m.phone, m]));
  assert.equal(byPhone.get('13600000001')!.sign, '潍坊市委组织部', 'another county: the city\'s provider and signature');
  assert.equal(byPhone.get('13600000001')!.provider, 'tencent');
  for (const b of town.branches) assert.equal(byPhone.get(b.mobile)!.sign, '昌乐县委组织部', 'the county\'s own signature');
  assert.equal(srv.calls.filter((c) => c.code === 'isv.BUSINESS_LIMIT_CONTROL').length, 1);
  const chang = srv.accepted.filter((m) => m.sign === '昌乐县委组织部');
  assert.equal(chang.filter((m) => m.provider === 'tencent').length, 1, 'the throttled send went to the next provider');
  assert.equal(chang.filter((m) => m.provider === 'aliyun').length, 2);
  assert.ok(chang.every((m) => m.template === (m.provider === 'aliyun' ? 'SMS_1001' : '200001')), 'the secretary template of each provider');
  const providers = await db.pool.query<{ provider: string; n: number }>(`SELECT provider, count(*)::int AS n FROM message_sends GROUP BY provider ORDER BY provider`);
  assert.deepEqual(providers.rows, [{ provider: 'aliyun:阿里云', n: 2 }, { provider: 'tencent:市腾讯云', n: 1 }, { provider: 'tencent:腾讯云', n: 1 }]);
  const ev = await db.pool.query<{ detail: string }>(`SELECT detail FROM message_send_events WHERE state = 'provider'`);
  assert.ok(ev.rows.some((e) => /BUSINESS_LIMIT_CONTROL/.test(e.detail)), JSON.stringify(ev.rows));
});

test('a provider\'s contracted rate (ratePerS) spaces its sends; what would wait too long goes to the next provider', async () => {
  const db = await createTestDatabase();
  cleanups.push(() => db.drop());
  const srv = new CloudSmsServer(serverOpts());
  await srv.start();
  cleanups.push(() => srv.stop());
  const town = await buildTown(db.pool, 9);
  await setUnitRule(db.pool, town.cityId, { obligation: 'member_meeting', period: 'quarter', requiredCount: 1, minDurationS: 8 });
  await keepOnlyObligations(db.pool, ['member_meeting']);
  const h = await startHarness({ extraRouters: [apiExtra(createReminderRoutes(db.pool))] }, db);
  cleanups.push(() => h.close());
  const token = await adminToken(db.pool, TEST_SECRET, town.cityId, 'city_admin');
  // Alibaba at 1 message/s (as contracted); Tencent second in the order, at 50/s.
  const put = await h.call('PUT', `/api/units/${town.cityId}/sms-providers`, { token, body: { providers: [
    { name: '阿里云', kind: 'aliyun', priority: 1, signature: '【潍坊市委组织部】', ratePerS: 1, settings: { endpoint: `127.0.0.1:${srv.port}`, protocol: 'http' },
      templates: { secretary: 'SMS_1001', supervisor: 'SMS_1002' }, credentials: { accessKeyId: 'LTAI-test', accessKeySecret: 'ali-secret' } },
    { name: '腾讯云', kind: 'tencent', priority: 2, signature: '【潍坊市委组织部】', ratePerS: 50, settings: { endpoint: `sms.tencentcloudapi.com:${srv.port}`, protocol: 'http://', smsSdkAppId: '1400000001' },
      templates: { secretary: '200001', supervisor: '200002' }, credentials: { secretId: 'AKID-test', secretKey: 'tc-secret' } },
  ] } });
  assert.equal(put.status, 200, put.text);
  await db.pool.query(`DELETE FROM members WHERE branch_id IN (SELECT id FROM branches WHERE name = '外村党支部')`);
  await db.pool.query(`DELETE FROM branches WHERE name = '外村党支部'`);

  const service = await startCloudSmsScheduler(db, cleanups);
  assert.equal((await service.tick()).sends, 9);
  await waitUntil(async () => (await db.pool.query(`SELECT 1 FROM message_sends WHERE state = 'sent'`)).rowCount === 9, 30_000, 'nine sends accepted');
  const ali = srv.accepted.filter((m) => m.provider === 'aliyun').map((m) => m.at).sort((a, b) => a - b);
  const tc = srv.accepted.filter((m) => m.provider === 'tencent');
  // 1/s: the router starts Alibaba sends 1 s apart. The server sees arrivals, so one gap may be short by
  // a request's latency (the first opens the connection: ~150 ms here); the span is the rate's. A send
  // that would wait more than the router's 5 s goes to Tencent instead of queueing behind the rate.
  const gaps = ali.slice(1).map((t, i) => t - ali[i]!);
  assert.ok(ali.length >= 2 && gaps.every((g) => g >= 750), `Alibaba sends spaced by its rate: ${JSON.stringify(gaps)}`);
  assert.ok(ali.at(-1)! - ali[0]! >= (ali.length - 1) * 1000 - 250, `at most 1/s over the run: ${JSON.stringify(gaps)}`);
  assert.ok(ali.length <= 7, `no send waited more than 5 s for Alibaba's rate (${ali.length} went there)`);
  assert.equal(ali.length + tc.length, 9);
  assert.ok(tc.length >= 2, `the overflow went to the next provider (${tc.length})`);
});

test('the provider table through the API: admins of the unit set it, signatures checked, credentials never returned, 404 outside', async () => {
  const db = await createTestDatabase();
  const h = await startHarness({ extraRouters: [apiExtra(createReminderRoutes(db.pool))] }, db);
  cleanups.push(() => h.close());
  const w = await buildDutiesWorld(h);
  const provider = {
    name: '阿里云', kind: 'aliyun', priority: 1, signature: '潍坊市委组织部', ratePerS: 20,
    settings: { endpoint: 'dysmsapi.aliyuncs.com' }, templates: { secretary: 'SMS_1001', supervisor: 'SMS_1002' },
    credentials: { accessKeyId: 'LTAI-real', accessKeySecret: 'very-secret-value' },
  };
  const bad = await h.call('PUT', `/api/units/${w.cityId}/sms-providers`, { token: w.tokens.cityAdmin, body: { providers: [{ ...provider, signature: '【三会一课提醒】' }] } });
  assert.equal(bad.status, 422, bad.text);
  assert.match(bad.text, /bad_signature/);
  assert.match((bad.body as { error: { message: string } }).error.message, /发送单位.*organisation/);
  const noCreds = await h.call('PUT', `/api/units/${w.cityId}/sms-providers`, { token: w.tokens.cityAdmin, body: { providers: [{ ...provider, credentials: undefined }] } });
  assert.equal(noCreds.status, 422, noCreds.text);
  const badSettings = await h.call('PUT', `/api/units/${w.cityId}/sms-providers`, { token: w.tokens.cityAdmin, body: { providers: [{ ...provider, kind: 'smpp', credentials: { systemId: 'x'.repeat(16), password: 'p' }, settings: { port: 2775 } }] } });
  assert.equal(badSettings.status, 422, badSettings.text);
  assert.match(badSettings.text, /bad_settings.*systemId/);
  const junk = await h.call('PUT', `/api/units/${w.cityId}/sms-providers`, { token: w.tokens.cityAdmin, body: { providers: [{ ...provider, kind: 'sgip' }] } });
  assert.equal(junk.status, 400, junk.text);
  const ok = await h.call('PUT', `/api/units/${w.cityId}/sms-providers`, { token: w.tokens.cityAdmin, body: { providers: [provider, { ...provider, name: '腾讯云', kind: 'tencent', priority: 2, credentials: { secretId: 'AKID', secretKey: 'tc-very-secret' }, settings: { smsSdkAppId: '1400000001' } }] } });
  assert.equal(ok.status, 200, ok.text);
  // Reordering without resending credentials keeps them.
  const again = await h.call('PUT', `/api/units/${w.cityId}/sms-providers`, { token: w.tokens.cityAdmin, body: { providers: [{ ...provider, priority: 2, credentials: undefined }, { ...provider, name: '腾讯云', kind: 'tencent', priority: 1, credentials: undefined, settings: { smsSdkAppId: '1400000001' } }] } });
  assert.equal(again.status, 200, again.text);
  const got = await h.call('GET', `/api/units/${w.cityId}/sms-providers`, { token: w.tokens.cityLeader });
  assert.equal(got.status, 200, got.text);
  assert.ok(!got.text.includes('very-secret') && !got.text.includes('LTAI-real'), 'credentials never in a response');
  const list = (got.body as { providers: Array<{ name: string; priority: number; credentialsSet: string[] }> }).providers;
  assert.deepEqual(list.map((p) => [p.name, p.priority, p.credentialsSet]), [['腾讯云', 1, ['secretId', 'secretKey']], ['阿里云', 2, ['accessKeyId', 'accessKeySecret']]]);
  const audit = await db.pool.query<{ detail: unknown }>(`SELECT detail FROM audit_log WHERE action = 'sms_providers.set'`);
  assert.equal(audit.rows.length, 2);
  assert.ok(!JSON.stringify(audit.rows).includes('very-secret'), 'nor in the audit log');
  assert.equal((await h.call('GET', `/api/units/${w.cityId}/sms-providers`, { token: w.tokens.otherCountyAdmin })).status, 404);
  assert.equal((await h.call('PUT', `/api/units/${w.cityId}/sms-providers`, { token: w.tokens.townSupervisor, body: { providers: [] } })).status, 403);
});
