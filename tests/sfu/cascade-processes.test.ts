import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { Browser, Page } from 'playwright-core';
import { signJoinToken } from '../../infra/tokens.ts';
import { launchChromium } from '../support/browser.ts';
import { CASCADE_SECRET } from '../support/cascade-harness.ts';
import { freePorts, NodeProcess, type NodeHealth } from '../support/node-process.ts';
import { mediaStats as stats, openMeetingLink, serveWebDist, waitUntil } from '../support/pages.ts';
import { TEST_JOIN_KEYS } from '../support/join-keys.ts';

/** Polls often (the resume figures below are timings) and reads a node that is down as not ready. */
const waitFor = <T>(what: string, read: () => Promise<T>, ok: (v: T) => boolean, timeoutMs = 30_000, everyMs = 100): Promise<T> =>
  waitUntil(what, read, ok, timeoutMs, everyMs);
const health = (p: NodeProcess): Promise<NodeHealth> => p.health().catch((): NodeHealth => ({ ok: false }));

// Five SFU node processes (sfu/main.ts) chained city -> county -> town -> community -> village, a
// chair's Chromium page on the city node and a villager's kiosk page on the village node (four hops
// apart). The town process is killed with SIGKILL mid-meeting and started again on the same port:
// community and village re-attach by themselves and both pages decode each other again without reloading.

const ROOM = 'conf-processes';

describe('cascade of SFU node processes with real Chromium pages', { timeout: 180_000 }, () => {
  const procs: NodeProcess[] = [];
  let web: { url: string; close(): void };
  let browser: Browser;
  let chair: Page;
  let kiosk: Page;

  before(async () => {
    const names = ['city', 'county', 'town', 'community', 'village'];
    const ports = await freePorts(names.length);
    procs.push(
      ...names.map((n, i) => new NodeProcess(n, { unitId: i + 1, port: ports[i]!, ...(i > 0 ? { parentUrl: `ws://127.0.0.1:${ports[i - 1]}/cascade` } : {}) })),
    );
    const [city, , , , village] = procs as [NodeProcess, NodeProcess, NodeProcess, NodeProcess, NodeProcess];
    for (const p of procs) p.start();
    await waitFor('processes up, links connected', async () => Promise.all(procs.map(health)), (h) =>
      h.every((x, i) => x.ok && (i === 0 || x.cascade?.parentConnected === true)),
    );
    web = await serveWebDist(procs.map((p) => p.wsUrl));
    browser = await launchChromium();
    const open = async (p: NodeProcess, userId: number, name: string, role: 'chair' | 'participant') =>
      openMeetingLink(browser, web.url, await signJoinToken(TEST_JOIN_KEYS.privateKey, { userId, displayName: name, unitId: 1, room: ROOM, role }), name, p.wsUrl);
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
    await waitFor('town process serving', () => health(town), (h) => h.ok, 30_000, 50);
    const upMs = Date.now() - restartedAt;
    await waitFor('community re-attached to town', () => health(procs[3]!), (h) => h.cascade?.parentConnected === true, 30_000, 50);
    const linkMs = Date.now() - restartedAt;
    await decoding(kiosk, c.peerId, 5);
    const kioskBackMs = Date.now() - restartedAt;
    await decoding(chair, k.peerId, 5);
    const bothBackMs = Date.now() - restartedAt;
    console.log(`# town SIGKILL: kiosk lost the chair after ${lostMs} ms; restarted town process serving after ${upMs} ms, community's link back after ${linkMs} ms; after the restart the kiosk decodes the chair again in ${kioskBackMs} ms and both directions in ${bothBackMs} ms (${Date.now() - killedAt} ms after the kill)`);
    const all = await Promise.all(procs.map(health));
    assert.ok(all.slice(1).every((h) => h.cascade?.parentConnected), JSON.stringify(all));
    // Neither page reloaded or rejoined: the village node kept its local participant throughout.
    assert.equal((await stats(kiosk)).peerId, k.peerId);
  });
});
