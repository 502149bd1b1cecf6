import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import WebSocket, { WebSocketServer } from 'ws';
import { createLogger } from '../../infra/logger.ts';
import { signJoinToken, signNodeToken } from '../../infra/tokens.ts';
import { INITIAL_CONTROL } from '../../sfu/ConferenceControl.ts';
import { ControlChannel } from '../../sfu/cascade/ControlChannel.ts';
import type { ControlState } from '../../sfu/protocol.ts';
import { CASCADE_SECRET, startChain, waitFor, type TreeNode } from '../support/cascade-harness.ts';
import { TEST_JOIN_KEYS } from '../support/join-keys.ts';
import { SignalClient } from './sfu-support.ts';

// Attack 9 of issue 12: a cascade neighbour trusted too far. A raw child (a WebSocket speaking
// sfu/cascade/protocol.ts after authenticating with the shared secret) attaches to a real city node
// and tries to end the meeting, broadcast and mute from below, to pin the state with a Lamport stamp
// of MAX_SAFE_INTEGER, to raise other sites' hands, to claim a live node's id, and to flood the
// ordered backlog with bytes. Each has no effect; a real chair below the city still commands.

const ROOM = 'trust';

type Res = { t: 'res'; id: number; ok: boolean; d?: unknown; e?: { code: string; message: string } };

/** A hand-made child node: authenticated control link, no SfuNode behind it. */
class RogueChild {
  readonly ws: WebSocket;
  readonly #waiting = new Map<number, (r: Res) => void>();
  #n = 0;
  status: number | undefined;
  private constructor(ws: WebSocket) {
    this.ws = ws;
    ws.on('message', (d) => {
      const m = JSON.parse(String(d)) as Res | { t: 'ntf' };
      if (m.t === 'res') this.#waiting.get(m.id)?.(m);
    });
    ws.on('error', () => undefined);
  }
  static async connect(url: string, nodeId: string): Promise<RogueChild> {
    const token = await signNodeToken(CASCADE_SECRET, { nodeId, unitId: 99 }, 120);
    const ws = new WebSocket(url, { headers: { authorization: `Bearer ${token}` } });
    const c = new RogueChild(ws);
    await new Promise<void>((res, rej) => {
      ws.once('open', () => res());
      ws.once('unexpected-response', (_q, r) => ((c.status = r.statusCode), rej(new Error(`refused: ${r.statusCode}`))));
      ws.once('error', rej);
    });
    return c;
  }
  request(m: string, d: unknown): Promise<Res> {
    const id = ++this.#n;
    return new Promise((res, rej) => {
      const t = setTimeout(() => rej(new Error(`${m}: no answer`)), 5000);
      this.#waiting.set(id, (r) => (clearTimeout(t), res(r)));
      this.ws.send(JSON.stringify({ t: 'req', id, m, d }));
    });
  }
  notify(m: string, d: unknown): void {
    this.ws.send(JSON.stringify({ t: 'ntf', m, d }));
  }
  close(): void {
    this.ws.terminate();
  }
}

const pipe = () => ({ ip: '127.0.0.1', port: 9, srtp: { cryptoSuite: 'AEAD_AES_256_GCM', keyBase64: crypto.randomBytes(44).toString('base64') } });
const control = (over: Partial<ControlState>, clock: number, node = 'rogue'): ControlState => ({ ...INITIAL_CONTROL, ...over, stamp: { clock, node } });

describe('cascade neighbours are trusted no further than they can prove', { timeout: 90_000 }, () => {
  let nodes: TreeNode[];
  let city: TreeNode, county: TreeNode;
  let chair: SignalClient, site: SignalClient;
  const rogues: RogueChild[] = [];

  const state = () => city.node.rooms.get(ROOM)!.control.state;
  const cityPeers = () => city.node.cascade!.rooms.get(ROOM)!.peers();

  before(async () => {
    nodes = await startChain(['city', 'county'], { admission: 'open', pingIntervalMs: 500 });
    [city, county] = nodes as [TreeNode, TreeNode];
    chair = await SignalClient.join(city.wsUrl, { userId: 1, room: ROOM, role: 'chair', unitId: 1 });
    site = await SignalClient.join(city.wsUrl, { userId: 2, room: ROOM, unitId: 1 });
  });

  after(async () => {
    for (const r of rogues) r.close();
    chair?.close();
    site?.close();
    for (const n of [...(nodes ?? [])].reverse()) await n.stop().catch(() => undefined);
  });

  test('a child without a proven chair cannot end, broadcast or mute; its self-declared chair is a participant', async () => {
    const rogue = await RogueChild.connect(city.cascadeUrl, 'rogue');
    rogues.push(rogue);
    const fakeChair = { peerId: 'fake-chair', displayName: '假主持', unitId: 99, role: 'chair' };
    const r = await rogue.request('openRoom', {
      room: ROOM,
      pipe: pipe(),
      peers: [fakeChair],
      producers: [],
      chairProofs: { 'fake-chair': 'not.a.token' },
      conference: { control: control({ ended: 'chair' }, 5) },
    });
    assert.equal(r.ok, true, `attached: ${JSON.stringify(r.e)}`);
    await waitFor('fake chair listed at the city', () => cityPeers().some((p) => p.peerId === 'fake-chair'), 3000);
    assert.equal(cityPeers().find((p) => p.peerId === 'fake-chair')?.role, 'participant', 'listed as a participant');
    // Also later, in a peerAdded with a forged proof (a chair token for another room).
    const otherRoom = await signJoinToken(TEST_JOIN_KEYS.privateKey, { userId: 77, displayName: 'x', unitId: 1, room: 'another-room', role: 'chair' });
    rogue.notify('peerAdded', { room: ROOM, peer: { ...fakeChair, peerId: 'fake-chair-2' }, chairProof: otherRoom });
    for (const [i, over] of [{ ended: 'chair' as const }, { broadcast: 'x' }, { muteAll: true }, { spotlight: 'fake-chair' }].entries()) {
      rogue.notify('conference', { room: ROOM, control: control(over, 10 + i) });
    }
    rogue.notify('conference', { room: ROOM, control: control({ ended: 'chair' }, Number.MAX_SAFE_INTEGER) });
    // A round trip on the same (ordered) link: everything above has been applied when it answers.
    await waitFor('second fake chair listed', () => cityPeers().some((p) => p.peerId === 'fake-chair-2'), 3000);
    await rogue.request('subscribe', { room: ROOM, producerId: 'none' });
    assert.equal(cityPeers().find((p) => p.peerId === 'fake-chair-2')?.role, 'participant');
    assert.deepEqual({ ...state(), stamp: undefined }, { ...INITIAL_CONTROL, stamp: undefined }, 'the city state is untouched');
    assert.equal(state().stamp.clock < 1000, true, 'no stamp from the rogue was taken');
    assert.equal(site.notes.some((x) => x.method === 'meetingEnded'), false, 'nobody was sent away');
    assert.equal(city.node.rooms.get(ROOM)!.peers.size, 2);
    // The city's real chair still commands.
    assert.equal((await chair.request('chairCommand', { action: 'muteAll' })).ok, true);
    assert.equal(state().muteAll, true);
    assert.equal((await chair.request('chairCommand', { action: 'unmuteAll' })).ok, true);
  });

  test('a child announces producers only for its own sites', async () => {
    const rogue = rogues[0]!;
    const producer = (producerId: string, peerId: string) => ({ room: ROOM, producer: { producerId, peerId, kind: 'video', source: 'camera', paused: false } });
    rogue.notify('producerAdded', producer('passed-off-as-the-site', site.peerId));
    rogue.notify('producerAdded', producer('passed-off-as-the-chair', chair.peerId));
    rogue.notify('producerAdded', producer('its-own', 'fake-chair'));
    await rogue.request('subscribe', { room: ROOM, producerId: 'none' });
    const listed = city.node.cascade!.rooms.get(ROOM)!.producers().map((p) => p.producerId);
    assert.deepEqual(listed, ['its-own']);
    assert.equal(site.notes.some((x) => x.method === 'newProducer' && (x.data as { producerId: string }).producerId.startsWith('passed-off')), false, 'no page was shown a forged stream of a city site');
  });

  test('a child raises only its own sites\' hands', async () => {
    const rogue = rogues[0]!;
    const hand = (peerId: string, clock: number) => ({ peerId, displayName: 'x', unitId: 1, raised: true, at: Date.now(), stamp: { clock, node: 'rogue' } });
    rogue.notify('conference', { room: ROOM, hands: [hand(site.peerId, 50), hand(chair.peerId, 51), hand('fake-chair', 52)] });
    await rogue.request('subscribe', { room: ROOM, producerId: 'none' });
    const hands = city.node.rooms.get(ROOM)!.control.hands;
    assert.equal(hands.get(site.peerId)?.raised ?? false, false, 'a city site\'s hand was not raised from below');
    assert.equal(hands.has(chair.peerId), false);
    assert.equal(hands.get('fake-chair')?.raised, true, 'its own site\'s hand is');
  });

  test('a proven chair below the city commands, but cannot pin the state with a huge stamp', async () => {
    // A real chair at the county node: its join token goes up as proof.
    const below = await SignalClient.join(county.wsUrl, { userId: 3, room: ROOM, role: 'chair', unitId: 2 });
    try {
      await waitFor('county chair known at the city as chair', () => cityPeers().find((p) => p.peerId === below.peerId)?.role === 'chair', 5000);
      assert.equal((await below.request('chairCommand', { action: 'muteAll' })).ok, true);
      await waitFor('mute-all from the county chair applied at the city', () => state().muteAll, 5000);
      await waitFor('site told it is muted', () => site.notes.findLast((x) => x.method === 'conferenceState')?.data !== undefined && (site.notes.findLast((x) => x.method === 'conferenceState')!.data as { selfMuted: boolean }).selfMuted, 5000);
      // A child that does hold a valid chair token still cannot jump the clock.
      const token = await signJoinToken(TEST_JOIN_KEYS.privateKey, { userId: 4, displayName: 'c', unitId: 9, room: ROOM, role: 'chair' });
      const rogue = await RogueChild.connect(city.cascadeUrl, 'rogue-with-token');
      rogues.push(rogue);
      const r = await rogue.request('openRoom', { room: ROOM, pipe: pipe(), peers: [{ peerId: 'real-chair-2', displayName: 'c', unitId: 9, role: 'chair' }], producers: [], chairProofs: { 'real-chair-2': token } });
      assert.equal(r.ok, true);
      rogue.notify('conference', { room: ROOM, control: control({ ended: 'chair', muteAll: true }, Number.MAX_SAFE_INTEGER) });
      await rogue.request('subscribe', { room: ROOM, producerId: 'none' });
      assert.equal(state().ended, null, 'the MAX_SAFE_INTEGER stamp was not taken');
      assert.ok(state().stamp.clock < 1_000_000);
      assert.equal((await chair.request('chairCommand', { action: 'unmuteAll' })).ok, true, 'the city chair still writes');
      assert.equal(state().muteAll, false);
    } finally {
      below.close();
    }
  });

  test('a second connection cannot take a live node\'s id', async () => {
    await assert.rejects(RogueChild.connect(city.cascadeUrl, 'county'), /refused: 409/);
    await assert.rejects(RogueChild.connect(city.cascadeUrl, 'rogue'), /refused: 409/);
    assert.ok(city.node.cascade!.children.includes('county'));
    assert.ok(county.node.cascade!.parentConnected, 'the real county link is untouched');
    // A dead link's id can be taken over (a restarted node whose old socket is half-open).
    const old = await RogueChild.connect(city.cascadeUrl, 'restarting');
    old.ws.pause(); // stops reading: no pongs
    const fresh = await RogueChild.connect(city.cascadeUrl, 'restarting');
    rogues.push(old, fresh);
    assert.equal(fresh.ws.readyState, WebSocket.OPEN);
  });
});

describe('the ordered backlog of a control link is bounded in bytes', { timeout: 30_000 }, () => {
  test('a neighbour flooding big ordered messages faster than they are applied is cut off', async () => {
    const server = http.createServer();
    const wss = new WebSocketServer({ server });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const closed = new Promise<string>((resolve) => {
      wss.on('connection', (ws) => {
        const channel = new ControlChannel(ws, { logger: createLogger('backlog-test'), pingIntervalMs: 60_000, requestTimeoutMs: 5000, maxBacklogBytes: 2 * 1024 * 1024 });
        // A handler that never finishes applying: everything ordered waits behind it.
        channel.setHandler({ onRequest: () => new Promise(() => undefined), onNotification: () => undefined });
        channel.once('close', resolve);
      });
    });
    const client = new WebSocket(`ws://127.0.0.1:${(server.address() as AddressInfo).port}`);
    await new Promise((r) => client.once('open', r));
    client.on('error', () => undefined);
    const peers = Array.from({ length: 3000 }, (_, i) => ({ peerId: `p-${i}-${'x'.repeat(40)}`, displayName: '某某村便民服务站'.repeat(3), unitId: 1 + i, role: 'participant' }));
    const big = JSON.stringify({ t: 'req', id: 0, m: 'openRoom', d: { room: 'flood', pipe: pipe(), peers, producers: [] } });
    let sent = 0;
    for (let i = 0; i < 20 && client.readyState === WebSocket.OPEN; i++) {
      client.send(JSON.stringify({ ...JSON.parse(big), id: i }));
      sent += big.length;
    }
    const reason = await closed;
    console.log(`# ${(big.length / 1024).toFixed(0)} KiB ordered messages: link cut after queuing at most 2 MiB (${(sent / 1024 / 1024).toFixed(1)} MiB sent)`);
    assert.equal(reason, 'backlog overflow');
    client.terminate();
    wss.close();
    server.close();
  });
});
