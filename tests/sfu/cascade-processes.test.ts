import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import express from 'express';
import type { Browser, Page } from 'playwright-core';
import { signJoinToken } from '../../infra/tokens.ts';
import { launchChromium } from '../support/browser.ts';
import { CASCADE_SECRET } from '../support/cascade-harness.ts';
import { freePort, NodeProcess } from '../support/node-process.ts';

// Five SFU node processes (sfu/main.ts) chained city -> county -> town -> community -> village, a
// chair's Chromium page on the city node and a villager's kiosk page on the village node (four hops
// apart). The town process is killed with SIGKILL mid-meeting and started again on the same port:
// community and village re-attach by themselves and both pages decode each other again without reloading.

const ROOM = 'conf-processes';

interface Stats {
  videoFramesDecoded: Record<string, number>;
  audioPacketsReceived: number;
  peers: number;
  peerId: string;
  state: string;
}

async function stats(page: Page): Promise<Stats> {
  return page.evaluate(async () => {
    type Handle = { stats(): Promise<Omit<Stats, 'peerId' | 'state'>>; peerId: string; state: string };
    const c = (window as unknown as { sfuClient?: Handle }).sfuClient;
    if (!c) return { videoFramesDecoded: {}, audioPacketsReceived: 0, peers: 0, peerId: '', state: 'none' };
    return { ...(await c.stats()), peerId: c.peerId, state: c.state };
  });
}

async function waitFor<T>(what: string, read: () => Promise<T>, ok: (v: T) => boolean, timeoutMs = 30_000, everyMs = 100): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: T | undefined;
  while (Date.now() < deadline) {
    try {
      last = await read();
      if (ok(last)) return last;
    } catch {
      // the process is not up yet
    }
    await new Promise((r) => setTimeout(r, everyMs));
  }
  assert.fail(`timed out waiting for ${what}; last: ${JSON.stringify(last)}`);
}

describe('cascade of SFU node processes with real Chromium pages', { timeout: 180_000 }, () => {
  const procs: NodeProcess[] = [];
  let web: http.Server;
  let webUrl = '';
  let browser: Browser;
  let chair: Page;
  let kiosk: Page;

  before(async () => {
    const names = ['city', 'county', 'town', 'community', 'village'];
    const ports: number[] = [];
    for (const _ of names) ports.push(await freePort());
    procs.push(
      ...names.map((n, i) => new NodeProcess(n, { unitId: i + 1, port: ports[i]!, rtcBase: 46000 + i * 300, ...(i > 0 ? { parentUrl: `ws://127.0.0.1:${ports[i - 1]}/cascade` } : {}) })),
    );
    const [city, , , , village] = procs as [NodeProcess, NodeProcess, NodeProcess, NodeProcess, NodeProcess];
    for (const p of procs) p.start();
    await waitFor('processes up, links connected', async () => Promise.all(procs.map((p) => p.health())), (h) =>
      h.every((x, i) => x.ok && (i === 0 || x.cascade?.parentConnected === true)),
    );
    const app = express();
    app.use(express.static(path.resolve('web/dist')));
    web = http.createServer(app);
    await new Promise<void>((r) => web.listen(0, '127.0.0.1', r));
    webUrl = `http://127.0.0.1:${(web.address() as net.AddressInfo).port}`;
    browser = await launchChromium();
    const open = async (p: NodeProcess, userId: number, name: string, role: 'chair' | 'participant') => {
      const page = await (await browser.newContext()).newPage();
      page.on('pageerror', (e) => console.error(`[page ${name}]`, e.message));
      const token = await signJoinToken(CASCADE_SECRET, { userId, displayName: name, unitId: 1, room: ROOM, role });
      await page.goto(`${webUrl}/?autojoin=1&token=${encodeURIComponent(token)}&sfu=${encodeURIComponent(p.wsUrl)}`);
      return page;
    };
    chair = await open(city, 21, '潍坊市指挥中心', 'chair');
    kiosk = await open(village, 22, '大柳树村服务站', 'participant');
  });

  after(async () => {
    await browser?.close();
    web?.close();
    for (const p of procs) await p.kill();
  });

  const decoding = async (page: Page, otherId: string, min = 30) => {
    const first = await waitFor('decoding', () => stats(page), (s) => (s.videoFramesDecoded[otherId] ?? 0) >= min);
    await waitFor('frames rising', () => stats(page), (s) => (s.videoFramesDecoded[otherId] ?? 0) >= (first.videoFramesDecoded[otherId] ?? 0) + 10);
  };

  test('chair (city process) and kiosk (village process, four hops down) decode each other; the town process is SIGKILLed and restarted, media resumes', async () => {
    const [c, k] = await Promise.all([
      waitFor('chair joined', () => stats(chair), (s) => s.state === 'joined' && s.peerId !== ''),
      waitFor('kiosk joined', () => stats(kiosk), (s) => s.state === 'joined' && s.peerId !== ''),
    ]);
    await decoding(kiosk, c.peerId);
    await decoding(chair, k.peerId);

    const town = procs[2]!;
    const killedAt = Date.now();
    await town.kill();
    await waitFor('kiosk lost the chair', () => stats(kiosk), (s) => s.videoFramesDecoded[c.peerId] === undefined, 15_000);
    const lostMs = Date.now() - killedAt;
    town.start();
    const restartedAt = Date.now();
    await waitFor('town process serving', () => town.health(), (h) => h.ok, 30_000, 50);
    const upMs = Date.now() - restartedAt;
    await waitFor('community re-attached to town', () => procs[3]!.health(), (h) => h.cascade?.parentConnected === true, 30_000, 50);
    const linkMs = Date.now() - restartedAt;
    await decoding(kiosk, c.peerId, 5);
    const kioskBackMs = Date.now() - restartedAt;
    await decoding(chair, k.peerId, 5);
    const bothBackMs = Date.now() - restartedAt;
    console.log(`# town SIGKILL: kiosk lost the chair after ${lostMs} ms; restarted town process serving after ${upMs} ms, community's link back after ${linkMs} ms; after the restart the kiosk decodes the chair again in ${kioskBackMs} ms and both directions in ${bothBackMs} ms (${Date.now() - killedAt} ms after the kill)`);
    const health = await Promise.all(procs.map((p) => p.health()));
    assert.ok(health.slice(1).every((h) => h.cascade?.parentConnected), JSON.stringify(health));
    // Neither page reloaded or rejoined: the village node kept its local participant throughout.
    assert.equal((await stats(kiosk)).peerId, k.peerId);
  });
});
