import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { Browser, Page } from 'playwright-core';
import { launchChromium } from '../support/browser.ts';
import { TreeNode } from '../support/cascade-harness.ts';
import { checkedScreenshot, signIn, waitUntil } from '../support/pages.ts';
import { startSystemHarness, type SystemHarness } from '../support/system-harness.ts';

// The whole-city meeting (主会场 / 分会场) in Chromium, end to end through the system: the API
// process's node is the city root, a second SFU node (town A's centre) is its child. The city leader
// opens a meeting of every community and village through the API (12 sites, above the lowered
// small-meeting threshold of 3: a venue meeting) and chairs it from the console; six community
// secretaries sign in and join from their meeting lists, three on each node. Each site consumes only
// the chair (the page and the node agree), shows it large, joined muted and cannot unmute itself.
// The chair's rotation shows page 1 as 4 tiles decoding the lowest simulcast layer, steps to page 2
// (page 1's consumers close on the root; its pipes close once nothing holds them), gives the floor to
// a site whose hand is up, and every other site decodes and hears it within 3 s (two cores, seven pages). The console's
// not-yet-joined list is the invited sites without a page.

// Cameras at the pages' default 640x360 (Chrome sends 2 simulcast layers at that size, 3 from 960x540):
// the lowest layer is a quarter of the width, the top one the full picture. Small, for 2 cores.
const CHAIR_CAPTURE = { width: 640, height: 360 };
const SITE_CAPTURE = { width: 640, height: 360 };

interface ConsumerRow {
  consumerId: string;
  producerId: string;
  peerId: string;
  kind: 'audio' | 'video';
  source: string;
  tile: boolean;
  framesDecoded: number;
  frameWidth: number;
  frameHeight: number;
  packetsReceived: number;
}
interface SendingRow {
  source: string;
  rid: string;
  active: boolean;
  frameWidth: number;
  bytesSent: number;
}
type Client = {
  peerId: string;
  state: string;
  layout: string;
  stats(): Promise<{ consumers: ConsumerRow[]; sending: SendingRow[] }>;
  producerId(s: string): string | undefined;
  request(m: string, d: unknown): Promise<unknown>;
  stage: { producers: Array<{ peerId: string }> };
};

const consumers = (p: Page) =>
  p.evaluate(async () => {
    const c = (window as unknown as { sfuClient?: Client }).sfuClient;
    return c && c.state === 'joined' ? (await c.stats()).consumers : [];
  });
/** The top simulcast layer of the page's camera (rid r1 of 2 layers at 640x360). */
const topLayer = (p: Page) =>
  p.evaluate(async () => {
    const c = (window as unknown as { sfuClient?: Client }).sfuClient;
    const rows = c ? (await c.stats()).sending.filter((x) => x.source === 'camera') : [];
    return rows.find((x) => x.rid === 'r1') ?? null;
  });
const peerIdOf = (p: Page) => p.evaluate(() => (window as unknown as { sfuClient?: Client }).sfuClient?.peerId ?? '');
const layoutOf = (p: Page) => p.evaluate(() => (window as unknown as { sfuClient?: Client }).sfuClient?.layout ?? '');

describe('a venue meeting: the chair and six sites over two nodes, in Chromium', { timeout: 420_000 }, () => {
  let h: SystemHarness;
  let town: TreeNode;
  let browser: Browser;
  let townA: number;

  before(async () => {
    h = await startSystemHarness({ towns: 2, communities: 6, villages: 6, cascadeRoot: 'city', meetings: { openMaxSites: 3, rotationSeconds: 600 } });
    const { rows: towns } = await h.db.pool.query<{ id: number }>(`SELECT id FROM units WHERE level = 'town' ORDER BY path`);
    // The second town in tree order has its own node: rotation page 1 is mostly the root's sites, page 2 all
    // town A's (piped up across the link, warmed while page 1 is on screen).
    townA = towns[1]!.id;
    town = new TreeNode('town-a', townA, h.cascadeUrl, { lingerMs: 300 });
    await town.start();
    await waitUntil('town A linked to the root', async () => town.node.cascade?.parentConnected ?? false, (up) => up, 10_000);
    // Town A's centre has its node; every other control centre is the system's own (the root). The city's
    // operator points the registered nodes there through the API, as from the console.
    const cityOperator = h.demo.users.find((u) => u.role === 'operator' && u.level === 'city');
    assert.ok(cityOperator, 'the demo has a city operator');
    const op = await h.login(cityOperator.username);
    const registered = await h.call<{ items: Array<{ id: number; unit_id: number }> }>(op, 'GET', '/api/sfu-nodes?limit=100');
    assert.equal(registered.status, 200);
    for (const n of registered.body.items) {
      const changed = await h.call(op, 'PATCH', `/api/sfu-nodes/${n.id}`, { signalling_url: n.unit_id === townA ? town.wsUrl : h.wsUrl });
      assert.equal(changed.status, 200, JSON.stringify(changed.body));
    }
    browser = await launchChromium();
  });

  after(async () => {
    await browser?.close();
    await town?.stop().catch(() => undefined);
    await h?.close();
  });

  test('sites watch the chair muted; the chair rotates at the lowest layer, gives the floor, sees who is missing', async () => {
    const t0 = Date.now();
    const laps: string[] = [];
    let tl = Date.now();
    const lap = (what: string) => (laps.push(`${what} ${Date.now() - tl} ms`), (tl = Date.now()));

    // The leader opens the meeting through the API, as the console does.
    const leaderName = 'wf.leader';
    const leaderToken = await h.login(leaderName);
    const created = await h.call<{ id: number; layout: string; site_count: number }>(leaderToken, 'POST', '/api/meetings', { title: '全市基层治理视频调度会', levels: ['community', 'village'] });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    assert.equal(created.body.layout, 'venue', 'more sites than MEETING_OPEN_MAX_SITES: a venue meeting');
    const meetingId = created.body.id;
    const room = `m-${meetingId}`;
    const invited = (await h.call<{ items: Array<{ id: number; name: string }> }>(leaderToken, 'GET', `/api/meetings/${meetingId}/sites?limit=100`)).body.items;
    assert.equal(invited.length, 12);

    // The chair enters from the console's list of live meetings.
    const chair = await signIn(browser, h.baseUrl, leaderName, h.demo.password, { camera: `${CHAIR_CAPTURE.width}x${CHAIR_CAPTURE.height}@15` });
    await chair.getByText('全市基层治理视频调度会').waitFor();
    await chair.getByRole('button', { name: '进入会议' }).first().click();
    await chair.getByTestId('venue-console').waitFor({ timeout: 20_000 });
    const chairId = await waitUntil('chair joined', () => peerIdOf(chair), (v) => v !== '');
    assert.equal(await layoutOf(chair), 'venue');
    assert.ok(h.sfu.rooms.get(room)?.peers.has(chairId), 'the chair is on the root node');

    // Six community secretaries sign in and join from their meeting lists: three under town A (its node), three under town B (the root).
    const { rows: under } = await h.db.pool.query<{ id: number; town: number }>(
      `SELECT c.id, t.id AS town FROM units c JOIN units t ON t.level = 'town' AND c.path LIKE t.path || '%' WHERE c.level = 'community' ORDER BY c.path`,
    );
    const townOf = new Map(under.map((r) => [r.id, r.town]));
    const secretaries = h.demo.users.filter((u) => u.role === 'secretary' && u.level === 'community');
    const onA = secretaries.filter((u) => townOf.get(u.unitId) === townA).slice(0, 3);
    const onB = secretaries.filter((u) => townOf.get(u.unitId) !== townA).slice(0, 3);
    assert.equal(onA.length + onB.length, 6, 'three community secretaries under each town');
    const sites: Array<{ page: Page; unitId: number; peerId: string; nodeName: string }> = [];
    for (const u of [...onA, ...onB]) {
      const page = await signIn(browser, h.baseUrl, u.username, h.demo.password, { camera: `${SITE_CAPTURE.width}x${SITE_CAPTURE.height}@15` });
      await page.getByRole('link', { name: '我的会议' }).click();
      await page.getByText('全市基层治理视频调度会').waitFor();
      await page.getByRole('button', { name: '进入会议' }).click();
      const peerId = await waitUntil(`${u.username} joined`, () => peerIdOf(page), (v) => v !== '', 20_000);
      sites.push({ page, unitId: u.unitId, peerId, nodeName: onA.includes(u) ? 'town-a' : 'root' });
    }
    const nodeRoom = (name: string) => (name === 'root' ? h.sfu.rooms.get(room) : town.node.rooms.get(room));
    for (const s of sites) assert.ok(nodeRoom(s.nodeName)?.peers.has(s.peerId), `site ${s.peerId} is on the ${s.nodeName} node`);
    lap('meeting created, chair + 6 sites signed in and joined');

    // Each site: consumes the chair only (audio + video) — on the page and on its node — and shows it large.
    for (const s of sites) {
      const rows = await waitUntil(
        `site on ${s.nodeName} decodes the chair above the tile layer`,
        () => consumers(s.page),
        (c) => c.some((x) => x.peerId === chairId && x.kind === 'video' && x.framesDecoded > 10 && x.frameWidth >= CHAIR_CAPTURE.width / 2) && c.some((x) => x.peerId === chairId && x.kind === 'audio' && x.packetsReceived > 10),
        40_000,
      ).catch(async (e: Error) => {
        // What the chair sends, and the layer demand its page was told: which side held the layer down.
        const chairSide = await chair.evaluate(async () => {
          const c = (window as unknown as { sfuClient: Client & { layerDemand: Map<string, number> } }).sfuClient;
          return { sending: (await c.stats()).sending, demand: [...c.layerDemand.values()] };
        });
        throw new Error(`${e.message}; chair sends ${JSON.stringify(chairSide)}`);
      });
      assert.deepEqual(rows.map((x) => `${x.peerId === chairId ? 'chair' : x.peerId}:${x.kind}`).sort(), ['chair:audio', 'chair:video'], 'the site consumes the chair and nothing else');
      assert.equal(nodeRoom(s.nodeName)!.peers.get(s.peerId)!.consumers.size, 2, 'the node holds two consumers for the site');
      const big = await s.page.evaluate(() => {
        const main = document.querySelector('[data-testid="stage-main"]');
        const v = main?.querySelector('video');
        return { peer: main?.getAttribute('data-peer') ?? '', width: main?.getBoundingClientRect().width ?? 0, videoWidth: v?.videoWidth ?? 0 };
      });
      assert.equal(big.peer, chairId, 'the chair is the main picture');
      // Large on screen and playing (the layer was checked above: a loaded machine may hold it down for a moment).
      assert.ok(big.width > 800 && big.videoWidth > 0, `the chair is shown large: ${JSON.stringify(big)}`);
      // Joined muted, and cannot unmute itself.
      await s.page.getByTestId('venue-muted').waitFor({ timeout: 10_000 });
      assert.match((await s.page.getByTestId('venue-muted').textContent()) ?? '', /已静音 — 等待主持人指定发言/);
      const resume = await s.page.evaluate(async () => {
        const c = (window as unknown as { sfuClient: Client }).sfuClient;
        return c.request('resumeProducer', { producerId: c.producerId('microphone') }).then(() => 'resumed', (e: { code?: string }) => e.code ?? 'error');
      });
      assert.equal(resume, 'forbidden', 'a muted site cannot unmute itself');
      const mic = [...nodeRoom(s.nodeName)!.peers.get(s.peerId)!.producers.values()].find((p) => p.appData.source === 'microphone');
      assert.equal(mic?.paused, true, 'its microphone is held paused on its node');
      assert.equal(await s.page.getByRole('button', { name: '解除静音' }).count(), 0, 'no unmute control on a site');
    }
    // Only the chair's audio + video cross down to town A (the stage), not the other sites' media.
    assert.equal(town.node.cascade!.rooms.get(room)?.subscriptions.size, 2, 'town A pipes in the chair only');
    await checkedScreenshot(sites[0]!.page, 'venue-site-chair-large');
    lap('6 sites consume only the chair, muted, forbidden to unmute');

    // The chair's rotation: 4 tiles a page, page 1 decoding at the lowest layer (a quarter of the capture width).
    const rotation = chair.getByTestId('rotation');
    await rotation.getByTestId('rotation-size').selectOption('4');
    const tileStats = async () => (await consumers(chair)).filter((c) => c.tile && c.kind === 'video');
    const onScreen = () => chair.evaluate(() => [...document.querySelectorAll('[data-testid="rotation-tile"]')].map((e) => e.getAttribute('data-peer') ?? ''));
    await waitUntil('rotation page 1 of 2', () => rotation.getByTestId('rotation-page').getAttribute('data-pages'), (v) => v === '2');
    const page1 = await waitUntil('4 tiles on page 1', onScreen, (v) => v.length === 4 && v.every((x) => x !== ''));
    const p1 = await waitUntil(
      'page 1 tiles decode at layer 0',
      tileStats,
      (c) => c.length === 4 && c.every((x) => x.framesDecoded > 5 && x.frameWidth === SITE_CAPTURE.width / 4),
      30_000,
    );
    assert.deepEqual(p1.map((c) => c.peerId).sort(), [...page1].sort(), 'the tiles consumed are the sites on screen');
    const rootRoom = h.sfu.rooms.get(room)!;
    const chairVideoConsumers = () => [...rootRoom.peers.get(chairId)!.consumers.values()].filter((c) => c.kind === 'video').length;
    assert.equal(chairVideoConsumers(), 4, 'the root holds 4 video consumers for the chair (page 1)');
    // Tiles of sites on town A's node are piped up to the root (and only those: the stage flows down, not up).
    const townPeers = new Set(sites.filter((s) => s.nodeName === 'town-a').map((s) => s.peerId));
    const rootSubs = () => h.sfu.cascade!.rooms.get(room)?.subscriptions.size ?? 0;
    const page1FromA = page1.filter((p) => townPeers.has(p)).length;
    assert.ok(page1FromA > 0, 'page 1 shows a town-A site');
    assert.ok(rootSubs() >= page1FromA, `page 1's town-A cameras are piped to the root (${rootSubs()} subscriptions)`);
    console.log(`# rotation page 1: ${p1.map((c) => `${c.frameWidth}x${c.frameHeight}`).join(', ')} (site capture ${SITE_CAPTURE.width}x${SITE_CAPTURE.height}, lowest layer a quarter of it)`);
    await checkedScreenshot(chair, 'venue-chair-rotation-page1');
    lap('rotation page 1: 4 tiles at layer 0');

    // Step to page 2 (warmed ahead): its tiles decode within about a second; page 1's consumers close on the root.
    // The step is timed only once the page says the node holds page 2 warm (its cameras piped up to the root):
    // before that it would time the warm itself. The page re-asks the warm while page 1 stays up (the node
    // drops a warm set after 20 s), so however long page 1 took to decode above, page 2 is still piped in.
    await waitUntil('page 2 held warm', () => rotation.getAttribute('data-warmed'), (v) => v === '1', 15_000);
    const warmSubs = rootSubs();
    assert.ok(warmSubs > page1FromA, `page 2's town-A cameras are piped to the root before the step (${warmSubs} subscriptions, page 1 has ${page1FromA})`);
    const pipedBefore = new Set(h.sfu.cascade!.rooms.get(room)!.subscriptions.keys());
    const stepAt = Date.now();
    await rotation.getByRole('button', { name: '下一页' }).click();
    const page2 = await waitUntil('page 2 on screen', onScreen, (v) => v.length === 2 && v.every((x) => !page1.includes(x)), 10_000);
    await waitUntil('page 2 tiles decoding', tileStats, (c) => c.length === 2 && c.every((x) => page2.includes(x.peerId) && x.framesDecoded > 0), 10_000, 50);
    const stepMs = Date.now() - stepAt;
    console.log(`# rotation step to page 2: tiles decoding ${stepMs} ms after the click`);
    // What "warmed" means, checked without a clock: the step opened no pipe; every camera piped to the
    // root now was piped before the click. The time is a figure (quiet: about 1 s; seven Chromium pages
    // on the CI's two cores took 3.1-4.3 s, the keyframe of each new tile coming from a loaded publisher
    // page); the bound only catches a step that waits on a cold pipe and its retries.
    const newPipes = [...h.sfu.cascade!.rooms.get(room)!.subscriptions.keys()].filter((k) => !pipedBefore.has(k));
    assert.deepEqual(newPipes, [], 'the warmed step needed no new pipe to the root');
    assert.ok(stepMs < 8000, `a warmed step shows video (${stepMs} ms)`);
    await waitUntil('page 1 consumers closed on the root', async () => chairVideoConsumers(), (n) => n === 2, 5_000);
    // Pipes: while rotating, the page after this one (page 1 again) is held warm; paused, nothing is, and
    // the root keeps only the town-A cameras on screen now.
    const page2FromA = page2.filter((p) => townPeers.has(p)).length;
    console.log(`# root pipe subscriptions while rotating on page 2: ${rootSubs()} (page 1 from town A: ${page1FromA}, page 2: ${page2FromA})`);
    await rotation.getByTestId('rotation-pause').click();
    await waitUntil('page 1 pipes closed once nothing holds them', async () => rootSubs(), (n) => n === page2FromA, 10_000);
    lap(`rotation step (${stepMs} ms) + page 1 consumers and pipes closed`);

    // A site under town A raises its hand; the chair gives it the floor from the queue: every other site sees and hears it within 3 s.
    const floor = sites.find((s) => s.nodeName === 'town-a')!;
    // Nobody watches its camera above the tile layer: the node's layer demand has the page encode layer 0 only.
    await waitUntil('the site encodes its lowest layer only', () => topLayer(floor.page), (r) => r !== null && r.active === false, 10_000);
    await floor.page.getByRole('button', { name: '举手发言' }).click();
    const hand = chair.getByTestId('floor-panel').locator(`li[data-hand="${floor.peerId}"]`);
    await hand.waitFor({ timeout: 10_000 });
    const others = sites.filter((s) => s !== floor);
    // Each site watches for the floor inside the page (its own 100 ms loop over getStats, so the figure is not
    // the test's polling): when its consumers of the floor exist, its video decodes, its audio arrives.
    const watchers = others.map((s) =>
      s.page.evaluate(async (floorId) => {
        const c = (window as unknown as { sfuClient: Client }).sfuClient;
        const at: { stage?: number; consumed?: number; video?: number; audio?: number } = {};
        const until = Date.now() + 15_000;
        while (Date.now() < until && (at.video === undefined || at.audio === undefined)) {
          // The stage is page state (no await): checked every 20 ms. getStats costs a page on a busy machine
          // a few hundred ms per call, so it is asked only once the floor is on the stage, and a time below is
          // when the stats confirmed it (an upper bound).
          if (c.stage.producers.filter((p) => p.peerId === floorId).length === 2) at.stage ??= Date.now();
          if (at.stage !== undefined) {
            const mine = (await c.stats()).consumers.filter((x) => x.peerId === floorId);
            const now = Date.now();
            if (mine.length === 2) at.consumed ??= now;
            if (mine.some((x) => x.kind === 'video' && x.framesDecoded > 0)) at.video ??= now;
            if (mine.some((x) => x.kind === 'audio' && x.packetsReceived > 0)) at.audio ??= now;
          }
          await new Promise((r) => setTimeout(r, at.stage === undefined ? 20 : 50));
        }
        return at;
      }, floor.peerId),
    );
    const giveAt = Date.now();
    await hand.getByRole('button', { name: '给予发言' }).click();
    const seen = (await Promise.all(watchers)).map((at) => {
      assert.ok(at.video !== undefined && at.audio !== undefined, `a site never saw and heard the floor: ${JSON.stringify(at)}`);
      return { stage: (at.stage ?? 0) - giveAt, consumed: (at.consumed ?? 0) - giveAt, video: at.video - giveAt, audio: at.audio - giveAt };
    });
    const worst = Math.max(...seen.map((x) => Math.max(x.video, x.audio)));
    console.log(`# floor given: per site stage/consumed/video/audio ms ${seen.map((x) => `${x.stage}/${x.consumed}/${x.video}/${x.audio}`).join(', ')} (worst ${worst} ms)`);
    // The time is a figure, not the claim: seven Chromium pages encoding simulcast on two cores took a
    // worst 1.5-3.5 s (stats confirmation included); the protocol-level bound for 211 sites is venue-scale's
    // (2 s, ~0.5 s measured). What this asserts is that the floor reaches every site while the meeting
    // runs: Chromium sends no periodic keyframes, so without keyframe requests reaching the floor's
    // encoder (or with its top layer left off) its video would never decode here.
    assert.ok(worst <= 8000, `every site sees and hears the floor (worst ${worst} ms)`);
    await floor.page.getByTestId('venue-floor-self').waitFor({ timeout: 5_000 });
    // Every site now watches it large: its top layer is encoded again.
    await waitUntil('the floor site encodes its top layer', () => topLayer(floor.page), (r) => r !== null && r.active && r.frameWidth === SITE_CAPTURE.width, 10_000);
    const floorMic = () => [...town.node.rooms.get(room)!.peers.get(floor.peerId)!.producers.values()].find((p) => p.appData.source === 'microphone')?.paused;
    await waitUntil('the floor site speaks', async () => floorMic(), (p) => p === false, 5_000);
    for (const s of others) {
      const rows = await consumers(s.page);
      assert.deepEqual(new Set(rows.map((x) => x.peerId)), new Set([chairId, floor.peerId]), 'a site consumes the chair and the floor only');
      assert.equal(rows.filter((x) => x.kind === 'video').length, 2);
      assert.ok(await s.page.getByTestId('venue-muted').isVisible(), 'the other sites stay muted');
      assert.equal(await s.page.getByTestId('stage-floor').getAttribute('data-peer'), floor.peerId, 'the floor site is shown beside the chair');
    }
    await checkedScreenshot(others[0]!.page, 'venue-site-floor');
    lap(`floor given (worst ${worst} ms)`);

    // The not-yet-joined list: the invited sites that have no page (the six villages), and the counts agree.
    const expectedMissing = invited.map((u) => u.id).filter((id) => !sites.some((s) => s.unitId === id)).sort((a, b) => a - b);
    const att = chair.getByTestId('attendance');
    const missing = await waitUntil(
      'the missing list',
      () => att.evaluate((el) => [...el.querySelectorAll('[data-testid="missing"] li[data-unit]')].map((li) => Number(li.getAttribute('data-unit')))),
      (v) => v.length === expectedMissing.length,
      10_000,
    );
    assert.deepEqual([...missing].sort((a, b) => a - b), expectedMissing);
    assert.equal(await att.getByTestId('attendance-total').getAttribute('data-joined'), '6');
    assert.equal(await att.getByTestId('attendance-total').getAttribute('data-expected'), '12');
    // The attendance record, exported as a person would: a CSV download, a line per invited site.
    const [download] = await Promise.all([chair.waitForEvent('download'), att.getByTestId('attendance-export').click()]);
    const csv = await new Promise<string>((resolve, reject) => {
      void download.createReadStream().then((stream) => {
        let text = '';
        stream.on('data', (d: Buffer) => (text += d.toString('utf8')));
        stream.on('end', () => resolve(text));
        stream.on('error', reject);
      }, reject);
    });
    const lines = csv.replace(/^\uFEFF/, '').trim().split(/\r?\n/);
    assert.match(lines[0] ?? '', /^unit_id,unit,parent,level,first_joined_at/);
    assert.equal(lines.length, 1 + invited.length, 'one line per invited site');
    await waitUntil('sites see the count', async () => sites[0]!.page.getByTestId('venue-counts').getAttribute('data-joined'), (v) => v === '7');
    await checkedScreenshot(chair, 'venue-chair-console');
    lap('missing list, counts and the CSV export');

    // A supervisor above the chair watches from the console: the stage, the rotation and the attendance, read-only.
    const sup = await signIn(browser, h.baseUrl, 'wf.supervisor', h.demo.password);
    await sup.getByRole('link', { name: '我的会议' }).click();
    await sup.getByText('全市基层治理视频调度会').waitFor();
    await sup.getByRole('button', { name: '进入会议' }).click();
    await sup.getByTestId('venue-console').waitFor({ timeout: 20_000 });
    await sup.getByText('督导查看(只读)').waitFor();
    await waitUntil('the supervisor rotates on its own', async () => (await consumers(sup)).filter((c) => c.tile && c.kind === 'video' && c.framesDecoded > 0).length, (n) => n > 0, 20_000);
    assert.equal(await sup.getByTestId('floor-panel').count(), 0, 'no floor control for a supervisor');
    assert.equal(await sup.getByRole('button', { name: '给予发言' }).count(), 0, 'no give-the-floor on its tiles');
    assert.equal(await sup.getByRole('button', { name: '举手发言' }).count(), 0);
    await waitUntil('its attendance counts', async () => sup.getByTestId('attendance-total').getAttribute('data-joined'), (v) => v === '6', 10_000);
    lap('supervisor read-only');
    console.log(`# venue meeting: ${laps.join('; ')}; total ${Date.now() - t0} ms`);
  });
});
