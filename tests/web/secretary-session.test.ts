import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import type { Browser } from 'playwright-core';
import { launchChromium, tmpDir } from '../support/browser.ts';
import { checkedScreenshot, signIn, waitUntil } from '../support/pages.ts';
import { startSystemHarness, type SystemHarness } from '../support/system-harness.ts';
import { RtspServer } from '../support/rtsp-server.ts';
import { TestCamera } from '../support/rtsp-camera.ts';
import { fastRecorderConfig, waitForEvent } from '../support/recorder-fixture.ts';
import { Recorder } from '../../recorder/Recorder.ts';
import { createLogger } from '../../infra/logger.ts';
import { systemClock } from '../../scheduler/clock.ts';
import { SchedulerService } from '../../scheduler/service.ts';
import { CompletionChecker } from '../../scheduler/checks/completionCheck.ts';
import { ObjectStorageSegmentSource } from '../../scheduler/checks/segmentSource.ts';
import { defaultReminderPolicy } from '../../scheduler/reminders/policy.ts';

// The whole chain in Chromium against the real system (issue 16), no row inserted by the test:
// an operator points the village's camera at a live RTSP camera and the city lowers the 党员大会's
// minimum duration through the API; the branch secretary plans a 党员大会 at the kiosk a few seconds
// ahead, with that camera, and takes attendance by taps (more than half of the full members); the
// scheduler's own tick asks the real recorder to capture the window, then the real completion check
// judges it from the recording in S3; the kiosk shows the check passed and a county supervisor sees
// the branch's member meeting done for the quarter on the completion dashboard.

let h: SystemHarness;
let browser: Browser;
let rtsp: RtspServer;
let cam: TestCamera;
let scheduler: SchedulerService;
let recorder: Recorder;

before(async () => {
  h = await startSystemHarness({ towns: 1, communities: 2, villages: 9, storage: true });
  // The real recorder, 2-second segments; a stall is declared after 15 s (not the fixture's 6 s): on a
  // loaded 2-core machine a 6-s hiccup of the camera's ffmpeg would cut the short session's coverage.
  recorder = await Recorder.start({ pool: h.db.pool, storage: h.storage!, config: fastRecorderConfig(tmpDir('secretary-session-spool-'), 2, { stallTimeoutMs: 15_000 }), log: createLogger('recorder-test') });
  rtsp = await RtspServer.start();
  cam = new TestCamera({ server: rtsp, path: 'village-hall' });
  await cam.start();
  scheduler = new SchedulerService({
    pool: h.db.pool, databaseUrl: h.db.url, clock: systemClock, policy: defaultReminderPolicy, channels: {},
    // Judged from the recordings' store; a window not yet fully indexed is tried again after 1-2 s.
    checker: new CompletionChecker(h.db.pool, new ObjectStorageSegmentSource(h.storage!), {}, { uploadWaitMs: 30_000, retryBaseMs: 1000, retryMaxMs: 2000 }),
    captureLeadMs: 10_000, checkGraceMs: 2_000, tickMs: 500,
  });
  await scheduler.start();
  browser = await launchChromium();
});

after(async () => {
  await browser?.close();
  await scheduler?.stop();
  await recorder?.close({ drain: true, drainTimeoutMs: 5_000 }).catch(() => undefined);
  await h?.close();
  await cam?.stop();
  await rtsp?.close();
});

test('a secretary plans a 党员大会 at the kiosk; the camera records it, the check passes, the branch is done on the supervisor\'s dashboard', { timeout: 150_000 }, async () => {
  const pool = h.db.pool;
  const sec = h.demo.users.find((u) => u.role === 'secretary' && u.level === 'village')!;
  const chain = (await pool.query<{ id: number; level: string; path: string }>(
    `WITH RECURSIVE up AS (SELECT id, parent_id, level, path FROM units WHERE id = $1
                           UNION ALL SELECT u.id, u.parent_id, u.level, u.path FROM units u JOIN up ON u.id = up.parent_id)
     SELECT id, level, path FROM up`, [sec.unitId])).rows.map((r) => ({ ...r, id: Number(r.id) }));
  const unitOf = (level: string) => chain.find((u) => u.level === level)!;
  const sup = h.demo.users.find((u) => u.role === 'supervisor' && u.level === 'county' && u.unitId === unitOf('county').id)!;
  assert.ok(sup, 'a supervisor of the village\'s county');
  const [operator, leader, secretary, supervisor] = await Promise.all(['wf.operator', 'wf.leader', sec.username, sup.username].map((u) => h.login(u)));

  // The operator points the village station's camera at the live camera (through the API).
  const cams = await h.call<{ items: Array<{ id: number; unit_id: number; enabled: boolean }> }>(operator, 'GET', `/api/cameras?unit_id=${sec.unitId}&limit=100`);
  assert.equal(cams.status, 200);
  const cameraId = cams.body.items.find((c) => c.enabled)!.id;
  const patched = await h.call(operator, 'PATCH', `/api/cameras/${cameraId}`, { rtsp_url: cam.url });
  assert.equal(patched.status, 200, JSON.stringify(patched.body));

  // The city's leader lowers the 党员大会's minimum duration (a duration may be lowered, not the frequency).
  const city = unitOf('city').id;
  const rules = await h.call<{ rules: Array<{ obligation: string; period: string; requiredCount: number; dueFromMonth: number | null }> }>(leader, 'GET', `/api/obligation-rules?unitId=${city}`);
  const mm = rules.body.rules.find((r) => r.obligation === 'member_meeting')!;
  assert.equal(mm.period, 'quarter');
  const put = await h.call(leader, 'PUT', `/api/obligation-rules/${city}/member_meeting`, { period: mm.period, requiredCount: mm.requiredCount, minDurationS: 8, enabled: true, dueFromMonth: mm.dueFromMonth });
  assert.equal(put.status, 200, JSON.stringify(put.body));

  const branches = await h.call<{ items: Array<{ id: number; unit_id: number }> }>(secretary, 'GET', '/api/branches?limit=100');
  const branchId = branches.body.items.find((b) => b.unit_id === sec.unitId)!.id;
  const why = async () => (await h.call<{ obligations: Array<{ obligation: string; periodKey: string; status: string; sessions: Array<{ id: number; passed: boolean | null; reasons: Array<{ code: string }> }> }> }>(
    supervisor, 'GET', `/api/branches/${branchId}/completion`)).body.obligations.find((o) => o.obligation === 'member_meeting')!;
  assert.notEqual((await why()).status, 'done', 'not done before the session');

  // The secretary plans the session at the kiosk: start in ~10 s, 20 s long, the station's camera.
  const kiosk = await signIn(browser, h.baseUrl, sec.username, h.demo.password);
  await kiosk.goto(`${h.baseUrl}/#/kiosk`);
  await kiosk.getByRole('tab', { name: '三会一课' }).click();
  await kiosk.getByLabel('支部党员大会', { exact: true }).check();
  const topic = '学习《中国共产党支部工作条例（试行）》';
  await kiosk.getByLabel('主题', { exact: true }).fill(topic);
  await kiosk.locator(`select[name="camera"] option[value="${cameraId}"]`).waitFor({ state: 'attached' });
  await kiosk.locator('select[name="camera"]').selectOption(String(cameraId));
  // The page's own local time (datetime-local inputs), as the secretary would type it.
  const local = (ms: number) => kiosk.evaluate((t) => new Date(t - new Date(t).getTimezoneOffset() * 60_000).toISOString().slice(0, 19), ms);
  const startMs = Math.ceil((Date.now() + 10_000) / 1000) * 1000;
  await kiosk.locator('input[name="startsAt"]').fill(await local(startMs));
  await kiosk.locator('input[name="endsAt"]').fill(await local(startMs + 20_000));
  const captured = waitForEvent(recorder, 'captureStarted', (id: number) => id === cameraId, 60_000);
  captured.catch(() => undefined); // awaited below; no unhandled rejection if an earlier step fails
  await kiosk.getByRole('button', { name: '保存安排' }).click();
  const row = kiosk.locator('[data-testid="session-row"]').filter({ hasText: topic });
  await row.or(kiosk.getByRole('alert')).first().waitFor();
  assert.equal(await kiosk.getByRole('alert').count(), 0, `no error: ${await kiosk.getByRole('alert').allTextContents()}`);
  const sessionId = Number(await row.getAttribute('data-session-id'));
  const planned = await h.call<{ session: { startsAt: string; endsAt: string; cameraId: number; kinds: string[]; origin: string } }>(secretary, 'GET', `/api/sessions/${sessionId}`);
  assert.equal(planned.status, 200);
  const p = planned.body.session;
  assert.equal(p.origin, 'planned');
  assert.equal(p.cameraId, cameraId);
  assert.deepEqual(p.kinds, ['member_meeting']);
  assert.equal(new Date(p.startsAt).getTime(), startMs);
  assert.equal(new Date(p.endsAt).getTime() - new Date(p.startsAt).getTime(), 20_000);

  // Attendance by taps: more than half of the full members.
  await row.getByRole('button').click();
  await kiosk.getByTestId('session-detail').waitFor();
  const list = kiosk.locator('[data-testid="member"]');
  await list.first().waitFor();
  const full: string[] = [];
  for (const m of await list.all()) {
    if (!((await m.locator('button.tap').textContent()) ?? '').includes('(预备)')) full.push((await m.getAttribute('data-member-id'))!);
  }
  const needed = Math.floor(full.length / 2) + 1;
  for (const id of full.slice(0, needed)) {
    await kiosk.locator(`[data-testid="member"][data-member-id="${id}"] button.tap`).click();
    await kiosk.locator(`[data-testid="member"][data-member-id="${id}"][data-status="present"]`).waitFor();
  }
  await waitUntil('quorum shown as passed', () => kiosk.locator('[data-testid="quorum"] p').first().getAttribute('data-passed'), (v) => v === 'true', 20_000);

  // The scheduler's tick asks the recorder; the camera is captured in the session's window.
  await captured;
  // The check passes (the scheduler's own check worker, from the recording in S3).
  const verdict = await waitUntil('the session judged', async () => (await why()).sessions.find((x) => x.id === sessionId), (x) => x?.passed === true || x?.passed === false, 90_000, 500);
  assert.equal(verdict!.passed, true, `check passed: ${JSON.stringify(verdict)}`);
  const mmNow = await why();
  assert.equal(mmNow.status, 'done');
  const check = (await pool.query<{ passed: boolean; covered_s: number; required_s: number; measurements: { quorum: Array<{ passed: boolean; present: number; expected: number }> } }>(
    'SELECT passed, covered_s, required_s, measurements FROM completion_checks WHERE session_id = $1', [sessionId])).rows[0]!;
  assert.equal(check.passed, true);
  assert.ok(Number(check.covered_s) >= 8, `covered ${check.covered_s} s`);
  assert.equal(check.measurements.quorum[0]!.passed, true);
  assert.equal(check.measurements.quorum[0]!.present, needed);
  // The kiosk's ledger shows it too.
  await kiosk.locator('[data-testid="check"][data-passed="true"]').waitFor({ timeout: 20_000 });
  await checkedScreenshot(kiosk, 'secretary-session-kiosk-passed');

  // The county supervisor drills down county -> town -> community -> village on the completion dashboard.
  const page = await signIn(browser, h.baseUrl, sup.username, h.demo.password);
  await page.goto(`${h.baseUrl}/#/supervise`);
  await page.getByRole('tab', { name: '完成情况' }).click();
  for (const level of ['town', 'community', 'village']) {
    await page.locator(`.histogram [data-unit="${unitOf(level).id}"] button.label`).click();
  }
  const panel = page.locator(`section.why[data-branch="${branchId}"]`);
  const done = panel.locator(`tr[data-obligation="member_meeting"][data-status="done"]`);
  await done.waitFor();
  assert.match((await done.textContent()) ?? '', /已完成/);
  assert.match((await done.textContent()) ?? '', new RegExp(mmNow.periodKey));
  const shown = done.locator(`[data-session="${sessionId}"]`);
  assert.match((await shown.textContent()) ?? '', /合格/);
  assert.doesNotMatch((await shown.textContent()) ?? '', /不合格/);
  await checkedScreenshot(page, 'secretary-session-dashboard-done');
});
