import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import { signJoinToken, signNodeToken } from '../../infra/tokens.ts';
import type { Ingest } from '../../sfu/Ingest.ts';
import type { Tap } from '../../sfu/Tap.ts';
import { CASCADE_SECRET, LEVELS, RtpSink, type RtpSource, startChain, waitFor, type TreeNode } from '../support/cascade-harness.ts';
import { TEST_JOIN_KEYS } from '../support/join-keys.ts';

// Five SFU nodes chained city -> county -> town -> community -> village in this process (one
// mediasoup worker each). The city chair's camera is synthetic H.264 RTP entering through an
// ingest; every other level has a camera of its own. Server-side taps stand in for consumers.

const ROOM = 'conf-five-level';
const names = [...LEVELS];

describe('five-level SFU cascade', { timeout: 180_000 }, () => {
  let nodes: TreeNode[];
  let city: TreeNode, county: TreeNode, town: TreeNode, community: TreeNode, village: TreeNode;
  const sources: RtpSource[] = [];
  const cameras = new Map<string, Ingest>();
  let sink: RtpSink;
  let chairId: string;
  const taps = new Map<string, Tap[]>();

  const chairAt = (n: TreeNode) => n.cascadeRoom(ROOM)?.producer(chairId);
  const packetsOf = (t: Tap) => sink.count(t.transport.tuple.localPort).packets;

  async function camera(n: TreeNode, ssrc: number, fps: number): Promise<Ingest> {
    const { ingest, source } = await n.camera(ROOM, { ssrc, fps, size: 900, displayName: `${n.name}-site` });
    sources.push(source);
    cameras.set(n.name, ingest);
    return ingest;
  }

  /** Taps `producerId` at node n and waits until RTP from it arrives. */
  async function tap(n: TreeNode, producerId: string, minPackets = 10): Promise<Tap> {
    const t = await n.node.tap(ROOM, producerId, { ip: '127.0.0.1', port: sink.port });
    const list = taps.get(n.name) ?? [];
    list.push(t);
    taps.set(n.name, list);
    await waitFor(`RTP at ${n.name}`, () => packetsOf(t) >= minPackets, 10_000);
    return t;
  }

  /** RTP+RTX bytes/s each downward link sends, measured over a window. */
  async function downlinkRates(windowMs: number): Promise<number[]> {
    return (await downlinkCopies(windowMs)).rates;
  }

  /** Per downward link: bytes/s sent, and copies of the chair's stream (link RTP bytes / bytes the chair sent). */
  async function downlinkCopies(windowMs: number): Promise<{ rates: number[]; copies: number[] }> {
    const links = nodes.slice(0, -1).map((n, i) => n.link(ROOM, `child:${nodes[i + 1]!.name}`)!);
    const ingest = cameras.get('city')!.transport!;
    const origin = async () => (await ingest.getStats())[0]?.rtpBytesReceived ?? 0;
    const [b0, o0] = await Promise.all([Promise.all(links.map((l) => l.bytes())), origin()]);
    const t0 = performance.now();
    await new Promise((r) => setTimeout(r, windowMs));
    const [b1, o1] = await Promise.all([Promise.all(links.map((l) => l.bytes())), origin()]);
    const s = (performance.now() - t0) / 1000;
    const sent = b1.map((b, i) => b.rtpSent + b.rtxSent - b0[i]!.rtpSent - b0[i]!.rtxSent);
    return { rates: sent.map((x) => x / s), copies: sent.map((x) => x / Math.max(1, o1 - o0)) };
  }

  before(async () => {
    nodes = await startChain(names, { admission: 'open', lingerMs: 300, pingIntervalMs: 500 });
    [city, county, town, community, village] = nodes as [TreeNode, TreeNode, TreeNode, TreeNode, TreeNode];
    sink = await RtpSink.create();
    chairId = (await camera(city, 0x1000, 30)).producer.id;
  });

  after(async () => {
    for (const s of sources) s.close();
    sink?.close();
    for (const n of [...(nodes ?? [])].reverse()) await n.stop().catch(() => undefined);
  });

  test("the chair's stream reaches every level, and a village camera reaches the chair", async () => {
    const t0 = performance.now();
    for (const [i, n] of nodes.slice(1).entries()) await camera(n, 0x2000 + i, 15);
    const firstMedia: string[] = [];
    for (const n of nodes.slice(1)) {
      await waitFor(`chair announced at ${n.name}`, () => chairAt(n) !== undefined);
      const t = performance.now();
      await tap(n, chairId);
      firstMedia.push(`${n.name} ${(performance.now() - t).toFixed(0)} ms`);
    }
    console.log(`# five levels up in ${(performance.now() - t0).toFixed(0)} ms; tap -> first RTP: ${firstMedia.join(', ')}`);
    // Every level learnt of every camera: five cameras, four of them remote at each node.
    for (const n of nodes) assert.equal(n.cascadeRoom(ROOM)!.producers().length, 4, `${n.name} knows the four other cameras`);

    const villageCam = cameras.get('village')!.producer.id;
    await tap(city, villageCam);
    // Each stream crosses each link on its path once, in its direction, and nothing else is piped.
    for (const [i, n] of nodes.slice(0, -1).entries()) {
      const down = n.link(ROOM, `child:${nodes[i + 1]!.name}`)!;
      assert.deepEqual([...down.outgoing.keys()], [chairId], `${n.name} -> ${nodes[i + 1]!.name} pipes only the chair`);
      const up = nodes[i + 1]!.link(ROOM, 'parent')!;
      assert.deepEqual([...up.outgoing.keys()], [villageCam], `${nodes[i + 1]!.name} -> ${n.name} pipes only the village camera`);
      assert.ok(down.transport.srtpParameters, 'the pipe is SRTP-protected');
      const stats = (await down.transport.getStats())[0]!;
      assert.ok(stats.rtpBytesSent > 2_000, `${n.name} sent RTP down the pipe: ${stats.rtpBytesSent}`);
    }
  });

  test('each link carries one copy of the chair whether 1 or 20 consumers sit below the village', async () => {
    const one = await downlinkCopies(1500);
    for (let i = 0; i < 19; i++) await tap(village, chairId, 1);
    await waitFor('20 village taps receiving', () => taps.get('village')!.every((t) => packetsOf(t) > 5));
    const twenty = await downlinkCopies(1500);
    const villageRtp = taps.get('village')!.reduce((n, t) => n + sink.count(t.transport.tuple.localPort).bytes, 0);
    console.log(`# downlink RTP bytes/s, 1 consumer below village:  ${one.rates.map((r) => r.toFixed(0)).join(' / ')}`);
    console.log(`# downlink RTP bytes/s, 20 consumers below village: ${twenty.rates.map((r) => r.toFixed(0)).join(' / ')}`);
    console.log(`# copies of the chair's stream per link (link RTP bytes / bytes the chair sent): 1 consumer ${one.copies.map((c) => c.toFixed(2)).join(' / ')}; 20 consumers ${twenty.copies.map((c) => c.toFixed(2)).join(' / ')}; village delivered ${villageRtp} B to its 20 taps`);
    for (const [i, c] of twenty.copies.entries()) {
      assert.ok(one.rates[i]! > 10_000, `link ${i} carries the stream: ${one.rates[i]}`);
      for (const [label, x] of [['1 consumer', one.copies[i]!], ['20 consumers', c]] as const) {
        assert.ok(x > 0.85 && x < 1.2, `link ${names[i]} -> ${names[i + 1]} with ${label}: one copy (${x.toFixed(2)})`);
      }
    }
    assert.equal(village.cascadeRoom(ROOM)!.subscriptions.get(chairId)!.refs, 20, '20 holders of one pipe producer at the village');
  });

  test("keyframe requests from 20 consumers below are aggregated: the chair's encoder sees about two a second", async () => {
    const villageTaps = taps.get('village')!;
    const src = sources[0]!;
    const before = src.plis + src.firs;
    let requests = 0;
    const t0 = performance.now();
    while (performance.now() - t0 < 3000) {
      await Promise.all(villageTaps.map((t) => t.consumer.requestKeyFrame()));
      requests += villageTaps.length;
      await new Promise((r) => setTimeout(r, 50));
    }
    await new Promise((r) => setTimeout(r, 300));
    const reached = src.plis + src.firs - before;
    const seconds = (performance.now() - t0) / 1000;
    console.log(`# ${requests} keyframe requests at the village over ${seconds.toFixed(1)} s -> ${reached} PLI/FIR at the chair's sender`);
    assert.ok(reached >= 1, 'requests do travel up four hops');
    // keyFrameRequestDelay is 500 ms at every node: at most two a second pass each hop.
    assert.ok(reached <= Math.ceil(seconds * 2) + 2, `at most about two a second reach the origin of ${requests}: ${reached}`);
  });

  test("pausing the chair's camera pauses it on every level; resuming restores media", async () => {
    const chair = cameras.get('city')!;
    const villageTap = taps.get('village')![0]!;
    await chair.pause();
    await waitFor('paused everywhere', () => nodes.slice(1).every((n) => chairAt(n)?.paused === true && n.cascadeRoom(ROOM)!.subscriptions.get(chairId)?.producer?.paused === true), 5000);
    assert.equal(villageTap.consumer.producerPaused, true, 'the village consumer sees its producer paused');
    await new Promise((r) => setTimeout(r, 200)); // packets already in flight
    const idle = await downlinkRates(600);
    assert.deepEqual(idle, [0, 0, 0, 0], `nothing is sent while paused: ${idle.join(',')}`);
    const n0 = packetsOf(villageTap);
    await chair.resume();
    await waitFor('media again at the village', () => packetsOf(villageTap) > n0 + 10, 5000);
    assert.ok(nodes.slice(1).every((n) => chairAt(n)?.paused === false));
  });

  test('piping stops on a link when the last consumer beyond it leaves, and resumes on demand', async () => {
    const communityToVillage = community.link(ROOM, 'child:village')!;
    for (const t of taps.get('village')!) t.close();
    taps.set('village', []);
    const stopped = await waitFor('community stops piping the chair to the village', () => communityToVillage.outgoing.size === 0, 5000);
    assert.equal(village.cascadeRoom(ROOM)!.subscriptions.size, 0, 'village released its pipe producer');
    const rates = await downlinkRates(700);
    console.log(`# last village consumer gone -> pipe closed in ${stopped.toFixed(0)} ms (linger 300 ms); downlink bytes/s now ${rates.map((r) => r.toFixed(0)).join(' / ')}`);
    assert.equal(rates[3], 0, 'no RTP on community -> village');
    assert.ok(rates[2]! > 10_000, 'town -> community still carries it (community consumes)');

    for (const n of [county, town, community]) for (const t of taps.get(n.name)!) t.close();
    await waitFor('no link pipes the chair any more', () => nodes.slice(0, -1).every((n, i) => n.link(ROOM, `child:${nodes[i + 1]!.name}`)!.outgoing.size === 0), 5000);
    const idle = await downlinkRates(700);
    assert.deepEqual(idle, [0, 0, 0, 0], `no chair RTP on any link: ${idle.join(',')}`);
    // The village camera still goes up to the city, which still consumes it.
    assert.ok(village.link(ROOM, 'parent')!.outgoing.size === 1);

    const t0 = performance.now();
    await tap(village, chairId);
    console.log(`# re-subscribing from the village re-piped 4 hops and delivered RTP in ${(performance.now() - t0).toFixed(0)} ms`);
    assert.ok(nodes.slice(0, -1).every((n, i) => n.link(ROOM, `child:${nodes[i + 1]!.name}`)!.outgoing.size === 1));
  });

  test('killing the town node: the village keeps its local call, then re-attaches and media resumes', async () => {
    const villageCam = cameras.get('village')!.producer.id;
    const local = await tap(village, villageCam); // a local consumer of the village's own camera
    const chairTap = taps.get('village')!.find((t) => t.consumer.producerId === chairId && !t.closed)!;
    const chairGone = new Promise<void>((r) => chairTap.once('close', () => r()));
    const killedAt = performance.now();
    await town.stop();
    await chairGone;
    const lostAt = performance.now();
    await waitFor('community notices its parent is gone', () => !community.node.cascade!.parentConnected, 5000);
    assert.equal(chairAt(village), undefined, 'the chair is no longer listed at the village');
    const localBefore = packetsOf(local);
    await new Promise((r) => setTimeout(r, 500));
    assert.ok(packetsOf(local) > localBefore + 3, 'the village call goes on while cut off');

    await town.start(); // same port: the community dials it again with backoff
    const restartedAt = performance.now();
    await waitFor('chair announced at the village again', () => chairAt(village) !== undefined, 15_000);
    const announcedAt = performance.now();
    const again = await tap(village, chairId);
    const resumedAt = performance.now();
    console.log(
      `# town killed: village chair consumer closed after ${(lostAt - killedAt).toFixed(0)} ms; town restarted; chair listed at village ${(announcedAt - restartedAt).toFixed(0)} ms after restart; ` +
        `RTP at village ${(resumedAt - restartedAt).toFixed(0)} ms after restart (${(resumedAt - killedAt).toFixed(0)} ms after the kill)`,
    );
    assert.ok(packetsOf(again) >= 10);
    assert.ok(community.node.cascade!.parentConnects >= 2, 'community re-dialled');
    // And upwards: the chair sees the village camera again.
    await waitFor('village camera listed at the city again', () => city.cascadeRoom(ROOM)?.producer(villageCam) !== undefined, 10_000);
    await tap(city, villageCam);
  });

  test("the town node's mediasoup worker dies: its room is rebuilt on the replacement and the tree re-forms", async () => {
    const room = town.node.rooms.get(ROOM)!;
    const pid = room.slot.worker.pid!;
    const chairTap = taps.get('village')!.filter((t) => t.consumer.producerId === chairId && !t.closed).at(-1)!;
    const gone = new Promise<void>((r) => chairTap.once('close', () => r()));
    const replaced = new Promise<number>((r) => town.node.once('workerreplaced', r));
    const killedAt = performance.now();
    process.kill(pid, 'SIGKILL');
    await gone;
    assert.notEqual(await replaced, pid);
    await waitFor('town room rebuilt and attached both ways', () => {
      const cr = town.cascadeRoom(ROOM);
      return !!cr && cr.room !== room && cr.links.has('parent') && cr.links.has('child:community');
    }, 15_000);
    await waitFor('chair listed at the village again', () => chairAt(village) !== undefined, 10_000);
    const again = await tap(village, chairId);
    console.log(`# town worker SIGKILL -> chair RTP at the village again after ${(performance.now() - killedAt).toFixed(0)} ms`);
    assert.ok(packetsOf(again) >= 10);
  });

  test('the control link refuses bad node tokens and survives malformed messages', async () => {
    const status = (headers: Record<string, string>) =>
      new Promise<number>((resolve) => {
        const ws = new WebSocket(city.cascadeUrl, { headers });
        ws.once('open', () => (ws.close(), resolve(101)));
        ws.once('unexpected-response', (_req, res) => (resolve(res.statusCode ?? 0), ws.terminate()));
        ws.once('error', () => undefined);
      });
    assert.equal(await status({}), 401, 'no token');
    const wrongSecret = await signNodeToken('another-secret-another-secret-another-12', { nodeId: 'rogue', unitId: 9 });
    assert.equal(await status({ authorization: `Bearer ${wrongSecret}` }), 401, 'wrong secret');
    const joinToken = await signJoinToken(TEST_JOIN_KEYS.privateKey, { userId: 1, displayName: 'x', unitId: 1, room: ROOM, role: 'chair' });
    assert.equal(await status({ authorization: `Bearer ${joinToken}` }), 401, 'a join token is not a node token');
    const self = await signNodeToken(CASCADE_SECRET, { nodeId: 'city', unitId: 1 });
    assert.equal(await status({ authorization: `Bearer ${self}` }), 403, 'a node cannot be its own child');

    const token = await signNodeToken(CASCADE_SECRET, { nodeId: 'rogue', unitId: 9 });
    const ws = new WebSocket(city.cascadeUrl, { headers: { authorization: `Bearer ${token}` } });
    const inbox: Array<Record<string, unknown>> = [];
    ws.on('message', (d) => inbox.push(JSON.parse(String(d)) as Record<string, unknown>));
    await new Promise((r) => ws.once('open', r));
    const answer = async (id: number) => {
      await waitFor(`answer ${id}`, () => inbox.some((m) => m.id === id), 3000);
      return inbox.find((m) => m.id === id)! as { ok: boolean; e?: { code: string } };
    };
    ws.send('{"t": "req", "id": ');
    ws.send(JSON.stringify({ t: 'req', id: 1, m: 'launch', d: {} }));
    ws.send(JSON.stringify({ t: 'req', id: 2, m: 'subscribe', d: { room: 'nope', producerId: 'x' } }));
    ws.send(JSON.stringify({ t: 'req', id: 3, m: 'openRoom', d: { room: ROOM, pipe: { ip: 'not-an-ip', port: 1, srtp: { cryptoSuite: 'x', keyBase64: 'y' } }, peers: [], producers: [] } }));
    ws.send(JSON.stringify({ t: 'req', id: 4, m: 'subscribe', d: { room: ROOM, producerId: chairId } }));
    ws.send(JSON.stringify({ t: 'ntf', m: 'producerAdded', d: { room: ROOM, producer: { producerId: 'p', peerId: 'q', kind: 'video', source: 'camera', paused: 'yes' } } }));
    assert.equal((await answer(1)).e?.code, 'bad_request');
    assert.equal((await answer(2)).e?.code, 'not_found');
    assert.equal((await answer(3)).e?.code, 'bad_request');
    assert.equal((await answer(4)).e?.code, 'not_found', 'cannot pull media from a room it has not attached');
    const closed = new Promise((r) => ws.once('close', r));
    ws.send('x'.repeat(5 * 1024 * 1024)); // beyond maxPayload: the socket is closed
    await closed;
    // The tree kept working throughout.
    const t = taps.get('village')!.find((x) => x.consumer.producerId === chairId && !x.closed)!;
    const n0 = packetsOf(t);
    await waitFor('chair still flowing to the village', () => packetsOf(t) > n0 + 10, 5000);
    assert.deepEqual(city.node.cascade!.children, ['county']);
  });
});
