import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { Browser } from 'playwright-core';
import { launchChromium } from '../support/browser.ts';
import { checkedScreenshot, mediaStats, signIn, waitUntil } from '../support/pages.ts';
import { startSystemHarness, type SystemHarness } from '../support/system-harness.ts';

// Face-to-face service: a village station queues for its town's service centre, a clerk accepts,
// and the two talk in a 1:1 SFU room — first through the API, then in two real Chromium pages.

interface Call {
  id: number;
  state: string;
  position: number | null;
  centre: { id: number; name: string };
  station: { id: number; name: string };
  decline_reason: string | null;
  note: string | null;
  join: { room: string; token: string; sfu: string } | null;
  error?: { code: string; message: string };
}

describe('face-to-face service calls', { timeout: 180_000 }, () => {
  let h: SystemHarness;
  let villager: string; // username of a village secretary (the kiosk account)
  let stationId: number;
  let otherStationId: number;
  let service: string;
  let clerk: string;
  let otherClerk: string;
  let townAdmin: string;
  let townLeader: string;

  before(async () => {
    h = await startSystemHarness();
    const sec = h.demo.users.find((u) => u.role === 'secretary' && u.level === 'village')!;
    villager = sec.username;
    const q = async <T>(sql: string, args: unknown[]) => (await h.db.pool.query(sql, args)).rows as T[];
    const [v] = await q<{ path: string }>('SELECT path FROM units WHERE id = $1', [sec.unitId]);
    const [town] = await q<{ id: number }>(`SELECT id FROM units WHERE level = 'town' AND $1 LIKE path || '%'`, [v!.path]);
    stationId = (await q<{ id: number }>(`SELECT id FROM service_points WHERE unit_id = $1 AND kind = 'station'`, [sec.unitId]))[0]!.id;
    const stations = await q<{ id: number }>(
      `SELECT s.id FROM service_points s JOIN units u ON u.id = s.unit_id WHERE s.kind = 'station' AND u.path LIKE (SELECT path FROM units WHERE id = $1) || '%' AND s.id <> $2 ORDER BY s.id LIMIT 1`,
      [town!.id, stationId],
    );
    otherStationId = stations[0]!.id;
    const [centre] = await q<{ services: string[] }>(`SELECT services FROM service_points WHERE unit_id = $1 AND kind = 'centre'`, [town!.id]);
    // The kiosk offers its station's services (all when it lists none); take one the town centre offers too.
    const [station] = await q<{ services: string[] }>(`SELECT services FROM service_points WHERE id = $1`, [stationId]);
    const offered = station!.services.length ? station!.services : centre!.services;
    service = centre!.services.find((x) => offered.includes(x))!;
    assert.ok(service, `the station (${offered}) and the centre (${centre!.services}) share a service`);
    clerk = h.demo.users.find((u) => u.role === 'clerk' && u.unitId === town!.id)!.username;
    otherClerk = h.demo.users.find((u) => u.role === 'clerk' && u.level === 'town' && u.unitId !== town!.id)!.username;
    townAdmin = h.demo.users.find((u) => u.role === 'admin' && u.unitId === town!.id)!.username;
    townLeader = h.demo.users.find((u) => u.role === 'leader' && u.unitId === town!.id)!.username;
  });

  after(async () => {
    await h?.close();
  });

  test('queue, positions, subtree isolation, accept with join tokens, decline with reason, close with note', async () => {
    const v = await h.login(villager);
    const a = await h.login(townAdmin);
    const c = await h.login(clerk);
    const o = await h.login(otherClerk);

    const first = await h.call<Call>(v, 'POST', '/api/service-calls', { stationId, service });
    assert.equal(first.status, 201, JSON.stringify(first.body));
    assert.equal(first.body.state, 'queued');
    assert.equal(first.body.position, 1);
    const second = await h.call<Call>(a, 'POST', '/api/service-calls', { stationId: otherStationId, service });
    assert.equal(second.status, 201, JSON.stringify(second.body));
    assert.equal(second.body.position, 2);
    assert.equal(second.body.centre.id, first.body.centre.id, 'both queue at the town centre');

    const again = await h.call<Call>(v, 'POST', '/api/service-calls', { stationId, service });
    assert.equal(again.status, 409);
    assert.equal(again.body.error?.code, 'already_waiting');
    assert.equal((await h.call<Call>(v, 'POST', '/api/service-calls', { stationId: otherStationId, service })).status, 404, 'another village\'s station is not visible to this villager');
    assert.equal((await h.call<Call>(v, 'POST', '/api/service-calls', { stationId, service: 'Bad Service!' })).status, 400);
    assert.equal((await h.call<Call>(v, 'POST', '/api/service-calls', { stationId })).status, 400);
    assert.equal((await h.call<Call>(v, 'POST', `/api/service-calls/${first.body.id}/accept`)).status, 403, 'a villager cannot accept');

    // A clerk of another town neither sees nor takes the call.
    assert.equal((await h.call<Call>(o, 'GET', `/api/service-calls/${first.body.id}`)).status, 404);
    assert.equal((await h.call<Call>(o, 'POST', `/api/service-calls/${first.body.id}/accept`)).status, 404);
    const otherQueue = await h.call<{ calls: Call[] }>(o, 'GET', '/api/service-calls?state=queued');
    assert.equal(otherQueue.body.calls.length, 0);

    const queue = await h.call<{ calls: Call[] }>(c, 'GET', '/api/service-calls?state=queued');
    assert.deepEqual(queue.body.calls.map((x) => x.id), [first.body.id, second.body.id]);

    const accepted = await h.call<Call>(c, 'POST', `/api/service-calls/${first.body.id}/accept`);
    assert.equal(accepted.status, 200, JSON.stringify(accepted.body));
    assert.equal(accepted.body.join?.room, `f2f-${first.body.id}`);
    assert.equal((await h.call<Call>(c, 'POST', `/api/service-calls/${first.body.id}/accept`)).body.error?.code, 'wrong_state', 'an accepted call cannot be accepted again');
    const seen = await h.call<Call>(v, 'GET', `/api/service-calls/${first.body.id}`);
    assert.equal(seen.body.state, 'accepted');
    assert.ok(seen.body.join?.token, 'the villager gets a join token once accepted');
    assert.equal((await h.call<Call>(a, 'GET', `/api/service-calls/${first.body.id}`)).body.join, null, 'a third party in scope sees the call but gets no token');
    assert.equal((await h.call<Call>(a, 'GET', `/api/service-calls/${second.body.id}`)).body.position, 1, 'the second station moved up');

    const declined = await h.call<Call>(c, 'POST', `/api/service-calls/${second.body.id}/decline`, { reason: '材料不全,请带户口本再来' });
    assert.equal(declined.body.state, 'declined');
    assert.equal((await h.call<Call>(a, 'GET', `/api/service-calls/${second.body.id}`)).body.decline_reason, '材料不全,请带户口本再来');

    const closed = await h.call<Call>(c, 'POST', `/api/service-calls/${first.body.id}/close`, { note: '已指导填写低保申请表' });
    assert.equal(closed.body.state, 'closed');
    assert.equal(closed.body.note, '已指导填写低保申请表');
    const { rows } = await h.db.pool.query<{ action: string }>(`SELECT action FROM audit_log WHERE object_type = 'service_call' ORDER BY id`);
    assert.deepEqual(rows.map((r) => r.action), ['service_call.create', 'service_call.create', 'service_call.accept', 'service_call.decline', 'service_call.close']);
  });

  test('accept race: two clerks accept the same call at once; exactly one takes it', async () => {
    const v = await h.login(villager);
    const c = await h.login(clerk);
    const l = await h.login(townLeader); // the town's leader may also take calls (clerk roles)
    const call = await h.call<Call>(v, 'POST', '/api/service-calls', { stationId, service });
    assert.equal(call.status, 201, JSON.stringify(call.body));
    const path = `/api/service-calls/${call.body.id}/accept`;
    // Both requests are in flight together, each on its own connection.
    const [byClerk, byLeader] = await Promise.all([h.call<Call>(c, 'POST', path), h.call<Call>(l, 'POST', path)]);
    assert.deepEqual([byClerk.status, byLeader.status].sort(), [200, 409], `${byClerk.status} ${byLeader.status}`);
    const [won, lost, winner] = byClerk.status === 200 ? [byClerk, byLeader, clerk] : [byLeader, byClerk, townLeader];
    assert.equal(lost.body.error?.code, 'wrong_state');
    assert.equal(won.body.join?.room, `f2f-${call.body.id}`);
    const { rows } = await h.db.pool.query<{ clerk: string; accepts: number }>(
      `SELECT u.username AS clerk, (SELECT count(*)::int FROM audit_log a WHERE a.object_type = 'service_call' AND a.object_id = c.id::text AND a.action = 'service_call.accept') AS accepts
         FROM service_calls c JOIN users u ON u.id = c.clerk_id WHERE c.id = $1`, [call.body.id]);
    assert.deepEqual(rows, [{ clerk: winner, accepts: 1 }], 'the call has one clerk, the winner, and one accept');
    const loserToken = winner === clerk ? l : c;
    assert.equal((await h.call<Call>(loserToken, 'GET', `/api/service-calls/${call.body.id}`)).body.join, null, 'the loser gets no join token');
    assert.equal((await h.call<Call>(v, 'POST', `/api/service-calls/${call.body.id}/close`)).status, 200);
  });

  test('a villager at the kiosk reaches the clerk and both decode each other in Chromium', async () => {
    const browser: Browser = await launchChromium();
    try {
      const open = (username: string) => signIn(browser, h.baseUrl, username, h.demo.password);
      const kiosk = await open(villager);
      await kiosk.getByText('请选择您要办理的业务').waitFor();
      await checkedScreenshot(kiosk, 'kiosk-choose-service');
      const serviceNames: Record<string, string> = { civil_affairs: '民政事务', social_security: '社会保障', medical_insurance: '医疗保险', legal_aid: '法律援助', agriculture: '农业技术', household_registration: '户籍办理', elderly_care: '养老服务' };
      await kiosk.getByRole('button', { name: serviceNames[service]! }).click();
      await kiosk.getByText('正在排队,请稍候').waitFor();
      assert.equal(await kiosk.getByTestId('position').textContent(), '0');
      await checkedScreenshot(kiosk, 'kiosk-waiting');
      // A reloaded kiosk (power cut, crash) is still in the queue, not locked out by its own call.
      await kiosk.reload();
      await kiosk.getByText('正在排队,请稍候').waitFor();

      const desk = await open(clerk);
      await desk.getByRole('button', { name: '接听' }).first().waitFor();
      await checkedScreenshot(desk, 'desk-queue');
      await desk.getByRole('button', { name: '接听' }).first().click();

      for (const [name, page] of [['kiosk', kiosk], ['desk', desk]] as const) {
        const s = await waitUntil(`${name} decodes the other side`, () => mediaStats(page), (m) => Object.values(m.videoFramesDecoded).some((n) => n > 30) && m.audioPacketsReceived > 20);
        assert.ok(Object.values(s.videoFramesDecoded).some((n) => n > 30));
      }
      await checkedScreenshot(kiosk, 'kiosk-in-call');
      await checkedScreenshot(desk, 'desk-in-call');
      // Reloaded mid-call, the kiosk and the desk each go straight back into the call.
      await kiosk.reload();
      await desk.reload();
      for (const [name, page] of [['kiosk', kiosk], ['desk', desk]] as const) {
        await waitUntil(`the reloaded ${name} decodes the other side again`, () => mediaStats(page), (m) => Object.values(m.videoFramesDecoded).some((n) => n > 30));
      }

      await desk.getByLabel('办理结果备注').fill('已告知所需材料');
      await desk.getByRole('button', { name: '结束并保存' }).click();
      await kiosk.getByText('通话已结束,感谢使用').waitFor({ timeout: 10_000 });
      const { rows } = await h.db.pool.query<{ state: string; note: string }>(`SELECT state, note FROM service_calls ORDER BY id DESC LIMIT 1`);
      assert.deepEqual(rows[0], { state: 'closed', note: '已告知所需材料' });
    } finally {
      await browser.close();
    }
  });
});
