import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { Browser, Page } from 'playwright-core';
import fs from 'node:fs';
import path from 'node:path';
import { generateKeyPair, signJoinToken } from '../../infra/tokens.ts';
import { launchChromium, tmpDir } from '../support/browser.ts';
import { CASCADE_SECRET, LEVELS } from '../support/cascade-harness.ts';
import { NetLab } from '../support/netns.ts';
import { NodeProcess, type NodeHealth } from '../support/node-process.ts';
import { mediaStats, openMeetingLink, serveWebDist, waitUntil } from '../support/pages.ts';
import { TEST_JOIN_KEYS } from '../support/join-keys.ts';

// The five levels as five SFU node processes, each in its own network namespace with its own address
// (10.77.0.11 city … 10.77.0.15 village) on a bridge, all on the same ports: the nodes find each
// other only through their configured parent URLs and announced addresses, as separate hosts would,
// and prove themselves to their parents with their own keys.
// The chair's page joins the city node, the kiosk's the village node. Measured on the community's
// link with the kernel's own counters: the chair's stream goes down once whatever the number of
// consumers at the village; then the community's line is limited to 1 Mbit/s by tbf and the kiosk
// keeps decoding.

const ROOM = 'conf-netns';
const PORT = 4443;

describe('cascade across network namespaces: one address per level, kernel counters and a tbf-limited line', { timeout: 180_000 }, () => {
  let lab: NetLab;
  const procs: NodeProcess[] = [];
  let web: { url: string; close(): void };
  let browser: Browser;
  let chair: Page;
  let kiosk: Page;
  const pages: Page[] = [];

  const join = async (p: NodeProcess, userId: number, name: string, role: 'chair' | 'participant' | 'viewer'): Promise<Page> => {
    const token = await signJoinToken(TEST_JOIN_KEYS.privateKey, { userId, displayName: name, unitId: userId, room: ROOM, role });
    const page = await openMeetingLink(browser, web.url, token, name, p.wsUrl);
    pages.push(page);
    return page;
  };
  /** Bytes per second the community node sends over its link (towards the village and the town). */
  const communitySendRate = async (ms: number): Promise<number> => {
    const a = lab.bytes('community').up;
    await new Promise((r) => setTimeout(r, ms));
    return ((lab.bytes('community').up - a) * 1000) / ms;
  };

  before(async () => {
    lab = await NetLab.create(LEVELS);
    // As in production with SFU_NODE_AUTH=key: each node has its own key pair, and each parent holds
    // its child's public key in its child-keys folder.
    const keys = LEVELS.map(() => generateKeyPair());
    for (const [i, level] of LEVELS.entries()) {
      const n = lab.node(level);
      const parent = i > 0 ? lab.node(LEVELS[i - 1]!) : undefined;
      const childKeys = tmpDir(`child-keys-${level}-`);
      const child = LEVELS[i + 1];
      if (child) fs.writeFileSync(path.join(childKeys, `${child}.pub.pem`), keys[i + 1]!.publicKey.export({ type: 'spki', format: 'pem' }));
      const env = { SFU_NODE_AUTH: 'key', SFU_NODE_KEY: keys[i]!.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(), SFU_CHILD_KEYS_DIR: childKeys };
      procs.push(new NodeProcess(level, { unitId: i + 1, port: PORT, rtcBase: 40100, ip: n.ip, netns: n.ns, env, ...(parent ? { parentUrl: `ws://${parent.ip}:${PORT}/cascade` } : {}) }));
    }
    for (const p of procs) p.start();
    await waitUntil(
      'five processes up in their namespaces, every parent link connected',
      () => Promise.all(procs.map((p) => p.health().catch((): NodeHealth => ({ ok: false })))),
      (h) => h.every((x, i) => x.ok && (i === 0 || x.cascade?.parentConnected === true)),
      // Five Node processes compile and start at once on a shared 2-core machine.
      90_000,
    );
    web = await serveWebDist(procs.map((p) => p.wsUrl));
    browser = await launchChromium();
    chair = await join(procs[0]!, 31, '潍坊市指挥中心', 'chair');
    kiosk = await join(procs[4]!, 32, '大柳树村服务站', 'participant');
  });

  after(async () => {
    await browser?.close();
    web?.close();
    for (const p of procs) await p.kill();
    await lab?.close();
  });

  test('chair and kiosk decode each other across five hosts; one copy per link by the kernel\'s counters', async () => {
    const c = await waitUntil('chair joined', () => mediaStats(chair), (s) => s.state === 'joined' && s.peerId !== '');
    const k = await waitUntil('kiosk joined', () => mediaStats(kiosk), (s) => s.state === 'joined' && s.peerId !== '');
    await waitUntil('kiosk decodes the chair', () => mediaStats(kiosk), (s) => (s.videoFramesDecoded[c.peerId] ?? 0) >= 60);
    await waitUntil('chair decodes the kiosk', () => mediaStats(chair), (s) => (s.videoFramesDecoded[k.peerId] ?? 0) >= 60);

    const one = await communitySendRate(4000);
    const viewers = [await join(procs[4]!, 33, '村民甲', 'viewer'), await join(procs[4]!, 34, '村民乙', 'viewer'), await join(procs[4]!, 35, '村民丙', 'viewer')];
    for (const v of viewers) await waitUntil('a village viewer decodes the chair', () => mediaStats(v), (s) => (s.videoFramesDecoded[c.peerId] ?? 0) >= 30);
    const four = await communitySendRate(4000);
    console.log(`# community link, sent per second: ${(one / 1000).toFixed(0)} kB with 1 consumer at the village, ${(four / 1000).toFixed(0)} kB with 4 (ratio ${(four / one).toFixed(2)}; a copy per consumer would be ~2.5)`);
    assert.ok(one > 20_000, `media crosses the community's link (${one} B/s)`);
    assert.ok(four / one < 1.5, `one copy of the chair's stream per link: ${one} -> ${four} B/s`);
    for (const v of viewers) await v.context().close();
  });

  test('the community\'s line limited below the stream (tbf 300 kbit/s each way): the kernel drops the excess and holds the rate', async () => {
    const LIMIT = 300_000;
    const offered = (await communitySendRate(3000)) * 8;
    await lab.shape('community', LIMIT);
    const d0 = await lab.tbfDrops('community');
    const c = await mediaStats(chair);
    const before = await mediaStats(kiosk);
    const t0 = Date.now();
    const rate = (await communitySendRate(8000)) * 8;
    const after = await mediaStats(kiosk);
    const d1 = await lab.tbfDrops('community');
    const frames = (after.videoFramesDecoded[c.peerId] ?? 0) - (before.videoFramesDecoded[c.peerId] ?? 0);
    const fps = (frames * 1000) / (Date.now() - t0);
    const drops = d1.up - d0.up;
    console.log(
      `# community line: offered ${(offered / 1e6).toFixed(2)} Mbit/s before the limit; at ${LIMIT / 1e6} Mbit/s (tbf) it sent ${(rate / 1e6).toFixed(2)} Mbit/s, ` +
        `tbf dropped ${drops} packets on the way out (${d1.down - d0.down} on the way in); the kiosk decoded the chair at ${fps.toFixed(1)} fps`,
    );
    assert.ok(offered > LIMIT * 1.2, `more than the limit was offered before it was set: ${offered} bit/s`);
    assert.ok(drops > 0, `the kernel's limit dropped packets: ${drops}`);
    assert.ok(rate <= LIMIT * 1.1, `the kernel holds the line to the limit (${rate} bit/s)`);
    assert.ok(rate > LIMIT * 0.3, `the limited line still carries media (${rate} bit/s)`);
    assert.ok(frames > 0, `the kiosk four hops down still decodes frames of the chair (${fps.toFixed(1)} fps)`);
  });
});
