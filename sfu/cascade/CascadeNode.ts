import type { KeyObject } from 'node:crypto';
import type http from 'node:http';
import { WebSocketServer } from 'ws';
import type { Logger } from '../../infra/logger.ts';
import { signNodeToken, verifyJoinToken, verifyNodeToken, type JoinClaims } from '../../infra/tokens.ts';
import type { Room } from '../Room.ts';
import { TypedEmitter } from '../TypedEmitter.ts';
import { LogThrottle } from '../LogThrottle.ts';
import { UpgradeDispatcher, refuseUpgrade } from '../UpgradeDispatcher.ts';
import { CascadeRoom, type PipeRoute } from './CascadeRoom.ts';
import { CatalogBudget } from './CatalogBudget.ts';
import { ControlChannel, type ChannelHandler } from './ControlChannel.ts';
import type { Link } from './Link.ts';
import { verifyEnrolledNodeToken, type ChildKeysLookup } from './EnrolmentKeys.ts';
import { ParentLink, type ParentTlsOptions } from './ParentLink.ts';
import { CascadeError, MAX_CONTROL_MESSAGE_BYTES, type IncomingNotification, type IncomingRequest } from './protocol.ts';

export interface CascadeOptions {
  /** This node's id and the org unit it serves (city, county, ... village). */
  nodeId: string;
  unitId: number;
  /** Shared by the deployment's nodes: signs our token to the parent, verifies our children's. */
  secret: string;
  /**
   * Per-node keys instead of the shared secret: this node signs its token to the parent with its own
   * private key, and accepts a child only with a token verified by the public key registered for the
   * node id it claims (`childKey`). A stolen node then speaks only for itself.
   */
  /** A function is called at each connection attempt: a node that rotated its key dials with the new one. */
  nodeKey?: KeyObject | (() => KeyObject);
  childKey?: (nodeId: string) => KeyObject | undefined;
  /**
   * Enrolled children (sfu/cascade/EnrolmentKeys.ts): every key registered for the claimed node id,
   * read at each connection attempt (active and, while the child rotates, pending). Wins over `childKey`.
   */
  childKeys?: ChildKeysLookup;
  /** How often live children's keys are looked up again, so a revoked child's link drops (default 30 s). */
  childKeyRecheckMs?: number;
  /** ws(s)://parent-host:port/cascade; absent at the root of the tree. */
  parentUrl?: string;
  /** How a wss:// parent's certificate is checked (SFU_PARENT_FINGERPRINT pin or SFU_PARENT_CA_FILE). */
  parentTls?: ParentTlsOptions;
  /** The parent's node id, for logs. */
  parentNodeId?: string;
  /** If set, only these node ids may attach as children. */
  allowedChildren?: readonly string[];
  /**
   * `grant` (production): a child opening a conference here must show a join token for that room,
   * signed by the API and issued within the last day, which someone at or below it was admitted
   * with: a node brings in only conferences its people were let into, and cannot mint such tokens
   * (it holds only the public key). `open` trusts every authenticated child (tests of the media path).
   */
  admission?: 'grant' | 'open';
  /** Address the PipeTransports listen on, and the one given to neighbours if different (NAT). */
  pipeListenIp: string;
  pipeAnnouncedAddress?: string;
  /**
   * Where to send a link's media instead of straight to the neighbour's pipe: a relay in between
   * (the tests put a WAN link emulator there). Both ends of a link must route through the same relay.
   */
  pipeRoute?: PipeRoute;
  /**
   * Capacity of this node's uplink to its parent in kbit/s (`SFU_UPLINK_KBPS`, e.g. 300 for a satellite
   * village): video crosses that link as single-layer streams chosen to fit. Absent: uncapped.
   */
  uplinkKbps?: number;
  /** Least time between two count/total messages on a link (default 1000 ms). */
  countIntervalMs?: number;
  /** How long a producer keeps being piped after its last consumer beyond the link left. */
  unsubscribeLingerMs?: number;
  pingIntervalMs?: number;
  /** How long a live child link has to answer a ping when another connection claims its node id. */
  probeTimeoutMs?: number;
  requestTimeoutMs?: number;
  backoffMinMs?: number;
  backoffMaxMs?: number;
}

/** What the cascade needs from its SFU node. */
export interface CascadeHost {
  readonly rooms: ReadonlyMap<string, Room>;
  /** The API's public join-token key: checks children's grants. */
  readonly joinKey: KeyObject;
  openRoom(id: string): Promise<Room>;
  on(event: 'roomcreated', listener: (room: Room) => void): unknown;
  /** The node's metrics: the cascade adds its gauges (computed at scrape time). */
  readonly metrics?: { addGauge<L extends string>(name: string, help: string, labelNames: readonly L[], collect: () => Iterable<[Partial<Record<L, string>>, number]> | Promise<Iterable<[Partial<Record<L, string>>, number]>>): void };
}

const MAX_ROOMS_PER_CHILD = 1000;
/** A grant is a join token: accepted up to a day after it expired (a long meeting's link may drop late). */
const GRANT_MAX_AGE_SECONDS = 24 * 3600;

export type CascadeNodeEvents = {
  parentup: [];
  parentdown: [reason: string];
  childup: [nodeId: string];
  childdown: [nodeId: string];
  /** A child was refused a conference (no grant, a forged or stale one, or one for another room). */
  refused: [nodeId: string, room: string, why: string];
};

/**
 * This node's place in the tree: the control link to its parent (if any), the links of its
 * children, and one CascadeRoom per open room. Rooms attach to the parent as they open here and
 * again whenever the parent link comes back; a child's rooms are opened here when it attaches them.
 */
export class CascadeNode extends TypedEmitter<CascadeNodeEvents> {
  readonly nodeId: string;
  readonly #host: CascadeHost;
  readonly #options: Required<Pick<CascadeOptions, 'unsubscribeLingerMs' | 'pingIntervalMs' | 'requestTimeoutMs' | 'backoffMinMs' | 'backoffMaxMs'>> & CascadeOptions;
  readonly #log: Logger;
  readonly #rooms = new Map<string, CascadeRoom>();
  readonly #children = new Map<string, Link>();
  readonly #parentLink: ParentLink | undefined;
  #parent: Link | undefined;
  #wss: WebSocketServer | undefined;
  #closed = false;
  #recheck: NodeJS.Timeout | undefined;
  /** Refused link attempts: anyone can make them, so their log lines are bounded. */
  readonly #refusals: LogThrottle;
  /** Remote peers/producers neighbours may make this node hold: per link and per node. */
  readonly budget = new CatalogBudget();

  constructor(host: CascadeHost, options: CascadeOptions, logger: Logger) {
    super();
    this.nodeId = options.nodeId;
    this.#host = host;
    this.#options = {
      unsubscribeLingerMs: 2000,
      pingIntervalMs: 5000,
      requestTimeoutMs: 10_000,
      backoffMinMs: 250,
      backoffMaxMs: 3000,
      ...options,
    };
    this.#log = logger.child({ cascade: options.nodeId });
    this.#refusals = new LogThrottle(this.#log);
    this.#registerMetrics();
    host.on('roomcreated', (room) => this.#onRoomCreated(room));
    for (const room of host.rooms.values()) this.#onRoomCreated(room);
    if (options.parentUrl) {
      this.#parentLink = new ParentLink({
        url: options.parentUrl,
        token: () => signNodeToken((typeof options.nodeKey === 'function' ? options.nodeKey() : options.nodeKey) ?? options.secret, { nodeId: options.nodeId, unitId: options.unitId }, 120),
        logger: this.#log.child({ link: 'parent' }),
        pingIntervalMs: this.#options.pingIntervalMs,
        requestTimeoutMs: this.#options.requestTimeoutMs,
        backoffMinMs: this.#options.backoffMinMs,
        backoffMaxMs: this.#options.backoffMaxMs,
        ...(options.parentTls ? { tls: options.parentTls } : {}),
      });
      this.#parentLink.on('up', (channel) => this.#onParentUp(channel));
      this.#parentLink.on('down', (reason) => this.#onParentDown(reason));
    }
  }

  get rooms(): ReadonlyMap<string, CascadeRoom> {
    return this.#rooms;
  }

  get children(): string[] {
    return [...this.#children.keys()];
  }

  get parentConnected(): boolean {
    return this.#parent !== undefined && !this.#parent.channel.closed;
  }

  /** Times the parent link has been established since start. */
  get parentConnects(): number {
    return this.#parentLink?.connects ?? 0;
  }

  start(): void {
    this.#parentLink?.start();
    if (this.#options.childKeys && !this.#recheck) {
      this.#recheck = setInterval(() => void this.recheckChildren(), this.#options.childKeyRecheckMs ?? 30_000);
      this.#recheck.unref();
    }
  }

  /** The live links: the parent's (if up) and the children's. */
  get linkList(): Link[] {
    return [...(this.#parent && !this.#parent.channel.closed ? [this.#parent] : []), ...this.#children.values()];
  }

  #registerMetrics(): void {
    const m = this.#host.metrics;
    if (!m) return;
    m.addGauge('sfu_cascade_link_bytes', 'Media bytes on each cascade link (pipe + plain transports, all conferences)', ['link', 'direction'] as const, async () => {
      const sums = new Map<string, { sent: number; received: number }>();
      const all = [...this.#rooms.values()].flatMap((cr) => [...cr.links.values()]);
      const bytes = await Promise.all(all.map((rl) => rl.bytes().catch(() => ({ sent: 0, received: 0 }))));
      for (const [i, rl] of all.entries()) {
        const s = sums.get(rl.link.id) ?? { sent: 0, received: 0 };
        s.sent += bytes[i]!.sent;
        s.received += bytes[i]!.received;
        sums.set(rl.link.id, s);
      }
      return [...sums].flatMap(([link, s]) => [[{ link, direction: 'sent' }, s.sent], [{ link, direction: 'received' }, s.received]] as Array<[{ link: string; direction: string }, number]>);
    });
    m.addGauge('sfu_cascade_control_messages', 'Control messages on each cascade link since it came up', ['link', 'direction'] as const, () =>
      this.linkList.flatMap((l) => [[{ link: l.id, direction: 'sent' }, l.channel.counters.sent], [{ link: l.id, direction: 'received' }, l.channel.counters.received]] as Array<[{ link: string; direction: string }, number]>),
    );
    m.addGauge('sfu_cascade_control_bytes', 'Control bytes on each cascade link since it came up', ['link', 'direction'] as const, () =>
      this.linkList.flatMap((l) => [[{ link: l.id, direction: 'sent' }, l.channel.counters.sentBytes], [{ link: l.id, direction: 'received' }, l.channel.counters.receivedBytes]] as Array<[{ link: string; direction: string }, number]>),
    );
    m.addGauge('sfu_cascade_remote_entries', 'Remote peers and producers this node holds (all conferences)', ['kind'] as const, () => [
      [{ kind: 'peers' }, this.budget.total.peers],
      [{ kind: 'producers' }, this.budget.total.producers],
    ]);
  }

  /** Accepts children's control links on `path` of an HTTP server (node token in Authorization). */
  attach(server: http.Server, path = '/cascade'): void {
    const wss = new WebSocketServer({ noServer: true, maxPayload: MAX_CONTROL_MESSAGE_BYTES });
    this.#wss = wss;
    // The dispatcher has given the socket an error handler and a handshake deadline already.
    UpgradeDispatcher.for(server).route(path, (req, socket, head) => {
      const auth = req.headers.authorization ?? '';
      const token = auth.startsWith('Bearer ') ? auth.slice(7) : '';
      const refuse = (status: number, text: string) => refuseUpgrade(socket, status, text);
      if (this.#closed) return refuse(503, 'Service Unavailable');
      const verified = this.#options.childKeys
        ? verifyEnrolledNodeToken(this.#options.childKeys, token)
        : verifyNodeToken(this.#options.childKey ?? this.#options.secret, token);
      verified.then(
        async (claims) => {
          const allowed = this.#options.allowedChildren;
          if (claims.nodeId === this.nodeId || (allowed && !allowed.includes(claims.nodeId))) return refuse(403, 'Forbidden');
          // One live link per node id: a second connection claiming the id of a child whose link
          // still answers is refused (it cannot take over another node's conferences); one whose
          // link is dead (it restarted, its old socket is half-open) replaces it.
          const previous = this.#children.get(claims.nodeId);
          if (previous && !previous.channel.closed && (await previous.channel.probe(this.#options.probeTimeoutMs ?? Math.min(2000, this.#options.pingIntervalMs)))) {
            this.#refusals.warn({ child: claims.nodeId, remote: req.socket.remoteAddress }, 'child refused: a live link with this node id is attached');
            return refuse(409, 'Conflict');
          }
          if (socket.destroyed || this.#closed) return;
          wss.handleUpgrade(req, socket, head, (ws) => this.#onChild(claims.nodeId, new ControlChannel(ws, {
            logger: this.#log.child({ link: `child:${claims.nodeId}` }),
            pingIntervalMs: this.#options.pingIntervalMs,
            requestTimeoutMs: this.#options.requestTimeoutMs,
          })));
        },
        () => {
          this.#refusals.warn({ remote: req.socket.remoteAddress }, 'child refused: bad node token');
          refuse(401, 'Unauthorized');
        },
      ).catch((err: unknown) => {
        this.#log.error({ err: (err as Error).message }, 'child link setup failed');
        refuse(500, 'Internal Server Error');
      });
    });
  }

  /** Drops the live children that no longer have a registered key (revoked since they linked). */
  async recheckChildren(): Promise<string[]> {
    const lookup = this.#options.childKeys;
    if (!lookup) return [];
    const dropped: string[] = [];
    for (const nodeId of [...this.#children.keys()]) {
      const keys = await lookup(nodeId).catch(() => undefined);
      // A failed lookup (database down) keeps the link: only a definite "no key" drops it.
      if (keys && keys.length === 0 && this.dropChild(nodeId, 'key revoked')) dropped.push(nodeId);
    }
    if (dropped.length) this.#log.warn({ children: dropped }, 'children dropped: their keys were revoked');
    return dropped;
  }

  /** Closes a child's live link (its key was revoked): it is refused when it dials again. */
  dropChild(nodeId: string, reason: string): boolean {
    const link = this.#children.get(nodeId);
    if (!link) return false;
    link.channel.close(reason);
    this.#dropChild(link);
    return true;
  }

  close(): void {
    this.#closed = true;
    clearInterval(this.#recheck);
    this.#parentLink?.close();
    for (const link of this.#children.values()) link.channel.close('node shutdown');
    this.#wss?.close();
    for (const cr of this.#rooms.values()) cr.close();
  }

  #onRoomCreated(room: Room): void {
    if (this.#rooms.has(room.id) && !this.#rooms.get(room.id)!.room.closed) return;
    const cr = new CascadeRoom(room, {
      currentParent: () => this.#parent,
      pipeRoute: this.#options.pipeRoute,
      pipeListenIp: this.#options.pipeListenIp,
      pipeAnnouncedAddress: this.#options.pipeAnnouncedAddress,
      unsubscribeLingerMs: this.#options.unsubscribeLingerMs,
      logger: this.#log,
      distrust: this.#refusals,
      budget: this.budget,
      uplinkKbps: this.#options.uplinkKbps,
      ...(this.#options.countIntervalMs !== undefined ? { countIntervalMs: this.#options.countIntervalMs } : {}),
    });
    this.#rooms.set(room.id, cr);
    room.on('close', () => {
      cr.close();
      if (this.#rooms.get(room.id) === cr) this.#rooms.delete(room.id);
    });
    if (this.#parent && !this.#parent.channel.closed) void cr.attachParent(this.#parent);
  }

  #onParentUp(channel: ControlChannel): void {
    const link: Link = { id: 'parent', kind: 'parent', nodeId: this.#options.parentNodeId ?? 'parent', channel };
    this.#parent = link;
    channel.setHandler(this.#handler(link));
    for (const cr of this.#rooms.values()) void cr.attachParent(link);
    this.emit('parentup');
  }

  #onParentDown(reason: string): void {
    // Local participants keep talking; what came from above disappears until the link returns.
    this.#parent = undefined;
    for (const cr of this.#rooms.values()) cr.detach('parent', false);
    this.emit('parentdown', reason);
  }

  #onChild(nodeId: string, channel: ControlChannel): void {
    const link: Link = { id: `child:${nodeId}`, kind: 'child', nodeId, channel };
    const previous = this.#children.get(nodeId);
    if (previous) {
      // The same child again (it restarted, or its old socket is half-dead): the new link wins.
      this.#dropChild(previous);
      previous.channel.close('replaced by a new connection');
    }
    this.#children.set(nodeId, link);
    channel.setHandler(this.#handler(link));
    channel.once('close', () => this.#dropChild(link));
    this.#log.info({ child: nodeId }, 'child link up');
    this.emit('childup', nodeId);
  }

  #dropChild(link: Link): void {
    if (this.#children.get(link.nodeId) !== link) return;
    this.#children.delete(link.nodeId);
    for (const cr of [...this.#rooms.values()]) cr.detach(link.id, false);
    this.#log.warn({ child: link.nodeId }, 'child link down');
    this.emit('childdown', link.nodeId);
  }

  #handler(link: Link): ChannelHandler {
    return {
      onRequest: (req: IncomingRequest) => this.#onRequest(link, req),
      onNotification: (ntf: IncomingNotification) => this.#onNotification(link, ntf),
    };
  }

  async #onRequest(link: Link, req: IncomingRequest): Promise<unknown> {
    switch (req.m) {
      case 'openRoom': {
        if (link.kind !== 'child') throw new CascadeError('bad_request', 'only a child opens rooms');
        // Each room costs a router: one child may not open them without bound.
        let open = 0;
        for (const cr of this.#rooms.values()) if (cr.links.has(link.id)) open++;
        if (open >= MAX_ROOMS_PER_CHILD && !this.#rooms.get(req.d.room)?.links.has(link.id)) throw new CascadeError('busy', `at most ${MAX_ROOMS_PER_CHILD} conferences per child`);
        if (this.#options.admission === 'grant') {
          const claims = await this.#admit(link, req.d.room, req.d.grant);
          // A venue only as the API made it: a child cannot turn an open meeting into a venue.
          if (req.d.layout === 'venue' && claims.layout !== 'venue') {
            this.#refusals.warn({ child: link.nodeId, room: req.d.room }, 'a child called an open meeting a venue; not believed');
            req.d.layout = 'open';
          }
        }
        await this.#verifyChairs(link, req.d.room, req.d.peers, req.d.chairProofs);
        for (let attempt = 0; attempt < 3; attempt++) {
          const room = await this.#host.openRoom(req.d.room);
          const cr = this.#rooms.get(room.id);
          if (room.closed || !cr || cr.room !== room) continue;
          // The parent shows the same grant further up when it attaches there.
          if (req.d.grant) room.noteGrant(req.d.grant);
          return cr.attachChild(link, req.d);
        }
        throw new CascadeError('media_error', 'room could not be opened');
      }
      case 'subscribe': {
        const cr = this.#rooms.get(req.d.room);
        if (!cr) throw new CascadeError('not_found', 'no such conference here');
        return cr.supply(link.id, req.d.producerId);
      }
    }
  }

  async #admit(link: Link, roomId: string, grant: string | undefined): Promise<JoinClaims> {
    const refuse = (why: string): never => {
      this.#log.warn({ child: link.nodeId, room: roomId, why }, 'conference refused to a child');
      this.emit('refused', link.nodeId, roomId, why);
      throw new CascadeError('forbidden', why);
    };
    if (!grant) refuse('no grant for this conference');
    let claims: JoinClaims;
    try {
      claims = await verifyJoinToken(this.#host.joinKey, grant!, GRANT_MAX_AGE_SECONDS);
    } catch {
      return refuse('grant not signed by the API, or too old');
    }
    if (claims.room !== roomId) refuse('grant is for another conference');
    return claims;
  }

  /** Whether the latest join token admitted to this room here (a local peer's or a child's grant) is a venue's. */
  async #grantSaysVenue(roomId: string): Promise<boolean> {
    const grant = this.#host.rooms.get(roomId)?.grant;
    if (!grant) return false;
    try {
      return (await verifyJoinToken(this.#host.joinKey, grant, GRANT_MAX_AGE_SECONDS)).layout === 'venue';
    } catch {
      return false;
    }
  }

  /**
   * A child says who chairs: a peer it lists as chair must come with that chair's join token for
   * this room (signed by the API). Without one it is listed as a participant here and above, and
   * so cannot command the conference from below (see CascadeRoom's conference merge).
   */
  async #verifyChairs(link: Link, roomId: string, peers: Array<{ peerId: string; role: string }>, proofs: Record<string, string> | undefined): Promise<void> {
    if (link.kind !== 'child') return;
    for (const peer of peers) {
      if (peer.role !== 'chair') continue;
      const proof = proofs?.[peer.peerId];
      let ok = false;
      if (proof) {
        try {
          const claims = await verifyJoinToken(this.#host.joinKey, proof, GRANT_MAX_AGE_SECONDS);
          ok = claims.role === 'chair' && claims.room === roomId;
        } catch {
          ok = false;
        }
      }
      if (!ok) {
        this.#refusals.warn({ child: link.nodeId, room: roomId, peer: peer.peerId }, 'a child listed a chair without proof; listed as a participant');
        peer.role = 'participant';
        if (proofs) delete proofs[peer.peerId];
      }
    }
  }

  async #onNotification(link: Link, ntf: IncomingNotification): Promise<void> {
    if (ntf.m === 'peerAdded' && ntf.d.peer.role === 'chair') {
      await this.#verifyChairs(link, ntf.d.room, [ntf.d.peer], ntf.d.chairProof ? { [ntf.d.peer.peerId]: ntf.d.chairProof } : undefined);
      if (ntf.d.peer.role !== 'chair') delete ntf.d.chairProof;
    }
    // The rest of a child's snapshot: its chairs need proofs like openRoom's.
    if (ntf.m === 'catalog' && link.kind === 'child' && ntf.d.peers.some((p) => p.role === 'chair')) {
      await this.#verifyChairs(link, ntf.d.room, ntf.d.peers, ntf.d.chairProofs);
    }
    // Later, the same rule: a child's word that the room became a venue needs the API's grant saying so.
    if (ntf.m === 'layout' && link.kind === 'child' && this.#options.admission === 'grant' && !(await this.#grantSaysVenue(ntf.d.room))) {
      this.#refusals.warn({ child: link.nodeId, room: ntf.d.room }, 'a child called an open meeting a venue; not believed');
      return;
    }
    const cr = this.#rooms.get(ntf.d.room);
    if (!cr) return;
    switch (ntf.m) {
      case 'closeRoom':
        if (link.kind === 'child') cr.detach(link.id, false);
        return;
      case 'roomClosed':
        if (link.kind === 'parent') {
          cr.detach(link.id, false);
          // The parent's room was reset under us; attach again (a new room will host it there).
          setTimeout(() => {
            if (this.#parent === link && !link.channel.closed && !cr.room.closed) void cr.attachParent(link);
          }, 200).unref();
        }
        return;
      case 'unsubscribe':
        cr.unsupply(link.id, ntf.d.producerId);
        return;
      default:
        cr.onNotification(link.id, ntf.m, ntf.d);
    }
  }
}
