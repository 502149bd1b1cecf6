import type { types } from 'mediasoup';
import type { Logger } from '../infra/logger.ts';
import { mediaCodecs } from './mediaCodecs.ts';
import { ConferenceControl } from './ConferenceControl.ts';
import type { Ingest } from './Ingest.ts';
import type { Notifications, PeerInfo, ProducerInfo } from './protocol.ts';
import type { Peer } from './Peer.ts';
import { TypedEmitter } from './TypedEmitter.ts';
import type { WorkerSlot } from './WorkerPool.ts';

export type RoomEvents = {
  /** The room is gone (last peer left, or its worker died); the node forgets it. */
  close: [];
  // Changes of what this node itself contributes (local peers, ingests); the cascade relays them.
  localpeerjoined: [info: PeerInfo];
  localpeerleft: [peerId: string];
  localproduceradded: [info: ProducerInfo];
  localproducerclosed: [producerId: string];
  localproducerpaused: [producerId: string, paused: boolean];
  /** The chair (or the meetings API) ended the meeting; local peers were told and removed. */
  ended: [reason: 'chair' | 'api'];
  /** A producer of the conference, this node's or one learnt through the cascade, can be consumed here. */
  produceravailable: [info: ProducerInfo];
  /** Someone was admitted here with a join token (a local peer, or a child node's grant). */
  granted: [];
};

/**
 * Producers that live on other nodes of the conference (the cascade). A consumer of one of them
 * first acquires it, which pipes it into this room's router under the same id, and releases it
 * when done; the cascade stops piping when the last holder releases.
 */
export interface RemoteDirectory {
  peers(): PeerInfo[];
  producers(): ProducerInfo[];
  producer(producerId: string): ProducerInfo | undefined;
  acquire(producerId: string): Promise<() => void>;
}

/** A producer of this node's own (a browser peer's or an ingest's) and who owns it. */
export interface LocalProducer {
  producer: types.Producer;
  info: ProducerInfo;
  /** The owning browser peer; undefined for an ingest. */
  peer: Peer | undefined;
}

/** A conference room: one mediasoup Router on one worker and the peers joined to it. */
export class Room extends TypedEmitter<RoomEvents> {
  readonly id: string;
  readonly router: types.Router;
  readonly slot: WorkerSlot;
  /** Applied to every video producer here: at most one keyframe request per interval reaches its sender. */
  readonly keyFrameRequestDelayMs: number;
  readonly #peers = new Map<string, Peer>();
  readonly #ingests = new Map<string, Ingest>();
  readonly #logger: Logger;
  #closed = false;
  // Holders other than peers that keep the room open: cascade children attached to it, taps.
  #holds = 0;
  remote: RemoteDirectory | undefined;
  /** The latest join token someone was admitted to this room with: the cascade shows it to the parent. */
  #grant: string | undefined;
  /** The chair's controls (mute, spotlight, broadcast, hands, end), replicated across the cascade. */
  readonly control: ConferenceControl;

  private constructor(id: string, router: types.Router, slot: WorkerSlot, logger: Logger, keyFrameRequestDelayMs: number) {
    super();
    this.id = id;
    this.keyFrameRequestDelayMs = keyFrameRequestDelayMs;
    this.router = router;
    this.slot = slot;
    this.#logger = logger;
    this.control = new ConferenceControl(this);
    this.control.on('ended', (reason) => {
      // The change has already gone out to the neighbours; now everyone here leaves.
      this.emit('ended', reason);
      for (const p of [...this.#peers.values()]) {
        p.notify('meetingEnded', { reason });
        this.removePeer(p);
      }
    });
  }

  get logger(): Logger {
    return this.#logger;
  }

  static async create(id: string, slot: WorkerSlot, logger: Logger, keyFrameRequestDelayMs = 1000): Promise<Room> {
    const router = await slot.worker.createRouter({ mediaCodecs, appData: { room: id } });
    slot.routers++;
    const room = new Room(id, router, slot, logger.child({ room: id }), keyFrameRequestDelayMs);
    router.observer.on('close', () => {
      slot.routers = Math.max(0, slot.routers - 1);
      room.#closeInternal();
    });
    // Emitted before observer 'close' when the worker process dies under the router.
    router.on('workerclose', () => room.abandon('worker-died'));
    return room;
  }

  get webRtcServer(): types.WebRtcServer {
    return this.slot.webRtcServer;
  }

  get peers(): ReadonlyMap<string, Peer> {
    return this.#peers;
  }

  get closed(): boolean {
    return this.#closed;
  }

  get ingests(): ReadonlyMap<string, Ingest> {
    return this.#ingests;
  }

  get grant(): string | undefined {
    return this.#grant;
  }

  noteGrant(token: string): void {
    this.#grant = token;
    this.emit('granted');
  }

  /** Keeps the room open without a local peer; returns the (idempotent) release. */
  retain(): () => void {
    this.#holds++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.#holds--;
      this.#closeIfIdle();
    };
  }

  /** Infos of what this node contributes: its peers and ingests, and their producers. */
  localPeerInfos(except?: Peer): PeerInfo[] {
    return [...[...this.#peers.values()].filter((p) => p !== except).map((p) => p.info), ...[...this.#ingests.values()].map((i) => i.peerInfo)];
  }

  localProducerInfos(except?: Peer): ProducerInfo[] {
    return [
      ...[...this.#peers.values()].filter((p) => p !== except).flatMap((p) => p.producerInfos()),
      ...[...this.#ingests.values()].map((i) => i.producerInfo),
    ];
  }

  addIngest(ingest: Ingest): void {
    this.#ingests.set(ingest.id, ingest);
    this.broadcast('peerJoined', ingest.peerInfo);
    this.emit('localpeerjoined', ingest.peerInfo);
    this.broadcast('newProducer', ingest.producerInfo);
    this.emit('localproduceradded', ingest.producerInfo);
    this.emit('produceravailable', ingest.producerInfo);
  }

  removeIngest(ingest: Ingest): void {
    if (!this.#ingests.delete(ingest.id)) return;
    const peerId = ingest.peerInfo.peerId;
    // Ingests sharing a peer id (a camera's video and audio) leave as one site, with the last.
    const peerGone = ![...this.#ingests.values()].some((i) => i.peerInfo.peerId === peerId);
    if (!this.router.closed) {
      this.broadcast('producerClosed', { producerId: ingest.producerInfo.producerId });
      if (peerGone) this.broadcast('peerLeft', { peerId });
    }
    this.emit('localproducerclosed', ingest.producerInfo.producerId);
    if (peerGone) this.emit('localpeerleft', peerId);
    this.#closeIfIdle();
  }

  /** Adds a peer; a second connection of the same user replaces the first. */
  addPeer(peer: Peer): Peer | undefined {
    let replaced: Peer | undefined;
    for (const p of this.#peers.values()) {
      if (p.claims.userId === peer.claims.userId) replaced = p;
    }
    if (replaced) this.removePeer(replaced);
    this.#peers.set(peer.id, peer);
    this.broadcast('peerJoined', peer.info, peer);
    this.emit('localpeerjoined', peer.info);
    this.#logger.info({ peer: peer.id, user: peer.claims.userId }, 'peer joined');
    return replaced;
  }

  removePeer(peer: Peer): void {
    if (!this.#peers.delete(peer.id)) return;
    peer.close();
    this.broadcast('peerLeft', { peerId: peer.id }, peer);
    this.emit('localpeerleft', peer.id);
    if (!this.router.closed) this.control.peerLeft(peer.id);
    this.#logger.info({ peer: peer.id }, 'peer left');
    this.#closeIfIdle();
  }

  producerAdded(peer: Peer, producer: types.Producer<{ source: Notifications['newProducer']['source'] }>): void {
    const info: ProducerInfo = { producerId: producer.id, peerId: peer.id, kind: producer.kind, source: producer.appData.source, paused: producer.paused };
    this.broadcast('newProducer', info, peer);
    this.emit('localproduceradded', info);
    this.emit('produceravailable', info);
  }

  /** The cascade learnt of a producer on another node: local peers are told, watchers too. */
  remoteProducerAdded(info: ProducerInfo): void {
    this.broadcast('newProducer', info);
    this.emit('produceravailable', info);
  }

  /** Who a peer of the conference is, wherever it joined. */
  peerInfo(peerId: string): PeerInfo | undefined {
    return (
      this.#peers.get(peerId)?.info ??
      [...this.#ingests.values()].find((i) => i.peerInfo.peerId === peerId)?.peerInfo ??
      this.remote?.peers().find((p) => p.peerId === peerId)
    );
  }

  /** Every producer of the conference that can be consumed here (local and remote). */
  producerInfos(): ProducerInfo[] {
    return [...this.localProducerInfos(), ...(this.remote?.producers() ?? [])];
  }

  producerClosed(peer: Peer, producerId: string): void {
    this.emit('localproducerclosed', producerId);
    // When the router itself is closing, peers are told to reconnect instead.
    if (this.router.closed) return;
    this.broadcast('producerClosed', { producerId }, peer);
  }

  producerPauseChanged(producerId: string, paused: boolean): void {
    this.emit('localproducerpaused', producerId, paused);
  }

  /** A producer of this node's own (peer or ingest); remote producers are in `remote`. */
  localProducer(producerId: string): LocalProducer | undefined {
    for (const peer of this.#peers.values()) {
      const producer = peer.producers.get(producerId);
      if (producer) return { peer, producer, info: peer.producerInfos().find((i) => i.producerId === producerId)! };
    }
    for (const ingest of this.#ingests.values()) {
      if (ingest.producer.id === producerId) return { peer: undefined, producer: ingest.producer, info: ingest.producerInfo };
    }
    return undefined;
  }

  broadcast<M extends keyof Notifications>(method: M, data: Notifications[M], except?: Peer): void {
    for (const p of this.#peers.values()) if (p !== except) p.notify(method, data);
  }

  /** Worker death: tell everyone to rejoin (a new router on a live worker will host the room). */
  abandon(reason: Notifications['reconnect']['reason']): Peer[] {
    const peers = [...this.#peers.values()];
    this.#peers.clear();
    for (const p of peers) {
      p.close();
      p.notify('reconnect', { reason });
    }
    if (!this.router.closed) this.router.close();
    this.#closeInternal();
    return peers;
  }

  #closeIfIdle(): void {
    if (this.#peers.size === 0 && this.#ingests.size === 0 && this.#holds === 0 && !this.router.closed) this.router.close();
  }

  #closeInternal(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.emit('close');
  }
}
