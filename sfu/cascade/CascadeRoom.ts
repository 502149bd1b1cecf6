import type { types } from 'mediasoup';
import type { Logger } from '../../infra/logger.ts';
import type { PeerInfo, ProducerInfo } from '../protocol.ts';
import { newer, type ConferenceDelta } from '../ConferenceControl.ts';
import type { LogThrottle } from '../LogThrottle.ts';
import type { RemoteDirectory, Room } from '../Room.ts';
import type { Link } from './Link.ts';
import { CascadeError, MAX_REMOTE_PEERS, MAX_REMOTE_PRODUCERS, type NotificationData, type NotificationMethod, type PipeInfo, type RequestData, type ResponseData } from './protocol.ts';
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
}

interface Remote<T> {
  info: T;
  /** The link it was learnt from, i.e. the direction of its origin. */
  via: string;
}

type RoomScoped = { room: string };
type Forwardable = Exclude<NotificationMethod, 'closeRoom' | 'roomClosed' | 'unsubscribe'>;

/**
 * One conference as seen by one node of the tree. It knows every peer and producer of the
 * conference: its own (from the local Room) and the remote ones, each with the link it came from.
 * Catalog changes flood along the tree (each to every attached link but the one it came from).
 * Media does not flood: a producer is piped over a link only when the node beyond subscribes.
 */
export class CascadeRoom implements RemoteDirectory {
  readonly room: Room;
  readonly #options: CascadeRoomOptions;
  readonly #log: Logger;
  readonly #peers = new Map<string, Remote<PeerInfo>>();
  readonly #producers = new Map<string, Remote<ProducerInfo>>();
  readonly #links = new Map<string, RoomLink>();
  readonly #subs = new Map<string, Subscription>();
  /** Verified join tokens of remote chair peers (learnt from children), passed on towards the parent. */
  readonly #proofs = new Map<string, string>();
  #attachingParent = false;
  #closed = false;

  constructor(room: Room, options: CascadeRoomOptions) {
    this.room = room;
    this.#options = options;
    this.#log = options.logger.child({ room: room.id });
    room.remote = this;
    room.on('localpeerjoined', (peer) => this.#flood('peerAdded', { room: room.id, peer }));
    room.on('localpeerleft', (peerId) => this.#flood('peerRemoved', { room: room.id, peerId }));
    room.on('localproduceradded', (producer) => this.#flood('producerAdded', { room: room.id, producer }));
    room.on('localproducerclosed', (producerId) => this.#flood('producerRemoved', { room: room.id, producerId }));
    room.on('localproducerpaused', (producerId, paused) => this.#flood('producerPaused', { room: room.id, producerId, paused }));
    // Chair controls and hands, made here or merged from a neighbour: on to every other link.
    room.control.on('changed', (delta, from) => this.#flood('conference', { room: room.id, ...delta }, from));
  }

  get links(): ReadonlyMap<string, RoomLink> {
    return this.#links;
  }

  get subscriptions(): ReadonlyMap<string, Subscription> {
    return this.#subs;
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
        logger: this.#log,
        onClosed: (s) => {
          if (this.#subs.get(producerId) === s) this.#subs.delete(producerId);
        },
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
    try {
      const transport = await RoomLink.createTransport(this.room.router, this.#options.pipeListenIp, this.#options.pipeAnnouncedAddress);
      if (this.#closed || link.channel.closed) {
        transport.close();
        return;
      }
      rl = new RoomLink(link, transport, () => undefined);
      // Snapshot and registration in one tick: later changes go out as notifications after the request.
      grant = this.room.grant;
      const request: RequestData<'openRoom'> = {
        room: this.room.id,
        pipe: RoomLink.pipeInfo(transport, this.#options.pipeAnnouncedAddress),
        ...(grant ? { grant } : {}),
        ...this.#snapshot(link.id),
      };
      const chairProofs = this.#proofsFor(request.peers);
      if (Object.keys(chairProofs).length) request.chairProofs = chairProofs;
      this.#links.set(link.id, rl);
      const answer = await link.channel.request('openRoom', request);
      if (rl.closed) return;
      this.#import(link.id, answer);
      await rl.connect(await this.#route(link.id, request.pipe, answer.pipe), answer.pipe.srtp);
      this.#log.info({ link: link.id, peers: answer.peers.length, producers: answer.producers.length }, 'attached to parent');
    } catch (err) {
      this.#log.warn({ link: link.id, err: (err as Error).message }, 'attaching to parent failed');
      if (rl && this.#links.get(link.id) === rl) this.detach(link.id, false);
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
    let transport: types.PipeTransport | undefined;
    try {
      transport = await RoomLink.createTransport(this.room.router, this.#options.pipeListenIp, this.#options.pipeAnnouncedAddress);
      const to = await this.#route(link.id, RoomLink.pipeInfo(transport, this.#options.pipeAnnouncedAddress), request.pipe);
      await transport.connect({ ip: to.ip, port: to.port, srtpParameters: request.pipe.srtp });
    } catch (err) {
      transport?.close();
      release();
      throw new CascadeError('media_error', `pipe setup failed: ${(err as Error).message}`);
    }
    if (this.#closed || link.channel.closed) {
      transport.close();
      release();
      throw new CascadeError('closed', 'room or link closed while attaching');
    }
    const rl = new RoomLink(link, transport, release);
    const answer: ResponseData<'openRoom'> = { pipe: RoomLink.pipeInfo(transport, this.#options.pipeAnnouncedAddress), ...this.#snapshot(link.id) };
    this.#links.set(link.id, rl);
    this.#import(link.id, request, request.chairProofs);
    this.#log.info({ link: link.id, peers: request.peers.length, producers: request.producers.length }, 'child attached');
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

  /** Pipes a producer out over a link (idempotent: one pipe consumer per producer per link). */
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
    return { kind: consumer.kind, rtpParameters: consumer.rtpParameters as ResponseData<'subscribe'>['rtpParameters'], paused: consumer.producerPaused };
  }

  unsupply(linkId: string, producerId: string): void {
    const rl = this.#links.get(linkId);
    const pending = rl?.outgoing.get(producerId);
    if (!rl || !pending) return;
    rl.outgoing.delete(producerId);
    pending.then((c) => c.close(), () => undefined);
  }

  // --- Catalog changes from a neighbour ---

  onNotification(linkId: string, method: Forwardable, data: NotificationData<Forwardable>): void {
    if (!this.#links.has(linkId)) return; // not (or no longer) attached over that link
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
        this.#flood('producerPaused', { room: this.room.id, producerId, paused }, linkId);
        return;
      }
      case 'conference': {
        const { room: _room, ...delta } = data as NotificationData<'conference'>;
        this.#mergeConference(linkId, delta);
        return;
      }
    }
  }

  // --- internals ---

  async #route(linkId: string, local: PipeInfo, remote: PipeInfo): Promise<{ ip: string; port: number }> {
    const route = this.#options.pipeRoute;
    return route ? route({ room: this.room.id, linkId, local, remote }) : { ip: remote.ip, port: remote.port };
  }

  async #pipeOut(rl: RoomLink, producerId: string): Promise<types.Consumer> {
    const release = await this.acquire(producerId);
    if (rl.closed) {
      release();
      throw new CascadeError('closed', 'link closed');
    }
    let consumer: types.Consumer;
    try {
      consumer = await rl.transport.consume({ producerId });
    } catch (err) {
      release();
      throw new CascadeError('media_error', (err as Error).message);
    }
    consumer.observer.once('close', () => {
      const current = rl.outgoing.get(producerId);
      void current?.then((c) => {
        if (c === consumer) rl.outgoing.delete(producerId);
      }, () => undefined);
      release();
    });
    return consumer;
  }

  #snapshot(exceptLink: string): { peers: PeerInfo[]; producers: ProducerInfo[]; conference: ReturnType<Room['control']['snapshot']> } {
    return {
      conference: this.room.control.snapshot(),
      peers: [...this.room.localPeerInfos(), ...[...this.#peers.values()].filter((e) => e.via !== exceptLink).map((e) => e.info)],
      producers: [...this.room.localProducerInfos(), ...[...this.#producers.values()].filter((e) => e.via !== exceptLink).map((e) => e.info)],
    };
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
    if (this.#peers.has(peer.peerId) || this.room.peers.has(peer.peerId) || this.room.ingests.has(peer.peerId)) return;
    if (this.#peers.size >= MAX_REMOTE_PEERS) return void this.#log.warn('remote peer limit reached; ignoring more');
    this.#peers.set(peer.peerId, { info: peer, via: linkId });
    if (peer.role === 'chair' && proof) this.#proofs.set(peer.peerId, proof);
    this.room.broadcast('peerJoined', peer);
    this.#flood('peerAdded', { room: this.room.id, peer }, linkId);
  }

  #removePeer(peerId: string): void {
    const e = this.#peers.get(peerId);
    if (!e) return;
    this.#peers.delete(peerId);
    this.#proofs.delete(peerId);
    if (!this.room.router.closed) this.room.broadcast('peerLeft', { peerId });
    this.#flood('peerRemoved', { room: this.room.id, peerId }, e.via);
  }

  #addProducer(linkId: string, producer: ProducerInfo): void {
    if (this.#producers.has(producer.producerId) || this.room.localProducer(producer.producerId)) return;
    // A neighbour speaks only for sites it announced: no producer passed off as another node's site.
    if (this.#peers.get(producer.peerId)?.via !== linkId) return void this.#options.distrust.warn({ link: linkId, peer: producer.peerId }, 'producer of a site not beyond that link dropped');
    if (this.#producers.size >= MAX_REMOTE_PRODUCERS) return void this.#log.warn('remote producer limit reached; ignoring more');
    this.#producers.set(producer.producerId, { info: producer, via: linkId });
    this.room.remoteProducerAdded(producer);
    this.#flood('producerAdded', { room: this.room.id, producer }, linkId);
  }

  #removeProducer(producerId: string): void {
    const e = this.#producers.get(producerId);
    if (!e) return;
    this.#producers.delete(producerId);
    // Closing the pipe producer closes the consumers of it here (browsers are told consumerClosed)
    // and the pipe consumers towards other links (whose nodes hear producerRemoved below).
    this.#subs.get(producerId)?.close(false);
    if (!this.room.router.closed) this.room.broadcast('producerClosed', { producerId });
    this.#flood('producerRemoved', { room: this.room.id, producerId }, e.via);
  }

  /** Sends a catalog change to every attached link except the one it came from. */
  #flood<M extends Forwardable>(method: M, data: NotificationData<M> & RoomScoped, exceptLink?: string): void {
    for (const rl of this.#links.values()) {
      if (rl.link.id === exceptLink || rl.link.channel.closed) continue;
      // A chair's proof goes up only: a child holding the city chair's token could join as the chair.
      const peer = method === 'peerAdded' ? (data as NotificationData<'peerAdded'>).peer : undefined;
      const proof = peer && rl.link.kind === 'parent' && peer.role === 'chair' ? this.#proofOf(peer.peerId) : undefined;
      rl.link.channel.notify(method, proof ? { ...(data as NotificationData<'peerAdded'>), chairProof: proof } as NotificationData<M> : data);
    }
  }
}

