import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { Browser, Page } from 'playwright-core';
import { signJoinToken } from '../../infra/tokens.ts';
import { launchChromium } from '../support/browser.ts';
import { openMeetingLink, mediaStats as stats, waitUntil as waitFor } from '../support/pages.ts';
import { CASCADE_SECRET, startChain, type TreeNode } from '../support/cascade-harness.ts';
import { TEST_JOIN_KEYS } from '../support/join-keys.ts';

// Face to face across two nodes: a clerk's Chromium page on the town node, a villager's kiosk page
// on the village node (the town's child). The unchanged browser client sees the other side's
// tracks as ordinary remote producers; the media crosses the town<->village PipeTransports.

const ROOM = 'f2f-town-village';




describe('face to face across two SFU nodes in real Chromium', { timeout: 120_000 }, () => {
  let nodes: TreeNode[];
  let browser: Browser;
  let clerk: Page;
  let kiosk: Page;

  before(async () => {
    nodes = await startChain(['town', 'village'], { serveWeb: true });
    browser = await launchChromium();
    const open = async (n: TreeNode, userId: number, name: string, role: 'chair' | 'participant') =>
      openMeetingLink(browser, n.baseUrl, await signJoinToken(TEST_JOIN_KEYS.privateKey, { userId, displayName: name, unitId: n.unitId, room: ROOM, role }), name);
    clerk = await open(nodes[0]!, 11, '镇便民服务中心', 'chair');
    kiosk = await open(nodes[1]!, 12, '大柳树村服务站', 'participant');
  });

  after(async () => {
    await browser?.close();
    for (const n of [...(nodes ?? [])].reverse()) await n.stop().catch(() => undefined);
  });

  test('the kiosk on the village node and the clerk on the town node each decode the other', async () => {
    const t0 = Date.now();
    const [c, k] = await Promise.all([
      waitFor('clerk joined', () => stats(clerk), (s) => s.state === 'joined'),
      waitFor('kiosk joined', () => stats(kiosk), (s) => s.state === 'joined'),
    ]);
    for (const [page, otherId, who] of [
      [clerk, k.peerId, 'clerk'],
      [kiosk, c.peerId, 'kiosk'],
    ] as const) {
      const first = await waitFor(`${who} decodes the other side`, () => stats(page), (s) => (s.videoFramesDecoded[otherId] ?? 0) >= 30 && s.audioPacketsReceived > 20);
      await waitFor(`${who}: frames still rising`, () => stats(page), (s) => (s.videoFramesDecoded[otherId] ?? 0) >= (first.videoFramesDecoded[otherId] ?? 0) + 15);
      assert.equal(first.peers, 1, `${who} lists the other side as a peer`);
    }
    console.log(`# clerk (town node) and kiosk (village node) both decoding each other ${Date.now() - t0} ms after the pages loaded`);
    // The media did cross the link, once each way per track.
    const link = nodes[1]!.link(ROOM, 'parent')!;
    const [st] = await link.transport.getStats();
    assert.equal(link.outgoing.size, 2, 'village pipes the kiosk audio + video up');
    assert.equal(nodes[0]!.link(ROOM, 'child:village')!.outgoing.size, 2, 'town pipes the clerk audio + video down');
    assert.ok((st?.rtpBytesReceived ?? 0) > 50_000 && (st?.rtpBytesSent ?? 0) > 50_000, JSON.stringify(st));
  });
});
