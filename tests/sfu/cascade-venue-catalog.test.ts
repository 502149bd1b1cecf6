import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { types } from 'mediasoup';
import type { JoinClaims } from '../../infra/tokens.ts';
import type { Peer } from '../../sfu/Peer.ts';
import type { NotificationMethod } from '../../sfu/protocol.ts';
import { CATALOG_CHUNK } from '../../sfu/cascade/protocol.ts';
import { RtpSink, RtpSource, h264RtpParameters, startTree, waitFor, type TreeNode } from '../support/cascade-harness.ts';

// The venue catalog (issue 11) on an in-process tree city → county → town → community → two villages,
// plus a second town: a site joining at a village is announced only up its path (the root learns every
// site); other nodes and pages hear only the coalesced counts; the chair's producers reach every node;
// giving the floor to a site floods only that site's producers down; a large child snapshot attaches in
// `catalog` chunks. Sites are in-process pages (SfuNode.joinRoom) whose notifications are counted; the
// chair and the sites send media over plain RTP transports (SfuNode option plainRtp).

const ROOM = 'conf-venue-catalog';
const SPEC = [['city'], ['county', 'city'], ['town', 'county'], ['community', 'town'], ['village-a', 'community'], ['village-b', 'community'], ['town-b', 'county']] as const;
const CATALOG: readonly string[] = ['peerAdded', 'peerRemoved', 'producerAdded', 'producerRemoved', 'producerPaused', 'catalog'];
const OPUS: types.RtpParameters = { codecs: [{ mimeType: 'audio/opus', payloadType: 100, clockRate: 48000, channels: 2 }], encodings: [{ ssrc: 0 }] };

/** An in-process page: a peer joined through the node's own join path, its notifications counted. */
class Page {
  readonly heard = new Map<string, number>();
  readonly log: Array<{ method: NotificationMethod; data: unknown }> = [];
  peer!: Peer;
  constructor(readonly node: TreeNode) {}
  count(): Map<string, number> {
    return new Map(this.heard);
  }
}

describe('venue catalog: the stage goes down, everything goes up, counts coalesced', { timeout: 240_000 }, () => {
  let nodes: Map<string, TreeNode>;
  const n = (name: string) => nodes.get(name)!;
  const sources: RtpSource[] = [];
  let sink: RtpSink;
  let chair: Page;
  let chairCam: string;
  const pages: Page[] = [];
  let userIds = 1;

  async function join(node: TreeNode, role: 'chair' | 'participant', name: string): Promise<Page> {
    const page = new Page(node);
    const claims: JoinClaims = { userId: userIds++, displayName: name, unitId: node.unitId, room: ROOM, role, layout: 'venue' };
    page.peer = await node.node.joinRoom(claims, node.node.rooms.get(ROOM)?.router.rtpCapabilities, (method, data) => {
      page.heard.set(method, (page.heard.get(method) ?? 0) + 1);
      if (page.log.length < 200) page.log.push({ method, data });
    });
    pages.push(page);
    return page;
  }

  /** Camera (+ microphone) of a page over a plain send transport, fed by a synthetic source. */
  async function publish(page: Page, ssrc: number, withMic = true): Promise<{ camera: string; mic?: string }> {
    const t = await page.peer.createPlainTransport({ direction: 'send' });
    const { producerId: camera } = await page.peer.produce({ transportId: t.transportId, kind: 'video', rtpParameters: h264RtpParameters(ssrc) as never, source: 'camera' });
    const src = await RtpSource.create(ssrc, 15, 600);
    src.start(t.port);
    sources.push(src);
    if (!withMic) return { camera };
    const { producerId: mic } = await page.peer.produce({ transportId: t.transportId, kind: 'audio', rtpParameters: { ...OPUS, encodings: [{ ssrc: ssrc + 1 }] } as never, source: 'microphone' });
    return { camera, mic };
  }

  /** Every directed link's control messages by method: `${from}->${to}`. */
  function linkCounters(): Map<string, Map<string, number>> {
    const out = new Map<string, Map<string, number>>();
    for (const node of nodes.values()) {
      for (const l of node.node.cascade!.linkList) {
        const to = l.id === 'parent' ? SPEC.find(([c]) => c === node.name)![1]! : l.id.slice('child:'.length);
        out.set(`${node.name}->${to}`, new Map(l.channel.counters.sentByMethod));
      }
    }
    return out;
  }

  function diff(a: Map<string, Map<string, number>>, b: Map<string, Map<string, number>>): Map<string, Record<string, number>> {
    const out = new Map<string, Record<string, number>>();
    for (const [link, m] of b) {
      const before = a.get(link) ?? new Map<string, number>();
      const d: Record<string, number> = {};
      for (const [method, v] of m) if (v - (before.get(method) ?? 0) > 0) d[method] = v - (before.get(method) ?? 0);
      out.set(link, d);
    }
    return out;
  }

  const sum = (d: Record<string, number> | undefined, methods: readonly string[]) => methods.reduce((s, m) => s + (d?.[m] ?? 0), 0);
  const upPath = ['village-a->community', 'community->town', 'town->county', 'county->city'];
  const joinedEverywhere = (k: number) => [...nodes.values()].every((x) => x.node.rooms.get(ROOM)?.joined === k);

  before(async () => {
    nodes = await startTree(SPEC, { admission: 'open', plainRtp: true, lingerMs: 300, pingIntervalMs: 1000 });
    sink = await RtpSink.create();
    chair = await join(n('city'), 'chair', 'city chair');
    chairCam = (await publish(chair, 0x7000)).camera;
    // One site already at each of the leaves (their rooms are open, their pages listen).
    for (const name of ['village-a', 'village-b', 'town-b']) await join(n(name), 'participant', `${name} site`);
  });

  after(async () => {
    for (const s of sources) s.close();
    sink?.close();
    for (const x of [...(nodes?.values() ?? [])].reverse()) await x.stop().catch(() => undefined);
  });

  test("the chair's producers reach every node and its media a village", async () => {
    await waitFor('chair camera listed on every node', () => [...nodes.values()].every((x) => x === n('city') || x.cascadeRoom(ROOM)?.producer(chairCam) !== undefined), 10_000);
    for (const x of nodes.values()) assert.equal(x.node.rooms.get(ROOM)!.layout, 'venue', `${x.name} holds a venue room`);
    const tap = await n('village-b').node.tap(ROOM, chairCam, { ip: '127.0.0.1', port: sink.port });
    await waitFor('chair RTP at village-b', () => sink.count(tap.transport.tuple.localPort).packets > 10, 10_000);
    tap.close();
    // The stage only, below: a leaf knows the chair and its producers, not the other villages' sites.
    const vb = n('village-b').cascadeRoom(ROOM)!;
    assert.deepEqual(vb.peers().map((p) => p.displayName).sort(), ['city chair']);
    // The root knows every site.
    assert.deepEqual(n('city').cascadeRoom(ROOM)!.peers().map((p) => p.displayName).sort(), ['town-b site', 'village-a site', 'village-b site']);
    await waitFor('total 4 everywhere', () => joinedEverywhere(4), 5000);
  });

  let site: Page;
  let siteCam: string;

  test('a site joining at a village: catalog only up its path, counts (coalesced) everywhere else', async () => {
    await new Promise((r) => setTimeout(r, 1200)); // quiet: the next count goes out at once
    const before = linkCounters();
    const otherPages = pages.filter((p) => p.node.name === 'village-b' || p.node.name === 'town-b');
    const heardBefore = otherPages.map((p) => p.count());
    const t0 = performance.now();
    site = await join(n('village-a'), 'participant', 'new site');
    siteCam = (await publish(site, 0x7100)).camera;
    const totalMs = await waitFor('total 5 at every node', () => joinedEverywhere(5), 5000);
    await waitFor('the root knows the new site', () => n('city').cascadeRoom(ROOM)!.producer(siteCam) !== undefined, 5000);
    await new Promise((r) => setTimeout(r, 1500)); // anything late or trailing
    const d = diff(before, linkCounters());
    const table = [...d].map(([link, m]) => `${link} ${JSON.stringify(m)}`).join('; ');
    console.log(`# one site joins at village-a (camera + microphone), messages per link: ${table}`);
    console.log(`# total reached every node ${totalMs.toFixed(0)} ms after the join started (${(performance.now() - t0).toFixed(0)} ms incl. settling)`);
    for (const link of upPath) {
      const m = d.get(link);
      assert.equal(m?.peerAdded, 1, `${link}: one peerAdded`);
      assert.equal(m?.producerAdded, 2, `${link}: camera and microphone`);
      assert.ok((m?.count ?? 0) >= 1 && (m?.count ?? 0) <= 2, `${link}: the count went up, coalesced: ${m?.count}`);
    }
    for (const [link, m] of d) {
      if (upPath.includes(link)) continue;
      assert.equal(sum(m, CATALOG), 0, `${link}: no catalog message off the join's path: ${JSON.stringify(m)}`);
      const other = Object.keys(m).filter((k) => k !== 'total');
      assert.deepEqual(other, [], `${link}: only the total: ${JSON.stringify(m)}`);
      assert.ok((m.total ?? 0) <= 2, `${link}: total coalesced: ${m.total}`);
    }
    assert.ok(totalMs < 2000, `the total reached every node within ~1.5 s: ${totalMs.toFixed(0)} ms`);
    for (const [i, p] of otherPages.entries()) {
      const heard = new Map([...p.count()].map(([k, v]) => [k, v - (heardBefore[i]!.get(k) ?? 0)]).filter(([, v]) => (v as number) > 0) as Array<[string, number]>);
      assert.deepEqual([...heard.keys()].filter((k) => k !== 'counts'), [], `a page at ${p.node.name} heard only counts: ${JSON.stringify([...heard])}`);
      assert.ok((heard.get('counts') ?? 0) <= 2, `counts coalesced at ${p.node.name}`);
    }
    // Nodes off the path do not know the new site.
    for (const name of ['village-b', 'town-b']) assert.equal(n(name).cascadeRoom(ROOM)!.producer(siteCam), undefined, `${name} does not know the new site`);
  });

  test("giving the floor floods only that site's producers down; taking it back removes them", async () => {
    const before = linkCounters();
    const vbPage = pages.find((p) => p.node.name === 'village-b')!;
    const stagesBefore = vbPage.heard.get('stage') ?? 0;
    chair.peer.chairCommand({ action: 'giveFloor', peerId: site.peer.id });
    const ms = await waitFor('floor site camera on every node', () => [...nodes.values()].every((x) => x === n('village-a') || x.cascadeRoom(ROOM)?.producer(siteCam) !== undefined), 5000);
    await waitFor('village-b page told its new stage', () => (vbPage.heard.get('stage') ?? 0) > stagesBefore, 3000);
    await new Promise((r) => setTimeout(r, 500));
    const d = diff(before, linkCounters());
    console.log(`# floor given: the site's producers on every node after ${ms.toFixed(0)} ms; messages per link: ${[...d].map(([l, m]) => `${l} ${JSON.stringify(m)}`).join('; ')}`);
    for (const link of ['city->county', 'county->town', 'county->town-b', 'community->village-b']) {
      const m = d.get(link)!;
      assert.ok((m.peerAdded ?? 0) <= 1 && (m.producerAdded ?? 0) <= 2, `${link}: only the floor site's peer and producers: ${JSON.stringify(m)}`);
    }
    assert.equal(sum(d.get('community->village-a'), CATALOG), 0, 'nothing goes back down to the village the site is at');
    const stage = vbPage.log.filter((e) => e.method === 'stage').at(-1)!.data as { producers: Array<{ producerId: string }> };
    assert.ok(stage.producers.some((p) => p.producerId === siteCam), 'the page at village-b has the floor site on its stage');

    chair.peer.chairCommand({ action: 'giveFloor', peerId: null });
    await waitFor('floor site gone from the nodes off its path', () => ['village-b', 'town-b'].every((x) => n(x).cascadeRoom(ROOM)!.producer(siteCam) === undefined), 5000);
    assert.ok(n('city').cascadeRoom(ROOM)!.producer(siteCam), 'the root still knows it (everything goes up)');
    assert.ok(n('community').cascadeRoom(ROOM)!.producer(siteCam), 'so does every node on its path');
  });

  test(`a snapshot of 3,000 sites attaches in catalog chunks of ≤ ${CATALOG_CHUNK}`, async () => {
    const vb = n('village-b');
    const t0 = performance.now();
    for (let i = 0; i < 3000; i++) await join(vb, 'participant', `synthetic ${i}`);
    const upMs = await waitFor('the root lists the 3,000 sites', () => n('city').cascadeRoom(ROOM)!.peers().length >= 3003, 60_000, 100);
    await waitFor('total 3,005 everywhere', () => joinedEverywhere(3005), 10_000, 100);
    console.log(`# 3,000 joins at village-b: root knew them all ${upMs.toFixed(0)} ms after the last join (the joins took ${(performance.now() - t0).toFixed(0)} ms)`);
    // The village-b page heard counts only.
    const vbSite = pages.find((p) => p.node.name === 'village-b')!;
    assert.deepEqual([...vbSite.heard.keys()].filter((k) => !['counts', 'stage', 'conferenceState'].includes(k)), [], `page heard: ${JSON.stringify([...vbSite.heard])}`);

    // Cut village-b's control link: it re-dials and attaches again with its whole catalog as a snapshot.
    const link = n('community').node.cascade!.linkList.find((l) => l.id === 'child:village-b')!;
    const connects = vb.node.cascade!.parentConnects;
    link.channel.close('test: cut');
    await waitFor('village-b re-dialled', () => vb.node.cascade!.parentConnects > connects && vb.node.cascade!.parentConnected, 10_000);
    const t1 = performance.now();
    const ms = await waitFor('the 3,000 sites listed at the root again', () => n('community').cascadeRoom(ROOM)!.peers().filter((p) => p.displayName.startsWith('synthetic')).length === 3000 && n('city').cascadeRoom(ROOM)!.peers().length >= 3003, 30_000, 50);
    const sent = vb.node.cascade!.linkList.find((l) => l.id === 'parent')!.channel.counters;
    console.log(`# re-attach with a 3,001-site snapshot: openRoom + ${sent.sentByMethod.get('catalog') ?? 0} catalog chunk(s), ${sent.sentBytes} bytes; listed at community and city ${ms.toFixed(0)} ms after the link came back (${(performance.now() - t1).toFixed(0)} ms)`);
    assert.ok((sent.sentByMethod.get('catalog') ?? 0) >= 1, 'the snapshot went in chunks');
    assert.equal(sent.sentByMethod.get('peerAdded') ?? 0, 0, 'and not one message per site');
    await waitFor('total 3,005 everywhere again', () => joinedEverywhere(3005), 10_000, 100);
  });

  test('a room that became a venue after its links attached tells its neighbours (`layout`), and the whole tree follows', async () => {
    const LATE = 'conf-late-venue';
    // Opened as an open room by a camera at village-b (no token, no layout): attached up to the city as open.
    const cam = await n('village-b').camera(LATE, { ssrc: 0x7300, fps: 5, size: 200 });
    sources.push(cam.source);
    const onPath = ['village-b', 'community', 'town', 'county', 'city'];
    await waitFor('open room attached up to the city', () => n('city').cascadeRoom(LATE)?.producer(cam.ingest.producer.id) !== undefined, 10_000);
    assert.ok(onPath.every((x) => n(x).node.rooms.get(LATE)!.layout === 'open'));
    // A venue token is admitted at town-b: its openRoom says venue to the county, which tells everyone else.
    const page = new Page(n('town-b'));
    page.peer = await n('town-b').node.joinRoom({ userId: userIds++, displayName: 'late site', unitId: n('town-b').unitId, room: LATE, role: 'participant', layout: 'venue' }, undefined, () => undefined);
    const ms = await waitFor('venue everywhere', () => [...onPath, 'town-b'].every((x) => n(x).node.rooms.get(LATE)?.layout === 'venue'), 5000);
    const layoutMsgs = [...nodes.values()].reduce((k, x) => k + x.node.cascade!.linkList.reduce((j, l) => j + (l.channel.counters.sentByMethod.get('layout') ?? 0), 0), 0);
    console.log(`# late venue: every node of the room a venue ${ms.toFixed(0)} ms after the venue join; ${layoutMsgs} layout notification(s) in all`);
    // Now a venue: the other villages' sites are not listed below the county.
    assert.equal(n('village-b').cascadeRoom(LATE)!.peers().some((p) => p.displayName === 'late site'), false, 'a site is not flooded down a venue');
    n('town-b').node.leaveRoom(page.peer);
  });
});
