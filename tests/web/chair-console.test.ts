import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import type { Browser, Page } from 'playwright-core';
import { launchChromium } from '../support/browser.ts';
import { checkedScreenshot, signIn, waitUntil as until } from '../support/pages.ts';
import { startSystemHarness, type SystemHarness } from '../support/system-harness.ts';

// The chair's controls in the leader's console, in Chromium: a town leader opens a meeting, two
// village sites join from their meeting lists; the leader mutes all (the sites' pages say so and
// their microphone producers are paused on the SFU), unmutes one site, spotlights a site (both
// sites show it large), steps the roll call, sees a site's raised hand, and ends the meeting.

let h: SystemHarness;
let browser: Browser;
before(async () => {
  // Above MEETING_OPEN_MAX_SITES a meeting is held as main venue / branch venues (tests/web/venue-meeting.test.ts);
  // this file tests the open model, where every site sees every other.
  h = await startSystemHarness({ towns: 2, communities: 4, villages: 60, meetings: { openMaxSites: 1000 } });
  browser = await launchChromium();
});
after(async () => {
  await browser?.close();
  await h?.close();
});

const open = (username: string) => signIn(browser, h.baseUrl, username, h.demo.password);
const peerIdOf = (page: Page) => page.evaluate(() => (window as unknown as { sfuClient?: { peerId: string } }).sfuClient?.peerId ?? '');
const featuredOn = (page: Page) => page.evaluate(() => document.querySelector('[data-featured]')?.getAttribute('data-featured') ?? null);
const mutedBadge = (page: Page) => page.getByTestId('muted-by-chair').isVisible();

test('the chair mutes, unmutes, spotlights, calls the roll, sees hands and ends the meeting', { timeout: 150_000 }, async () => {
  const t0 = Date.now();
  const laps: string[] = [];
  let tl = Date.now();
  const lap = (what: string) => (laps.push(`${what} ${Date.now() - tl} ms`), (tl = Date.now()));
  const { rows } = await h.db.pool.query<{ town: number; unit: number }>(
    `SELECT t.id AS town, v.id AS unit FROM units v JOIN units t ON t.level = 'town' AND v.path LIKE t.path || '%' WHERE v.level = 'village'`,
  );
  const townOf = new Map(rows.map((r) => [r.unit, r.town]));
  const byTown = new Map<number, string[]>();
  for (const u of h.demo.users.filter((x) => x.role === 'secretary' && x.level === 'village')) {
    const t = townOf.get(u.unitId)!;
    byTown.set(t, [...(byTown.get(t) ?? []), u.username]);
  }
  const [town, sites] = [...byTown.entries()].sort((a, b) => b[1].length - a[1].length)[0]!;
  const leaderName = h.demo.users.find((u) => u.role === 'leader' && u.unitId === town)!.username;

  const leader = await open(leaderName);
  await leader.getByLabel('会议主题').fill('防汛工作调度会');
  await leader.getByRole('button', { name: '开始会议' }).click();
  await leader.getByRole('button', { name: '结束会议' }).waitFor();
  const { rows: m } = await h.db.pool.query<{ id: number }>('SELECT id FROM meetings ORDER BY id DESC LIMIT 1');
  const roomId = `m-${m[0]!.id}`;

  const pages: Page[] = [];
  for (const name of sites.slice(0, 2)) {
    const p = await open(name);
    await p.getByRole('link', { name: '我的会议' }).click();
    await p.getByText('防汛工作调度会').waitFor();
    await p.getByRole('button', { name: '进入会议' }).click();
    pages.push(p);
  }
  const [a, b] = pages as [Page, Page];
  await until('two sites joined on the console', async () => leader.getByTestId('joined').textContent(), (v) => v === '2');
  const [idA, idB] = [await until('site A joined', () => peerIdOf(a), (v) => v !== ''), await until('site B joined', () => peerIdOf(b), (v) => v !== '')];
  const room = () => h.sfu.rooms.get(roomId)!;
  const micPaused = (peerId: string) => [...(room().peers.get(peerId)?.producers.values() ?? [])].find((p) => p.appData.source === 'microphone')?.paused;
  await until('both sites publish a microphone', async () => [micPaused(idA), micPaused(idB)], (v) => v.every((x) => x === false));

  lap('sign-ins, meeting, two sites joined');
  // The controls are there for the chair, and not for the sites.
  const controls = leader.getByTestId('chair-controls');
  await controls.waitFor();
  for (const name of ['全体静音', '点名']) assert.ok(await controls.getByRole('button', { name, exact: true }).isVisible(), `chair sees ${name}`);
  assert.ok(await controls.getByRole('heading', { name: /举手/ }).isVisible(), 'chair sees the raised-hands list');
  const row = (peerId: string) => controls.locator(`li[data-site="${peerId}"]`);
  for (const id of [idA, idB]) assert.ok(await row(id).getByRole('button', { name: '聚焦', exact: true }).isVisible());
  assert.equal(await a.getByTestId('chair-controls').count(), 0, 'a site has no chair controls');
  assert.ok(await a.getByRole('button', { name: '举手', exact: true }).isVisible(), 'a site can raise its hand');

  // Mute all: the sites' pages say so, and their microphone producers are paused on the SFU.
  await controls.getByRole('button', { name: '全体静音', exact: true }).click();
  await until('sites show they are muted', async () => [await mutedBadge(a), await mutedBadge(b)], (v) => v.every(Boolean));
  await until('microphones paused on the SFU', async () => [micPaused(idA), micPaused(idB)], (v) => v.every((x) => x === true));
  assert.match((await a.getByTestId('muted-by-chair').textContent()) ?? '', /主持人已将本会场静音/);
  const resume = await a.evaluate(async () => {
    const c = (window as unknown as { sfuClient: { request(m: string, d: unknown): Promise<unknown>; producerId(s: string): string | undefined } }).sfuClient;
    return c.request('resumeProducer', { producerId: c.producerId('microphone') }).then(() => 'resumed', (e: { code?: string }) => e.code ?? 'error');
  });
  assert.equal(resume, 'forbidden', 'a muted site cannot unmute itself');

  lap('mute all seen on both sites + forbidden self-unmute');
  // Unmute one site from its row.
  await row(idA).getByRole('button', { name: '解除静音', exact: true }).click();
  await until('site A may speak again', async () => [await mutedBadge(a), micPaused(idA)], ([badge, paused]) => badge === false && paused === false);
  assert.equal(await mutedBadge(b), true, 'site B still muted');
  assert.equal(micPaused(idB), true);
  assert.equal(await row(idB).locator('.state').textContent(), '已静音');

  lap('unmute one site');
  // Spotlight site B: both sites (and the chair) show it in the large tile.
  await row(idB).getByRole('button', { name: '聚焦', exact: true }).click();
  for (const p of [a, b, leader]) await until('site B in the large tile', () => featuredOn(p), (v) => v === idB);
  const big = await a.evaluate((id) => {
    const tile = document.querySelector(`[data-featured="${id}"]`)!.getBoundingClientRect();
    const other = document.querySelector('figure.tile:not([data-featured])')!.getBoundingClientRect();
    return { tile: tile.width, other: other.width };
  }, idB);
  assert.ok(big.tile > big.other * 1.5, `the spotlighted tile is large: ${JSON.stringify(big)}`);

  lap('spotlight on 3 pages');
  // Roll call: the next site takes the spotlight.
  await controls.getByRole('button', { name: '点名', exact: true }).click();
  for (const p of [a, b]) await until('roll call moved on to site A', () => featuredOn(p), (v) => v === idA);

  lap('roll call');
  // A site raises its hand; the chair's list shows it.
  await b.getByRole('button', { name: '举手', exact: true }).click();
  const hand = controls.locator(`li[data-hand="${idB}"]`);
  await hand.waitFor({ timeout: 10_000 });
  const siteBName = await b.evaluate(() => (window as unknown as { sfuClient: { conference?: { hands: Array<{ displayName: string }> } } }).sfuClient.conference?.hands[0]?.displayName ?? '');
  assert.ok(siteBName && ((await hand.textContent()) ?? '').includes(siteBName), 'the hand is listed by site name');
  await b.getByRole('button', { name: '放下手', exact: true }).waitFor();
  await checkedScreenshot(leader, 'chair-console-controls');
  await checkedScreenshot(a, 'chair-console-site-spotlight');

  lap('hand listed at the chair + screenshots');
  // Broadcast the chair's screen: every microphone but the chair's is held, every page shows the screen large.
  await controls.getByRole('button', { name: '广播屏幕', exact: true }).click();
  const chairId = await peerIdOf(leader);
  const shown = (p: Page) =>
    p.evaluate(() => {
      type C = { conference?: { broadcast: string | null }; tracks: Array<{ producerId: string; track: MediaStreamTrack }> };
      const c = (window as unknown as { sfuClient: C }).sfuClient;
      const b = c.conference?.broadcast ?? null;
      const track = c.tracks.find((x) => x.producerId === b)?.track;
      const tile = document.querySelector('[data-featured]');
      const v = tile?.querySelector('video');
      return { broadcast: b, featured: tile?.getAttribute('data-featured') ?? null, showsIt: !!track && (v?.srcObject as MediaStream | null)?.getVideoTracks()[0] === track, width: v?.videoWidth ?? 0 };
    });
  for (const p of [a, b]) {
    const s = await until('the broadcast shown large', () => shown(p), (x) => x.broadcast !== null && x.featured === chairId && x.showsIt && x.width >= 1000);
    assert.equal(s.broadcast, await leader.evaluate(() => (window as unknown as { sfuClient: { producerId(s: string): string | undefined } }).sfuClient.producerId('screen')));
  }
  await until('broadcast holds every site microphone', async () => [micPaused(idA), micPaused(idB), await mutedBadge(a)], (v) => v.every((x) => x === true));
  await checkedScreenshot(b, 'chair-console-site-broadcast');
  lap('broadcast decoded large on both sites, mics held');
  await controls.getByRole('button', { name: '停止广播', exact: true }).click();
  await until('site A (unmuted before) speaks again after the broadcast', async () => [micPaused(idA), await mutedBadge(a)], (v) => v.every((x) => x === false));
  assert.equal(micPaused(idB), true, 'site B is still under mute all');

  lap('broadcast stopped, site A back');
  // End the meeting: every site's page says so, and nobody is left in the room.
  await leader.getByRole('button', { name: '结束会议' }).click();
  for (const p of [a, b]) {
    await p.getByTestId('meeting-ended').waitFor({ timeout: 10_000 });
    assert.match((await p.getByTestId('meeting-ended').textContent()) ?? '', /会议已结束/);
  }
  await until('room emptied on the SFU', async () => h.sfu.rooms.get(roomId)?.peers.size ?? 0, (n) => n === 0);
  await checkedScreenshot(b, 'chair-console-site-ended');
  lap('end seen on both sites, room empty');
  console.log(`# chair console: ${laps.join('; ')}; total ${Date.now() - t0} ms`);
});
