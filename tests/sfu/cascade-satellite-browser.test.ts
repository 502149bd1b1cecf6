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
// 1 Mbps). The village node measures the link's round trip and asks the kiosk to hold the chair's
// stream two round trips, so repairs across the link arrive in time; then the kiosk keeps decoding
// with few freezes (Chromium's own counters).

const ROOM = 'conf-satellite-browser';
const SAT = { delayMs: 300, loss: 0.03, rateBps: 1_000_000, queueBytes: 64 * 1024 };
const WINDOW_MS = 10_000;
/** Chromium grows its jitter buffer towards a new target gradually; the window starts after that. */
const SETTLE_MS = 5_000;

interface Quality {
  freezeCount: number;
  totalFreezesDuration: number;
  packetsLost: number;
  nackCount: number;
  jitterBufferDelayMs: number;
  playoutDelayMs: number;
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
    await waitFor('kiosk decodes the chair', () => stats(kiosk), (s) => (s.videoFramesDecoded[c.peerId] ?? 0) >= 10, 60_000);
    const firstMs = Date.now() - t0;
    // The village node measures the pipe's round trip (RTCP XR) and asks the page to hold the
    // chair's stream long enough for repairs across the link to arrive (sfu/playoutDelay.ts).
    const hinted = await waitFor('the node sets a playout delay for the link', () => stats(kiosk), (s) => (s.videoQuality[c.peerId]?.playoutDelayMs ?? 0) > 0, 20_000);
    const hint = hinted.videoQuality[c.peerId]!.playoutDelayMs;
    await new Promise((r) => setTimeout(r, SETTLE_MS));
    const first = await stats(kiosk);
    const settling = { freezes: first.videoQuality[c.peerId]!.freezeCount, frozenS: first.videoQuality[c.peerId]!.totalFreezesDuration };
    const q0 = first.videoQuality[c.peerId]!;
    const f0 = first.videoFramesDecoded[c.peerId]!;
    await new Promise((r) => setTimeout(r, WINDOW_MS));
    const last = await stats(kiosk);
    const q1 = last.videoQuality[c.peerId]!;
    const fps = ((last.videoFramesDecoded[c.peerId] ?? 0) - f0) / (WINDOW_MS / 1000);
    // Every emulated path of the link (a path per pipe transport), summed town -> village.
    const emus = await satellite.emulators();
    assert.ok(emus.length > 0, 'media crossed the emulated link');
    const down = { bytesOut: 0, packetsIn: 0, lost: 0, queueDrops: 0 };
    for (const e of emus) for (const k of ['bytesOut', 'packetsIn', 'lost', 'queueDrops'] as const) down[k] += e.counters.bToA[k];
    const kbps = (down.bytesOut * 8) / 1000 / ((Date.now() - t0) / 1000);
    const freezes = q1.freezeCount - q0.freezeCount;
    const frozenS = q1.totalFreezesDuration - q0.totalFreezesDuration;
    const wireLoss = down.lost / down.packetsIn;
    // Repairs on the pipe between the town and the village (not only Chromium's own NACKs).
    const sub = [...nodes[1]!.cascadeRoom(ROOM)!.subscriptions.values()].find((x) => x.producer?.kind === 'video');
    assert.ok(sub?.producer, 'the chair\'s video is piped into the village');
    const [pipeIn] = await sub.producer.getStats();
    const [pipeOut] = await nodes[0]!.link(ROOM, 'child:village')!.transport.getStats();
    console.log(
      `# satellite kiosk (Chromium): first chair frames ${firstMs} ms after the chair joined; until the playout delay settled ${settling.freezes} freezes (${settling.frozenS.toFixed(2)} s); then over ${WINDOW_MS / 1000} s: ${fps.toFixed(1)} fps decoded, ` +
        `freezes ${freezes} totalling ${frozenS.toFixed(2)} s, NACKs sent ${q1.nackCount - q0.nackCount}, packets lost (unrepaired) ${q1.packetsLost - q0.packetsLost}, ` +
        `jitter buffer ${q1.jitterBufferDelayMs.toFixed(0)} ms (playout delay asked ${hint} ms); link town->village: ${kbps.toFixed(0)} kbit/s delivered, ${down.lost} lost on the wire, ${down.queueDrops} dropped at the 1 Mbps bottleneck (measured wire loss ${(wireLoss * 100).toFixed(1)} %); ` +
        `pipe: village NACKs ${pipeIn?.nackCount}, retransmitted ${pipeIn?.packetsRetransmitted}, town RTX bytes ${pipeOut?.rtxBytesSent}`,
    );
    assert.ok(wireLoss > SAT.loss / 2 && wireLoss < SAT.loss * 2, `the emulator dropped about ${SAT.loss * 100} %: ${wireLoss}`);
    assert.ok((pipeIn?.nackCount ?? 0) > 0, `the village's pipe producer sent NACKs: ${pipeIn?.nackCount}`);
    assert.ok((pipeOut?.rtxBytesSent ?? 0) > 0, `the town retransmitted over the pipe (RTX bytes): ${pipeOut?.rtxBytesSent}`);
    assert.ok(hint >= 1_000 && hint <= 2_000, `playout delay for a 600 ms round trip (two round trips): ${hint} ms`);
    assert.ok(freezes <= 4, `few freezes over ${WINDOW_MS / 1000} s: ${freezes}`);
    assert.ok(frozenS <= 2, `frozen at most 2 s of ${WINDOW_MS / 1000} s: ${frozenS.toFixed(2)} s`);
    assert.ok(fps >= 10, `the kiosk keeps decoding: ${fps.toFixed(1)} fps`);
    assert.ok(q1.nackCount > q0.nackCount, 'NACKs were sent across the link');
    assert.ok(last.audioPacketsReceived > 100, 'audio arrives too');
  });
});
