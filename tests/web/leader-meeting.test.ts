import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import type { Browser, Page } from 'playwright-core';
import { launchChromium } from '../support/browser.ts';
import { checkedScreenshot, mediaStats, signIn, waitUntil as until } from '../support/pages.ts';
import { startSystemHarness, type SystemHarness } from '../support/system-harness.ts';

// A town leader opens a meeting of the town's villages from the console; two village sites join
// from their meeting lists; everyone decodes the others; the leader ends the meeting.

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
const decoding = async (page: Page) => (await mediaStats(page)).videoFramesDecoded;

test('a leader runs a meeting with two village sites in Chromium', { timeout: 150_000 }, async () => {
  // The town with the most village secretaries, and two of them.
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
  assert.ok(sites.length >= 2, 'two village secretaries in one town');
  const leaderName = h.demo.users.find((u) => u.role === 'leader' && u.unitId === town)!.username;

  const leader = await open(leaderName);
  await leader.getByLabel('会议主题').fill('全镇三务公开工作部署会');
  await leader.getByRole('button', { name: '开始会议' }).click();
  await leader.getByRole('button', { name: '结束会议' }).waitFor();

  const pages: Page[] = [];
  for (const name of sites.slice(0, 2)) {
    const p = await open(name);
    await p.getByRole('link', { name: '我的会议' }).click();
    await p.getByText('全镇三务公开工作部署会').waitFor();
    await p.getByRole('button', { name: '进入会议' }).click();
    pages.push(p);
  }

  await until('two sites joined on the console', async () => leader.getByTestId('joined').textContent(), (v) => v === '2');
  const chairView = await until('chair decodes both sites', () => decoding(leader), (d) => Object.values(d).filter((n) => n > 30).length === 2);
  assert.equal(Object.keys(chairView).length, 2);
  for (const p of pages) {
    await until('site decodes the chair and the other site', () => decoding(p), (d) => Object.values(d).filter((n) => n > 30).length === 2);
  }
  assert.match((await leader.getByTestId('timer').textContent()) ?? '', /^00:0\d:\d\d$/);
  await checkedScreenshot(leader, 'console-meeting-two-sites');

  await leader.getByRole('button', { name: '结束会议' }).click();
  await leader.getByText('暂无会议').waitFor();
  const { rows: m } = await h.db.pool.query<{ state: string }>('SELECT state FROM meetings');
  assert.deepEqual(m.map((r) => r.state), ['ended']);
});
