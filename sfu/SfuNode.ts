import type http from 'node:http';
import type { types } from 'mediasoup';
import { WebSocketServer } from 'ws';
import type { Logger } from '../infra/logger.ts';
import type { JoinClaims } from '../infra/tokens.ts';
import { Peer, type Notify } from './Peer.ts';
import type { ErrorCode } from './protocol.ts';
import { Room } from './Room.ts';
import { SfuMetrics } from './SfuMetrics.ts';
import { SignallingSession, type SessionHost } from './SignallingSession.ts';
import { TypedEmitter } from './TypedEmitter.ts';
import { WorkerPool } from './WorkerPool.ts';

export interface SfuNodeOptions {
  /** Secret that signs join tokens (shared with the API that issues them). */
  tokenSecret: string;
  numWorkers: number;
  listenIp: string;
  announcedAddress?: string;
  webRtcBasePort: number;
  rtcMinPort: number;
  rtcMaxPort: number;
  logger: Logger;
}

export type SfuNodeEvents = {
  roomcreated: [room: Room];
  roomclosed: [room: Room];
  /** A worker died and its rooms' peers were told to reconnect. */
  workerdied: [pid: number, rooms: string[]];
  workerreplaced: [pid: number];
};

/** One SFU node: a pool of mediasoup workers, the rooms on them, and the WebSocket signalling. */
export class SfuNode extends TypedEmitter<SfuNodeEvents> implements SessionHost {
  readonly tokenSecret: string;
  readonly pool: WorkerPool;
  readonly metrics: SfuMetrics;
  readonly #logger: Logger;
  readonly #rooms = new Map<string, Room>();
  readonly #creating = new Map<string, Promise<Room>>();
  #wss: WebSocketServer | undefined;

  constructor(options: SfuNodeOptions) {
    super();
    this.tokenSecret = options.tokenSecret;
    this.#logger = options.logger;
    this.pool = new WorkerPool({ ...options });
    this.metrics = new SfuMetrics(this);
    this.pool.on('workerdied', (slot) => {
      const affected = [...this.#rooms.values()].filter((r) => r.slot === slot);
      // Rooms abandon themselves on their router's 'workerclose'; this catches any left behind.
      for (const room of affected) if (!room.closed) room.abandon('worker-died');
      this.emit('workerdied', slot.worker.pid ?? -1, affected.map((r) => r.id));
    });
    this.pool.on('workerreplaced', (slot) => this.emit('workerreplaced', slot.worker.pid ?? -1));
  }

  get rooms(): ReadonlyMap<string, Room> {
    return this.#rooms;
  }

  async start(): Promise<void> {
    await this.pool.start();
  }

  /** Serves signalling on `path` of an existing HTTP server (WebSocket upgrade). */
  attach(server: http.Server, path = '/sfu'): void {
    const wss = new WebSocketServer({ noServer: true, maxPayload: 1024 * 1024 });
    this.#wss = wss;
    server.on('upgrade', (req, socket, head) => {
      const url = new URL(req.url ?? '/', 'http://localhost');
      if (url.pathname !== path) return;
      wss.handleUpgrade(req, socket, head, (ws) => {
        new SignallingSession(ws, this, this.#logger.child({ remote: req.socket.remoteAddress }));
      });
    });
  }

  async joinRoom(claims: JoinClaims, rtpCapabilities: types.RtpCapabilities | undefined, notify: Notify): Promise<Peer> {
    for (let attempt = 0; attempt < 3; attempt++) {
      const room = await this.#room(claims.room);
      if (room.closed) continue; // closed between creation and now (last peer left, worker died)
      const peer = new Peer(room, claims, rtpCapabilities, notify);
      const replaced = room.addPeer(peer);
      if (replaced) replaced.notify('peerLeft', { peerId: replaced.id });
      return peer;
    }
    throw new Error('room could not be opened');
  }

  leaveRoom(peer: Peer): void {
    for (const room of this.#rooms.values()) {
      if (room.peers.get(peer.id) === peer) {
        room.removePeer(peer);
        return;
      }
    }
    peer.close();
  }

  roomState(peer: Peer) {
    const room = [...this.#rooms.values()].find((r) => r.peers.get(peer.id) === peer);
    if (!room) throw new Error('peer not in a room');
    const others = [...room.peers.values()].filter((p) => p !== peer);
    return {
      routerRtpCapabilities: room.router.rtpCapabilities,
      peers: others.map((p) => p.info),
      producers: others.flatMap((p) => p.producerInfos()),
    };
  }

  countError(code: ErrorCode): void {
    this.metrics.signallingErrors.inc({ code });
  }

  async close(): Promise<void> {
    for (const room of this.#rooms.values()) room.abandon('node-shutdown');
    this.#wss?.close();
    this.pool.close();
  }

  async #room(id: string): Promise<Room> {
    const existing = this.#rooms.get(id);
    if (existing && !existing.closed) return existing;
    let pending = this.#creating.get(id);
    if (!pending) {
      pending = Room.create(id, this.pool.pick(), this.#logger).then((room) => {
        this.#rooms.set(id, room);
        room.on('close', () => {
          if (this.#rooms.get(id) === room) this.#rooms.delete(id);
          this.emit('roomclosed', room);
        });
        this.emit('roomcreated', room);
        return room;
      });
      pending.finally(() => this.#creating.delete(id)).catch(() => undefined);
      this.#creating.set(id, pending);
    }
    return pending;
  }
}
