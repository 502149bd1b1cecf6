import type { types } from 'mediasoup';
import type { Logger } from '../infra/logger.ts';
import { mediaCodecs } from './mediaCodecs.ts';
import { playoutDelayForRepair } from './playoutDelay.ts';
import { ConferenceControl } from './ConferenceControl.ts';
import type { Ingest } from './Ingest.ts';
import { LayerDemandTable } from './LayerDemand.ts';
import { LayerRefresh } from './LayerRefresh.ts';
import type { Layout, LayerDemand, Notifications, PeerInfo, ProducerInfo, SiteProducers, StageView } from './protocol.ts';
import type { Peer } from './Peer.ts';
import { EMPTY_STAGE, computeStage, sameStage, type Stage } from './Stage.ts';
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
  /** The room became a venue (it never goes back). */
  layoutchanged: [];
  /** The stage may have changed (venue): the cascade reconciles what it shows its children. */
  stagechanged: [];
  /** A site (role chair/participant) of the conference joined, here or anywhere this node hears of. */
  sitejoined: [info: PeerInfo, at: Date];
  siteleft: [peerId: string, at: Date];
  /** localDemand() or demand() of a producer changed. */
  demandchanged: [producerId: string];
};

/** Sites are what a meeting counts: chairs and participants (not viewers, not ingests). */
const isSite = (info: PeerInfo) => info.role === 'chair' || info.role === 'participant';
/** Pages hear `counts` at most this often. */
const COUNTS_INTERVAL_MS = 1000;
/** A new video producer's publisher hears its (initial) demand this long after the produce answer. */
const INITIAL_DEMAND_DELAY_MS = 300;

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
  /** Remote producers piped into this node now (metrics); optional. */
  subscriptionCount?(): number;
  /** The worst round trip a loss of this (piped-in) producer takes to repair; undefined if unknown. */
  repairRttMs?(producerId: string): number | undefined;
}

/** Where plain RTP transports listen (node option plainRtp); undefined: refused. */
export interface PlainRtpListen {
  ip: string;
  announcedAddress?: string;
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
  /** Set by the node when plain RTP transports are allowed. */
  plainRtp: PlainRtpListen | undefined;
  #layout: Layout = 'open';
  // The remote catalog as the cascade tells it through remote*(): indexed for the stage and counts.
  readonly #remotePeers = new Map<string, PeerInfo>();
  readonly #remoteProducers = new Map<string, ProducerInfo>();
  readonly #remoteByPeer = new Map<string, Set<string>>();
  #remoteSites = 0;
  readonly #remoteChairs = new Set<string>();
  /** The next stage flush tells every page and enforces, changed or not (layout change). */
  #forceStageFlush = false;
  // Stage: computed lazily (dirty flag), pushed to pages once per tick when it changed for them.
  #stage: Stage = EMPTY_STAGE;
  #stageDirty = true;
  #stageFlushScheduled = false;
  #flushedStage: Stage = EMPTY_STAGE;
  readonly #pageStageKey = new WeakMap<Peer, string>();
  // Counts: the conference total from the cascade, else this room's own count.
  #joinedTotal: number | undefined;
  #countsSent: number | undefined;
  #countsAt = 0;
  #countsTimer: NodeJS.Timeout | undefined;
  // Layer demand, and what each local publisher was last told of its producers.
  readonly #demand = new LayerDemandTable();
  readonly #toldDemand = new Map<string, LayerDemand>();
  /** The demand each producer had at the last flush: a rise nudges its consumers up (LayerRefresh). */
  readonly #lastDemand = new Map<string, LayerDemand>();
  readonly #layerRefresh = new LayerRefresh((producerId) => this.#localConsumersOf(producerId));
  readonly #demandDirty = new Set<string>();
  #demandFlushScheduled = false;

  private constructor(id: string, router: types.Router, slot: WorkerSlot, logger: Logger, keyFrameRequestDelayMs: number) {
    super();
    this.id = id;
    this.keyFrameRequestDelayMs = keyFrameRequestDelayMs;
    this.router = router;
    this.slot = slot;
    this.#logger = logger;
    this.control = new ConferenceControl(this);
    // Spotlight (floor), dais and broadcast decide the stage.
    this.control.on('changed', () => this.#stageMayHaveChanged());
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

  get layout(): Layout {
    return this.#layout;
  }

  /** Venue is sticky: open -> venue, never back (a late open token does not reopen the floor). */
  setLayout(layout: Layout): void {
    if (layout === this.#layout || layout === 'open') return;
    this.#layout = layout;
    this.#logger.info({ layout }, 'room layout');
    this.emit('layoutchanged');
    this.#forceStageFlush = true;
    this.#stageMayHaveChanged();
    this.control.layoutChanged();
    this.#scheduleCounts();
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
    this.#roster('peerJoined', ingest.peerInfo);
    this.emit('localpeerjoined', ingest.peerInfo);
    this.#roster('newProducer', ingest.producerInfo);
    this.emit('localproduceradded', ingest.producerInfo);
    this.emit('produceravailable', ingest.producerInfo);
    if (this.#touchesStage(ingest.peerInfo.peerId, ingest.producerInfo.producerId)) this.#stageMayHaveChanged();
  }

  removeIngest(ingest: Ingest): void {
    if (!this.#ingests.delete(ingest.id)) return;
    const peerId = ingest.peerInfo.peerId;
    // Ingests sharing a peer id (a camera's video and audio) leave as one site, with the last.
    const peerGone = ![...this.#ingests.values()].some((i) => i.peerInfo.peerId === peerId);
    if (!this.router.closed) {
      this.#roster('producerClosed', { producerId: ingest.producerInfo.producerId });
      if (peerGone) this.#roster('peerLeft', { peerId });
    }
    this.#forgetDemand(ingest.producerInfo.producerId);
    if (this.#touchesStage(peerId, ingest.producerInfo.producerId)) this.#stageMayHaveChanged();
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
    this.#roster('peerJoined', peer.info, peer);
    this.emit('localpeerjoined', peer.info);
    if (isSite(peer.info)) {
      this.emit('sitejoined', peer.info, new Date());
      this.#scheduleCounts();
    }
    if (peer.info.role === 'chair' || this.#touchesStage(peer.id)) this.#stageMayHaveChanged();
    this.#logger.info({ peer: peer.id, user: peer.claims.userId }, 'peer joined');
    return replaced;
  }

  removePeer(peer: Peer): void {
    if (!this.#peers.delete(peer.id)) return;
    peer.close();
    this.#roster('peerLeft', { peerId: peer.id }, peer);
    this.emit('localpeerleft', peer.id);
    if (isSite(peer.info)) {
      this.emit('siteleft', peer.id, new Date());
      this.#scheduleCounts();
    }
    if (this.#touchesStage(peer.id)) this.#stageMayHaveChanged();
    if (!this.router.closed) this.control.peerLeft(peer.id);
    this.#logger.info({ peer: peer.id }, 'peer left');
    this.#closeIfIdle();
  }

  producerAdded(peer: Peer, producer: types.Producer<{ source: Notifications['newProducer']['source'] }>): void {
    const info: ProducerInfo = { producerId: producer.id, peerId: peer.id, kind: producer.kind, source: producer.appData.source, paused: producer.paused };
    this.#roster('newProducer', info, peer);
    this.emit('localproduceradded', info);
    this.emit('produceravailable', info);
    if (this.#touchesStage(peer.id, info.producerId)) this.#stageMayHaveChanged();
    // A video publisher learns soon that nobody consumes it yet (it may send only its lowest layer); not in
    // the same breath as the produce answer, which a client is still mapping to its producer.
    if (info.kind === 'video') setTimeout(() => !producer.closed && this.#demandMayHaveChanged(info.producerId), INITIAL_DEMAND_DELAY_MS).unref();
  }

  // --- the remote catalog: the cascade reports, the Room decides what pages hear ---

  /** A peer on another node of the conference. */
  remotePeerAdded(info: PeerInfo): void {
    if (this.#remotePeers.has(info.peerId)) return;
    this.#remotePeers.set(info.peerId, info);
    this.#roster('peerJoined', info);
    if (isSite(info)) {
      this.#remoteSites++;
      this.emit('sitejoined', info, new Date());
      this.#scheduleCounts();
    }
    if (info.role === 'chair') this.#remoteChairs.add(info.peerId);
    if (info.role === 'chair' || this.#touchesStage(info.peerId)) this.#stageMayHaveChanged();
  }

  remotePeerRemoved(peerId: string): void {
    const info = this.#remotePeers.get(peerId);
    if (!info) return;
    // Its producers are removed by the cascade one by one (each a remoteProducerRemoved).
    this.#remotePeers.delete(peerId);
    this.#remoteChairs.delete(peerId);
    if (!this.router.closed) this.#roster('peerLeft', { peerId });
    if (isSite(info)) {
      this.#remoteSites--;
      this.emit('siteleft', peerId, new Date());
      this.#scheduleCounts();
    }
    if (this.#touchesStage(peerId)) this.#stageMayHaveChanged();
  }

  /** The repair round trip of a piped-in producer changed: its consumers here get a new playout delay. */
  remoteRepairRtt(producerId: string, rttMs: number): void {
    const delayMs = playoutDelayForRepair(rttMs);
    for (const peer of this.#peers.values()) peer.setPlayoutDelay(producerId, delayMs);
  }

  /** The cascade learnt of a producer on another node: local peers are told (open rooms), watchers too. */
  remoteProducerAdded(info: ProducerInfo): void {
    if (this.#remoteProducers.has(info.producerId)) return;
    this.#remoteProducers.set(info.producerId, info);
    let ofPeer = this.#remoteByPeer.get(info.peerId);
    if (!ofPeer) this.#remoteByPeer.set(info.peerId, (ofPeer = new Set()));
    ofPeer.add(info.producerId);
    this.#roster('newProducer', info);
    this.emit('produceravailable', info);
    if (this.#touchesStage(info.peerId, info.producerId)) this.#stageMayHaveChanged();
  }

  remoteProducerRemoved(producerId: string): void {
    const info = this.#remoteProducers.get(producerId);
    if (!info) return;
    this.#remoteProducers.delete(producerId);
    const ofPeer = this.#remoteByPeer.get(info.peerId);
    ofPeer?.delete(producerId);
    if (ofPeer?.size === 0) this.#remoteByPeer.delete(info.peerId);
    if (!this.router.closed) this.#roster('producerClosed', { producerId });
    this.#forgetDemand(producerId);
    if (this.#touchesStage(info.peerId, producerId)) this.#stageMayHaveChanged();
  }

  remoteProducerPaused(producerId: string, paused: boolean): void {
    const info = this.#remoteProducers.get(producerId);
    if (info) this.#remoteProducers.set(producerId, { ...info, paused });
  }

  /** Who a peer of the conference is, wherever it joined (remote ones as the cascade reported them: O(1)). */
  peerInfo(peerId: string): PeerInfo | undefined {
    return (
      this.#peers.get(peerId)?.info ??
      this.#remotePeers.get(peerId) ??
      [...this.#ingests.values()].find((i) => i.peerInfo.peerId === peerId)?.peerInfo
    );
  }

  /** Whether a peer (site, chair, ingest) of the conference is known here. */
  hasPeer(peerId: string): boolean {
    return this.#ingests.has(peerId) || this.peerInfo(peerId) !== undefined;
  }

  /** Producers of one peer of the conference, wherever it joined. */
  producersOf(peerId: string): ProducerInfo[] {
    const local = this.#peers.get(peerId);
    if (local) return local.producerInfos();
    const remote = this.#remoteByPeer.get(peerId);
    if (remote?.size) return [...remote].map((id) => this.#remoteProducers.get(id)!).filter(Boolean);
    return [...this.#ingests.values()].filter((i) => i.peerInfo.peerId === peerId).map((i) => i.producerInfo);
  }

  /** Any producer of the conference known here. */
  producerInfo(producerId: string): ProducerInfo | undefined {
    return this.localProducer(producerId)?.info ?? this.#remoteProducers.get(producerId) ?? this.remote?.producer(producerId);
  }

  /** Rotation: the sites of a page of tiles and their producers; unknown peers are left out. */
  siteProducers(peerIds: readonly string[]): SiteProducers[] {
    const sites: SiteProducers[] = [];
    for (const peerId of new Set(peerIds)) {
      const info = this.peerInfo(peerId);
      if (!info) continue;
      sites.push({ peerId, displayName: info.displayName, unitId: info.unitId, producers: this.producersOf(peerId) });
    }
    return sites;
  }

  // --- stage (venue) ---

  /** The stage (venue); for open rooms every known peer and producer. */
  stage(): Stage {
    if (this.#layout === 'open') {
      const peers = [...this.localPeerInfos(), ...this.#remotePeers.values()];
      const producers = this.producerInfos();
      return { peerIds: new Set(peers.map((p) => p.peerId)), producerIds: new Set(producers.map((p) => p.producerId)), peers, producers };
    }
    if (this.#stageDirty) {
      this.#stageDirty = false;
      const chairs = [...this.#peers.values()].map((p) => p.info).filter((p) => p.role === 'chair');
      for (const id of this.#remoteChairs) chairs.push(this.#remotePeers.get(id)!);
      chairs.sort((a, b) => (a.peerId < b.peerId ? -1 : a.peerId > b.peerId ? 1 : 0));
      this.#stage = computeStage({
        control: this.control.state,
        chairs,
        peer: (id) => this.peerInfo(id),
        producersOf: (id) => this.producersOf(id),
        producer: (id) => this.producerInfo(id),
      });
    }
    return this.#stage;
  }

  /** What one page of a venue room should consume: the stage without its own producers. */
  pageStage(peer: Peer): StageView {
    const s = this.stage();
    return { peers: s.peers.filter((p) => p.peerId !== peer.id), producers: s.producers.filter((p) => p.peerId !== peer.id) };
  }

  /** Whether a page of this venue room may consume the producer (on its stage). */
  onStage(producerId: string): boolean {
    return this.stage().producerIds.has(producerId);
  }

  /** The page was given its stage (join answer): later pushes compare with it. */
  noteStageSent(peer: Peer, view: StageView): void {
    this.#pageStageKey.set(peer, stageKey(view));
  }

  /** Whether a change of this peer (or producer) can move the stage: only stage peers and the broadcast matter. */
  #touchesStage(peerId: string, producerId?: string): boolean {
    if (this.#layout === 'open' || this.#stageDirty) return this.#layout !== 'open';
    const c = this.control.state;
    return this.#stage.peerIds.has(peerId) || c.spotlight === peerId || c.dais.includes(peerId) || (producerId !== undefined && c.broadcast === producerId);
  }

  #stageMayHaveChanged(): void {
    this.#stageDirty = true;
    if (this.#stageFlushScheduled || this.#layout === 'open') return;
    this.#stageFlushScheduled = true;
    // Coalesced: a join's camera and microphone, a command's several changes make one push.
    setImmediate(() => {
      this.#stageFlushScheduled = false;
      if (this.#closed || this.router.closed) return;
      const stage = this.stage();
      const force = this.#forceStageFlush;
      this.#forceStageFlush = false;
      // Pages differ only by their own producers being left out: an unchanged stage is unchanged for all.
      if (sameStage(stage, this.#flushedStage) && !force) return;
      this.#flushedStage = stage;
      this.emit('stagechanged');
      for (const peer of this.#peers.values()) {
        // Whoever may not consume off the stage loses what left it, server-side.
        if (!peer.canRotate) peer.enforceStage(stage.producerIds);
        const view = this.pageStage(peer);
        const key = stageKey(view);
        if (this.#pageStageKey.get(peer) === key) continue;
        this.#pageStageKey.set(peer, key);
        peer.notify('stage', view);
      }
    });
  }

  // --- counts ---

  /** The number of sites in the whole conference (the cascade's total, else what this room knows). */
  get joined(): number {
    return this.#joinedTotal ?? this.localSiteCount() + this.#remoteSites;
  }

  /** Sites joined on this node itself. */
  localSiteCount(): number {
    let n = 0;
    for (const p of this.#peers.values()) if (isSite(p.info)) n++;
    return n;
  }

  /** The cascade's conference total (undefined: count what this room knows again). */
  setJoinedTotal(n: number | undefined): void {
    this.#joinedTotal = n;
    this.#scheduleCounts();
  }

  /** The page got the count in its join answer. */
  #scheduleCounts(): void {
    if (this.#layout === 'open' || this.#countsTimer) return;
    const wait = Math.max(0, this.#countsAt + COUNTS_INTERVAL_MS - Date.now());
    this.#countsTimer = setTimeout(() => {
      this.#countsTimer = undefined;
      if (this.#closed || this.router.closed) return;
      const joined = this.joined;
      if (joined === this.#countsSent) return;
      this.#countsSent = joined;
      this.#countsAt = Date.now();
      this.broadcast('counts', { joined });
    }, wait);
    this.#countsTimer.unref();
  }

  // --- layer demand ---

  /** A local video consumer's preferred layer (-1: closed). */
  setConsumerDemand(producerId: string, consumerId: string, layer: LayerDemand): void {
    if (this.#demand.setLocal(producerId, consumerId, layer)) this.#demandMayHaveChanged(producerId);
  }

  /** What consumers beyond a cascade link want of a producer this node supplies over it (-1 clears). */
  setLinkDemand(producerId: string, linkId: string, layer: LayerDemand): void {
    if (this.#demand.setLink(producerId, linkId, layer)) this.#demandMayHaveChanged(producerId);
  }

  /** The highest layer this node's own consumers want (-1: none). */
  localDemand(producerId: string): LayerDemand {
    return this.#demand.local(producerId);
  }

  /** The highest layer anyone here or beyond any link wants (-1: nobody). */
  demand(producerId: string): LayerDemand {
    return this.#demand.demand(producerId);
  }

  *#localConsumersOf(producerId: string): Iterable<types.Consumer> {
    for (const peer of this.#peers.values()) for (const c of peer.consumers.values()) if (c.producerId === producerId) yield c;
  }

  #forgetDemand(producerId: string): void {
    this.#demand.forget(producerId);
    this.#toldDemand.delete(producerId);
    this.#lastDemand.delete(producerId);
    this.#layerRefresh.forget(producerId);
    this.#demandDirty.delete(producerId);
  }

  #demandMayHaveChanged(producerId: string): void {
    this.#demandDirty.add(producerId);
    if (this.#demandFlushScheduled) return;
    this.#demandFlushScheduled = true;
    // After the current request's answer: a publisher hears of its producer only once it knows its id.
    setImmediate(() => {
      this.#demandFlushScheduled = false;
      const dirty = [...this.#demandDirty];
      this.#demandDirty.clear();
      if (this.#closed) return;
      for (const producerId of dirty) {
        this.emit('demandchanged', producerId);
        const maxSpatialLayer = this.demand(producerId);
        if (maxSpatialLayer > (this.#lastDemand.get(producerId) ?? -1)) this.#layerRefresh.rose(producerId);
        if (maxSpatialLayer < 0) this.#lastDemand.delete(producerId);
        else this.#lastDemand.set(producerId, maxSpatialLayer);
        const origin = this.localProducer(producerId);
        if (!origin?.peer || origin.info.kind !== 'video') continue;
        if (this.#toldDemand.get(producerId) === maxSpatialLayer) continue;
        this.#toldDemand.set(producerId, maxSpatialLayer);
        origin.peer.notify('layerDemand', { producerId, maxSpatialLayer });
      }
    });
  }

  /** Every producer of the conference that can be consumed here (local and remote). */
  producerInfos(): ProducerInfo[] {
    return [...this.localProducerInfos(), ...(this.remote?.producers() ?? this.#remoteProducers.values())];
  }

  producerClosed(peer: Peer, producerId: string): void {
    this.emit('localproducerclosed', producerId);
    this.#forgetDemand(producerId);
    this.#stageMayHaveChanged();
    // When the router itself is closing, peers are told to reconnect instead.
    if (this.router.closed) return;
    this.#roster('producerClosed', { producerId }, peer);
  }

  producerPauseChanged(producerId: string, paused: boolean): void {
    this.emit('localproducerpaused', producerId, paused);
  }

  /** An ingest's rendition of its producer for viewers that cannot decode the original (see Ingest.adopt). */
  renditionFor(producerId: string): Promise<types.Producer> | undefined {
    for (const ingest of this.#ingests.values()) if (ingest.producer.id === producerId) return ingest.rendition();
    return undefined;
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

  /**
   * Sends a notification to every local page. The roster methods (peerJoined, peerLeft, newProducer,
   * producerClosed) about REMOTE peers/producers are taken as the remote catalog changing (the
   * cascade's older calls) and go through remote*(), which decides what pages hear.
   */
  broadcast<M extends keyof Notifications>(method: M, data: Notifications[M], except?: Peer): void {
    if (method === 'peerJoined') {
      const info = data as PeerInfo;
      if (!this.#peers.has(info.peerId)) return this.remotePeerAdded(info);
    } else if (method === 'peerLeft') {
      const { peerId } = data as Notifications['peerLeft'];
      if (this.#remotePeers.has(peerId)) return this.remotePeerRemoved(peerId);
    } else if (method === 'producerClosed') {
      const { producerId } = data as Notifications['producerClosed'];
      if (this.#remoteProducers.has(producerId)) return this.remoteProducerRemoved(producerId);
    }
    if (method === 'peerJoined' || method === 'peerLeft' || method === 'newProducer' || method === 'producerClosed') {
      return this.#roster(method as 'peerJoined', data as Notifications['peerJoined'], except);
    }
    for (const p of this.#peers.values()) if (p !== except) p.notify(method, data);
  }

  /** Roster notifications: every page of an open room; none in a venue (pages follow `stage`). */
  #roster<M extends 'peerJoined' | 'peerLeft' | 'newProducer' | 'producerClosed'>(method: M, data: Notifications[M], except?: Peer): void {
    if (this.#layout === 'venue') return;
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
    clearTimeout(this.#countsTimer);
    this.#layerRefresh.close();
    this.emit('close');
  }
}

function stageKey(view: StageView): string {
  return `${view.peers.map((p) => p.peerId).sort().join(',')}|${view.producers.map((p) => p.producerId).sort().join(',')}`;
}
