import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { createLogger } from '../../infra/logger.ts';
import { signJoinToken, type JoinClaims } from '../../infra/tokens.ts';
import { SfuNode } from '../../sfu/SfuNode.ts';
import type { ConferenceStateView, ProducerInfo, StageView } from '../../sfu/protocol.ts';
import { TEST_JOIN_KEYS } from '../support/join-keys.ts';
import { startChain, type TreeNode } from '../support/cascade-harness.ts';
import { SignalClient, type Msg } from '../security/sfu-support.ts';
import { rtcPortRange } from '../support/rtc-ports.ts';

// A venue meeting (主会场 / 分会场) on one in-process node: a chair and a dozen sites joined over the
// real signalling with signed tokens, media over plain RTP transports (the node's plainRtp option).
// Sites see only the stage, join muted, cannot unmute; the floor moves one site onto every stage and
// takes it off again (consumers closed by the node); the chair rotates; layer demand reaches publishers.

const ROOM = 'venue-stage';
const SITES = 12;

type JoinAnswer = { peerId: string; layout: string; counts: { joined: number }; peers: Array<{ peerId: string }>; producers: ProducerInfo[]; conference: ConferenceStateView; routerRtpCapabilities: unknown };

const wait = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until(what: string | (() => string), pred: () => boolean, timeoutMs = 5000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!pred()) {
    if (Date.now() > end) throw new Error(`timed out: ${typeof what === 'string' ? what : what()}`);
    await wait(20);
  }
}

/** A signalling client without a browser (the attack suite's SignalClient): media over plain RTP. */
class Client extends SignalClient {
  answer!: JoinAnswer;
  sendTransport: { transportId: string; ip: string; port: number } | undefined;
  camera = '';
  mic = '';
  static override async join(url: string, claims: Partial<JoinClaims> & { userId: number }): Promise<Client> {
    const c = new Client(url);
    await c.opened();
    const token = await signJoinToken(TEST_JOIN_KEYS.privateKey, { displayName: `site-${claims.userId}`, unitId: 100 + claims.userId, room: ROOM, role: 'participant', layout: 'venue', ...claims });
    c.answer = (await c.ok('join', { token })) as JoinAnswer;
    c.peerId = c.answer.peerId;
    await c.ok('setRtpCapabilities', { rtpCapabilities: c.answer.routerRtpCapabilities });
    return c;
  }
  override request(method: string, data: unknown = {}, timeoutMs = 8000): Promise<Msg> {
    return super.request(method, data, timeoutMs);
  }
  async ok(method: string, data: unknown = {}): Promise<unknown> {
    const r = await this.request(method, data);
    assert.equal(r.ok, true, `${method}: ${JSON.stringify(r.error)}`);
    return r.data;
  }
  async refused(method: string, data: unknown, code: string): Promise<void> {
    const r = await this.request(method, data);
    assert.equal(r.ok, false, `${method} should be refused`);
    assert.equal(r.error?.code, code, `${method}: ${r.error?.message}`);
  }
  /** A camera (3-layer VP8 simulcast, one SSRC per layer) and a microphone, over a plain send transport. */
  async publish(ssrcBase: number): Promise<void> {
    this.sendTransport = (await this.ok('createPlainTransport', { direction: 'send' })) as { transportId: string; ip: string; port: number };
    const { producerId: camera } = (await this.ok('produce', {
      transportId: this.sendTransport.transportId,
      kind: 'video',
      source: 'camera',
      rtpParameters: { codecs: [{ mimeType: 'video/VP8', payloadType: 101, clockRate: 90000 }], encodings: [{ ssrc: ssrcBase }, { ssrc: ssrcBase + 1 }, { ssrc: ssrcBase + 2 }] },
    })) as { producerId: string };
    const { producerId: mic } = (await this.ok('produce', {
      transportId: this.sendTransport.transportId,
      kind: 'audio',
      source: 'microphone',
      rtpParameters: { codecs: [{ mimeType: 'audio/opus', payloadType: 100, clockRate: 48000, channels: 2 }], encodings: [{ ssrc: ssrcBase + 9 }] },
    })) as { producerId: string };
    this.camera = camera;
    this.mic = mic;
  }
  last<T>(method: string): T | undefined {
    return this.notes.findLast((n) => n.method === method)?.data as T | undefined;
  }
  count(method?: string): number {
    return method ? this.notes.filter((n) => n.method === method).length : this.notes.length;
  }
  /** What the page should consume now: its join answer, then the latest `stage`. */
  get stage(): StageView {
    return this.last<StageView>('stage') ?? { peers: this.answer.peers as StageView['peers'], producers: this.answer.producers };
  }
  get state(): ConferenceStateView {
    return this.last<ConferenceStateView>('conferenceState') ?? this.answer.conference;
  }
}

/** A plain RTP sender of Opus-sized packets (50/s) towards a comedia send transport. */
class Sender {
  readonly socket = dgram.createSocket('udp4');
  #timer: NodeJS.Timeout | undefined;
  #seq = 0;
  constructor(
    readonly ssrc: number,
    readonly to: { ip: string; port: number },
  ) {
    this.#timer = setInterval(() => {
      const pkt = Buffer.alloc(80);
      pkt[0] = 0x80;
      pkt[1] = 100;
      pkt.writeUInt16BE(this.#seq & 0xffff, 2);
      pkt.writeUInt32BE((this.#seq * 960) >>> 0, 4);
      pkt.writeUInt32BE(this.ssrc, 8);
      pkt[12] = 0xfc;
      this.#seq++;
      this.socket.send(pkt, to.port, to.ip);
    }, 20);
  }
  close(): void {
    clearInterval(this.#timer);
    this.socket.close();
  }
}

async function startNode(plainRtp: boolean): Promise<{ node: SfuNode; url: string; close(): Promise<void> }> {
  const ports = rtcPortRange(1000);
  const node = new SfuNode({
    joinKey: TEST_JOIN_KEYS.publicKey,
    numWorkers: 1,
    listenIp: '127.0.0.1',
    webRtcBasePort: 0,
    rtcMinPort: ports.rtcMinPort,
    rtcMaxPort: ports.rtcMaxPort,
    logger: createLogger('venue-test'),
    plainRtp,
    signalling: { requestsPerSecond: 1000, requestBurst: 1000 },
  });
  await node.start();
  const server = http.createServer();
  node.attach(server, '/sfu');
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  return {
    node,
    url: `ws://127.0.0.1:${port}/sfu`,
    async close() {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
      await node.close();
      ports.release();
    },
  };
}

describe('a venue meeting: sites watch the stage', { timeout: 120_000 }, () => {
  let env: Awaited<ReturnType<typeof startNode>>;
  let chair: Client;
  const sites: Client[] = [];
  const senders: Sender[] = [];
  const room = () => env.node.rooms.get(ROOM)!;
  const serverProducer = (id: string) => room().localProducer(id)?.producer;
  const stageIds = (c: Client) => new Set(c.stage.producers.map((p) => p.producerId));

  before(async () => {
    env = await startNode(true);
    chair = await Client.join(env.url, { userId: 1, displayName: '县指挥中心', role: 'chair' });
    await chair.publish(0x1000);
    for (let i = 0; i < SITES; i++) {
      const s = await Client.join(env.url, { userId: 10 + i });
      sites.push(s);
      await s.publish(0x2000 + i * 16);
    }
  });

  after(async () => {
    for (const s of senders) s.close();
    for (const c of [chair, ...sites]) c?.close();
    await env?.close();
  });

  test('a site joining is given the stage (the chair) only, the layout and the count', () => {
    assert.equal(room().layout, 'venue');
    const last = sites.at(-1)!;
    assert.equal(last.answer.layout, 'venue');
    assert.deepEqual(last.answer.peers.map((p) => p.peerId), [chair.peerId]);
    // Chair's camera and microphone were up before the sites joined.
    assert.deepEqual(new Set(last.answer.producers.map((p) => p.producerId)), new Set([chair.camera, chair.mic]));
    assert.equal(last.answer.counts.joined, SITES + 1, 'chair + sites');
    // Nobody heard of any other site: no roster notifications at all in a venue.
    for (const s of sites) for (const m of ['peerJoined', 'newProducer', 'peerLeft', 'producerClosed']) assert.equal(s.count(m), 0, `${m} at a site`);
    assert.equal(chair.count('peerJoined'), 0, 'the chair gets counts, not the roster');
    assert.equal(sites[0]!.answer.counts.joined, 2);
  });

  test('counts reach the pages, coalesced', async () => {
    await until('counts at the first site', () => sites[0]!.last<{ joined: number }>('counts')?.joined === SITES + 1, 3000);
    // 12 joins in a burst: at most a few counts messages per page (≥ 1 s apart), not one per join.
    assert.ok(sites[0]!.count('counts') <= 4, `counts messages: ${sites[0]!.count('counts')}`);
  });

  test("a site's microphone is paused at creation and the site cannot unmute itself", async () => {
    const s = sites[3]!;
    assert.equal(serverProducer(s.mic)!.paused, true, 'paused by the node before anyone heard of it');
    assert.equal(serverProducer(s.camera)!.paused, false);
    assert.equal(serverProducer(chair.mic)!.paused, false, 'the chair is never muted');
    assert.equal(s.state.selfMuted, true);
    assert.equal(s.state.layout, 'venue');
    await s.refused('resumeProducer', { producerId: s.mic }, 'forbidden');
    assert.equal(serverProducer(s.mic)!.paused, true);
    await chair.refused('chairCommand', { action: 'unmuteAll' }, 'forbidden');
  });

  test('a site may consume the stage only', async () => {
    const s = sites[0]!;
    await s.ok('createPlainTransport', { direction: 'recv' });
    await s.refused('consume', { producerId: sites[1]!.camera }, 'forbidden');
    await s.refused('consume', { producerId: sites[1]!.mic }, 'forbidden');
    const c = (await s.ok('consume', { producerId: chair.camera })) as { consumerId: string };
    assert.ok(c.consumerId);
    await s.ok('consume', { producerId: chair.mic });
    await s.refused('siteProducers', { peerIds: [sites[1]!.peerId] }, 'forbidden');
    await s.refused('warm', { producerIds: [sites[1]!.camera] }, 'forbidden');
    await s.refused('chairCommand', { action: 'giveFloor', peerId: s.peerId }, 'forbidden');
  });

  test('one more join costs every other site at most one notification', async () => {
    await wait(1200); // counts of earlier joins have gone out
    const before = sites.map((s) => s.count());
    const late = await Client.join(env.url, { userId: 99 });
    await late.publish(0x9000);
    sites.push(late);
    await wait(1500); // one counts interval
    const caused = sites.slice(0, -1).map((s, i) => s.notes.slice(before[i]).map((n) => n.method));
    for (const c of caused) assert.ok(c.length <= 1, `notifications caused by one join: ${JSON.stringify(c)}`);
    assert.ok(caused.some((c) => c.length === 1 && c[0] === 'counts'), 'the count moved');
    assert.equal(sites[0]!.last<{ joined: number }>('counts')?.joined, sites.length + 1);
  });

  test('giving the floor puts exactly that site on every stage and unmutes it alone', async () => {
    const floor = sites[5]!;
    const before = sites.map((s) => s.count('stage'));
    await floor.ok('raiseHand', { raised: true });
    await until('hand at the chair', () => chair.state.hands.some((h) => h.peerId === floor.peerId));
    assert.equal(floor.state.selfHand, true);
    assert.deepEqual(sites[0]!.state.hands, [], 'sites do not see the queue in a venue');
    await chair.ok('chairCommand', { action: 'giveFloor', peerId: floor.peerId });
    for (const [i, s] of sites.entries()) {
      if (s === floor) continue;
      await until(`stage at site ${i}`, () => stageIds(s).has(floor.camera) && stageIds(s).has(floor.mic));
      assert.deepEqual(stageIds(s), new Set([chair.camera, chair.mic, floor.camera, floor.mic]));
      assert.equal(s.count('stage'), before[i]! + 1, 'one stage message');
      assert.equal(s.state.floor, floor.peerId);
    }
    await until('floor mic resumed', () => serverProducer(floor.mic)!.paused === false);
    for (const s of sites) if (s !== floor) assert.equal(serverProducer(s.mic)!.paused, true, 'everyone else still muted');
    await until('floor told it may speak', () => floor.state.selfMuted === false);
    assert.equal(floor.state.selfHand, false, 'its hand came down in the same action');
    assert.ok(!chair.state.hands.some((h) => h.peerId === floor.peerId));
    // The floor's own page sees the chair, not itself.
    assert.deepEqual(stageIds(floor), new Set([chair.camera, chair.mic]));
    // Now the sites may consume the floor.
    const s0 = sites[0]!;
    const c = (await s0.ok('consume', { producerId: floor.camera })) as { consumerId: string };
    await s0.ok('consume', { producerId: floor.mic });
    assert.ok(c.consumerId);
    await sites[1]!.ok('createPlainTransport', { direction: 'recv' });
    await sites[1]!.ok('consume', { producerId: floor.camera });
  });

  test("taking the floor back closes the sites' consumers of it on the node", async () => {
    const floor = sites[5]!;
    const s0 = sites[0]!;
    const consumersOf = (c: Client, producerId: string) => [...room().peers.get(c.peerId)!.consumers.values()].filter((x) => x.producerId === producerId).length;
    assert.equal(consumersOf(s0, floor.camera), 1);
    await chair.ok('chairCommand', { action: 'giveFloor', peerId: null });
    await until('consumerClosed at site 0', () => s0.notes.filter((n) => n.method === 'consumerClosed').length >= 2);
    const closed = s0.notes.filter((n) => n.method === 'consumerClosed').map((n) => (n.data as { producerId: string }).producerId);
    assert.deepEqual(new Set(closed), new Set([floor.camera, floor.mic]));
    assert.equal(consumersOf(s0, floor.camera), 0);
    assert.equal(consumersOf(s0, floor.mic), 0);
    assert.equal(consumersOf(sites[1]!, floor.camera), 0);
    assert.equal(consumersOf(s0, chair.camera), 1, 'the chair stays');
    await until('floor muted again', () => serverProducer(floor.mic)!.paused === true);
    assert.deepEqual(stageIds(s0), new Set([chair.camera, chair.mic]));
    await s0.refused('consume', { producerId: floor.camera }, 'forbidden');
  });

  test('the dais: at most 4, known sites only, and at most 3 videos on stage', async () => {
    await chair.refused('chairCommand', { action: 'setDais', peerIds: sites.slice(0, 5).map((s) => s.peerId) }, 'bad_request');
    await chair.refused('chairCommand', { action: 'setDais', peerIds: ['no-such-site'] }, 'not_found');
    const [d1, d2, d3] = [sites[7]!, sites[8]!, sites[9]!];
    await chair.ok('chairCommand', { action: 'giveFloor', peerId: sites[6]!.peerId });
    await chair.ok('chairCommand', { action: 'setDais', peerIds: [d1.peerId, d2.peerId, d3.peerId] });
    const s0 = sites[0]!;
    await until('dais on stage', () => stageIds(s0).has(d1.mic));
    const videos = s0.stage.producers.filter((p) => p.kind === 'video').map((p) => p.producerId);
    // Chair camera, floor camera, then the first dais camera: three, whatever the dais holds.
    assert.deepEqual(videos, [chair.camera, sites[6]!.camera, d1.camera]);
    assert.ok(stageIds(s0).has(d3.mic), "the dais' sound is on stage");
    await until('dais unmuted', () => serverProducer(d1.mic)!.paused === false && serverProducer(d3.mic)!.paused === false);
    await s0.refused('consume', { producerId: d2.camera }, 'forbidden');
    await chair.ok('chairCommand', { action: 'setDais', peerIds: [] });
    await chair.ok('chairCommand', { action: 'giveFloor', peerId: null });
    await until('stage back to the chair', () => stageIds(s0).size === 2);
    await until('dais muted again', () => serverProducer(d1.mic)!.paused === true);
  });

  test("a broadcast is on every stage with its peer's sound; everyone else muted", async () => {
    const b = sites[11]!;
    const s0 = sites[0]!;
    await chair.ok('chairCommand', { action: 'broadcast', producerId: b.camera });
    await until('broadcast on stage', () => stageIds(s0).has(b.camera));
    assert.deepEqual(s0.stage.producers.filter((p) => p.kind === 'video').map((p) => p.producerId), [chair.camera, b.camera]);
    assert.ok(stageIds(s0).has(b.mic), "the broadcast peer's audio");
    assert.equal(s0.stage.producers.length, 4);
    await chair.ok('chairCommand', { action: 'broadcast', producerId: null });
    await until('stage back to the chair', () => stageIds(s0).size === 2);
  });

  test('the chair rotates: siteProducers, consume any site, warm the next page', async () => {
    const page = sites.slice(0, 4);
    const { sites: listed } = (await chair.ok('siteProducers', { peerIds: [...page.map((s) => s.peerId), 'unknown-peer'] })) as {
      sites: Array<{ peerId: string; displayName: string; unitId: number; producers: ProducerInfo[] }>;
    };
    assert.deepEqual(listed.map((s) => s.peerId), page.map((s) => s.peerId), 'unknown peers left out');
    assert.deepEqual(new Set(listed[0]!.producers.map((p) => p.producerId)), new Set([page[0]!.camera, page[0]!.mic]));
    assert.equal(listed[0]!.producers.find((p) => p.kind === 'audio')!.paused, true);
    await chair.ok('createPlainTransport', { direction: 'recv' });
    for (const s of page) await chair.ok('consume', { producerId: s.camera, layer: 0 });
    const { warmed } = (await chair.ok('warm', { producerIds: sites.slice(4, 8).map((s) => s.camera) })) as { warmed: number };
    assert.equal(warmed, 4, 'local producers need no pipe: warm at once');
    await chair.refused('siteProducers', { peerIds: [] }, 'bad_request');
    await chair.refused('warm', { producerIds: Array.from({ length: 26 }, () => crypto.randomUUID()) }, 'bad_request');
    // A supervisor's token with `rotate` may do the same without being the chair.
    const supervisor = await Client.join(env.url, { userId: 200, role: 'viewer', rotate: true });
    await supervisor.ok('createPlainTransport', { direction: 'recv' });
    await supervisor.ok('consume', { producerId: sites[2]!.camera, layer: 0 });
    supervisor.close();
  });

  test('layer demand reaches the simulcast publisher', async () => {
    const pub = sites[10]!;
    const demands = () => pub.notes.filter((n) => n.method === 'layerDemand').map((n) => n.data as { producerId: string; maxSpatialLayer: number });
    await until('initial demand', () => demands().some((d) => d.producerId === pub.camera));
    assert.equal(demands().at(-1)!.maxSpatialLayer, -1, 'nobody consumes it yet');
    assert.ok(!demands().some((d) => d.producerId === pub.mic), 'no layers for audio');
    const { consumerId } = (await chair.ok('consume', { producerId: pub.camera, layer: 0 })) as { consumerId: string };
    await until('demand 0', () => demands().at(-1)?.maxSpatialLayer === 0);
    const consumer = room().peers.get(chair.peerId)!.consumers.get(consumerId)!;
    assert.equal(consumer.type, 'simulcast');
    assert.equal(consumer.preferredLayers?.spatialLayer, 0);
    assert.equal(room().demand(pub.camera), 0);
    await chair.ok('setConsumerLayer', { consumerId, layer: 2 });
    await until('demand 2', () => demands().at(-1)?.maxSpatialLayer === 2);
    assert.equal(consumer.preferredLayers?.spatialLayer, 2);
    // A link beyond wanting layer 1 keeps it there once the local consumer goes.
    room().setLinkDemand(pub.camera, 'child:x', 1);
    await chair.ok('closeConsumer', { consumerId });
    await until('demand 1', () => demands().at(-1)?.maxSpatialLayer === 1);
    room().setLinkDemand(pub.camera, 'child:x', -1);
    await until('demand -1', () => demands().at(-1)?.maxSpatialLayer === -1);
    await chair.refused('setConsumerLayer', { consumerId, layer: 1 }, 'not_found');
    await chair.refused('setConsumerLayer', { consumerId, layer: 3 }, 'bad_request');
  });

  test('a plain recv transport receives RTP of what the site consumes', async () => {
    const s = sites[2]!;
    const sink = dgram.createSocket('udp4');
    await new Promise<void>((r) => sink.bind(0, '127.0.0.1', r));
    let packets = 0;
    sink.on('message', (msg) => {
      if (msg.length > 12 && (msg[1]! & 0x7f) === 100) packets++;
    });
    const recv = (await s.ok('createPlainTransport', { direction: 'recv' })) as { transportId: string };
    await s.ok('connectPlainTransport', { transportId: recv.transportId, ip: '127.0.0.1', port: (sink.address() as AddressInfo).port });
    const { consumerId } = (await s.ok('consume', { producerId: chair.mic })) as { consumerId: string };
    await s.ok('resumeConsumer', { consumerId });
    senders.push(new Sender(0x1000 + 9, chair.sendTransport!));
    await until('RTP at the site', () => packets > 10);
    sink.close();
    await s.refused('connectPlainTransport', { transportId: s.sendTransport!.transportId, ip: '127.0.0.1', port: 9 }, 'bad_request');
    await s.refused('connectPlainTransport', { transportId: recv.transportId, ip: 'not-an-ip', port: 9 }, 'bad_request');
  });

  test('an H.264 3-layer simulcast camera can be produced over plain RTP', async () => {
    const c = await Client.join(env.url, { userId: 300 });
    const t = (await c.ok('createPlainTransport', { direction: 'send' })) as { transportId: string };
    const { producerId } = (await c.ok('produce', {
      transportId: t.transportId,
      kind: 'video',
      source: 'camera',
      rtpParameters: {
        codecs: [{ mimeType: 'video/H264', payloadType: 102, clockRate: 90000, parameters: { 'packetization-mode': 1, 'profile-level-id': '42e01f' } }],
        encodings: [{ ssrc: 0x7000 }, { ssrc: 0x7001 }, { ssrc: 0x7002 }],
      },
    })) as { producerId: string };
    assert.equal(serverProducer(producerId)!.type, 'simulcast');
    // Transports are bounded whatever their kind.
    for (let i = 0; i < 3; i++) await c.ok('createPlainTransport', { direction: 'recv' });
    await c.refused('createPlainTransport', { direction: 'recv' }, 'bad_request');
    c.close();
  });

  test('bad input to the new requests is answered, never crashes the node', async () => {
    const s = sites[4]!;
    const bad: Array<[string, unknown]> = [
      ['consume', { producerId: chair.camera, layer: 3 }],
      ['consume', { producerId: chair.camera, layer: -1 }],
      ['setConsumerLayer', { consumerId: 'x', layer: 1 }],
      ['closeConsumer', {}],
      ['siteProducers', { peerIds: Array.from({ length: 51 }, (_, i) => `p${i}`) }],
      ['siteProducers', { peerIds: ['x'.repeat(65)] }],
      ['warm', { producerIds: ['not-a-uuid'] }],
      ['createPlainTransport', { direction: 'sideways' }],
      ['connectPlainTransport', { transportId: crypto.randomUUID(), ip: '127.0.0.1', port: 0 }],
      ['connectPlainTransport', { transportId: crypto.randomUUID(), ip: '127.0.0.1', port: 70000 }],
      ['chairCommand', { action: 'giveFloor' }],
      ['chairCommand', { action: 'setDais', peerIds: 'all' }],
    ];
    for (const [method, data] of bad) await s.refused(method, data, 'bad_request');
    await s.refused('closeConsumer', { consumerId: crypto.randomUUID() }, 'not_found');
    await s.refused('connectPlainTransport', { transportId: crypto.randomUUID(), ip: '127.0.0.1', port: 5000 }, 'not_found');
    await chair.refused('chairCommand', { action: 'giveFloor', peerId: 'nobody' }, 'not_found');
    // Still serving.
    await s.ok('raiseHand', { raised: false });
  });

  test('metrics: consumers by kind, notifications by method, joins', async () => {
    const text = await env.node.metrics.registry.metrics();
    assert.match(text, /sfu_consumers\{kind="video"\} [1-9]/);
    assert.match(text, /sfu_notifications_total\{method="stage"\} [1-9]/);
    assert.match(text, /sfu_joins_total [1-9]/);
    assert.match(text, /sfu_pipe_subscriptions 0/);
    assert.doesNotMatch(text, /sfu_notifications_total\{method="peerJoined"\}/);
  });
});

describe('an open meeting is unchanged: everyone sees everyone', { timeout: 60_000 }, () => {
  let env: Awaited<ReturnType<typeof startNode>>;
  const clients: Client[] = [];
  before(async () => {
    env = await startNode(false);
  });
  after(async () => {
    for (const c of clients) c.close();
    await env?.close();
  });

  test('roster notifications, full join answers, no stage; plain RTP refused when off', async () => {
    const a = await Client.join(env.url, { userId: 1, layout: undefined });
    clients.push(a);
    await a.refused('createPlainTransport', { direction: 'send' }, 'forbidden');
    const b = await Client.join(env.url, { userId: 2, layout: 'open' });
    clients.push(b);
    assert.equal(b.answer.layout, 'open');
    assert.deepEqual(b.answer.peers.map((p) => p.peerId), [a.peerId]);
    await until('peerJoined at a', () => a.count('peerJoined') === 1);
    const c = await Client.join(env.url, { userId: 3, layout: undefined });
    clients.push(c);
    await until('peerJoined of c', () => a.count('peerJoined') === 2 && b.count('peerJoined') === 1);
    assert.equal(c.answer.peers.length, 2);
    assert.equal(c.answer.counts.joined, 3);
    assert.equal(c.state.selfMuted, false, 'open rooms do not mute on join');
    c.close();
    await until('peerLeft', () => a.count('peerLeft') === 1 && b.count('peerLeft') === 1);
    assert.equal(a.count('stage') + a.count('counts'), 0, 'no venue notifications in an open room');
    await a.refused('chairCommand', { action: 'giveFloor', peerId: b.peerId }, 'forbidden');
  });

  test('a venue token turns the room into a venue for good: pages switch to the stage', async () => {
    const [a, b] = clients as [Client, Client];
    // b speaks freely in the open room (its microphone over plain RTP, as a gateway would bring it).
    const room = env.node.rooms.get(ROOM)!;
    const mic = await room.router.createPlainTransport({ listenInfo: { protocol: 'udp', ip: '127.0.0.1' }, rtcpMux: true, comedia: true });
    const producer = await mic.produce({ kind: 'audio', rtpParameters: { codecs: [{ mimeType: 'audio/opus', payloadType: 100, clockRate: 48000, channels: 2 }], encodings: [{ ssrc: 0x6000 }] } });
    await room.peers.get(b.peerId)!.adoptProducer(producer, 'microphone');
    assert.equal(producer.paused, false);
    const v = await Client.join(env.url, { userId: 4, layout: 'venue' });
    clients.push(v);
    assert.equal(v.answer.layout, 'venue');
    assert.deepEqual(v.answer.peers, [], 'no chair yet: an empty stage');
    await until('stage at a', () => a.count('stage') === 1);
    assert.equal(a.state.layout, 'venue');
    assert.equal(a.state.selfMuted, true, 'sites are muted in a venue');
    await until("b's microphone held by the node", () => producer.paused);
    const before = b.count('peerJoined');
    const o = await Client.join(env.url, { userId: 5, layout: 'open' });
    clients.push(o);
    assert.equal(o.answer.layout, 'venue', 'sticky');
    await wait(100);
    assert.equal(b.count('peerJoined'), before, 'no roster notifications any more');
  });
});


/** A 3-layer H.264 simulcast camera over plain RTP that honours layerDemand and sends Sender Reports per layer. */
class SimulcastCamera {
  readonly socket = dgram.createSocket('udp4');
  readonly ssrcs: [number, number, number];
  maxLayer = 2;
  readonly #seq = [0, 0, 0];
  readonly #sent = [0, 0, 0];
  #frame = 0;
  readonly #timers: NodeJS.Timeout[] = [];
  constructor(
    ssrcBase: number,
    readonly to: { ip: string; port: number },
  ) {
    this.ssrcs = [ssrcBase, ssrcBase + 1, ssrcBase + 2];
    this.#timers.push(setInterval(() => this.#sendFrame(), 100));
    this.#timers.push(setInterval(() => this.#sendReports(), 500));
  }
  #ts(): number {
    return (this.#frame * 9000) >>> 0;
  }
  #sendFrame(): void {
    this.#frame++;
    const key = this.#frame % 5 === 0;
    for (let layer = 0; layer <= Math.max(0, this.maxLayer); layer++) {
      const pkt = Buffer.alloc(200 + layer * 300);
      pkt[0] = 0x80;
      pkt[1] = 0x80 | 102;
      pkt.writeUInt16BE(this.#seq[layer]!++ & 0xffff, 2);
      pkt.writeUInt32BE(this.#ts(), 4);
      pkt.writeUInt32BE(this.ssrcs[layer]!, 8);
      pkt[12] = key ? 0x67 : 0x41; // SPS (a keyframe for mediasoup) or a non-IDR slice
      pkt[13] = 0x5a;
      pkt[14] = layer;
      this.#sent[layer]!++;
      this.socket.send(pkt, this.to.port, this.to.ip);
    }
  }
  #sendReports(): void {
    const now = Date.now() / 1000 + 2208988800;
    for (let layer = 0; layer <= Math.max(0, this.maxLayer); layer++) {
      const sr = Buffer.alloc(28);
      sr[0] = 0x80;
      sr[1] = 200;
      sr.writeUInt16BE(6, 2);
      sr.writeUInt32BE(this.ssrcs[layer]!, 4);
      sr.writeUInt32BE(Math.floor(now) >>> 0, 8);
      sr.writeUInt32BE(Math.floor((now % 1) * 2 ** 32) >>> 0, 12);
      sr.writeUInt32BE(this.#ts(), 16);
      sr.writeUInt32BE(this.#sent[layer]!, 20);
      sr.writeUInt32BE(this.#sent[layer]! * 300, 24);
      this.socket.send(sr, this.to.port, this.to.ip);
    }
  }
  close(): void {
    for (const t of this.#timers) clearInterval(t);
    this.socket.close();
  }
}

describe('simulcast: demand starts layers, and the first consumer moves up to them', { timeout: 60_000 }, () => {
  let env: Awaited<ReturnType<typeof startNode>>;
  let camera: SimulcastCamera | undefined;
  const clients: Client[] = [];
  before(async () => {
    env = await startNode(true);
  });
  after(async () => {
    camera?.close();
    for (const c of clients) c.close();
    await env?.close();
  });

  test('nobody watches: layer 0 only; the chair asks layer 2: the publisher is told, and the chair gets layer 2', async () => {
    const chair = await Client.join(env.url, { userId: 1, role: 'chair' });
    const site = await Client.join(env.url, { userId: 2 });
    clients.push(chair, site);
    const send = (await site.ok('createPlainTransport', { direction: 'send' })) as { transportId: string; ip: string; port: number };
    camera = new SimulcastCamera(0x4000, send);
    const { producerId } = (await site.ok('produce', {
      transportId: send.transportId,
      kind: 'video',
      source: 'camera',
      rtpParameters: {
        codecs: [{ mimeType: 'video/H264', payloadType: 102, clockRate: 90000, parameters: { 'packetization-mode': 1, 'profile-level-id': '42e01f' } }],
        encodings: camera.ssrcs.map((ssrc) => ({ ssrc })),
      },
    })) as { producerId: string };
    site.ws.on('message', (d) => {
      const m = JSON.parse(String(d)) as Msg;
      if (m.method === 'layerDemand') camera!.maxLayer = (m.data as { maxSpatialLayer: number }).maxSpatialLayer;
    });
    await until('demand -1', () => site.last<{ maxSpatialLayer: number }>('layerDemand')?.maxSpatialLayer === -1);
    await wait(2500); // layer 0 alone for a while: the first consumer takes it as its timestamp reference
    const sink = dgram.createSocket('udp4');
    await new Promise<void>((r) => sink.bind(0, '127.0.0.1', r));
    const byLayer = [0, 0, 0];
    let last = -1;
    sink.on('message', (msg) => {
      if (msg[1]! >= 192 && msg[1]! <= 223) return; // RTCP
      let off = 12 + 4 * (msg[0]! & 0x0f);
      if (msg[0]! & 0x10) off += 4 + 4 * msg.readUInt16BE(off + 2);
      if (msg.length > off + 2 && msg[off + 1] === 0x5a) {
        byLayer[msg[off + 2]!]!++;
        last = msg[off + 2]!;
      }
    });
    try {
      const recv = (await chair.ok('createPlainTransport', { direction: 'recv' })) as { transportId: string };
      await chair.ok('connectPlainTransport', { transportId: recv.transportId, ip: '127.0.0.1', port: (sink.address() as AddressInfo).port });
      const { consumerId } = (await chair.ok('consume', { producerId, layer: 2 })) as { consumerId: string };
      await chair.ok('resumeConsumer', { consumerId });
      await until('demand 2 at the publisher', () => site.last<{ maxSpatialLayer: number }>('layerDemand')?.maxSpatialLayer === 2);
      await until(() => `layer 2 at the chair (packets by layer ${JSON.stringify(byLayer)})`, () => last === 2, 10_000);
      await chair.ok('setConsumerLayer', { consumerId, layer: 0 });
      await until('demand 0 at the publisher', () => site.last<{ maxSpatialLayer: number }>('layerDemand')?.maxSpatialLayer === 0);
      await until(() => `back to layer 0 (packets by layer ${JSON.stringify(byLayer)})`, () => last === 0, 5000);
    } finally {
      sink.close();
    }
  });
});

describe('a venue across two nodes: the stage crosses the cascade, the chair warms remote sites', { timeout: 90_000 }, () => {
  let nodes: TreeNode[];
  let city: TreeNode, town: TreeNode;
  let chair: Client;
  const sites: Client[] = [];
  const subscriptions = (n: TreeNode) => n.cascadeRoom(ROOM)?.subscriptions.size ?? 0;

  before(async () => {
    nodes = await startChain(['city', 'town'], { admission: 'open', plainRtp: true, lingerMs: 200, countIntervalMs: 200 });
    [city, town] = nodes as [TreeNode, TreeNode];
    chair = await Client.join(city.wsUrl, { userId: 1, role: 'chair' });
    await chair.publish(0x1000);
    for (let i = 0; i < 4; i++) {
      const s = await Client.join(town.wsUrl, { userId: 10 + i });
      await s.publish(0x2000 + i * 16);
      sites.push(s);
    }
  });

  after(async () => {
    for (const c of [chair, ...sites]) c?.close();
    for (const n of nodes ?? []) await n.stop();
  });

  test('sites on the child node watch the chair from the parent, and nothing else', async () => {
    const s = sites[0]!;
    await until('the chair on the stage at the town', () => stageIdsOf(s).has(chair.camera) && stageIdsOf(s).has(chair.mic));
    await s.ok('createPlainTransport', { direction: 'recv' });
    await s.ok('consume', { producerId: chair.camera, layer: 1 });
    await s.refused('consume', { producerId: sites[1]!.camera }, 'forbidden');
    await until('the conference total at the sites', () => s.last<{ joined: number }>('counts')?.joined === 5, 5000);
    assert.equal(s.count('peerJoined') + s.count('newProducer'), 0);
    // The town's demand for the chair's camera went up the tree to the chair's page.
    await until('layerDemand 1 at the chair', () => chair.notes.some((n) => n.method === 'layerDemand' && (n.data as { producerId: string; maxSpatialLayer: number }).producerId === chair.camera && (n.data as { maxSpatialLayer: number }).maxSpatialLayer === 1));
  });

  test('the floor given at the parent moves a child site onto every stage and unmutes it on its own node', async () => {
    const floor = sites[2]!;
    const townProducer = (id: string) => town.node.rooms.get(ROOM)?.localProducer(id)?.producer;
    assert.equal(townProducer(floor.mic)!.paused, true, 'joined muted');
    await until('the site known at the city', () => city.node.rooms.get(ROOM)?.hasPeer(floor.peerId) === true);
    await chair.ok('chairCommand', { action: 'giveFloor', peerId: floor.peerId });
    await until('floor on the other sites\u2019 stage', () => stageIdsOf(sites[0]!).has(floor.camera) && stageIdsOf(sites[3]!).has(floor.mic));
    await until('floor on the chair\u2019s stage', () => stageIdsOf(chair).has(floor.camera));
    await until('the floor unmuted at the town', () => townProducer(floor.mic)!.paused === false);
    assert.equal(townProducer(sites[0]!.mic)!.paused, true);
    await chair.ok('chairCommand', { action: 'giveFloor', peerId: null });
    await until('floor off the stage', () => !stageIdsOf(sites[0]!).has(floor.camera));
    await until('muted again', () => townProducer(floor.mic)!.paused === true);
  });

  test('the chair lists remote sites, warms their cameras (piped in) and lets go', async () => {
    const ids = sites.map((s) => s.peerId);
    const { sites: listed } = (await chair.ok('siteProducers', { peerIds: ids })) as { sites: Array<{ peerId: string; producers: ProducerInfo[] }> };
    assert.equal(listed.length, 4);
    assert.deepEqual(new Set(listed[1]!.producers.map((p) => p.producerId)), new Set([sites[1]!.camera, sites[1]!.mic]));
    const before = subscriptions(city);
    const { warmed } = (await chair.ok('warm', { producerIds: sites.slice(0, 3).map((s) => s.camera) })) as { warmed: number };
    assert.equal(warmed, 3);
    assert.equal(subscriptions(city), before + 3, 'three cameras piped up to the city');
    // Replacing the set keeps what both name, lets go of the rest.
    const again = (await chair.ok('warm', { producerIds: [sites[0]!.camera, sites[3]!.camera] })) as { warmed: number };
    assert.equal(again.warmed, 2);
    await until('two warm pipes left', () => subscriptions(city) === before + 2, 3000);
    // Consuming a warmed camera uses the pipe that is already there.
    await chair.ok('createPlainTransport', { direction: 'recv' });
    const { consumerId } = (await chair.ok('consume', { producerId: sites[0]!.camera, layer: 0 })) as { consumerId: string };
    assert.equal(subscriptions(city), before + 2);
    await chair.ok('warm', { producerIds: [] });
    await chair.ok('closeConsumer', { consumerId });
    await until('pipes released', () => subscriptions(city) === before, 3000);
  });
});

function stageIdsOf(c: Client): Set<string> {
  return new Set(c.stage.producers.map((p) => p.producerId));
}

describe('rotation is bounded: at most 60 video streams for one rotating page', { timeout: 90_000 }, () => {
  let env: Awaited<ReturnType<typeof startNode>>;
  const clients: Client[] = [];
  before(async () => {
    env = await startNode(true);
  });
  after(async () => {
    for (const c of clients) c.close();
    await env?.close();
  });

  test('the 61st video consume is refused until one closes', async () => {
    const cameras: string[] = [];
    const publishers = await Promise.all(Array.from({ length: 61 }, (_, i) => Client.join(env.url, { userId: 100 + i })));
    clients.push(...publishers);
    await Promise.all(
      publishers.map(async (p, i) => {
        const t = (await p.ok('createPlainTransport', { direction: 'send' })) as { transportId: string };
        const { producerId } = (await p.ok('produce', {
          transportId: t.transportId,
          kind: 'video',
          source: 'camera',
          rtpParameters: { codecs: [{ mimeType: 'video/VP8', payloadType: 101, clockRate: 90000 }], encodings: [{ ssrc: 0x3000 + i }] },
        })) as { producerId: string };
        cameras[i] = producerId;
      }),
    );
    const watcher = await Client.join(env.url, { userId: 1, role: 'viewer', rotate: true });
    clients.push(watcher);
    await watcher.ok('createPlainTransport', { direction: 'recv' });
    for (const id of cameras.slice(0, 60)) await watcher.ok('consume', { producerId: id, layer: 0 });
    await watcher.refused('consume', { producerId: cameras[60]! }, 'busy');
    const first = [...env.node.rooms.get(ROOM)!.peers.get(watcher.peerId)!.consumers.values()][0]!;
    await watcher.ok('closeConsumer', { consumerId: first.id });
    await watcher.ok('consume', { producerId: cameras[60]!, layer: 0 });
  });
});
