import type { KeyObject } from 'node:crypto';
import type http from 'node:http';
import type { types } from 'mediasoup';
import { WebSocketServer } from 'ws';
import type { Logger } from '../infra/logger.ts';
import type { JoinClaims } from '../infra/tokens.ts';
import { CascadeNode, type CascadeOptions } from './cascade/CascadeNode.ts';
import { Ingest, type IngestOptions } from './Ingest.ts';
import { Peer, type Notify } from './Peer.ts';
import { SignallingError, type ErrorCode } from './protocol.ts';
import { Room } from './Room.ts';
import { SfuMetrics } from './SfuMetrics.ts';
import { SignallingSession, type SessionHost } from './SignallingSession.ts';
import { DEFAULT_SIGNALLING_LIMITS, type SignallingLimits } from './SignallingLimits.ts';
import { UpgradeDispatcher, refuseUpgrade } from './UpgradeDispatcher.ts';
import { Tap } from './Tap.ts';
import { DrainControl } from './DrainControl.ts';
import { TypedEmitter } from './TypedEmitter.ts';
import type { IceServer, TurnCredentials } from '../infra/turn/TurnCredentials.ts';
import { WorkerPool, type WorkerPoolOptions } from './WorkerPool.ts';

/** How long, and for how many rooms, an ended meeting refuses joins. */
const ENDED_MEMORY_MS = 6 * 3600_000;
const MAX_ENDED_ROOMS = 10_000;

export interface SfuNodeOptions extends WorkerPoolOptions {
  /** The public half of the API's join-token key: this node checks admissions, it cannot issue them. */
  joinKey: KeyObject;
  /** Applied to every video producer: at most one keyframe request per interval reaches a sender (default 500 ms). */
  keyFrameRequestDelayMs?: number;
  /** This node's place in the five-level tree; absent for a stand-alone node. */
  cascade?: CascadeOptions;
  /** Bounds on browsers' signalling connections (see SignallingLimits for the defaults). */
  signalling?: Partial<SignallingLimits>;
  /**
   * Allow plain RTP transports (`createPlainTransport`: no ICE/DTLS) for hardware terminals and gateways on a
   * trusted network, and the scale tests' synthetic sites. Default off (`forbidden`).
   */
  plainRtp?: boolean;
  /** TURN (infra/turn/): each join's answer carries short-lived credentials for these servers. */
  turn?: TurnCredentials;
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
  readonly joinKey: KeyObject;
  readonly #turn: TurnCredentials | undefined;
  readonly pool: WorkerPool;
  readonly metrics: SfuMetrics;
  readonly cascade: CascadeNode | undefined;
  /** Drain for an upgrade: no new rooms, open ones continue (sfu/DrainControl.ts). */
  readonly drain = new DrainControl(() => this.#rooms.size);
  readonly #logger: Logger;
  readonly #listenIp: string;
  readonly #keyFrameRequestDelayMs: number;
  readonly #plainRtp: boolean;
  readonly #announcedAddress: string | undefined;
  readonly #rooms = new Map<string, Room>();
  readonly #creating = new Map<string, Promise<Room>>();
  /** Meetings ended here or elsewhere in the conference: joins are refused for a while. */
  readonly #ended = new Map<string, number>();
  #wss: WebSocketServer | undefined;
  readonly limits: SignallingLimits;
  /** Open /sfu connections, in all and per remote address. */
  #connections = 0;
  readonly #perAddress = new Map<string, number>();

  constructor(options: SfuNodeOptions) {
    super();
    this.joinKey = options.joinKey;
    this.#turn = options.turn;
    this.#logger = options.logger;
    this.#listenIp = options.listenIp;
    // 500 ms (LiveKit's throttle for low layers): when the floor changes, every site's new consumer is
    // served by the first or the next keyframe, so the last site waits at most half a second for it, and
    // a sender still gets at most two keyframe requests a second however many sites join at once.
    this.#keyFrameRequestDelayMs = options.keyFrameRequestDelayMs ?? 500;
    this.#plainRtp = options.plainRtp === true;
    this.#announcedAddress = options.announcedAddress;
    this.limits = { ...DEFAULT_SIGNALLING_LIMITS, ...options.signalling };
    this.pool = new WorkerPool({ ...options });
    this.metrics = new SfuMetrics(this);
    this.pool.on('workerdied', (slot) => {
      const affected = [...this.#rooms.values()].filter((r) => r.slot === slot);
      // Rooms abandon themselves on their router's 'workerclose'; this catches any left behind.
      for (const room of affected) if (!room.closed) room.abandon('worker-died');
      this.emit('workerdied', slot.worker.pid ?? -1, affected.map((r) => r.id));
    });
    this.pool.on('workerreplaced', (slot) => this.emit('workerreplaced', slot.worker.pid ?? -1));
    this.cascade = options.cascade ? new CascadeNode(this, options.cascade, options.logger) : undefined;
  }

  iceServers(claims: JoinClaims): IceServer[] | undefined {
    return this.#turn ? [this.#turn.issue(claims.userId)] : undefined;
  }

  get rooms(): ReadonlyMap<string, Room> {
    return this.#rooms;
  }

  async start(): Promise<void> {
    await this.pool.start();
    this.cascade?.start();
  }

  /** Open browser signalling connections on this node. */
  get connections(): number {
    return this.#connections;
  }

  /** Serves signalling on `path` of an existing HTTP server (WebSocket upgrade). */
  attach(server: http.Server, path = '/sfu'): void {
    const wss = new WebSocketServer({ noServer: true, maxPayload: 1024 * 1024 });
    this.#wss = wss;
    const upgrades = UpgradeDispatcher.for(server);
    upgrades.route(path, (req, socket, head) => {
      const address = req.socket.remoteAddress ?? 'unknown';
      if (this.#connections >= this.limits.maxConnections) {
        this.metrics.connectionsRefused.inc({ reason: 'node' });
        return refuseUpgrade(socket, 503, 'Service Unavailable', { 'Retry-After': '10' });
      }
      if ((this.#perAddress.get(address) ?? 0) >= this.limits.maxConnectionsPerAddress) {
        this.metrics.connectionsRefused.inc({ reason: 'address' });
        return refuseUpgrade(socket, 429, 'Too Many Requests', { 'Retry-After': '10' });
      }
      // Counted from the upgrade on, so that handshakes in progress count against the caps too.
      this.#connections++;
      this.#perAddress.set(address, (this.#perAddress.get(address) ?? 0) + 1);
      let counted = true;
      const uncount = () => {
        if (!counted) return;
        counted = false;
        this.#connections--;
        const n = (this.#perAddress.get(address) ?? 1) - 1;
        if (n <= 0) this.#perAddress.delete(address);
        else this.#perAddress.set(address, n);
      };
      socket.once('close', uncount);
      wss.handleUpgrade(req, socket, head, (ws) => {
        ws.once('close', uncount);
        new SignallingSession(ws, this, this.#logger.child({ remote: address }), this.limits);
      });
    });
    // Children's control links share the server (and its port) with the browsers' signalling.
    this.cascade?.attach(server, '/cascade');
  }

  /** Opens (or finds) a room; it stays open only while someone uses or retains it. */
  openRoom(id: string): Promise<Room> {
    return this.#room(id);
  }

  /** A server-side sender into a room (camera via ffmpeg, synthetic RTP in tests). */
  async ingest(roomId: string, options: Omit<IngestOptions, 'listenIp' | 'keyFrameRequestDelayMs'>): Promise<Ingest> {
    for (let attempt = 0; attempt < 3; attempt++) {
      const room = await this.#room(roomId);
      if (room.closed) continue;
      return Ingest.open(room, { listenIp: this.#listenIp, keyFrameRequestDelayMs: this.#keyFrameRequestDelayMs, ...options });
    }
    throw new Error('room could not be opened');
  }

  /** A server-side receiver of one producer of the conference (recording, tests). */
  async tap(roomId: string, producerId: string, to: { ip: string; port: number }): Promise<Tap> {
    const room = this.#rooms.get(roomId);
    if (!room || room.closed) throw new Error('no such room on this node');
    const tap = await Tap.open(room, producerId, { ...to, listenIp: this.#listenIp });
    // A recorder wants the full picture: its tap counts in the producer's demand like a page's consumer
    // (layer 2 unless set otherwise with room.setConsumerDemand for the tap's consumer id).
    if (tap.consumer.kind === 'video' && !tap.consumer.closed) {
      const consumerId = tap.consumer.id;
      room.setConsumerDemand(producerId, consumerId, 2);
      tap.consumer.observer.once('close', () => room.setConsumerDemand(producerId, consumerId, -1));
    }
    return tap;
  }

  /**
   * Ends a meeting (the meetings API's POST /meetings/:id/end): every peer of the conference, on this
   * node and every other node of the cascade, is told `meetingEnded` and removed. Returns whether
   * the room was open here.
   */
  endRoom(roomId: string): boolean {
    this.#markEnded(roomId);
    const room = this.#rooms.get(roomId);
    if (!room || room.closed) return false;
    room.control.end('api');
    return true;
  }

  #markEnded(roomId: string): void {
    const now = Date.now();
    for (const [id, at] of this.#ended) if (now - at > ENDED_MEMORY_MS || this.#ended.size >= MAX_ENDED_ROOMS) this.#ended.delete(id);
    this.#ended.set(roomId, now);
  }

  async joinRoom(claims: JoinClaims, rtpCapabilities: types.RtpCapabilities | undefined, notify: Notify, token?: string): Promise<Peer> {
    for (let attempt = 0; attempt < 3; attempt++) {
      const endedAt = this.#ended.get(claims.room);
      if (endedAt !== undefined && Date.now() - endedAt < ENDED_MEMORY_MS) throw new SignallingError('forbidden', 'the meeting has ended');
      const room = await this.#room(claims.room);
      if (room.closed) continue; // closed between creation and now (last peer left, worker died)
      if (room.control.ended) throw new SignallingError('forbidden', 'the meeting has ended');
      // Before the peer is added, so that its own join is already held as a venue.
      if (claims.layout) room.setLayout(claims.layout);
      const counted: Notify = (method, data) => {
        this.metrics.notifications.inc({ method });
        notify(method, data);
      };
      const peer = new Peer(room, claims, rtpCapabilities, counted, token);
      const replaced = room.addPeer(peer);
      if (token) room.noteGrant(token);
      if (replaced) replaced.notify('peerLeft', { peerId: replaced.id });
      this.metrics.joins.inc();
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
    const common = { routerRtpCapabilities: room.router.rtpCapabilities, conference: room.control.initialView(peer), layout: room.layout, counts: { joined: room.joined } };
    if (room.layout === 'venue') {
      // A venue page is given the stage only (what it should consume), never the list of every site.
      const stage = room.pageStage(peer);
      room.noteStageSent(peer, stage);
      return { ...common, peers: stage.peers, producers: stage.producers };
    }
    // Peers and producers of the whole conference: this node's and those reached through the cascade.
    return {
      ...common,
      peers: [...room.localPeerInfos(peer), ...(room.remote?.peers() ?? [])],
      producers: [...room.localProducerInfos(peer), ...(room.remote?.producers() ?? [])],
    };
  }

  countError(code: ErrorCode): void {
    this.metrics.signallingErrors.inc({ code });
  }

  countTimeout(reason: 'join' | 'ping'): void {
    this.metrics.sessionsTimedOut.inc({ reason });
  }

  async close(): Promise<void> {
    this.cascade?.close();
    for (const room of this.#rooms.values()) room.abandon('node-shutdown');
    this.#wss?.close();
    this.pool.close();
  }

  async #room(id: string): Promise<Room> {
    const existing = this.#rooms.get(id);
    if (existing && !existing.closed) return existing;
    let pending = this.#creating.get(id);
    if (!pending) {
      this.drain.refuseNewRoom(id);
      pending = Room.create(id, this.pool.pick(), this.#logger, this.#keyFrameRequestDelayMs).then((room) => {
        this.#rooms.set(id, room);
        if (this.cascade) room.control.nodeId = this.cascade.nodeId;
        if (this.#plainRtp) room.plainRtp = { ip: this.#listenIp, ...(this.#announcedAddress ? { announcedAddress: this.#announcedAddress } : {}) };
        room.on('ended', () => this.#markEnded(id));
        room.on('close', () => {
          if (this.#rooms.get(id) === room) this.#rooms.delete(id);
          this.drain.roomClosed();
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
