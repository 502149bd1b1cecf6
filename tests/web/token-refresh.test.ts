import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import type { Browser, Page } from 'playwright-core';
import WebSocket from 'ws';
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
  // Negative controls: the city's supervisor (who may watch the meeting from above) takes a join token from
  // the API now; it expires with the pages'.
  const other = h.demo.users.find((u) => u.role === 'supervisor' && u.level === 'city');
  assert.ok(other, 'the demo has a city supervisor');
  const otherAccess = await h.login(other.username);
  const issued = await h.call<{ token: string; expires_in: number }>(otherAccess, 'POST', `/api/meetings/${rows[0]!.id}/join-token`);
  assert.equal(issued.status, 201);
  assert.equal(issued.body.expires_in, TTL_SECONDS);
  const tokensBefore = await joinTokensIssued();
  // Both pages' tokens (and the control token) are now past their expiry (the condition is time itself).
  await new Promise((r) => setTimeout(r, (TTL_SECONDS + 1) * 1000));
  // The node refuses an expired token — which is why a page must fetch a fresh one to rejoin.
  assert.deepEqual(await joinError(issued.body.token), 'token_expired', 'the node refuses the expired join token');
  // And the API gives no fresh token to an account disabled meanwhile (refresh is an access check, not a formality).
  await h.db.pool.query('UPDATE users SET disabled = true WHERE username = $1', [other.username]);
  const refused = await h.call<{ error: { code: string } }>(otherAccess, 'POST', `/api/meetings/${rows[0]!.id}/join-token`);
  assert.equal(refused.status, 401);
  assert.equal(refused.body.error.code, 'account_disabled');
  process.kill(room.slot.worker.pid!, 'SIGKILL');
  for (const page of [leader, site]) {
    await waitUntil('rejoined after the worker died', () => mediaStats(page), (m) => m.reconnects >= 1 && m.state === 'joined', 30_000);
    await decodes(page, 10);
  }
  assert.ok((await joinTokensIssued()) >= tokensBefore + 2, 'each page fetched a fresh token to rejoin');
});

/** Presents `token` to the node's signalling (/sfu) as a bare client; the error code of its answer (null if it joined). */
async function joinError(token: string): Promise<string | null> {
  const ws = new WebSocket(h.wsUrl);
  try {
    await new Promise((res, rej) => (ws.once('open', res), ws.once('error', rej)));
    const answer = new Promise<{ ok?: boolean; error?: { code: string } }>((res, rej) => {
      const t = setTimeout(() => rej(new Error('join: no response')), 10_000);
      ws.on('message', (d) => {
        const m = JSON.parse(String(d)) as { type: string; id?: string; ok?: boolean; error?: { code: string } };
        if (m.type === 'response' && m.id === 'j1') (clearTimeout(t), res(m));
      });
    });
    ws.send(JSON.stringify({ id: 'j1', method: 'join', data: { token } }));
    const m = await answer;
    return m.ok ? null : (m.error?.code ?? 'no code');
  } finally {
    ws.close();
  }
}

async function joinTokensIssued(): Promise<number> {
  const { rows } = await h.db.pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM audit_log WHERE action = 'meeting.join_token'`);
  return rows[0]!.n;
}
