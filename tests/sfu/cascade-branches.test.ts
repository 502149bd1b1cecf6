import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { Tap } from '../../sfu/Tap.ts';
import { RtpSink, type RtpSource, startTree, waitFor, type TreeNode } from '../support/cascade-harness.ts';

// A branching tree: city -> town -> community -> { village A, village B }. Nobody consumes at town
// or community; the chair's stream reaches them only because of the villages below. Reference
// counts must add up across links: the community keeps pulling from town while either village
// consumes, and stops when both have left.

const ROOM = 'conf-branches';

describe('cascade with branches: reference counts across links', { timeout: 60_000 }, () => {
  let tree: Map<string, TreeNode>;
  const sources: RtpSource[] = [];
  let sink: RtpSink;
  let chairId: string;
  const node = (name: string) => tree.get(name)!;
  const outgoing = (from: string, to: string) => node(from).link(ROOM, to === 'parent' ? 'parent' : `child:${to}`)?.outgoing.size ?? -1;

  async function rtpSent(from: string, to: string, windowMs = 600): Promise<number> {
    const l = node(from).link(ROOM, `child:${to}`)!;
    const b0 = await l.bytes();
    await new Promise((r) => setTimeout(r, windowMs));
    const b1 = await l.bytes();
    return b1.rtpSent + b1.rtxSent - b0.rtpSent - b0.rtxSent;
  }

  before(async () => {
    tree = await startTree([['city'], ['town', 'city'], ['community', 'town'], ['villageA', 'community'], ['villageB', 'community']], { admission: 'open', lingerMs: 200 });
    sink = await RtpSink.create();
    const cam = async (n: TreeNode, ssrc: number, fps: number) => {
      const { ingest, source } = await n.camera(ROOM, { ssrc, fps, size: 800 });
      sources.push(source);
      return ingest;
    };
    chairId = (await cam(node('city'), 0x8000, 30)).producer.id;
    await cam(node('villageA'), 0x8001, 5);
    await cam(node('villageB'), 0x8002, 5);
  });

  after(async () => {
    for (const s of sources) s.close();
    sink?.close();
    for (const n of [...(tree?.values() ?? [])].reverse()) await n.stop().catch(() => undefined);
  });

  test('one copy per link into a branch; the trunk keeps flowing until the last branch leaves', async () => {
    const tapsAt = async (name: string, count: number): Promise<Tap[]> => {
      await waitFor(`chair at ${name}`, () => node(name).cascadeRoom(ROOM)?.producer(chairId) !== undefined);
      const list: Tap[] = [];
      for (let i = 0; i < count; i++) list.push(await node(name).node.tap(ROOM, chairId, { ip: '127.0.0.1', port: sink.port }));
      await waitFor(`RTP at ${name}`, () => list.every((t) => sink.count(t.transport.tuple.localPort).packets > 3), 10_000);
      return list;
    };
    const a = await tapsAt('villageA', 3);
    const b = await tapsAt('villageB', 5);
    assert.equal(outgoing('town', 'community'), 1, 'town pipes the chair once to the community');
    assert.equal(outgoing('community', 'villageA'), 1);
    assert.equal(outgoing('community', 'villageB'), 1);
    const sub = node('community').cascadeRoom(ROOM)!.subscriptions.get(chairId)!;
    assert.equal(sub.refs, 2, 'the community holds the chair for its two child links, not for 8 consumers');
    const trunk = await rtpSent('town', 'community');
    const [toA, toB] = await Promise.all([rtpSent('community', 'villageA'), rtpSent('community', 'villageB')]);
    console.log(`# 600 ms of chair RTP: town->community ${trunk} B, community->villageA ${toA} B (3 consumers), community->villageB ${toB} B (5 consumers)`);
    assert.ok(trunk > 5000 && Math.abs(toA - trunk) / trunk < 0.25 && Math.abs(toB - trunk) / trunk < 0.25, 'the same single copy on each link');

    for (const t of a) t.close();
    await waitFor('community stops piping to village A', () => outgoing('community', 'villageA') === 0, 5000);
    assert.equal(await rtpSent('community', 'villageA'), 0, 'nothing flows to village A');
    assert.ok((await rtpSent('town', 'community')) > 5000, 'the trunk still flows for village B');
    assert.equal(sub.refs, 1);

    for (const t of b) t.close();
    await waitFor('town stops piping to the community', () => outgoing('town', 'community') === 0 && outgoing('city', 'town') === 0, 5000);
    assert.equal(node('community').cascadeRoom(ROOM)!.subscriptions.size, 0);
    assert.equal(await rtpSent('city', 'town'), 0, 'nothing crosses the top link either');
    // The village cameras were never consumed, so they never left their villages.
    assert.equal(outgoing('villageA', 'parent'), 0);
    assert.equal(outgoing('villageB', 'parent'), 0);
  });
});
