import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import WebSocket from 'ws';
import type { types } from 'mediasoup';
import { signJoinToken } from '../../infra/tokens.ts';
import type { Tap } from '../../sfu/Tap.ts';
import type { ConferenceStateView } from '../../sfu/protocol.ts';
import { CASCADE_SECRET, RtpSink, startChain, waitFor, type TreeNode } from '../support/cascade-harness.ts';
import { TcpRelay } from '../support/tcp-relay.ts';
import { TEST_JOIN_KEYS } from '../support/join-keys.ts';

// Chair controls across a four-level cascade (city -> county -> town -> village), in this process.
// Every participant is a raw signalling client; each site's microphone is a real mediasoup producer
// (a PlainTransport fed with synthetic Opus-framed RTP) adopted by the site's peer, so the chair's
// mute pauses real producers on the sites' own nodes and RTP stops reaching the city.

const ROOM = 'conf-chair-controls';

type Msg = { type: string; id?: string; ok?: boolean; data?: unknown; error?: { code: string }; method?: string };

/** A signalling client without media: requests, responses and every notification kept. */
class Client {
  readonly ws: WebSocket;
  readonly notes: Array<{ method: string; data: unknown }> = [];
  readonly #waiting = new Map<string, (m: Msg) => void>();
  #n = 0;
  peerId = '';
  constructor(url: string) {
    this.ws = new WebSocket(url);
    this.ws.on('message', (d) => {
      const m = JSON.parse(String(d)) as Msg;
      if (m.type === 'notification') this.notes.push({ method: m.method!, data: m.data });
      else if (m.id) this.#waiting.get(m.id)?.(m);
    });
  }
  static async join(n: TreeNode, userId: number, displayName: string, role: 'chair' | 'participant'): Promise<Client> {
    const c = new Client(n.wsUrl);
    await new Promise((res, rej) => (c.ws.once('open', res), c.ws.once('error', rej)));
    const token = await signJoinToken(TEST_JOIN_KEYS.privateKey, { userId, displayName, unitId: n.unitId, room: ROOM, role });
    const r = await c.request('join', { token });
    assert.equal(r.ok, true, `${displayName} joined: ${JSON.stringify(r.error)}`);
    c.peerId = (r.data as { peerId: string }).peerId;
    return c;
  }
  request(method: string, data: unknown = {}): Promise<Msg> {
    const id = `r${++this.#n}`;
    return new Promise((res, rej) => {
      const t = setTimeout(() => rej(new Error(`${method}: no response`)), 5000);
      this.#waiting.set(id, (m) => (clearTimeout(t), this.#waiting.delete(id), res(m)));
      this.ws.send(JSON.stringify({ id, method, data }));
    });
  }
  /** The latest conferenceState notification. */
  get state(): ConferenceStateView | undefined {
    return this.notes.findLast((x) => x.method === 'conferenceState')?.data as ConferenceStateView | undefined;
  }
  close(): void {
    this.ws.close();
  }
}

/** A site's microphone: a real mediasoup producer on its own node, fed 50 Opus-sized RTP packets/s. */
class Mic {
  readonly socket = dgram.createSocket('udp4');
  #timer: NodeJS.Timeout | undefined;
  #seq = 0;
  private constructor(
    readonly transport: types.PlainTransport,
    readonly producer: types.Producer,
    readonly ssrc: number,
  ) {}
  static async adopt(n: TreeNode, peerId: string, ssrc: number): Promise<Mic> {
    const room = n.node.rooms.get(ROOM)!;
    const peer = room.peers.get(peerId)!;
    const transport = await room.router.createPlainTransport({ listenInfo: { protocol: 'udp', ip: '127.0.0.1' }, rtcpMux: true, comedia: true });
    const producer = await transport.produce({
      kind: 'audio',
      rtpParameters: { codecs: [{ mimeType: 'audio/opus', payloadType: 100, clockRate: 48000, channels: 2 }], encodings: [{ ssrc }] },
    });
    await peer.adoptProducer(producer, 'microphone');
    const mic = new Mic(transport, producer, ssrc);
    mic.#timer = setInterval(() => mic.#send(), 20);
    return mic;
  }
  #send(): void {
    const pkt = Buffer.alloc(80);
    pkt[0] = 0x80;
    pkt[1] = 100;
    pkt.writeUInt16BE(this.#seq & 0xffff, 2);
    pkt.writeUInt32BE((this.#seq * 960) >>> 0, 4);
    pkt.writeUInt32BE(this.ssrc, 8);
    pkt[12] = 0xfc; // Opus TOC: CELT FB 20 ms
    this.#seq++;
    this.socket.send(pkt, this.transport.tuple.localPort, '127.0.0.1');
  }
  close(): void {
    clearInterval(this.#timer);
    this.socket.close();
  }
}

describe('chair controls across a four-level cascade', { timeout: 120_000 }, () => {
  let nodes: TreeNode[];
  let city: TreeNode, county: TreeNode, town: TreeNode, village: TreeNode;
  let relay: TcpRelay;
  let sink: RtpSink;
  let chair: Client, observer: Client, siteA: Client, siteB: Client, siteC: Client;
  const mics = new Map<Client, Mic>();
  const taps = new Map<Client, Tap>();
  const clients: Client[] = [];

  const nodeOf = (c: Client) => (c === siteC ? town : village);
  const producerAtHome = (c: Client) => nodeOf(c).node.rooms.get(ROOM)?.peers.get(c.peerId)?.producers.get(mics.get(c)!.producer.id);
  const packetsAtCity = (c: Client) => sink.count(taps.get(c)!.transport.tuple.localPort).packets;

  /** RTP arriving at the city from this site's microphone over a window (after letting in-flight packets land). */
  async function flowing(c: Client, windowMs = 600): Promise<number> {
    await new Promise((r) => setTimeout(r, 150));
    const before = packetsAtCity(c);
    await new Promise((r) => setTimeout(r, windowMs));
    return packetsAtCity(c) - before;
  }

  before(async () => {
    relay = await TcpRelay.create();
    nodes = await startChain(['city', 'county', 'town', 'village'], {
      admission: 'open',
      pingIntervalMs: 500,
      parentUrlFor: (child, url) => {
        if (child !== 'village') return url;
        relay.target = { host: '127.0.0.1', port: Number(new URL(url).port) };
        return `ws://127.0.0.1:${relay.port}/cascade`;
      },
    });
    [city, county, town, village] = nodes as [TreeNode, TreeNode, TreeNode, TreeNode];
    sink = await RtpSink.create();
    chair = await Client.join(city, 1, '市指挥中心', 'chair');
    observer = await Client.join(county, 2, '区会议室', 'participant');
    siteC = await Client.join(town, 3, '镇便民服务中心', 'participant');
    siteA = await Client.join(village, 4, '大柳树村', 'participant');
    siteB = await Client.join(village, 5, '小王庄村', 'participant');
    clients.push(chair, observer, siteA, siteB, siteC);
    for (const [i, c] of [siteA, siteB, siteC].entries()) mics.set(c, await Mic.adopt(nodeOf(c), c.peerId, 0x5000 + i));
    // The city listens to every site's microphone, piped up through the cascade.
    for (const c of [siteA, siteB, siteC]) {
      const id = mics.get(c)!.producer.id;
      await waitFor(`mic of ${c.peerId} known at the city`, () => city.cascadeRoom(ROOM)?.producer(id) !== undefined);
      taps.set(c, await city.node.tap(ROOM, id, { ip: '127.0.0.1', port: sink.port }));
    }
    for (const c of [siteA, siteB, siteC]) await waitFor('site audio at the city', () => packetsAtCity(c) > 10);
  });

  after(async () => {
    for (const c of clients) c.close();
    for (const m of mics.values()) m.close();
    sink?.close();
    for (const n of [...(nodes ?? [])].reverse()) await n.stop().catch(() => undefined);
    relay?.close();
  });

  test('a non-chair cannot command; malformed commands are refused; the node keeps serving', async () => {
    for (const c of [observer, siteA]) {
      const r = await c.request('chairCommand', { action: 'muteAll' });
      assert.equal(r.error?.code, 'forbidden', 'participants are answered forbidden');
    }
    assert.equal((await chair.request('chairCommand', { action: 'explode' })).error?.code, 'bad_request');
    assert.equal((await chair.request('chairCommand', { action: 'spotlight', peerId: 'x'.repeat(65) })).error?.code, 'bad_request');
    assert.equal((await chair.request('chairCommand', { action: 'spotlight', peerId: 'no-such-site' })).error?.code, 'not_found');
    assert.equal((await chair.request('chairCommand', { action: 'broadcast', producerId: 'no-such-producer' })).error?.code, 'not_found');
    assert.equal((await siteA.request('raiseHand', { raised: 'yes' })).error?.code, 'bad_request');
    assert.equal(producerAtHome(siteA)?.paused, false, 'nothing was muted by any of that');
  });

  test('mute all pauses every site microphone on its own node, RTP stops, and a site cannot unmute itself', async () => {
    const t0 = performance.now();
    assert.equal((await chair.request('chairCommand', { action: 'muteAll' })).ok, true);
    for (const c of [siteA, siteB, siteC]) await waitFor(`mic of ${c.peerId} paused at home`, () => producerAtHome(c)?.paused === true, 5000);
    const tookMs = performance.now() - t0;
    for (const c of [siteA, siteB, siteC]) {
      await waitFor('the city lists it paused', () => city.cascadeRoom(ROOM)!.producer(mics.get(c)!.producer.id)?.paused === true, 5000);
      await waitFor('muted state reaches the site', () => c.state?.selfMuted === true && c.state.muteAll, 5000);
    }
    const flow = await Promise.all([siteA, siteB, siteC].map((c) => flowing(c)));
    console.log(`# mute all: 3 sites on the town and village nodes paused ${tookMs.toFixed(0)} ms after the command; RTP at the city afterwards: ${flow.join(' / ')} packets in 600 ms`);
    assert.deepEqual(flow, [0, 0, 0], 'no RTP from muted sites reaches the city');
    assert.equal(chair.state?.selfMuted, false, 'the chair is not muted');

    const mine = mics.get(siteA)!.producer.id;
    const r = await siteA.request('resumeProducer', { producerId: mine });
    assert.equal(r.error?.code, 'forbidden', 'a muted site cannot resume its microphone');
    assert.equal(producerAtHome(siteA)?.paused, true);
  });

  test('the chair unmutes one site: only that site is heard again', async () => {
    assert.equal((await chair.request('chairCommand', { action: 'unmute', peerId: siteA.peerId })).ok, true);
    await waitFor('site A resumed at home', () => producerAtHome(siteA)?.paused === false, 5000);
    await waitFor('site A told it may speak', () => siteA.state?.selfMuted === false, 5000);
    const [a, b, c] = await Promise.all([siteA, siteB, siteC].map((x) => flowing(x)));
    console.log(`# after unmuting site A: RTP at the city in 600 ms: A ${a}, B ${b}, C ${c}`);
    assert.ok(a! > 15, `site A flows again: ${a}`);
    assert.equal(b, 0);
    assert.equal(c, 0);
    assert.equal(producerAtHome(siteB)?.paused, true);
    assert.equal(siteB.state?.selfMuted, true);
  });

  test('spotlight set at the city reaches the peers on every node', async () => {
    const t0 = performance.now();
    assert.equal((await chair.request('chairCommand', { action: 'spotlight', peerId: siteB.peerId })).ok, true);
    for (const c of clients) await waitFor('spotlight notification', () => c.state?.spotlight === siteB.peerId, 5000);
    console.log(`# spotlight on a village site: all 5 peers on 4 nodes notified in ${(performance.now() - t0).toFixed(0)} ms`);
  });

  test('a village site raises its hand; the chair at the city sees the queue and lowers it', async () => {
    assert.equal((await siteB.request('raiseHand', { raised: true })).ok, true);
    assert.equal((await siteC.request('raiseHand', { raised: true })).ok, true);
    await waitFor('both hands at the chair', () => chair.state?.hands.length === 2, 5000);
    assert.deepEqual(chair.state!.hands.map((h) => h.peerId), [siteB.peerId, siteC.peerId], 'queue in order of raising');
    assert.equal(chair.state!.hands[0]!.displayName, '小王庄村');
    assert.equal((await chair.request('chairCommand', { action: 'lowerHand', peerId: siteB.peerId })).ok, true);
    await waitFor('hand lowered everywhere', () => [chair, siteB, observer].every((c) => c.state?.hands.map((h) => h.peerId).join() === siteC.peerId), 5000);
  });

  test('broadcast: every microphone but the chair muted, every page told which producer to show', async () => {
    const film = mics.get(siteC)!.producer.id; // any producer of the conference stands in for the chair's screen
    assert.equal((await chair.request('chairCommand', { action: 'broadcast', producerId: film })).ok, true);
    await waitFor('site A muted by broadcast', () => producerAtHome(siteA)?.paused === true, 5000);
    for (const c of clients) await waitFor('broadcast notification', () => c.state?.broadcast === film, 5000);
    assert.equal((await chair.request('chairCommand', { action: 'broadcast', producerId: null })).ok, true);
    await waitFor('site A back (still individually unmuted)', () => producerAtHome(siteA)?.paused === false, 5000);
    assert.equal(producerAtHome(siteB)?.paused, true, 'site B still held by mute all');
  });

  test('a village that re-attaches after its parent link dropped gets the state changed meanwhile', async () => {
    relay.cut();
    await waitFor('village lost its parent', () => !village.node.cascade!.parentConnected, 5000);
    await waitFor('the city forgot the village sites', () => !city.cascadeRoom(ROOM)!.peers().some((p) => p.peerId === siteA.peerId), 5000);
    // While the village is cut off: mute everyone again and spotlight the town site.
    assert.equal((await chair.request('chairCommand', { action: 'muteAll' })).ok, true);
    assert.equal((await chair.request('chairCommand', { action: 'spotlight', peerId: siteC.peerId })).ok, true);
    await new Promise((r) => setTimeout(r, 500));
    assert.equal(producerAtHome(siteA)?.paused, false, 'cut off, the village has not heard (site A still talking)');
    assert.equal(siteA.state?.spotlight, siteB.peerId);
    const t0 = performance.now();
    relay.down = false;
    await waitFor('village re-attached', () => village.node.cascade!.parentConnected && village.link(ROOM, 'parent') !== undefined, 10_000);
    await waitFor('site A muted after re-attach', () => producerAtHome(siteA)?.paused === true, 5000);
    await waitFor('village sites see the new spotlight', () => siteA.state?.spotlight === siteC.peerId && siteB.state?.spotlight === siteC.peerId, 5000);
    console.log(`# village re-attached and applied the state made while it was cut off in ${(performance.now() - t0).toFixed(0)} ms (incl. reconnect backoff)`);
    assert.equal((await siteA.request('resumeProducer', { producerId: mics.get(siteA)!.producer.id })).error?.code, 'forbidden');
  });

  test('ending the meeting removes every peer on every node, and nobody can rejoin', async () => {
    assert.equal((await chair.request('chairCommand', { action: 'endMeeting' })).ok, true);
    for (const c of clients) await waitFor('meetingEnded notification', () => c.notes.some((n) => n.method === 'meetingEnded'), 5000);
    for (const n of nodes) await waitFor(`no peers left at ${n.name}`, () => (n.node.rooms.get(ROOM)?.peers.size ?? 0) === 0, 5000);
    for (const c of [siteA, chair]) assert.equal((await c.request('raiseHand', { raised: true })).error?.code, 'not_joined', 'the session is out of the room');
    const again = await Client.join(village, 4, '大柳树村', 'participant').then(
      () => 'joined',
      (e: Error) => e.message,
    );
    assert.match(again, /forbidden|joined: \{"code":"forbidden"/);
  });
});
