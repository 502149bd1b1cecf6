import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { Browser, Page } from 'playwright-core';
import { signJoinToken } from '../../infra/tokens.ts';
import { launchChromium } from '../support/browser.ts';
import { openMeetingLink, waitUntil as waitFor } from '../support/pages.ts';
import { CASCADE_SECRET, EmulatedLink, startChain, type TreeNode } from '../support/cascade-harness.ts';
import { TEST_JOIN_KEYS } from '../support/join-keys.ts';

// The chair's real Chromium page on the town node; a village kiosk page on the village node, whose
// media link to the town crosses a satellite-like emulated link (600 ms RTT, 3 % loss each way,
// 1 Mbps). The kiosk must keep decoding the chair; Chromium's own freeze counters are reported.

const ROOM = 'conf-satellite-browser';
const SAT = { delayMs: 300, loss: 0.03, rateBps: 1_000_000, queueBytes: 64 * 1024 };
const WINDOW_MS = 10_000;

interface Quality {
  freezeCount: number;
  totalFreezesDuration: number;
  packetsLost: number;
  nackCount: number;
  jitterBufferDelayMs: number;
}
interface Stats {
  videoFramesDecoded: Record<string, number>;
  audioPacketsReceived: number;
  videoQuality: Record<string, Quality>;
  peerId: string;
  state: string;
}

async function stats(page: Page): Promise<Stats> {
  return page.evaluate(async () => {
    type Handle = { stats(): Promise<Omit<Stats, 'peerId' | 'state'>>; peerId: string; state: string };
    const c = (window as unknown as { sfuClient?: Handle }).sfuClient;
    if (!c) return { videoFramesDecoded: {}, audioPacketsReceived: 0, videoQuality: {}, peerId: '', state: 'none' };
    return { ...(await c.stats()), peerId: c.peerId, state: c.state };
  });
}


describe('a village kiosk behind a satellite-like link decodes the chair (real Chromium)', { timeout: 120_000 }, () => {
  let nodes: TreeNode[];
  let browser: Browser;
  let chair: Page;
  let kiosk: Page;
  const satellite = new EmulatedLink('village', 'town', { link: SAT, seed: 7 });

  before(async () => {
    nodes = await startChain(['town', 'village'], { serveWeb: true, pipeRouteFor: satellite.routeFor });
    browser = await launchChromium();
    const open = async (n: TreeNode, userId: number, name: string, role: 'chair' | 'participant') =>
      openMeetingLink(browser, n.baseUrl, await signJoinToken(TEST_JOIN_KEYS.privateKey, { userId, displayName: name, unitId: n.unitId, room: ROOM, role }), name);
    chair = await open(nodes[0]!, 31, '镇党委书记', 'chair');
    kiosk = await open(nodes[1]!, 32, '牧区村服务站', 'participant');
  });

  after(async () => {
    await browser?.close();
    for (const n of [...(nodes ?? [])].reverse()) await n.stop().catch(() => undefined);
    await satellite.close();
  });

  test('decoding continues through 600 ms RTT, 3 % loss and 1 Mbps; NACK repairs; freezes reported', async () => {
    const c = await waitFor('chair joined', () => stats(chair), (s) => s.state === 'joined' && s.peerId !== '');
    const t0 = Date.now();
    const first = await waitFor('kiosk decodes the chair', () => stats(kiosk), (s) => (s.videoFramesDecoded[c.peerId] ?? 0) >= 10, 60_000);
    const firstMs = Date.now() - t0;
    const q0 = first.videoQuality[c.peerId]!;
    const f0 = first.videoFramesDecoded[c.peerId]!;
    await new Promise((r) => setTimeout(r, WINDOW_MS));
    const last = await stats(kiosk);
    const q1 = last.videoQuality[c.peerId]!;
    const fps = ((last.videoFramesDecoded[c.peerId] ?? 0) - f0) / (WINDOW_MS / 1000);
    const [emu] = await satellite.emulators();
    assert.ok(emu, 'media crossed the emulated link');
    const down = emu.counters.bToA;
    const kbps = (down.bytesOut * 8) / 1000 / ((Date.now() - t0) / 1000);
    const freezes = q1.freezeCount - q0.freezeCount;
    const frozenS = q1.totalFreezesDuration - q0.totalFreezesDuration;
    console.log(
      `# satellite kiosk (Chromium): first chair frames ${firstMs} ms after the chair joined; over ${WINDOW_MS / 1000} s: ${fps.toFixed(1)} fps decoded, ` +
        `freezes ${freezes} totalling ${frozenS.toFixed(2)} s, NACKs sent ${q1.nackCount - q0.nackCount}, packets lost (unrepaired) ${q1.packetsLost - q0.packetsLost}, ` +
        `jitter buffer ${q1.jitterBufferDelayMs.toFixed(0)} ms; link town->village: ${kbps.toFixed(0)} kbit/s delivered, ${down.lost} lost on the wire, ${down.queueDrops} dropped at the 1 Mbps bottleneck`,
    );
    assert.ok(fps >= 10, `the kiosk keeps decoding: ${fps.toFixed(1)} fps`);
    assert.ok(q1.nackCount > q0.nackCount, 'NACKs were sent across the link');
    assert.ok(last.audioPacketsReceived > 100, 'audio arrives too');
  });
});
