import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import type { Browser, Page } from 'playwright-core';
import { launchChromium } from '../support/browser.ts';
import { mediaStats, signIn, waitUntil } from '../support/pages.ts';
import { startSystemHarness, type SystemHarness } from '../support/system-harness.ts';
import { DebianRtspServer } from '../support/debian-rtsp.ts';

// Live inspection in Chromium through a 20 s camera outage, against gst-rtsp-server (Debian) with
// Digest auth ('@' and '#' in the password) and an H.264 High stream: the viewer's tile says the
// camera is offline and why; frames resume within 5 s of the camera's return; a second viewer who
// asks during the outage sees "offline" with the reason (not a dark tile), then the video. The second
// viewer is another person (the city's supervisor): a second connection of the same person to a room
// replaces the first (sfu/Room.ts), which would take the first view away when the second one joins.

let h: SystemHarness;
let browser: Browser;
let cam: DebianRtspServer;
let supervisor: string;
let citySupervisor: string;
let cameraId: number;

const decoded = async (page: Page): Promise<number> => Object.values((await mediaStats(page)).videoFramesDecoded).reduce((a, b) => a + b, 0);

before(async () => {
  h = await startSystemHarness({ towns: 1, communities: 1, villages: 2, liveCameras: { cameraProbeIntervalMs: 500 } });
  cam = await DebianRtspServer.start({ codec: 'h264', profile: 'high', auth: { user: 'admin', password: 'p@ss#w0rd' }, fps: 10 });
  const [town] = (await h.db.pool.query<{ parent_id: string }>('SELECT parent_id FROM units WHERE id = $1', [h.demo.unitIds.town[0]])).rows;
  const countyId = Number(town!.parent_id);
  supervisor = h.demo.users.find((u) => u.role === 'supervisor' && u.unitId === countyId)!.username;
  citySupervisor = h.demo.users.find((u) => u.role === 'supervisor' && u.level === 'city')!.username;
  const token = await h.login(supervisor);
  const first = await h.call<{ items: Array<{ id: number }> }>(token, 'GET', '/api/cameras?limit=12&offset=0');
  cameraId = first.body.items[0]!.id;
  // The county operator points the camera at the real one, as the console's camera form does.
  const operator = await h.login(h.demo.users.find((u) => u.role === 'operator' && u.unitId === countyId)!.username);
  const set = await h.call(operator, 'PATCH', `/api/cameras/${cameraId}`, { rtsp_url: cam.url, username: 'admin', password: 'p@ss#w0rd', enabled: true, rtsp_transport: 'auto' });
  assert.equal(set.status, 200, JSON.stringify(set.body));
  browser = await launchChromium();
});

after(async () => {
  await browser?.close();
  await cam?.close();
  await h?.close();
});

async function watch(page: Page): Promise<void> {
  await page.goto(`${h.baseUrl}/#/supervise`);
  await page.locator(`li[data-camera="${cameraId}"] button`).click();
}

test('a live view survives a 20 s camera outage; a viewer arriving during it sees why, then video', { timeout: 150_000 }, async () => {
  const a = await signIn(browser, h.baseUrl, supervisor, h.demo.password);
  await watch(a);
  await waitUntil('frames decoded before the outage', () => decoded(a), (n) => n > 10, 40_000);
  const badgeA = a.getByTestId('live-state');
  await waitUntil('the tile says live', () => badgeA.getAttribute('data-state'), (s) => s === 'live', 15_000);

  await cam.stop();
  const down = Date.now();
  await waitUntil('the tile says offline (unreachable)', async () => [await badgeA.getAttribute('data-state'), await badgeA.getAttribute('data-reason')], ([s, r]) => s === 'offline' && r === 'unreachable', 15_000);
  assert.match((await badgeA.textContent()) ?? '', /离线/);

  // A second viewer during the outage: no join token for a dead session, the reason instead.
  const b = await signIn(browser, h.baseUrl, citySupervisor, h.demo.password);
  await watch(b);
  const offline = b.getByTestId('live-offline');
  await offline.waitFor({ timeout: 15_000 });
  assert.match((await offline.textContent()) ?? '', /离线.*offline/s);
  assert.equal(await decoded(b), 0, 'no dark session handed out');

  await new Promise((r) => setTimeout(r, Math.max(0, 20_000 - (Date.now() - down))));
  const framesAtReturn = await decoded(a);
  await cam.resume();
  const back = Date.now();
  await waitUntil('frames decoded again in the first view', () => decoded(a), (n) => n > framesAtReturn + 5, 15_000, 100);
  const resumedMs = Date.now() - back;
  console.log(`# live view: outage ${back - down} ms, frames resumed ${resumedMs} ms after the camera's return`);
  assert.ok(resumedMs <= 5_000, `frames resumed ${resumedMs} ms after the camera's return (at most 5 s)`);
  await waitUntil('the tile says live again', () => badgeA.getAttribute('data-state'), (s) => s === 'live', 10_000);
  // The second viewer's page asked again and now shows the video.
  await waitUntil('the second viewer decodes video', () => decoded(b), (n) => n > 5, 20_000);
  assert.equal(await b.getByTestId('live-offline').count(), 0);
});
