import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import type { Browser, Page } from 'playwright-core';
import { launchChromium } from '../support/browser.ts';
import { checkedScreenshot, mediaStats, signIn, waitUntil } from '../support/pages.ts';
import { RtspServer } from '../support/rtsp-server.ts';
import { TestCamera } from '../support/rtsp-camera.ts';
import { startSystemHarness, type SystemHarness } from '../support/system-harness.ts';

// The control centre's screens in Chromium at 1920x1080 against the real backend: the big screen
// (completion histogram of the child units with the API's figures, warnings, today's sessions) and the
// live wall's patrol (轮巡) stepping on its own from one real RTSP camera (pulled by ffmpeg into the
// SFU, decoded in the page) to the next. Screenshots are checked for content (pixel spread).

let h: SystemHarness;
let browser: Browser;
let rtsp: RtspServer;
const cams: TestCamera[] = [];
let countyId: number;
let townId: number;
let leader: string;
let supervisor: string;
const patrol: { id: number; name: string }[] = [];
let sessionId: number;
let offlineCameraId: number;

const big = async (page: Page) => page.setViewportSize({ width: 1920, height: 1080 });

before(async () => {
  h = await startSystemHarness({ towns: 4, communities: 8, villages: 24 });
  const q = async <T>(sql: string, args: unknown[] = []) => (await h.db.pool.query(sql, args)).rows as T[];
  const [town] = await q<{ parent_id: string }>('SELECT parent_id FROM units WHERE id = $1', [h.demo.unitIds.town[0]]);
  countyId = Number(town!.parent_id);
  townId = h.demo.unitIds.town[0]!;
  // The town's leader compares its communities on the big screen; the county's supervisor patrols.
  leader = h.demo.users.find((u) => u.role === 'leader' && u.unitId === townId)!.username;
  supervisor = h.demo.users.find((u) => u.role === 'supervisor' && u.unitId === countyId)!.username;
  const [county] = await q<{ path: string }>('SELECT path FROM units WHERE id = $1', [countyId]);
  const prefix = `${county!.path}%`;
  const [townRow] = await q<{ path: string }>('SELECT path FROM units WHERE id = $1', [townId]);
  const townPrefix = `${townRow!.path}%`;

  // Two village cameras of the county are real RTSP sources; the county's other cameras are switched
  // off by its operator (the patrol walks the enabled ones), one of them reported offline.
  rtsp = await RtspServer.start();
  for (const p of ['patrol-a', 'patrol-b']) {
    const c = new TestCamera({ server: rtsp, path: p, audio: 'none', width: 320, height: 240, fps: 10 });
    await c.start();
    cams.push(c);
  }
  const rows = await q<{ id: string; unit_id: string }>(
    `SELECT c.id, c.unit_id FROM cameras c JOIN units u ON u.id = c.unit_id WHERE u.path LIKE $1 AND u.level = 'village' ORDER BY c.id LIMIT 3`,
    [townPrefix],
  );
  assert.equal(rows.length, 3);
  for (const [i, r] of rows.slice(0, 2).entries()) {
    const name = `巡查摄像机${i + 1}号`;
    await h.db.pool.query('UPDATE cameras SET rtsp_url = $1, name = $2 WHERE id = $3', [cams[i]!.url, name, r.id]);
    patrol.push({ id: Number(r.id), name });
  }
  await h.db.pool.query(
    `UPDATE cameras SET enabled = false WHERE unit_id IN (SELECT id FROM units WHERE path LIKE $1) AND NOT id = ANY($2::bigint[])`,
    [prefix, patrol.map((p) => p.id)],
  );
  offlineCameraId = Number(rows[2]!.id);
  await h.db.pool.query('UPDATE cameras SET enabled = true WHERE id = $1', [offlineCameraId]);
  await h.db.pool.query(`INSERT INTO camera_status (camera_id, online, since, reason, checked_at) VALUES ($1, false, now() - interval '2 hours', 'timeout', now())`, [offlineCameraId]);
  // The offline camera points nowhere reachable: the patrol shows it as unreachable and moves on.
  await h.db.pool.query(`UPDATE cameras SET rtsp_url = 'rtsp://127.0.0.1:9/none' WHERE id = $1`, [offlineCameraId]);

  // Completion with some variety: the branches of the town's first community held every obligation
  // of the current period (sessions that passed their check); the others did not. And one session
  // running now, as the big screen shows it under today's sessions.
  const [community] = await q<{ path: string }>(`SELECT path FROM units WHERE parent_id = $1 ORDER BY id LIMIT 1`, [townId]);
  const due = await q<{ branch_id: string; obligation: string }>(
    `SELECT DISTINCT bor.branch_id, bor.obligation FROM branch_obligation_rules bor
      WHERE bor.enabled AND bor.required_count > 0 AND bor.unit_path LIKE $1`,
    [`${community!.path}%`],
  );
  assert.ok(due.length > 0);
  const [hasSo] = await q<{ ok: boolean }>(`SELECT to_regclass('session_obligations') IS NOT NULL AS ok`);
  const [hasState] = await q<{ ok: boolean }>(`SELECT EXISTS (SELECT 1 FROM information_schema.columns WHERE table_name = 'meeting_sessions' AND column_name = 'state') AS ok`);
  for (const d of due) {
    const [s] = await q<{ id: string }>(
      `INSERT INTO meeting_sessions (branch_id, obligation, title, starts_at, ends_at) VALUES ($1, $2, '补录', now() - interval '3 hours', now() - interval '2 hours') RETURNING id`,
      [d.branch_id, d.obligation],
    );
    await h.db.pool.query(`INSERT INTO completion_checks (session_id, passed, covered_s, required_s) VALUES ($1, true, 3600, 1800)`, [s!.id]);
    if (hasSo!.ok) await h.db.pool.query(`INSERT INTO session_obligations (session_id, obligation, passed) VALUES ($1, $2, true) ON CONFLICT (session_id, obligation) DO UPDATE SET passed = true`, [s!.id, d.obligation]);
    if (hasState!.ok) await h.db.pool.query(`UPDATE meeting_sessions SET state = 'ended' WHERE id = $1`, [s!.id]);
  }
  const [branch] = await q<{ id: string }>(
    `SELECT b.id FROM branches b JOIN units u ON u.id = b.unit_id WHERE u.path LIKE $1 AND b.retired_at IS NULL ORDER BY b.id DESC LIMIT 1`,
    [townPrefix],
  );
  const [running] = await q<{ id: string }>(
    `INSERT INTO meeting_sessions (branch_id, obligation, title, starts_at, ends_at) VALUES ($1, 'party_lesson', '学习二十届三中全会精神', now() - interval '1 minute', now() + interval '50 minutes') RETURNING id`,
    [branch!.id],
  );
  sessionId = Number(running!.id);
  if (hasState!.ok) await h.db.pool.query(`UPDATE meeting_sessions SET state = 'running' WHERE id = $1`, [sessionId]);
  browser = await launchChromium();
});

after(async () => {
  await browser?.close();
  for (const c of cams) await c.stop();
  await rtsp?.close();
  await h?.close();
});

test('the big screen at 1920x1080 shows the API\'s completion per child unit, warnings and today\'s sessions', { timeout: 90_000 }, async () => {
  const page = await signIn(browser, h.baseUrl, leader, h.demo.password);
  await big(page);
  await page.goto(`${h.baseUrl}/#/bigscreen?refresh=5`);
  const token = await h.login(leader);
  const api = await h.call<{ units: { unit: { id: number; name: string }; overall: { rate: number | null; done: number; branches: number } }[] }>(token, 'GET', `/api/completion/units/${townId}/children`);
  assert.equal(api.status, 200);
  assert.ok(api.body.units.length >= 2, 'the town has communities to compare');
  const bars = page.locator('.bar[data-unit]');
  await waitUntil('the histogram bars', () => bars.count(), (n) => n === api.body.units.length);
  for (const u of api.body.units) {
    const bar = page.locator(`.bar[data-unit="${u.unit.id}"]`);
    assert.equal(await bar.getAttribute('data-rate'), u.overall.rate === null ? '' : String(u.overall.rate));
    const text = (await bar.textContent()) ?? '';
    assert.ok(text.includes(u.unit.name), `bar labelled ${u.unit.name}`);
    assert.ok(text.includes(u.overall.rate === null ? '—' : `${Math.round(u.overall.rate * 100)}%`), `bar ${u.unit.name} shows its rate: ${text}`);
    assert.ok(text.includes(`${u.overall.done}/${u.overall.branches}`));
  }
  const rates = api.body.units.map((u) => u.overall.rate ?? 0);
  assert.ok(Math.max(...rates) > 0 && Math.min(...rates) < Math.max(...rates), `the histogram compares different rates (${rates})`);
  // A bar's drawn height follows its rate.
  const heights = await page.locator('.bar[data-unit] .fill').evaluateAll((els) => els.map((e) => e.getBoundingClientRect().height));
  const top = rates.indexOf(Math.max(...rates));
  assert.ok(heights[top]! > 3 * Math.min(...heights), `bar heights follow the rates (${heights})`);

  // Warnings and today's sessions, as the summary route answers them.
  const summary = await h.call<{ warnings: { camerasOffline: number; overdueBranches: number; failedCaptures: number }; today: { sessions: { id: number; state: string }[] } }>(token, 'GET', '/api/big-screen/summary');
  assert.equal(summary.status, 200);
  assert.equal(summary.body.warnings.camerasOffline, 1);
  assert.equal(await page.locator('[data-warning="offline"] b').textContent(), '1');
  assert.equal(await page.locator('[data-warning="overdue"] b').textContent(), String(summary.body.warnings.overdueBranches));
  const row = page.locator(`tr[data-session="${sessionId}"]`);
  await row.waitFor();
  assert.equal(await row.getAttribute('data-state'), 'running');
  assert.match((await row.textContent()) ?? '', /学习二十届三中全会精神.*进行中/);
  const shot = await checkedScreenshot(page, 'big-screen-1920');
  assert.ok(shot.endsWith('.png'));

  // The screen refreshes itself: a second camera reported offline appears without any input.
  const [another] = (await h.db.pool.query<{ id: string }>(
    `SELECT c.id FROM cameras c JOIN units u ON u.id = c.unit_id WHERE u.path LIKE (SELECT path FROM units WHERE id = $1) || '%' AND c.enabled = false ORDER BY c.id LIMIT 1`,
    [townId],
  )).rows;
  await h.db.pool.query('UPDATE cameras SET enabled = true WHERE id = $1', [another!.id]);
  await h.db.pool.query(`INSERT INTO camera_status (camera_id, online, since, reason, checked_at) VALUES ($1, false, now(), 'no_route', now())`, [another!.id]);
  await waitUntil('the big screen refreshes by itself', () => page.locator('[data-warning="offline"] b').textContent(), (n) => n === '2');
  await h.db.pool.query('UPDATE cameras SET enabled = false WHERE id = $1', [another!.id]);

  // Outside the subtree: the county above and another town are 404 on the summary.
  assert.equal((await h.call(token, 'GET', `/api/big-screen/summary?unitId=${countyId}`)).status, 404);
  const other = h.demo.unitIds.town.find((id) => id !== townId)!;
  assert.equal((await h.call(token, 'GET', `/api/big-screen/summary?unitId=${other}`)).status, 404);
  assert.equal((await h.call(await h.login(h.demo.users.find((u) => u.role === 'secretary')!.username), 'GET', '/api/big-screen/summary')).status, 403);
});

test('the live wall patrols the subtree\'s cameras on its own at 1920x1080, decoding each', { timeout: 120_000 }, async () => {
  const page = await signIn(browser, h.baseUrl, supervisor, h.demo.password);
  await big(page);
  await page.getByRole('link', { name: '督导室' }).click();
  await page.getByLabel('间隔（秒）').fill('6');
  await page.getByLabel('每屏路数').selectOption('1');
  await page.getByRole('button', { name: '开始轮巡' }).click();
  const name = page.getByTestId('patrol-name');
  // First camera: decoded in the page.
  const first = await waitUntil('the first patrolled camera', () => name.first().textContent(), (n) => patrol.some((p) => p.name === n));
  const stats1 = await waitUntil('the first camera decodes', () => mediaStats(page), (s) => Object.values(s.videoFramesDecoded).some((n) => n > 10));
  assert.equal(Object.keys(stats1.videoFramesDecoded).length, 1);
  await checkedScreenshot(page, 'patrol-first-1920');
  // Without any input the patrol moves on to the next camera, which decodes too (a new live view).
  const next = await waitUntil('the patrol advances by itself', () => name.first().textContent(), (n) => n !== first, 60_000);
  assert.ok(next && next.length > 0);
  // The enabled, unreachable camera is shown as such and passed over; the real ones decode.
  const real = await waitUntil(
    'the patrol reaches the other real camera and decodes it',
    async () => ({ n: await name.first().textContent(), s: await mediaStats(page) }),
    (v) => v.n !== first && patrol.some((p) => p.name === v.n) && v.s.peerId !== stats1.peerId && Object.values(v.s.videoFramesDecoded).some((n) => n > 10),
    90_000,
  );
  assert.notEqual(real.n, first);
  await checkedScreenshot(page, 'patrol-second-1920');
  // Pause holds the page; resume goes on.
  await page.getByRole('button', { name: '暂停' }).click();
  await page.getByText('已暂停').waitFor();
  await page.getByRole('button', { name: '继续' }).click();
  const moved = await waitUntil('the patrol resumes', () => name.first().textContent(), (n) => n !== real.n, 60_000);
  assert.ok(moved);
  // Four to a page: the three enabled cameras at once, each named with its village.
  await page.getByLabel('每屏路数').selectOption('4');
  const names = await waitUntil('a page of four shows every enabled camera', () => name.allTextContents(), (n) => n.length === 3 && new Set(n).size === 3);
  for (const p of patrol) assert.ok(names.includes(p.name));
  const units = await page.locator('.patrol-unit').allTextContents();
  assert.ok(units.every((u) => u.length > 0), `each tile names its unit (${units})`);
  // Both real cameras play at once in their tiles (decoded: the video has a size and moves on).
  await waitUntil(
    'both real cameras decode on the page of four',
    () => page.locator('.patrol-tile video').evaluateAll((vs) => vs.map((v) => ({ w: (v as HTMLVideoElement).videoWidth, t: (v as HTMLVideoElement).currentTime }))),
    (vs) => vs.filter((v) => v.w > 0 && v.t > 1).length === 2,
  );
  await checkedScreenshot(page, 'patrol-four-1920');
  // Every live view was audited.
  const { rows } = await h.db.pool.query<{ n: number }>(`SELECT count(DISTINCT object_id)::int AS n FROM audit_log WHERE action = 'camera.live.view'`);
  assert.ok(rows[0]!.n >= 2);
});
