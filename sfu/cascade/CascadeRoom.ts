import type { types } from 'mediasoup';
import type { Logger } from '../../infra/logger.ts';
import type { LayerDemand, PeerInfo, ProducerInfo } from '../protocol.ts';
import { newer, type ConferenceDelta } from '../ConferenceControl.ts';
import type { LogThrottle } from '../LogThrottle.ts';
import type { RemoteDirectory, Room } from '../Room.ts';
import type { CatalogBudget } from './CatalogBudget.ts';
import { Coalescer } from './Coalescer.ts';
import type { Link } from './Link.ts';
import { CATALOG_CHUNK, CascadeError, type NotificationData, type NotificationMethod, type PipeInfo, type RequestData, type ResponseData } from './protocol.ts';
import { RoomLink } from './RoomLink.ts';
import { Subscription } from './Subscription.ts';

/** Where to send one link's media for one room: the neighbour's pipe, or a relay in between. */
export type PipeRoute = (hop: { room: string; linkId: string; local: PipeInfo; remote: PipeInfo }) => Promise<{ ip: string; port: number }> | { ip: string; port: number };

export interface CascadeRoomOptions {
  /** The parent link as it is now (it changes on every reconnection). */
  currentParent: () => Link | undefined;
  pipeRoute: PipeRoute | undefined;
  pipeListenIp: string;
  pipeAnnouncedAddress: string | undefined;
  unsubscribeLingerMs: number;
  logger: Logger;
  /** What a child said and was not believed: logged within bounds, node-wide. */
  distrust: LogThrottle;
  /** Node-wide bounds on what neighbours make this node remember. */
  budget: CatalogBudget;
  /** This node's uplink capacity (kbit/s): video to and from the parent crosses it single-layer. */
  uplinkKbps: number | undefined;
  /** Least time between two `count`/`total` messages on a link (default 1 s). */
  countIntervalMs?: number;
  /** Least time between two `demand` messages for one producer (default 250 ms). */
  demandIntervalMs?: number;
  /** How often a capped link's layers are re-evaluated (default 2 s). */
  capacityIntervalMs?: number;
}

interface Remote<T> {
  info: T;
  /** The link it was learnt from, i.e. the direction of its origin. */
  via: string;
}

type RoomScoped = { room: string };
type Forwardable = Exclude<NotificationMethod, 'closeRoom' | 'roomClosed' | 'unsubscribe'>;
type Snapshot = { peers: PeerInfo[]; producers: ProducerInfo[] };

/** Where a local peer's or producer's origin is, for the routing rules below. */
const LOCAL = 'local';
/** Capped links: share of the capacity media may use, and what one audio stream is reckoned at. */
const CAP_HEADROOM = 0.85;
const AUDIO_KBPS = 48;

/**
 * One conference as seen by one node of the tree: its own peers/producers (mirrored from the local
 * Room) and the remote ones, each with the link it came from.
 *
 * Catalog routing. Towards the PARENT everything flows (local and from below), so the root knows every
 * site. Towards a CHILD: in an `open` room everything not from that child (flooding, as small meetings
 * need); in a `venue` room only the stage (`room.stage()`), reconciled per child link whenever the stage
 * or the catalog changes (what the child was told vs what it should know: adds and removes).
 * Media does not flood: a producer is piped over a link only when the node beyond subscribes, towards
 * its origin (the `via` of its entry).
 * Counts: each node sends its subtree's site count up (`count`); the root (no parent in this room) sums
 * them and the total comes down (`total`), each coalesced to ≤ 1 message per second per link.
 * Demand: for each remote video producer piped in here, the highest layer anyone here or beyond wants
 * (`room.demand()`) goes towards the origin (`demand`); the origin's Room tells the publisher.
 */
export class CascadeRoom implements RemoteDirectory {
  readonly room: Room;
  readonly #options: CascadeRoomOptions;
  readonly #log: Logger;
  readonly #peers = new Map<string, Remote<PeerInfo>>();
  readonly #producers = new Map<string, Remote<ProducerInfo>>();
  /** Remote producers by their peer (a peer's removal takes its producers with it). */
  readonly #byPeer = new Map<string, Set<string>>();
  /** This node's own peers and producers (ingests included), as the Room announced them. */
  readonly #localPeers = new Map<string, PeerInfo>();
  readonly #localProducers = new Map<string, ProducerInfo>();
  readonly #links = new Map<string, RoomLink>();
  readonly #subs = new Map<string, Subscription>();
  /** Verified join tokens of remote chair peers (learnt from children), passed on towards the parent. */
  readonly #proofs = new Map<string, string>();
  /** Subtree site counts the children reported, and the conference total the parent last sent. */
  readonly #childCounts = new Map<string, number>();
  #parentTotal: number | undefined;
  /** Capped links: the last byte counters of each single-layer stream's producer, to measure its layers. */
  readonly #rateSamples = new Map<string, { producer: types.Producer; at: number; bytes: Map<number, number>; rates: Array<number | undefined> }>();
  #attachingParent = false;
  #reconcileScheduled = false;
  #closed = false;

  constructor(room: Room, options: CascadeRoomOptions) {
    this.room = room;
    this.#options = options;
    this.#log = options.logger.child({ room: room.id });
    room.remote = this;
    for (const p of room.localPeerInfos()) this.#localPeers.set(p.peerId, p);
    for (const p of room.localProducerInfos()) this.#localProducers.set(p.producerId, p);
    room.on('localpeerjoined', (peer) => {
      this.#localPeers.set(peer.peerId, peer);
      this.#announcePeer(peer, LOCAL);
      this.#updateCounts();
    });
    room.on('localpeerleft', (peerId) => {
      this.#localPeers.delete(peerId);
      this.#retractPeer(peerId, LOCAL);
      this.#updateCounts();
    });
    room.on('localproduceradded', (producer) => {
      this.#localProducers.set(producer.producerId, producer);
      this.#announceProducer(producer, LOCAL);
    });
    room.on('localproducerclosed', (producerId) => {
      this.#localProducers.delete(producerId);
      this.#retractProducer(producerId, LOCAL);
    });
    room.on('localproducerpaused', (producerId, paused) => {
      const info = this.#localProducers.get(producerId);
      if (info) this.#localProducers.set(producerId, { ...info, paused });
      this.#announcePause(producerId, paused, LOCAL);
    });
    // Chair controls and hands, made here or merged from a neighbour: on to every other link.
    room.control.on('changed', (delta, from) => this.#flood('conference', { room: room.id, ...delta }, from));
    room.on('stagechanged', () => this.#reconcileChildren());
    room.on('layoutchanged', () => {
      // Neighbours that attached while the room was open hear it now (each link at most once: venue is sticky).
      for (const rl of this.#links.values()) if (!rl.link.channel.closed && rl.layoutFrom !== true) rl.link.channel.notify('layout', { room: room.id, layout: 'venue' });
      this.#reconcileChildren();
    });
    room.on('demandchanged', (producerId) => this.#subs.get(producerId)?.pushDemand());
  }

  get links(): ReadonlyMap<string, RoomLink> {
    return this.#links;
  }

  get subscriptions(): ReadonlyMap<string, Subscription> {
    return this.#subs;
  }

  /** Sites at and below this node (this node's own, and what its children reported). */
  get subtreeSites(): number {
    let n = this.room.localSiteCount();
    for (const c of this.#childCounts.values()) n += c;
    return n;
  }

  // --- RemoteDirectory (what the local Room and its peers see) ---

  peers(): PeerInfo[] {
    return [...this.#peers.values()].map((e) => e.info);
  }

  producers(): ProducerInfo[] {
    return [...this.#producers.values()].map((e) => e.info);
  }

  producer(producerId: string): ProducerInfo | undefined {
    return this.#producers.get(producerId)?.info;
  }

  /** Remote producers piped into this node now (sfu_pipe_subscriptions). */
  subscriptionCount(): number {
    return this.#subs.size;
  }

  peer(peerId: string): PeerInfo | undefined {
    return this.#peers.get(peerId)?.info;
  }

  /** See Subscription.repairRttMs: undefined for local producers and unmeasured pipes. */
  repairRttMs(producerId: string): number | undefined {
    return this.#subs.get(producerId)?.repairRttMs;
  }

  /** Makes a producer of the conference available on this router and holds it there. */
  async acquire(producerId: string): Promise<() => void> {
    if (this.room.localProducer(producerId)) return () => undefined;
    const entry = this.#producers.get(producerId);
    if (!entry) throw new CascadeError('not_found', 'no such producer in this conference');
    let sub = this.#subs.get(producerId);
    if (!sub || sub.closed) {
      const via = this.#links.get(entry.via);
      if (!via) throw new CascadeError('not_found', 'the link towards that producer is down');
      sub = new Subscription({
        roomId: this.room.id,
        producerId,
        via,
        lingerMs: this.#options.unsubscribeLingerMs,
        keyFrameRequestDelayMs: this.room.keyFrameRequestDelayMs,
        paused: () => this.#producers.get(producerId)?.info.paused ?? false,
        ...(entry.info.kind === 'video' ? { demand: () => this.room.demand(producerId) } : {}),
        demandIntervalMs: this.#options.demandIntervalMs ?? 250,
        logger: this.#log,
        onClosed: (s) => {
          if (this.#subs.get(producerId) === s) this.#subs.delete(producerId);
        },
        onRepairRtt: (rttMs) => this.room.remoteRepairRtt(producerId, rttMs),
      });
      this.#subs.set(producerId, sub);
    }
    return sub.acquire();
  }

  // --- Attaching links ---

  /** Child side: joins the conference at the parent (called when the room opens or the link comes up). */
  async attachParent(link: Link): Promise<void> {
    if (this.#closed || this.#attachingParent || link.channel.closed) return;
    const existing = this.#links.get(link.id);
    if (existing?.link === link) return;
    if (existing) this.detach(link.id, false); // left over from a previous connection
    this.#attachingParent = true;
    let rl: RoomLink | undefined;
    let grant: string | undefined;
    const capacityKbps = this.#options.uplinkKbps;
    try {
      const router = this.room.router;
      const { pipeListenIp: ip, pipeAnnouncedAddress: announced } = this.#options;
      const transport = await RoomLink.createTransport(router, ip, announced);
      const plain = capacityKbps ? await RoomLink.createPlainTransport(router, ip, announced).catch((err: unknown) => (transport.close(), Promise.reject(err))) : undefined;
      if (this.#closed || link.channel.closed) {
        transport.close();
        plain?.close();
        return;
      }
      rl = new RoomLink(link, transport, () => undefined, plain && capacityKbps ? { transport: plain, capacityKbps } : undefined);
      // Snapshot and registration in one tick: later changes go out as notifications after the request.
      grant = this.room.grant;
      const snap = this.#snapshotUp();
      const [first, ...rest] = chunks(snap);
      const request: RequestData<'openRoom'> = {
        room: this.room.id,
        pipe: RoomLink.pipeInfo(transport, announced),
        ...(grant ? { grant } : {}),
        ...first!,
        conference: this.room.control.snapshot(),
        layout: this.room.layout,
        ...(plain && capacityKbps ? { capacityKbps, plain: RoomLink.pipeInfo(plain, announced) } : {}),
      };
      const chairProofs = this.#proofsFor(request.peers);
      if (Object.keys(chairProofs).length) request.chairProofs = chairProofs;
      this.#links.set(link.id, rl);
      const pending = link.channel.request('openRoom', request);
      // The rest of a large snapshot, applied by the parent in order after the openRoom.
      for (const c of rest) {
        const proofs = this.#proofsFor(c.peers);
        link.channel.notify('catalog', { room: this.room.id, ...c, ...(Object.keys(proofs).length ? { chairProofs: proofs } : {}) });
      }
      const answer = await pending;
      if (rl.closed) return;
      if (plain && !answer.plain) {
        this.#log.warn('parent did not take the capped link plain transport: video goes over the pipe');
        rl.dropPlain();
      }
      if (answer.layout === 'venue') {
        rl.layoutFrom = true;
        this.room.setLayout('venue');
      }
      this.#import(link.id, answer);
      rl.markImported();
      await rl.connect(await this.#route(link.id, request.pipe, answer.pipe), answer.pipe.srtp);
      if (plain && request.plain && answer.plain) await plain.connect({ ...(await this.#route(link.id, request.plain, answer.plain)), srtpParameters: answer.plain.srtp });
      if (rl.closed) return;
      if (rl.plain && answer.plain) this.#startCapacity(rl);
      rl.counter = this.#counter(rl);
      this.#updateCounts();
      this.#log.info({ link: link.id, peers: answer.peers.length, producers: answer.producers.length, sent: snap.peers.length + snap.producers.length, chunks: rest.length + 1 }, 'attached to parent');
    } catch (err) {
      this.#log.warn({ link: link.id, err: (err as Error).message }, 'attaching to parent failed');
      if (rl && this.#links.get(link.id) === rl) this.detach(link.id, false);
      rl?.markImported();
      if (err instanceof CascadeError && err.code === 'forbidden' && this.room.grant === grant) {
        // Refused for want of a grant: try again only when someone is admitted here with a token.
        this.room.once('granted', () => this.#attachCurrentParent());
      } else {
        // Retry while a parent link is up (e.g. the parent's room was closing at that moment).
        const t = setTimeout(() => this.#attachCurrentParent(), 1000);
        t.unref();
      }
    } finally {
      this.#attachingParent = false;
      // The link may have been replaced while we were busy with the old one.
      if (this.#options.currentParent() !== link) this.#attachCurrentParent();
    }
  }

  #attachCurrentParent(): void {
    const parent = this.#options.currentParent();
    if (parent && !parent.channel.closed && !this.#closed && this.#links.get(parent.id)?.link !== parent) void this.attachParent(parent);
  }

  /** Parent side: a child joins this conference. */
  async attachChild(link: Link, request: RequestData<'openRoom'>): Promise<ResponseData<'openRoom'>> {
    if (this.#closed) throw new CascadeError('closed', 'room closing');
    const release = this.room.retain();
    // A reconnecting child may open again without having closed: start afresh.
    if (this.#links.has(link.id)) this.detach(link.id, false);
    const { pipeListenIp: ip, pipeAnnouncedAddress: announced } = this.#options;
    let transport: types.PipeTransport | undefined;
    let plain: types.PlainTransport | undefined;
    const capped = request.capacityKbps && request.plain ? { capacityKbps: request.capacityKbps, remote: request.plain } : undefined;
    try {
      transport = await RoomLink.createTransport(this.room.router, ip, announced);
      const to = await this.#route(link.id, RoomLink.pipeInfo(transport, announced), request.pipe);
      await transport.connect({ ip: to.ip, port: to.port, srtpParameters: request.pipe.srtp });
      if (capped) {
        plain = await RoomLink.createPlainTransport(this.room.router, ip, announced);
        const pto = await this.#route(link.id, RoomLink.pipeInfo(plain, announced), capped.remote);
        await plain.connect({ ip: pto.ip, port: pto.port, srtpParameters: capped.remote.srtp });
      }
    } catch (err) {
      transport?.close();
      plain?.close();
      release();
      throw new CascadeError('media_error', `pipe setup failed: ${(err as Error).message}`);
    }
    if (this.#closed || link.channel.closed) {
      transport.close();
      plain?.close();
      release();
      throw new CascadeError('closed', 'room or link closed while attaching');
    }
    // The child's layout first: a venue child makes this room a venue, and the answer is then the stage only.
    if (request.layout === 'venue') this.room.setLayout('venue');
    const rl = new RoomLink(link, transport, release, plain && capped ? { transport: plain, capacityKbps: capped.capacityKbps } : undefined);
    rl.markImported();
    const snap = this.#snapshotDown(rl);
    const [first, ...rest] = chunks(snap);
    const answer: ResponseData<'openRoom'> = {
      pipe: RoomLink.pipeInfo(transport, announced),
      ...(plain ? { plain: RoomLink.pipeInfo(plain, announced) } : {}),
      ...first!,
      conference: this.room.control.snapshot(),
      layout: this.room.layout,
    };
    this.#links.set(link.id, rl);
    // The rest of a large snapshot: sent now, the child applies it after the answer (see onNotification).
    for (const c of rest) link.channel.notify('catalog', { room: this.room.id, ...c });
    this.#import(link.id, request, request.chairProofs);
    if (rl.plain) this.#startCapacity(rl);
    rl.counter = this.#counter(rl);
    this.#updateCounts();
    this.#log.info({ link: link.id, peers: request.peers.length, producers: request.producers.length, capped: rl.capacityKbps }, 'child attached');
    return answer;
  }

  /** A link left the conference (closed it, or went down): forget what came over it, close its pipe. */
  detach(linkId: string, notifyParent: boolean): void {
    const rl = this.#links.get(linkId);
    if (!rl) return;
    this.#links.delete(linkId);
    for (const [id, e] of this.#producers) if (e.via === linkId) this.#removeProducer(id);
    for (const [id, e] of this.#peers) if (e.via === linkId) this.#removePeer(id);
    if (notifyParent && rl.link.kind === 'parent' && !rl.link.channel.closed) rl.link.channel.notify('closeRoom', { room: this.room.id });
    rl.close();
    if (rl.link.kind === 'parent') this.#parentTotal = undefined;
    else this.#childCounts.delete(linkId);
    if (!this.#closed) this.#updateCounts();
  }

  /** The local room is gone (last local user left, worker died): tell the neighbours. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const rl of [...this.#links.values()]) {
      if (rl.link.kind === 'child' && !rl.link.channel.closed) rl.link.channel.notify('roomClosed', { room: this.room.id });
      this.detach(rl.link.id, true);
    }
    for (const s of [...this.#subs.values()]) s.close(false);
  }

  // --- Media requests from a neighbour ---

  /** Pipes a producer out over a link (idempotent: one consumer per producer per link). */
  async supply(linkId: string, producerId: string): Promise<ResponseData<'subscribe'>> {
    const rl = this.#links.get(linkId);
    if (!rl) throw new CascadeError('not_found', 'conference not attached on this link');
    if (this.#producers.get(producerId)?.via === linkId) throw new CascadeError('bad_request', 'that producer comes from your side');
    let pending = rl.outgoing.get(producerId);
    if (!pending) {
      pending = this.#pipeOut(rl, producerId);
      rl.outgoing.set(producerId, pending);
      const p = pending;
      p.catch(() => {
        if (rl.outgoing.get(producerId) === p) rl.outgoing.delete(producerId);
      });
    }
    const consumer = await pending;
    const single = rl.single.get(producerId) === consumer;
    const params = consumer.rtpParameters;
    // One stream as the subscriber sees it: no scalabilityMode, or its producer would take it for SVC layers.
    const rtpParameters = single ? { ...params, encodings: (params.encodings ?? []).map(({ ssrc, rtx }) => ({ ...(ssrc !== undefined ? { ssrc } : {}), ...(rtx ? { rtx } : {}) })) } : params;
    const repairMs = this.#subs.get(producerId)?.repairRttMs;
    return {
      kind: consumer.kind,
      rtpParameters: rtpParameters as ResponseData<'subscribe'>['rtpParameters'],
      paused: consumer.producerPaused,
      ...(single ? { single: true as const } : {}),
      ...(repairMs !== undefined ? { repairMs: Math.min(60_000, repairMs) } : {}),
    };
  }

  unsupply(linkId: string, producerId: string): void {
    const rl = this.#links.get(linkId);
    const pending = rl?.outgoing.get(producerId);
    if (!rl || !pending) return;
    rl.outgoing.delete(producerId);
    pending.then((c) => c.close(), () => undefined);
  }

  // --- Catalog changes from a neighbour ---

  async onNotification(linkId: string, method: Forwardable, data: NotificationData<Forwardable>): Promise<void> {
    const rl = this.#links.get(linkId);
    if (!rl) return; // not (or no longer) attached over that link
    // What the neighbour sent after its openRoom answer applies after that answer's snapshot.
    await rl.imported;
    if (this.#links.get(linkId) !== rl) return;
    switch (method) {
      case 'peerAdded': {
        const { peer, chairProof } = data as NotificationData<'peerAdded'>;
        return this.#addPeer(linkId, peer, chairProof);
      }
      case 'peerRemoved': {
        const { peerId } = data as NotificationData<'peerRemoved'>;
        if (this.#peers.get(peerId)?.via === linkId) this.#removePeer(peerId);
        return;
      }
      case 'producerAdded': {
        const { producer } = data as NotificationData<'producerAdded'>;
        return this.#addProducer(linkId, producer);
      }
      case 'producerRemoved': {
        const { producerId } = data as NotificationData<'producerRemoved'>;
        if (this.#producers.get(producerId)?.via === linkId) this.#removeProducer(producerId);
        return;
      }
      case 'producerPaused': {
        const { producerId, paused } = data as NotificationData<'producerPaused'>;
        const e = this.#producers.get(producerId);
        if (!e || e.via !== linkId) return;
        e.info = { ...e.info, paused };
        void this.#subs.get(producerId)?.setPaused(paused);
        this.room.remoteProducerPaused(producerId, paused);
        this.#announcePause(producerId, paused, linkId);
        return;
      }
      case 'conference': {
        const { room: _room, ...delta } = data as NotificationData<'conference'>;
        this.#mergeConference(linkId, delta);
        return;
      }
      case 'catalog': {
        const { peers, producers, chairProofs } = data as NotificationData<'catalog'>;
        this.#import(linkId, { peers, producers }, rl.link.kind === 'child' ? chairProofs : undefined);
        return;
      }
      case 'demand': {
        const { producerId, layer } = data as NotificationData<'demand'>;
        // Only for what we do send over that link: a neighbour cannot pin demand for anything else.
        if (!rl.outgoing.has(producerId)) return;
        rl.demand.set(producerId, layer);
        // A single-layer stream: its layer (and the demand passed on, at most what fits) is re-evaluated.
        if (rl.single.has(producerId)) void this.#evaluateCapacity(rl);
        else this.#applyLinkDemand(rl, producerId);
        return;
      }
      case 'layout': {
        rl.layoutFrom = true;
        this.room.setLayout('venue');
        return;
      }
      case 'count': {
        if (rl.link.kind !== 'child') return;
        this.#childCounts.set(linkId, (data as NotificationData<'count'>).sites);
        this.#updateCounts();
        return;
      }
      case 'total': {
        if (rl.link.kind !== 'parent') return;
        this.#parentTotal = (data as NotificationData<'total'>).sites;
        this.#updateCounts();
        return;
      }
    }
  }

  // --- internals: media ---

  async #route(linkId: string, local: PipeInfo, remote: PipeInfo): Promise<{ ip: string; port: number }> {
    const route = this.#options.pipeRoute;
    return route ? route({ room: this.room.id, linkId, local, remote }) : { ip: remote.ip, port: remote.port };
  }

  #kindOf(producerId: string): 'audio' | 'video' | undefined {
    return (this.#localProducers.get(producerId) ?? this.#producers.get(producerId)?.info)?.kind;
  }

  async #pipeOut(rl: RoomLink, producerId: string): Promise<types.Consumer> {
    const release = await this.acquire(producerId);
    if (rl.closed) {
      release();
      throw new CascadeError('closed', 'link closed');
    }
    const single = rl.plain !== undefined && this.#kindOf(producerId) === 'video';
    let consumer: types.Consumer;
    try {
      if (single) {
        // One layer over the capped link's plain transport; no bandwidth probing (it would eat the cap).
        consumer = await rl.plain!.consume({ producerId, rtpCapabilities: this.#capsWithoutBwe(), preferredLayers: { spatialLayer: 0 } });
        rl.single.set(producerId, consumer);
      } else {
        consumer = await rl.transport.consume({ producerId });
      }
    } catch (err) {
      release();
      throw new CascadeError('media_error', (err as Error).message);
    }
    consumer.observer.once('close', () => {
      const current = rl.outgoing.get(producerId);
      void current?.then((c) => {
        if (c === consumer) rl.outgoing.delete(producerId);
      }, () => undefined);
      if (rl.single.get(producerId) === consumer) rl.single.delete(producerId);
      if (![...this.#links.values()].some((l) => l.single.has(producerId))) this.#rateSamples.delete(producerId);
      // Nothing is sent over that link any more: what it wanted no longer counts.
      rl.demand.delete(producerId);
      this.room.setLinkDemand(producerId, rl.link.id, -1);
      release();
    });
    if (consumer.kind === 'video') {
      // Until the node beyond says what it wants: the top layer (what a pipe carries anyway).
      rl.demand.set(producerId, 2);
      if (single) await this.#evaluateCapacity(rl);
      else this.#applyLinkDemand(rl, producerId);
    }
    return consumer;
  }

  #capsWithoutBwe(): types.RtpCapabilities {
    const caps = this.room.router.rtpCapabilities;
    return {
      ...caps,
      headerExtensions: (caps.headerExtensions ?? []).filter((h) => !/transport-wide-cc|abs-send-time/.test(h.uri)),
      codecs: (caps.codecs ?? []).map((c) => ({ ...c, rtcpFeedback: (c.rtcpFeedback ?? []).filter((f) => f.type !== 'transport-cc' && f.type !== 'goog-remb') })),
    };
  }

  /** What the node beyond a link wants of a producer, as this node's Room reckons demand. */
  #applyLinkDemand(rl: RoomLink, producerId: string, fit?: number): void {
    const d = rl.demand.get(producerId);
    if (d === undefined) return;
    // On a capped link nobody beyond can get more than fits: do not make the publisher encode it.
    const effective = d >= 0 && fit !== undefined ? Math.min(d, fit) : d;
    this.room.setLinkDemand(producerId, rl.link.id, effective as LayerDemand);
  }

  #startCapacity(rl: RoomLink): void {
    clearInterval(rl.capTimer);
    rl.capTimer = setInterval(() => void this.#evaluateCapacity(rl), this.#options.capacityIntervalMs ?? 2000);
    rl.capTimer.unref();
  }

  /**
   * A capped link: each video stream gets min(demand beyond, what fits) where what fits is the highest
   * layer whose measured bitrate is within an equal share of 0.85 × capacity − 48 kbit/s per audio stream
   * (layer 0 if none fits).
   */
  async #evaluateCapacity(rl: RoomLink): Promise<void> {
    if (rl.closed || !rl.capacityKbps || rl.single.size === 0) return;
    let audio = 0;
    for (const id of rl.outgoing.keys()) if (this.#kindOf(id) === 'audio') audio++;
    const budgetBps = ((CAP_HEADROOM * rl.capacityKbps - AUDIO_KBPS * audio) * 1000) / rl.single.size;
    for (const [producerId, consumer] of [...rl.single]) {
      if (consumer.closed) continue;
      const rates = await this.#layerRates(producerId);
      let fit = 0;
      for (let l = 0; l < rates.length; l++) {
        const r = rates[l];
        if (r === undefined) continue; // not sent now: skipping it cannot overshoot
        if (r > budgetBps) break;
        fit = l;
      }
      const d = rl.demand.get(producerId);
      const layer = Math.max(0, Math.min(d === undefined ? 2 : Math.max(0, d), fit));
      if (!consumer.closed && consumer.preferredLayers?.spatialLayer !== layer) {
        await consumer.setPreferredLayers({ spatialLayer: layer }).catch(() => undefined);
        this.#log.debug({ link: rl.link.id, producer: producerId, layer, budgetBps, rates }, "capped link layer");
      }
      this.#applyLinkDemand(rl, producerId, fit);
    }
  }

  /**
   * Bitrate (bit/s) of each spatial layer of a producer on this router, lowest first, measured from
   * its byte counters between two evaluations (≥ 1 s apart); undefined for a layer not being received.
   * Until there are two samples (a pipe producer just created): the encodings' maxBitrate, and an upper
   * layer without one is taken not to fit.
   */
  async #layerRates(producerId: string): Promise<Array<number | undefined>> {
    const producer = this.room.localProducer(producerId)?.producer ?? this.#subs.get(producerId)?.producer;
    if (!producer || producer.closed) return [];
    const encodings = producer.rtpParameters.encodings ?? [];
    const now = performance.now();
    const prev = this.#rateSamples.get(producerId);
    if (prev && prev.producer === producer && now - prev.at < 1000) return prev.rates;
    const stats = await producer.getStats().catch(() => []);
    const bytes = new Map(stats.map((x) => [x.ssrc, x.byteCount]));
    let rates: Array<number | undefined>;
    if (prev && prev.producer === producer) {
      rates = encodings.map((e) => {
        const a = e.ssrc !== undefined ? prev.bytes.get(e.ssrc) : undefined;
        const b = e.ssrc !== undefined ? bytes.get(e.ssrc) : undefined;
        if (a === undefined || b === undefined || b <= a) return undefined;
        return ((b - a) * 8000) / (now - prev.at);
      });
    } else {
      rates = encodings.map((e, i) => e.maxBitrate ?? (i === 0 ? 0 : Infinity));
    }
    this.#rateSamples.set(producerId, { producer, at: now, bytes, rates });
    return rates;
  }

  // --- internals: counts ---

  #counter(rl: RoomLink): Coalescer<number> {
    const method = rl.link.kind === 'parent' ? 'count' : 'total';
    return new Coalescer<number>(this.#options.countIntervalMs ?? 1000, (sites) => {
      if (!rl.closed && !rl.link.channel.closed) rl.link.channel.notify(method, { room: this.room.id, sites });
    });
  }

  /** Our subtree's count goes up; the total (ours if we are the root here) goes to the Room and down. */
  #updateCounts(): void {
    if (this.#closed || this.room.closed) return;
    const subtree = this.subtreeSites;
    const parent = this.#links.get('parent');
    const attachedUp = parent?.counter !== undefined;
    if (attachedUp) parent.counter!.set(subtree);
    const total = attachedUp ? (this.#parentTotal ?? subtree) : subtree;
    this.room.setJoinedTotal(total);
    for (const rl of this.#links.values()) if (rl.link.kind === 'child') rl.counter?.set(total);
  }

  // --- internals: catalog ---

  /** Everything this node knows but what came from above: towards the parent. Chairs first (their proofs ride in openRoom). */
  #snapshotUp(): Snapshot {
    const peers = [...this.#localPeers.values(), ...[...this.#peers.values()].filter((e) => e.via !== 'parent').map((e) => e.info)];
    peers.sort((a, b) => Number(b.role === 'chair') - Number(a.role === 'chair'));
    const producers = [...this.#localProducers.values(), ...[...this.#producers.values()].filter((e) => e.via !== 'parent').map((e) => e.info)];
    return { peers, producers };
  }

  /** What a child should know now, recorded as told: the stage (venue) or everything not from it (open). */
  #snapshotDown(rl: RoomLink): Snapshot {
    const want = this.#desired(rl);
    rl.toldPeers.clear();
    rl.toldProducers.clear();
    for (const id of want.peers.keys()) rl.toldPeers.add(id);
    for (const id of want.producers.keys()) rl.toldProducers.add(id);
    return { peers: [...want.peers.values()], producers: [...want.producers.values()] };
  }

  #viaOf(kind: 'peer' | 'producer', id: string): string | undefined {
    if (kind === 'peer') return this.#localPeers.has(id) ? LOCAL : this.#peers.get(id)?.via;
    return this.#localProducers.has(id) ? LOCAL : this.#producers.get(id)?.via;
  }

  #peerInfo(id: string): PeerInfo | undefined {
    return this.#localPeers.get(id) ?? this.#peers.get(id)?.info;
  }

  #producerInfo(id: string): ProducerInfo | undefined {
    return this.#localProducers.get(id) ?? this.#producers.get(id)?.info;
  }

  /** Peers and producers a child link should know of now (never what came from that child). */
  #desired(rl: RoomLink): { peers: Map<string, PeerInfo>; producers: Map<string, ProducerInfo> } {
    const peers = new Map<string, PeerInfo>();
    const producers = new Map<string, ProducerInfo>();
    const from = rl.link.id;
    if (this.room.layout !== 'venue') {
      for (const p of this.#localPeers.values()) peers.set(p.peerId, p);
      for (const e of this.#peers.values()) if (e.via !== from) peers.set(e.info.peerId, e.info);
      for (const p of this.#localProducers.values()) producers.set(p.producerId, p);
      for (const e of this.#producers.values()) if (e.via !== from) producers.set(e.info.producerId, e.info);
      return { peers, producers };
    }
    const stage = this.room.stage();
    for (const id of stage.producerIds) {
      const info = this.#producerInfo(id);
      if (!info || this.#viaOf('producer', id) === from) continue;
      producers.set(id, info);
    }
    // The stage's sites, and the owner of every stage producer (a producer is believed only after its peer).
    for (const id of [...stage.peerIds, ...[...producers.values()].map((p) => p.peerId)]) {
      const info = this.#peerInfo(id);
      if (!info || this.#viaOf('peer', id) === from) continue;
      peers.set(id, info);
    }
    return { peers, producers };
  }

  /** A catalog change in a venue room: the stage may follow; reconcile once this tick's changes are in. */
  #scheduleReconcile(): void {
    if (this.#reconcileScheduled || this.#closed) return;
    this.#reconcileScheduled = true;
    setImmediate(() => {
      this.#reconcileScheduled = false;
      this.#reconcileChildren();
    });
  }

  /** Venue rooms: brings every child's view in line with the stage (removes first, then adds). */
  #reconcileChildren(): void {
    if (this.#closed) return;
    for (const rl of this.#links.values()) if (rl.link.kind === 'child') this.#reconcile(rl);
  }

  #reconcile(rl: RoomLink): void {
    if (rl.closed || rl.link.channel.closed) return;
    const want = this.#desired(rl);
    const room = this.room.id;
    const ch = rl.link.channel;
    for (const id of [...rl.toldProducers]) {
      if (want.producers.has(id)) continue;
      rl.toldProducers.delete(id);
      ch.notify('producerRemoved', { room, producerId: id });
    }
    for (const id of [...rl.toldPeers]) {
      if (want.peers.has(id)) continue;
      rl.toldPeers.delete(id);
      ch.notify('peerRemoved', { room, peerId: id });
    }
    for (const [id, peer] of want.peers) {
      if (rl.toldPeers.has(id)) continue;
      rl.toldPeers.add(id);
      ch.notify('peerAdded', { room, peer });
    }
    for (const [id, producer] of want.producers) {
      if (rl.toldProducers.has(id)) continue;
      rl.toldProducers.add(id);
      ch.notify('producerAdded', { room, producer });
    }
  }

  /** A peer appeared (here or from `via`): up to the parent always, down to children by the room's rules. */
  #announcePeer(peer: PeerInfo, via: string, proof?: string): void {
    const parent = this.#links.get('parent');
    if (parent && via !== 'parent' && !parent.link.channel.closed) {
      const p = proof ?? (peer.role === 'chair' ? this.#proofOf(peer.peerId) : undefined);
      parent.link.channel.notify('peerAdded', { room: this.room.id, peer, ...(p ? { chairProof: p } : {}) });
    }
    this.#tellChildren(via, 'peer', peer.peerId);
  }

  #announceProducer(producer: ProducerInfo, via: string): void {
    const parent = this.#links.get('parent');
    if (parent && via !== 'parent' && !parent.link.channel.closed) parent.link.channel.notify('producerAdded', { room: this.room.id, producer });
    this.#tellChildren(via, 'producer', producer.producerId);
  }

  /** Open rooms: tells every child but `via`. Venue rooms: a reconciliation of the children, once per tick. */
  #tellChildren(via: string, kind: 'peer' | 'producer', id: string): void {
    if (this.room.layout === 'venue') return this.#scheduleReconcile();
    for (const rl of this.#links.values()) {
      if (rl.link.kind !== 'child' || rl.link.id === via || rl.link.channel.closed) continue;
      if (kind === 'peer') {
        const peer = this.#peerInfo(id);
        if (!peer || rl.toldPeers.has(id)) continue;
        rl.toldPeers.add(id);
        rl.link.channel.notify('peerAdded', { room: this.room.id, peer });
      } else {
        const producer = this.#producerInfo(id);
        if (!producer || rl.toldProducers.has(id)) continue;
        if (!rl.toldPeers.has(producer.peerId)) {
          const peer = this.#peerInfo(producer.peerId);
          if (!peer) continue;
          rl.toldPeers.add(peer.peerId);
          rl.link.channel.notify('peerAdded', { room: this.room.id, peer });
        }
        rl.toldProducers.add(id);
        rl.link.channel.notify('producerAdded', { room: this.room.id, producer });
      }
    }
  }

  #retractPeer(peerId: string, via: string): void {
    const parent = this.#links.get('parent');
    if (parent && via !== 'parent' && !parent.link.channel.closed) parent.link.channel.notify('peerRemoved', { room: this.room.id, peerId });
    for (const rl of this.#links.values()) {
      if (rl.link.kind !== 'child' || !rl.toldPeers.delete(peerId)) continue;
      // Its producers first (normally already retracted by their own removal).
      for (const id of [...rl.toldProducers]) {
        const p = this.#producerInfo(id);
        if (p && p.peerId !== peerId) continue;
        if (p) {
          rl.toldProducers.delete(id);
          if (!rl.link.channel.closed) rl.link.channel.notify('producerRemoved', { room: this.room.id, producerId: id });
        }
      }
      if (!rl.link.channel.closed) rl.link.channel.notify('peerRemoved', { room: this.room.id, peerId });
    }
    if (this.room.layout === 'venue') this.#scheduleReconcile();
  }

  #retractProducer(producerId: string, via: string): void {
    const parent = this.#links.get('parent');
    if (parent && via !== 'parent' && !parent.link.channel.closed) parent.link.channel.notify('producerRemoved', { room: this.room.id, producerId });
    for (const rl of this.#links.values()) {
      if (rl.link.kind !== 'child' || !rl.toldProducers.delete(producerId)) continue;
      if (!rl.link.channel.closed) rl.link.channel.notify('producerRemoved', { room: this.room.id, producerId });
    }
    if (this.room.layout === 'venue') this.#scheduleReconcile();
  }

  #announcePause(producerId: string, paused: boolean, via: string): void {
    const parent = this.#links.get('parent');
    if (parent && via !== 'parent' && !parent.link.channel.closed) parent.link.channel.notify('producerPaused', { room: this.room.id, producerId, paused });
    for (const rl of this.#links.values()) {
      if (rl.link.kind !== 'child' || !rl.toldProducers.has(producerId) || rl.link.channel.closed) continue;
      rl.link.channel.notify('producerPaused', { room: this.room.id, producerId, paused });
    }
  }

  #import(linkId: string, snap: { peers: PeerInfo[]; producers: ProducerInfo[]; conference?: NotificationData<'conference'> | Omit<NotificationData<'conference'>, 'room'> | undefined }, proofs?: Record<string, string>): void {
    for (const p of snap.peers) this.#addPeer(linkId, p, proofs?.[p.peerId]);
    for (const p of snap.producers) this.#addProducer(linkId, p);
    // After the catalog, so that a spotlight or broadcast names peers/producers pages already know.
    if (snap.conference) {
      const { control, hands } = snap.conference;
      this.#mergeConference(linkId, { ...(control ? { control } : {}), ...(hands ? { hands } : {}) });
    }
  }

  /**
   * What a neighbour may say about the conference state. State coming down from the parent is
   * accepted (the chair, or the meetings API, is at or above it). From a child, the chair's register
   * only if the chair's peer is beyond that child (the child announced it), and hands only of the
   * child's own sites (or any, if the chair is there: the chair lowers hands). Anything else a child
   * sends — end the meeting, broadcast, mute — is dropped.
   */
  #mergeConference(linkId: string, delta: ConferenceDelta): void {
    const rl = this.#links.get(linkId);
    if (!rl) return;
    if (rl.link.kind === 'parent') return this.room.control.merge(delta, linkId);
    let chairBeyond = false;
    for (const e of this.#peers.values()) if (e.via === linkId && e.info.role === 'chair') chairBeyond = true;
    const control = chairBeyond ? delta.control : undefined;
    const hands = delta.hands?.filter((h) => chairBeyond || this.#peers.get(h.peerId)?.via === linkId);
    // Only a write that would have won is worth a line (every attach carries the child's, usually older, state).
    if (delta.control && !control && newer(delta.control.stamp, this.room.control.state.stamp)) this.#options.distrust.warn({ link: linkId }, 'chair state from a child without the chair dropped');
    if (hands && delta.hands && hands.length < delta.hands.length) this.#options.distrust.warn({ link: linkId, dropped: delta.hands.length - hands.length }, 'hands of sites not beyond the child dropped');
    if (!control && !hands?.length) return;
    this.room.control.merge({ ...(control ? { control } : {}), ...(hands?.length ? { hands } : {}) }, linkId);
  }

  /** Join tokens of the chairs among `peers` (this node's own, or verified from below). */
  #proofsFor(peers: PeerInfo[]): Record<string, string> {
    const out: Record<string, string> = {};
    for (const p of peers) {
      const proof = p.role === 'chair' ? this.#proofOf(p.peerId) : undefined;
      if (proof) out[p.peerId] = proof;
    }
    return out;
  }

  #proofOf(peerId: string): string | undefined {
    return this.room.peers.get(peerId)?.chairProof ?? this.#proofs.get(peerId);
  }

  // `proof`: the chair's join token, already verified by CascadeNode (a chair without one was made a participant there).
  #addPeer(linkId: string, peer: PeerInfo, proof?: string): void {
    if (this.#peers.has(peer.peerId) || this.#localPeers.has(peer.peerId) || this.room.peers.has(peer.peerId) || this.room.ingests.has(peer.peerId)) return;
    if (!this.#options.budget.take(linkId, 'peers')) return void this.#options.distrust.warn({ link: linkId }, 'remote peer bound reached (per link or per node); ignoring more');
    this.#peers.set(peer.peerId, { info: peer, via: linkId });
    if (peer.role === 'chair' && proof) this.#proofs.set(peer.peerId, proof);
    this.room.remotePeerAdded(peer);
    this.#announcePeer(peer, linkId, peer.role === 'chair' ? proof : undefined);
  }

  #removePeer(peerId: string): void {
    const e = this.#peers.get(peerId);
    if (!e) return;
    // Its producers go first (a neighbour normally removed them already).
    for (const id of [...(this.#byPeer.get(peerId) ?? [])]) this.#removeProducer(id);
    this.#peers.delete(peerId);
    this.#options.budget.give(e.via, 'peers');
    this.#proofs.delete(peerId);
    this.#retractPeer(peerId, e.via);
    if (!this.room.router.closed) this.room.remotePeerRemoved(peerId);
  }

  #addProducer(linkId: string, producer: ProducerInfo): void {
    if (this.#producers.has(producer.producerId) || this.#localProducers.has(producer.producerId) || this.room.localProducer(producer.producerId)) return;
    // A neighbour speaks only for sites it announced: no producer passed off as another node's site.
    if (this.#peers.get(producer.peerId)?.via !== linkId) return void this.#options.distrust.warn({ link: linkId, peer: producer.peerId }, 'producer of a site not beyond that link dropped');
    if (!this.#options.budget.take(linkId, 'producers')) return void this.#options.distrust.warn({ link: linkId }, 'remote producer bound reached (per link or per node); ignoring more');
    this.#producers.set(producer.producerId, { info: producer, via: linkId });
    let ofPeer = this.#byPeer.get(producer.peerId);
    if (!ofPeer) this.#byPeer.set(producer.peerId, (ofPeer = new Set()));
    ofPeer.add(producer.producerId);
    this.room.remoteProducerAdded(producer);
    this.#announceProducer(producer, linkId);
  }

  #removeProducer(producerId: string): void {
    const e = this.#producers.get(producerId);
    if (!e) return;
    this.#producers.delete(producerId);
    const ofPeer = this.#byPeer.get(e.info.peerId);
    ofPeer?.delete(producerId);
    if (ofPeer?.size === 0) this.#byPeer.delete(e.info.peerId);
    this.#options.budget.give(e.via, 'producers');
    // Closing the pipe producer closes the consumers of it here (browsers are told consumerClosed)
    // and the pipe consumers towards other links (whose nodes hear producerRemoved below).
    this.#subs.get(producerId)?.close(false);
    this.#retractProducer(producerId, e.via);
    if (!this.room.router.closed) this.room.remoteProducerRemoved(producerId);
  }

  /** Sends the conference state to every attached link except the one it came from. */
  #flood(method: 'conference', data: NotificationData<'conference'> & RoomScoped, exceptLink?: string): void {
    for (const rl of this.#links.values()) {
      if (rl.link.id === exceptLink || rl.link.channel.closed) continue;
      rl.link.channel.notify(method, data);
    }
  }
}

/** A snapshot in messages of at most CATALOG_CHUNK entries, peers before producers. */
function chunks(snap: Snapshot): Snapshot[] {
  const out: Snapshot[] = [];
  let cur: Snapshot = { peers: [], producers: [] };
  const push = () => {
    out.push(cur);
    cur = { peers: [], producers: [] };
  };
  for (const p of snap.peers) {
    if (cur.peers.length + cur.producers.length >= CATALOG_CHUNK) push();
    cur.peers.push(p);
  }
  for (const p of snap.producers) {
    if (cur.peers.length + cur.producers.length >= CATALOG_CHUNK) push();
    cur.producers.push(p);
  }
  out.push(cur);
  return out;
}
