import type { types } from 'mediasoup';
import type { Logger } from '../infra/logger.ts';
import { mediaCodecs } from './mediaCodecs.ts';
import type { Notifications } from './protocol.ts';
import type { Peer } from './Peer.ts';
import { TypedEmitter } from './TypedEmitter.ts';
import type { WorkerSlot } from './WorkerPool.ts';

export type RoomEvents = {
  /** The room is gone (last peer left, or its worker died); the node forgets it. */
  close: [];
};

/** A conference room: one mediasoup Router on one worker and the peers joined to it. */
export class Room extends TypedEmitter<RoomEvents> {
  readonly id: string;
  readonly router: types.Router;
  readonly slot: WorkerSlot;
  readonly #peers = new Map<string, Peer>();
  readonly #logger: Logger;
  #closed = false;

  private constructor(id: string, router: types.Router, slot: WorkerSlot, logger: Logger) {
    super();
    this.id = id;
    this.router = router;
    this.slot = slot;
    this.#logger = logger;
  }

  static async create(id: string, slot: WorkerSlot, logger: Logger): Promise<Room> {
    const router = await slot.worker.createRouter({ mediaCodecs, appData: { room: id } });
    slot.routers++;
    const room = new Room(id, router, slot, logger.child({ room: id }));
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

  /** Adds a peer; a second connection of the same user replaces the first. */
  addPeer(peer: Peer): Peer | undefined {
    let replaced: Peer | undefined;
    for (const p of this.#peers.values()) {
      if (p.claims.userId === peer.claims.userId) replaced = p;
    }
    if (replaced) this.removePeer(replaced);
    this.#peers.set(peer.id, peer);
    this.broadcast('peerJoined', peer.info, peer);
    this.#logger.info({ peer: peer.id, user: peer.claims.userId }, 'peer joined');
    return replaced;
  }

  removePeer(peer: Peer): void {
    if (!this.#peers.delete(peer.id)) return;
    peer.close();
    this.broadcast('peerLeft', { peerId: peer.id }, peer);
    this.#logger.info({ peer: peer.id }, 'peer left');
    if (this.#peers.size === 0) this.router.close();
  }

  producerAdded(peer: Peer, producer: types.Producer<{ source: Notifications['newProducer']['source'] }>): void {
    this.broadcast(
      'newProducer',
      { producerId: producer.id, peerId: peer.id, kind: producer.kind, source: producer.appData.source, paused: producer.paused },
      peer,
    );
  }

  producerClosed(peer: Peer, producerId: string): void {
    // When the router itself is closing, peers are told to reconnect instead.
    if (this.router.closed) return;
    this.broadcast('producerClosed', { producerId }, peer);
  }

  producerOwner(producerId: string): { peer: Peer; producer: types.Producer<{ source: Notifications['newProducer']['source'] }> } | undefined {
    for (const peer of this.#peers.values()) {
      const producer = peer.producers.get(producerId);
      if (producer) return { peer, producer };
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

  #closeInternal(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.emit('close');
  }
}
