import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { AddressInfo } from 'node:net';
import type { Browser } from 'playwright-core';
import { WebSocketServer } from 'ws';
import { launchChromium } from '../support/browser.ts';
import { mediaStats, openMeetingLink, signIn, waitUntil } from '../support/pages.ts';
import { startSystemHarness, type SystemHarness } from '../support/system-harness.ts';

// Attack: a meeting link whose `sfu=` names a server of the attacker's: a kiosk opening it would send
// its camera, microphone and join token there. The page connects only to the system's own nodes
// (this origin's /sfu or one the API publishes from sfu_nodes) and otherwise says so, connecting
// nowhere. A rogue WebSocket server counts every connection and message it gets.
// Attack 2: a link carrying someone else's join token, opened on a signed-in kiosk (`autojoin=1`): the
// kiosk would publish its camera and microphone into that person's meeting. A signed-in page uses
// only a token naming its own account.

describe('a meeting link cannot send a kiosk to a rogue SFU', { timeout: 120_000 }, () => {
  let h: SystemHarness;
  let browser: Browser;
  let rogue: WebSocketServer;
  const rogueSeen: string[] = [];
  let token: string;
  let meetingId: number;
  let site: { username: string };

  before(async () => {
    h = await startSystemHarness({ towns: 1, communities: 1, villages: 10 });
    rogue = new WebSocketServer({ host: '127.0.0.1', port: 0 });
    rogue.on('connection', (ws, req) => {
      rogueSeen.push(`connect ${req.url}`);
      ws.on('message', (d) => rogueSeen.push(`message ${String(d).slice(0, 200)}`));
    });
    await new Promise((r) => rogue.once('listening', r));
    const [town] = (await h.db.pool.query<{ id: number }>(`SELECT id FROM units WHERE level = 'town' LIMIT 1`)).rows;
    const leader = await h.login(h.demo.users.find((u) => u.role === 'leader' && u.unitId === town!.id)!.username);
    const m = await h.call<{ id: number }>(leader, 'POST', '/api/meetings', { title: '链接安全', levels: ['village'] });
    assert.equal(m.status, 201, JSON.stringify(m.body));
    meetingId = m.body.id;
    site = h.demo.users.find((u) => u.role === 'secretary' && u.level === 'village')!;
    const j = await h.call<{ token: string }>(await h.login(site.username), 'POST', `/api/meetings/${m.body.id}/join-token`);
    assert.equal(j.status, 201, JSON.stringify(j.body));
    token = j.body.token;
    browser = await launchChromium();
  });

  after(async () => {
    await browser?.close();
    rogue?.close();
    await h?.close();
  });

  test('sfu= naming a rogue server: the page refuses, in both languages, and the rogue hears nothing', async () => {
    const rogueUrl = `ws://127.0.0.1:${(rogue.address() as AddressInfo).port}/sfu`;
    const page = await openMeetingLink(browser, h.baseUrl, token, 'rogue-link', rogueUrl);
    const alert = page.getByTestId('unknown-sfu');
    await alert.waitFor({ timeout: 15_000 });
    const text = await alert.textContent();
    assert.match(text ?? '', /不属于本系统/);
    assert.match(text ?? '', /not part of this system/);
    assert.equal((await mediaStats(page)).state, 'none', 'no signalling client was made');
    assert.deepEqual(rogueSeen, [], 'the rogue server got no connection, no token, no media');
    await page.context().close();
  });

  test('look-alike and odd sfu= values are refused as well', async () => {
    const port = (rogue.address() as AddressInfo).port;
    for (const sfu of [`ws://localhost:${port}/sfu`, `//127.0.0.1:${port}/sfu`, 'wss://sfu-370702.wf.example.evil.test/ws', 'javascript:alert(1)']) {
      const page = await openMeetingLink(browser, h.baseUrl, token, 'odd-link', sfu);
      await page.getByTestId('unknown-sfu').waitFor({ timeout: 15_000 });
      await page.context().close();
    }
    assert.deepEqual(rogueSeen, []);
  });

  test('a signed-in kiosk refuses a link with another user’s token, in both languages, and publishes nothing', async () => {
    const other = h.demo.users.find((u) => u.role === 'secretary' && u.level === 'village' && u.username !== site.username)!;
    const room = (JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString()) as { room: string; userId: number }).room;
    const kiosk = await signIn(browser, h.baseUrl, other.username, h.demo.password);
    kiosk.on('pageerror', (e) => console.error('[foreign-token]', e.message));
    await kiosk.goto(`${h.baseUrl}/?autojoin=1&token=${encodeURIComponent(token)}&sfu=${encodeURIComponent(h.wsUrl)}`);
    const alert = kiosk.getByTestId('foreign-token');
    await alert.waitFor({ timeout: 15_000 });
    const text = (await alert.textContent()) ?? '';
    assert.match(text, /另一位用户/);
    assert.match(text, /another user/);
    assert.equal((await mediaStats(kiosk)).state, 'none', 'no signalling client was made');
    assert.equal(await kiosk.getByRole('button', { name: '加入会议' }).count(), 0, 'no join button either');
    assert.equal(h.sfu.rooms.get(room)?.peers.size ?? 0, 0, 'nobody joined the meeting’s room');

    // Control: the same signed-in tab with a token of its own account joins and publishes.
    const own = await h.call<{ token: string }>(await h.login(other.username), 'POST', `/api/meetings/${meetingId}/join-token`);
    assert.equal(own.status, 201, JSON.stringify(own.body));
    await kiosk.goto(`${h.baseUrl}/?autojoin=1&token=${encodeURIComponent(own.body.token)}&sfu=${encodeURIComponent(h.wsUrl)}`);
    await waitUntil('the own token joined and published', async () => [...(h.sfu.rooms.get(room)?.peers.values() ?? [])].map((p) => p.producers.size), (n) => n.length === 1 && n[0]! > 0);
    await kiosk.context().close();
  });

  test('control: a link naming the system’s own node joins', async () => {
    const page = await openMeetingLink(browser, h.baseUrl, token, 'own-link', h.wsUrl);
    await waitUntil('joined the own node', () => mediaStats(page), (s) => s.state === 'joined');
    assert.equal(await page.getByTestId('unknown-sfu').count(), 0);
    await page.context().close();
  });
});
