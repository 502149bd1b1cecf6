import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import type { Browser, Page } from 'playwright-core';
import { launchChromium } from '../support/browser.ts';
import { mediaStats, signIn, waitUntil } from '../support/pages.ts';
import { startSystemHarness, type SystemHarness } from '../support/system-harness.ts';

// Join tokens are short-lived (10 minutes; 4 s here) while meetings last hours. When a page must
// rejoin later — its node's worker died, the network dropped — it fetches a fresh token from the API
// instead of presenting the expired one (which the node would refuse, leaving the site dark).

const TTL_SECONDS = 4;
let h: SystemHarness;
let browser: Browser;
before(async () => {
  h = await startSystemHarness({ towns: 1, communities: 2, villages: 4, joinTokenTtlSeconds: TTL_SECONDS });
  browser = await launchChromium();
});
after(async () => {
  await browser?.close();
  await h?.close();
});

test('a meeting page rejoins with a fresh token after its first one expired', { timeout: 90_000 }, async () => {
  const leaderName = h.demo.users.find((u) => u.role === 'leader' && u.level === 'town')!.username;
  const siteName = h.demo.users.find((u) => u.role === 'secretary' && u.level === 'village')!.username;
  const leader = await signIn(browser, h.baseUrl, leaderName, h.demo.password);
  await leader.getByLabel('会议主题').fill('长会:令牌过期后重连');
  await leader.getByRole('button', { name: '开始会议' }).click();
  await leader.getByRole('button', { name: '结束会议' }).waitFor();
  const site = await signIn(browser, h.baseUrl, siteName, h.demo.password);
  await site.getByRole('link', { name: '我的会议' }).click();
  await site.getByRole('button', { name: '进入会议' }).click();
  const decodes = (page: Page, min: number) => waitUntil('decoding the other side', () => mediaStats(page), (m) => m.state === 'joined' && Object.values(m.videoFramesDecoded).some((n) => n >= min));
  await decodes(leader, 30);
  await decodes(site, 30);

  const { rows } = await h.db.pool.query<{ id: number }>('SELECT id FROM meetings ORDER BY id DESC LIMIT 1');
  const room = h.sfu.rooms.get(`m-${rows[0]!.id}`)!;
  const tokensBefore = await joinTokensIssued();
  // Both tokens are now past their expiry (the condition is time itself).
  await new Promise((r) => setTimeout(r, (TTL_SECONDS + 1) * 1000));
  process.kill(room.slot.worker.pid!, 'SIGKILL');
  for (const page of [leader, site]) {
    await waitUntil('rejoined after the worker died', () => mediaStats(page), (m) => m.reconnects >= 1 && m.state === 'joined', 30_000);
    await decodes(page, 10);
  }
  assert.ok((await joinTokensIssued()) >= tokensBefore + 2, 'each page fetched a fresh token to rejoin');
});

async function joinTokensIssued(): Promise<number> {
  const { rows } = await h.db.pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM audit_log WHERE action = 'meeting.join_token'`);
  return rows[0]!.n;
}
