import { Device, type types } from 'mediasoup-client';
import { selectedIceRoute, type IceRoute } from './media.ts';
import type {
  ChairCommand,
  ConferenceStateView,
  ErrorBody,
  Layout,
  MediaSource,
  Notifications,
  PeerInfo,
  ProducerInfo,
  ServerMessage,
  SiteProducers,
  SpatialLayer,
  StageView,
} from '../../../sfu/protocol.ts';

export type { Layout, SiteProducers, SpatialLayer };

// Browser side of the SFU signalling protocol (sfu/protocol.ts). Joins one room with a join token,
// publishes local tracks (the camera in simulcast layers fitted to its size, encoding only the layers
// the node says someone consumes: `layerDemand`), and rejoins by itself when the node
// asks (its media worker died) or the socket drops, republishing the same local tracks.
// Open rooms: consumes every remote producer. Venue rooms (主会场/分会场): consumes exactly what the
// node's `stage` lists; a chair (or a supervisor with `rotate`) also consumes rotation tiles by hand.

/** The conference state; the venue fields may be missing from nodes that predate them. */
export type ConferenceView = Omit<ConferenceStateView, 'floor' | 'dais' | 'layout' | 'selfHand'> & Partial<Pick<ConferenceStateView, 'floor' | 'dais' | 'layout' | 'selfHand'>>;

/** A chair command (mute, spotlight, broadcast, hands, give the floor, dais, end). */
export type VenueCommand = ChairCommand;

/** What a venue page should consume now (the node's `stage` notification). */
export type Stage = StageView;

/** One consumer's figures (for tests and the console): the decoded size proves the layer received. */
export interface ConsumerStats {
  consumerId: string;
  producerId: string;
  peerId: string;
  kind: 'audio' | 'video';
  source: MediaSource;
  /** A rotation tile (consumed by hand), not a stage / open-room consumer. */
  tile: boolean;
  framesDecoded: number;
  frameWidth: number;
  frameHeight: number;
  packetsReceived: number;
}

/** One simulcast stream this page sends. */
export interface OutboundStats {
  source: MediaSource;
  rid: string;
  active: boolean;
  frameWidth: number;
  frameHeight: number;
  bytesSent: number;
  qualityLimitationReason: string;
}

interface OutboundRtpStats {
  type: string;
  rid?: string;
  active?: boolean;
  frameWidth?: number;
  frameHeight?: number;
  bytesSent?: number;
  qualityLimitationReason?: string;
}

/**
 * Simulcast of the camera, VP8, lowest layer first: a quarter, a half and the full capture. Chrome sends
 * no more layers than the capture size allows (3 from 960x540, 2 from 480x270, else 1) and drops the
 * top ones, so the layers are fitted to the capture: the top layer is always the full picture (the
 * large view) and the lowest a quarter of it (the rotation tiles).
 */
export function cameraLayers(width: number, height: number): types.RtpEncodingParameters[] {
  const pixels = width * height;
  if (pixels >= 960 * 540) {
    return [
      { scaleResolutionDownBy: 4, maxBitrate: 120_000 },
      { scaleResolutionDownBy: 2, maxBitrate: 400_000 },
      { scaleResolutionDownBy: 1, maxBitrate: 1_200_000 },
    ];
  }
  if (pixels >= 480 * 270) {
    return [
      { scaleResolutionDownBy: 4, maxBitrate: 120_000 },
      { scaleResolutionDownBy: 1, maxBitrate: 800_000 },
    ];
  }
  return [];
}

export interface RemoteTrack {
  consumerId: string;
  producerId: string;
  peerId: string;
  kind: 'audio' | 'video';
  source: MediaSource;
  track: MediaStreamTrack;
}

export interface VideoQuality {
  freezeCount: number;
  /** Seconds. */
  totalFreezesDuration: number;
  packetsLost: number;
  nackCount: number;
  /** Average time a frame waited in the jitter buffer. */
  jitterBufferDelayMs: number;
  /** The playout delay the node asked for (0: none). */
  playoutDelayMs: number;
}

interface InboundRtpStats {
  type: string;
  kind?: string;
  framesDecoded?: number;
  packetsReceived?: number;
  packetsLost?: number;
  nackCount?: number;
  freezeCount?: number;
  totalFreezesDuration?: number;
  jitterBufferDelay?: number;
  jitterBufferEmittedCount?: number;
  frameWidth?: number;
  frameHeight?: number;
}

export type ClientState = 'connecting' | 'joined' | 'reconnecting' | 'closed';

export interface ClientEvents {
  state: ClientState;
  peers: PeerInfo[];
  tracks: RemoteTrack[];
  notice: string;
  /** The chair's controls as they now stand (spotlight, broadcast, mute, hands, floor, dais). */
  conference: ConferenceView;
  /** Venue rooms: what the node puts on this page's stage. */
  stage: Stage;
  /** Sites in the whole conference (venue rooms; coalesced by the node). */
  counts: { joined: number };
  layout: Layout;
  /** The meeting was ended by the chair or the meetings API; the client will not rejoin. */
  ended: 'chair' | 'api';
  /** Rotation tiles changed by the node (a tile's producer went away). */
  tiles: RemoteTrack[];
}

interface ConsumeAnswer {
  consumerId: string;
  producerId: string;
  kind: 'audio' | 'video';
  rtpParameters: types.RtpParameters;
  peerId: string;
  source: MediaSource;
  /** The node's hint for streams repaired across a long cascade link (see sfu/playoutDelay.ts). */
  playoutDelayMs?: number;
}

/**
 * Holds a received stream `ms` before playing it (0: the browser's default), so retransmissions that
 * cross a long link upstream of the node arrive before their frame is due.
 */
function setPlayoutDelay(consumer: types.Consumer, ms: number): void {
  // jitterBufferTarget (ms) is the standard; playoutDelayHint (s) is what Chromium before 114 had.
  const r = consumer.rtpReceiver as { jitterBufferTarget?: number | null; playoutDelayHint?: number | null } | undefined;
  if (!r) return;
  if ('jitterBufferTarget' in r) r.jitterBufferTarget = ms > 0 ? ms : null;
  else r.playoutDelayHint = ms > 0 ? ms / 1000 : null;
}

/** A join token's claims, read unverified (the node checks the signature): only to shape the page. */
export function tokenClaims(token: string): { role?: string; userId?: number; layout?: Layout; rotate?: boolean } {
  try {
    const c: unknown = JSON.parse(atob(token.split('.')[1]!.replace(/-/g, '+').replace(/_/g, '/')));
    return typeof c === 'object' && c !== null ? (c as { role?: string; userId?: number; layout?: Layout; rotate?: boolean }) : {};
  } catch {
    return {};
  }
}

export class SignallingRequestError extends Error {
  constructor(readonly code: ErrorBody['code'], message: string) {
    super(message);
    this.name = 'SignallingRequestError';
  }
}

type Listener<K extends keyof ClientEvents> = (value: ClientEvents[K]) => void;

export class SfuClient {
  readonly #url: string;
  #token: string;
  readonly #refreshToken: (() => Promise<string>) | undefined;
  #ws: WebSocket | undefined;
  #nextId = 1;
  readonly #pending = new Map<string, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  #device: Device | undefined;
  #sendTransport: types.Transport | undefined;
  #recvTransport: types.Transport | undefined;
  readonly #local = new Map<MediaSource, MediaStreamTrack>();
  readonly #producers = new Map<MediaSource, types.Producer>();
  readonly #consumers = new Map<string, { consumer: types.Consumer; info: RemoteTrack }>();
  // Rotation tiles: consumed by hand (chair / rotate), released by hand; never touched by the stage.
  readonly #tiles = new Map<string, { consumer: types.Consumer; info: RemoteTrack }>();
  // Venue: the stage's producers being consumed right now, so a second `stage` does not consume them twice.
  readonly #inFlight = new Set<string>();
  readonly #peers = new Map<string, PeerInfo>();
  // Producers announced (join snapshot or notifications) that are not consumed yet: notifications
  // can arrive while the device and recv transport are still being set up.
  readonly #announced = new Map<string, ProducerInfo>();
  readonly #listeners = new Map<keyof ClientEvents, Set<(value: never) => void>>();
  #state: ClientState = 'connecting';
  #closed = false;
  #rejoining: Promise<void> | undefined;
  peerId = '';
  role: 'chair' | 'participant' | 'viewer' = 'participant';
  reconnects = 0;
  conference: ConferenceView | undefined;
  ended: 'chair' | 'api' | undefined;
  layout: Layout = 'open';
  stage: Stage = { peers: [], producers: [] };
  counts: { joined: number } = { joined: 0 };
  /** Last layer demand the node sent per own producer (-1: nobody consumes it). */
  readonly layerDemand = new Map<string, number>();
  // The local microphone was paused because the chair muted this site (so it is resumed when let go).
  #mutedByChair = false;
  // TURN servers with short-lived credentials from the join: with them ICE adds relay candidates and falls
  // back to the relay by itself when direct UDP/TCP to the node fails (iceTransportPolicy stays 'all').
  #iceServers: RTCIceServer[] | undefined;

  /**
   * `refreshToken` fetches a fresh join token for a rejoin: tokens live 10 minutes, meetings and
   * consultations longer, and a node restart or network drop may come at any time.
   */
  constructor(url: string, token: string, refreshToken?: () => Promise<string>) {
    this.#url = url;
    this.#token = token;
    this.#refreshToken = refreshToken;
  }

  get state(): ClientState {
    return this.#state;
  }
  get peers(): PeerInfo[] {
    return [...this.#peers.values()];
  }
  get tracks(): RemoteTrack[] {
    return [...this.#consumers.values()].map((c) => c.info);
  }
  /** Rotation tiles consumed now. */
  get tiles(): RemoteTrack[] {
    return [...this.#tiles.values()].map((c) => c.info);
  }
  /**
   * The token's `rotate` claim (a supervisor above the chair who may rotate), read unverified: only to
   * shape the page; the node enforces it.
   */
  get rotate(): boolean {
    return this.role === 'chair' || tokenClaims(this.#token).rotate === true;
  }

  on<K extends keyof ClientEvents>(event: K, listener: Listener<K>): () => void {
    let set = this.#listeners.get(event);
    if (!set) this.#listeners.set(event, (set = new Set()));
    set.add(listener);
    return () => set.delete(listener);
  }

  /** Connects, joins, and starts consuming what the room already has. */
  async join(): Promise<void> {
    await this.#openSocket();
    await this.#joinRoom();
  }

  /** Publishes a local track (kept, so a rejoin republishes it). */
  async publish(track: MediaStreamTrack, source: MediaSource): Promise<void> {
    this.#local.set(source, track);
    if (this.#state === 'joined') await this.#produce(track, source);
  }

  async unpublish(source: MediaSource): Promise<void> {
    this.#local.delete(source);
    const producer = this.#producers.get(source);
    if (!producer) return;
    this.#producers.delete(source);
    producer.close();
    await this.request('closeProducer', { producerId: producer.id }).catch(() => undefined);
  }

  /** A chair's command (mute all, unmute a site, spotlight, broadcast, lower a hand, give the floor, dais, end). */
  chair(cmd: VenueCommand): Promise<unknown> {
    return this.request('chairCommand', cmd);
  }

  /** Chair / rotate: the producers of the sites on a rotation page (sites the node does not know are left out). */
  async siteProducers(peerIds: string[]): Promise<SiteProducers[]> {
    if (peerIds.length === 0) return [];
    const r = (await this.request('siteProducers', { peerIds: peerIds.slice(0, 50) })) as { sites: SiteProducers[] };
    return r.sites;
  }

  /**
   * Chair / rotate: consumes one producer as a rotation tile (default the lowest layer: a tile is small).
   * The tile is the caller's to release; a rejoin drops every tile (the caller consumes them again).
   */
  async consumeTile(p: ProducerInfo, layer: SpatialLayer = 0): Promise<RemoteTrack> {
    const transport = this.#recvTransport;
    if (!transport) throw new Error('not joined');
    const r = (await this.request('consume', { producerId: p.producerId, layer })) as ConsumeAnswer;
    const consumer = await transport.consume({ id: r.consumerId, producerId: r.producerId, kind: r.kind, rtpParameters: r.rtpParameters });
    if (r.playoutDelayMs) setPlayoutDelay(consumer, r.playoutDelayMs);
    const info: RemoteTrack = { consumerId: r.consumerId, producerId: r.producerId, peerId: r.peerId, kind: r.kind, source: r.source, track: consumer.track };
    this.#tiles.set(consumer.id, { consumer, info });
    await this.request('resumeConsumer', { consumerId: consumer.id });
    return info;
  }

  /** Closes a rotation tile here and on the node (the node then drops its pipe if nothing else wants it). */
  async releaseTile(consumerId: string): Promise<void> {
    const c = this.#tiles.get(consumerId);
    if (!c) return;
    this.#tiles.delete(consumerId);
    c.consumer.close();
    await this.request('closeConsumer', { consumerId }).catch(async (e: unknown) => {
      // A node without closeConsumer: at least stop the stream.
      if (e instanceof SignallingRequestError && e.code === 'bad_request') await this.request('pauseConsumer', { consumerId }).catch(() => undefined);
    });
  }

  /** Chair / rotate: the node pipes these producers in and holds them (the next rotation page), replacing the last set. */
  async warm(producerIds: string[]): Promise<number> {
    const r = (await this.request('warm', { producerIds: producerIds.slice(0, 25) })) as { warmed: number };
    return r.warmed;
  }

  /** Which simulcast layer a consumer (stage or tile) should receive. */
  setConsumerLayer(consumerId: string, layer: SpatialLayer): Promise<unknown> {
    return this.request('setConsumerLayer', { consumerId, layer });
  }

  raiseHand(raised: boolean): Promise<unknown> {
    return this.request('raiseHand', { raised });
  }

  /** Id of the producer this client publishes for a source (e.g. its screen, for a broadcast). */
  producerId(source: MediaSource): string | undefined {
    return this.#producers.get(source)?.id;
  }

  async leave(): Promise<void> {
    this.#closed = true;
    try {
      if (this.#ws?.readyState === WebSocket.OPEN) await this.request('leave', {});
    } catch {
      // leaving anyway
    }
    this.#teardown();
    this.#ws?.close();
    this.#setState('closed');
  }

  /** Decoding figures for monitoring and tests: frames decoded per remote video, audio packets, each consumer's decoded size. */
  async stats(): Promise<{
    videoFramesDecoded: Record<string, number>;
    audioPacketsReceived: number;
    peers: number;
    /** Per remote peer's video: what a link in between costs (freezes as the browser counts them, repairs). */
    videoQuality: Record<string, VideoQuality>;
    consumers: ConsumerStats[];
    /** What this page sends, per simulcast stream (rid): proves which layers the encoder runs. */
    sending: OutboundStats[];
    layout: Layout;
    counts: { joined: number };
  }> {
    const videoFramesDecoded: Record<string, number> = {};
    const videoQuality: Record<string, VideoQuality> = {};
    const consumers: ConsumerStats[] = [];
    let audioPacketsReceived = 0;
    const all = [...[...this.#consumers.values()].map((c) => ({ ...c, tile: false })), ...[...this.#tiles.values()].map((c) => ({ ...c, tile: true }))];
    for (const { consumer, info, tile } of all) {
      const report = await consumer.getStats().catch(() => new Map() as unknown as RTCStatsReport);
      const row: ConsumerStats = { consumerId: info.consumerId, producerId: info.producerId, peerId: info.peerId, kind: info.kind, source: info.source, tile, framesDecoded: 0, frameWidth: 0, frameHeight: 0, packetsReceived: 0 };
      report.forEach((s: InboundRtpStats) => {
        if (s.type !== 'inbound-rtp') return;
        row.packetsReceived += s.packetsReceived ?? 0;
        if (s.kind === 'video') {
          row.framesDecoded += s.framesDecoded ?? 0;
          row.frameWidth = s.frameWidth ?? row.frameWidth;
          row.frameHeight = s.frameHeight ?? row.frameHeight;
          videoFramesDecoded[info.peerId] = (videoFramesDecoded[info.peerId] ?? 0) + (s.framesDecoded ?? 0);
          const q = (videoQuality[info.peerId] ??= { freezeCount: 0, totalFreezesDuration: 0, packetsLost: 0, nackCount: 0, jitterBufferDelayMs: 0, playoutDelayMs: 0 });
          q.playoutDelayMs = Math.max(q.playoutDelayMs, (consumer.rtpReceiver as { jitterBufferTarget?: number | null } | undefined)?.jitterBufferTarget ?? 0);
          q.freezeCount += s.freezeCount ?? 0;
          q.totalFreezesDuration += s.totalFreezesDuration ?? 0;
          q.packetsLost += s.packetsLost ?? 0;
          q.nackCount += s.nackCount ?? 0;
          if (s.jitterBufferDelay && s.jitterBufferEmittedCount) q.jitterBufferDelayMs = (s.jitterBufferDelay / s.jitterBufferEmittedCount) * 1000;
        }
        if (s.kind === 'audio') audioPacketsReceived += s.packetsReceived ?? 0;
      });
      consumers.push(row);
    }
    const sending: OutboundStats[] = [];
    for (const [source, producer] of this.#producers) {
      if (producer.kind !== 'video') continue;
      const report = await producer.getStats().catch(() => new Map() as unknown as RTCStatsReport);
      report.forEach((s: OutboundRtpStats) => {
        if (s.type !== 'outbound-rtp') return;
        sending.push({ source, rid: s.rid ?? '', active: s.active ?? true, frameWidth: s.frameWidth ?? 0, frameHeight: s.frameHeight ?? 0, bytesSent: s.bytesSent ?? 0, qualityLimitationReason: s.qualityLimitationReason ?? '' });
      });
    }
    return { videoFramesDecoded, audioPacketsReceived, peers: this.#peers.size, videoQuality, consumers, sending, layout: this.layout, counts: this.counts };
  }

  request(method: string, data: unknown, timeoutMs = 10_000): Promise<unknown> {
    const ws = this.#ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) return Promise.reject(new Error('not connected'));
    const id = String(this.#nextId++);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        reject(new Error(`${method}: no answer in ${timeoutMs} ms`));
      }, timeoutMs);
      this.#pending.set(id, {
        resolve: (v) => (clearTimeout(timer), resolve(v)),
        reject: (e) => (clearTimeout(timer), reject(e)),
      });
      ws.send(JSON.stringify({ id, method, data }));
    });
  }

  #emit<K extends keyof ClientEvents>(event: K, value: ClientEvents[K]): void {
    for (const l of this.#listeners.get(event) ?? []) (l as Listener<K>)(value);
  }

  #setState(state: ClientState): void {
    this.#state = state;
    this.#emit('state', state);
  }

  #openSocket(): Promise<void> {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(this.#url);
      this.#ws = ws;
      ws.onopen = () => resolve();
      ws.onerror = () => reject(new Error('cannot reach the media server'));
      ws.onmessage = (ev) => this.#onMessage(String(ev.data));
      ws.onclose = () => {
        for (const p of this.#pending.values()) p.reject(new Error('connection lost'));
        this.#pending.clear();
        if (!this.#closed && this.#ws === ws) this.#scheduleRejoin();
      };
    });
  }

  #onMessage(text: string): void {
    let msg: ServerMessage;
    try {
      msg = JSON.parse(text) as ServerMessage;
    } catch {
      return;
    }
    if (msg.type === 'response') {
      const p = msg.id ? this.#pending.get(msg.id) : undefined;
      if (!p || !msg.id) return;
      this.#pending.delete(msg.id);
      if (msg.ok) p.resolve(msg.data);
      else p.reject(new SignallingRequestError(msg.error.code, msg.error.message));
      return;
    }
    void this.#onNotification(msg.method, msg.data as Notifications[typeof msg.method]);
  }

  async #onNotification(method: keyof Notifications, data: Notifications[keyof Notifications]): Promise<void> {
    switch (method) {
      case 'peerJoined': {
        const p = data as PeerInfo;
        this.#peers.set(p.peerId, p);
        this.#emit('peers', this.peers);
        break;
      }
      case 'peerLeft': {
        const { peerId } = data as Notifications['peerLeft'];
        this.#peers.delete(peerId);
        for (const [id, c] of this.#consumers) if (c.info.peerId === peerId) this.#dropConsumer(id);
        for (const [id, p] of this.#announced) if (p.peerId === peerId) this.#announced.delete(id);
        this.#emit('peers', this.peers);
        this.#emit('tracks', this.tracks);
        break;
      }
      case 'newProducer': {
        // In a venue room only the stage is consumed (the node pushes `stage` when it changes).
        if (this.layout === 'venue') break;
        const p = data as ProducerInfo;
        this.#announced.set(p.producerId, p);
        if (this.#state === 'joined') await this.#consume(p).catch((e: Error) => this.#emit('notice', e.message));
        break;
      }
      case 'stage':
        this.#setStage(data as Notifications['stage']);
        break;
      case 'counts':
        this.counts = data as Notifications['counts'];
        this.#emit('counts', this.counts);
        break;
      case 'layerDemand': {
        const { producerId, maxSpatialLayer } = data as Notifications['layerDemand'];
        this.layerDemand.set(producerId, maxSpatialLayer);
        await this.#applyDemand(producerId);
        break;
      }
      case 'producerClosed':
        this.#announced.delete((data as Notifications['producerClosed']).producerId);
        break;
      case 'consumerClosed': {
        const { consumerId } = data as Notifications['consumerClosed'];
        const tile = this.#tiles.has(consumerId);
        this.#dropConsumer(consumerId);
        if (tile) this.#emit('tiles', this.tiles);
        else this.#emit('tracks', this.tracks);
        break;
      }
      case 'playoutDelay': {
        const { consumerId, delayMs } = data as Notifications['playoutDelay'];
        const c = this.#consumers.get(consumerId) ?? this.#tiles.get(consumerId);
        if (c) setPlayoutDelay(c.consumer, delayMs);
        break;
      }
      case 'reconnect':
        this.#scheduleRejoin();
        break;
      case 'conferenceState':
        this.#applyConference(data as ConferenceView);
        break;
      case 'meetingEnded':
        this.ended = (data as Notifications['meetingEnded']).reason;
        this.#closed = true;
        this.#teardown();
        this.#setState('closed');
        this.#emit('ended', this.ended);
        this.#ws?.close();
        break;
      default:
        break;
    }
  }

  #applyConference(view: ConferenceView): void {
    this.conference = view;
    if (view.layout && view.layout !== this.layout) this.#setLayout(view.layout);
    // The server already holds the microphone producer paused; stop sending too, and resume when let go.
    const mic = this.#producers.get('microphone');
    if (mic && view.selfMuted && !mic.paused) {
      mic.pause();
      this.#mutedByChair = true;
    } else if (mic && !view.selfMuted && this.#mutedByChair) {
      mic.resume();
      this.#mutedByChair = false;
    }
    this.#emit('conference', view);
  }

  async #joinRoom(): Promise<void> {
    const device = new Device();
    this.#device = device;
    const result = (await this.request('join', { token: this.#token })) as {
      peerId: string;
      routerRtpCapabilities: types.RtpCapabilities;
      peers: PeerInfo[];
      producers: ProducerInfo[];
      role: 'chair' | 'participant' | 'viewer';
      conference?: ConferenceView;
      layout?: Layout;
      counts?: { joined: number };
      iceServers?: RTCIceServer[];
    };
    this.#iceServers = result.iceServers;
    this.peerId = result.peerId;
    this.role = result.role;
    this.layout = result.layout ?? tokenClaims(this.#token).layout ?? 'open';
    if (result.counts) this.counts = result.counts;
    this.#peers.clear();
    for (const p of result.peers) this.#peers.set(p.peerId, p);
    // Venue: the answer's peers and producers are the stage's.
    if (this.layout === 'venue') this.stage = { peers: result.peers, producers: result.producers };
    else for (const p of result.producers) this.#announced.set(p.producerId, p);
    this.#emit('layout', this.layout);
    if (result.counts) this.#emit('counts', this.counts);
    this.#emit('peers', this.peers);
    await device.load({ routerRtpCapabilities: result.routerRtpCapabilities });
    await this.request('setRtpCapabilities', { rtpCapabilities: device.rtpCapabilities });
    this.#recvTransport = await this.#createTransport('recv');
    this.#setState('joined');
    for (const [source, track] of this.#local) await this.#produce(track, source);
    if (result.conference) this.#applyConference(result.conference);
    if (this.layout === 'venue') this.#setStage(this.stage);
    for (const p of [...this.#announced.values()]) await this.#consume(p).catch((e: Error) => this.#emit('notice', e.message));
  }

  /** Open → venue (sticky on the node): from now on only the stage is consumed. */
  #setLayout(layout: Layout): void {
    this.layout = layout;
    this.#emit('layout', layout);
  }

  /**
   * Venue: consume what the stage lists (the large view: layer 2) and close what left it. Each stage is
   * applied as it comes; a producer already being consumed is not consumed twice, and a consume that
   * completes after its producer left the stage is closed again. The node closes its side of a consumer
   * whose producer left the stage (and says `consumerClosed`); this closes ours at once.
   */
  #setStage(stage: Stage): void {
    this.stage = stage;
    for (const p of stage.peers) this.#peers.set(p.peerId, p);
    for (const id of [...this.#peers.keys()]) if (!stage.peers.some((p) => p.peerId === id)) this.#peers.delete(id);
    this.#emit('peers', this.peers);
    this.#emit('stage', stage);
    // At once, not after the last stage's consumes: the floor's audio may come a moment after its video.
    this.#reconcileStage().catch((e: Error) => this.#emit('notice', e.message));
  }

  async #reconcileStage(): Promise<void> {
    if (this.#state !== 'joined' || !this.#recvTransport) return;
    const want = new Map(this.stage.producers.filter((p) => p.peerId !== this.peerId).map((p) => [p.producerId, p]));
    let changed = false;
    for (const [id, c] of this.#consumers) {
      if (want.has(c.info.producerId)) continue;
      this.#dropConsumer(id);
      changed = true;
      // The node closes it too when the stage changes; a stale one is closed by us (ignored when already gone).
      void this.request('closeConsumer', { consumerId: id }).catch(() => undefined);
    }
    if (changed) this.#emit('tracks', this.tracks);
    const have = new Set([...this.#consumers.values()].map((c) => c.info.producerId));
    // Every new stage producer at once (the floor's audio and video arrive together; mediasoup-client
    // batches them into one renegotiation).
    const fresh = [...want.values()].filter((p) => !have.has(p.producerId) && !this.#inFlight.has(p.producerId));
    await Promise.all(
      fresh.map(async (p) => {
        this.#inFlight.add(p.producerId);
        try {
          await this.#consumeNow(p, 2);
          if (!this.stage.producers.some((x) => x.producerId === p.producerId)) {
            for (const [id, c] of this.#consumers) {
              if (c.info.producerId !== p.producerId) continue;
              this.#dropConsumer(id);
              void this.request('closeConsumer', { consumerId: id }).catch(() => undefined);
            }
            this.#emit('tracks', this.tracks);
          }
        } catch (e) {
          this.#emit('notice', (e as Error).message);
        } finally {
          this.#inFlight.delete(p.producerId);
        }
      }),
    );
  }

  /** Obeys the node's layer demand: stop encoding layers nobody asked for (nobody at all: keep layer 0). */
  async #applyDemand(producerId: string): Promise<void> {
    const producer = [...this.#producers.values()].find((p) => p.id === producerId);
    const layer = this.layerDemand.get(producerId);
    if (!producer || layer === undefined || producer.kind !== 'video' || (producer.rtpParameters.encodings?.length ?? 0) < 2) return;
    await producer.setMaxSpatialLayer(Math.max(0, Math.min(2, layer))).catch((e: Error) => this.#emit('notice', e.message));
  }

  /** The candidate pair each transport uses now (host, srflx, relay…): what a person's network allowed. */
  async iceRoutes(): Promise<{ send?: IceRoute; recv?: IceRoute }> {
    const route = async (t: types.Transport | undefined): Promise<IceRoute | undefined> => (t ? selectedIceRoute(await t.getStats()) : undefined);
    const [send, recv] = await Promise.all([route(this.#sendTransport), route(this.#recvTransport)]);
    return { ...(send ? { send } : {}), ...(recv ? { recv } : {}) };
  }

  async #createTransport(direction: 'send' | 'recv'): Promise<types.Transport> {
    const device = this.#device!;
    const params = (await this.request('createTransport', { direction })) as {
      transportId: string;
      iceParameters: types.IceParameters;
      iceCandidates: types.IceCandidate[];
      dtlsParameters: types.DtlsParameters;
    };
    const options = { id: params.transportId, iceParameters: params.iceParameters, iceCandidates: params.iceCandidates, dtlsParameters: params.dtlsParameters, ...(this.#iceServers?.length ? { iceServers: this.#iceServers } : {}) };
    const transport = direction === 'send' ? device.createSendTransport(options) : device.createRecvTransport(options);
    transport.on('connect', ({ dtlsParameters }, ok, fail) => {
      this.request('connectTransport', { transportId: transport.id, dtlsParameters }).then(() => ok(), fail);
    });
    if (direction === 'send') {
      transport.on('produce', ({ kind, rtpParameters, appData }, ok, fail) => {
        this.request('produce', { transportId: transport.id, kind, rtpParameters, source: appData.source })
          .then((r) => ok({ id: (r as { producerId: string }).producerId }), fail);
      });
    }
    transport.on('connectionstatechange', (state) => {
      if (state === 'failed') this.#scheduleRejoin();
    });
    return transport;
  }

  async #produce(track: MediaStreamTrack, source: MediaSource): Promise<void> {
    this.#sendTransport ??= await this.#createTransport('send');
    // The camera in 3 layers (VP8, the codec every node's router offers for simulcast); screen and film
    // stay one full-resolution layer (read large by everyone).
    const vp8 = this.#device?.rtpCapabilities.codecs?.find((c) => c.mimeType.toLowerCase() === 'video/vp8');
    const { width = 0, height = 0 } = track.kind === 'video' ? track.getSettings() : {};
    const layers = source === 'camera' && vp8 ? cameraLayers(width, height) : [];
    const producer = await this.#sendTransport.produce({
      track,
      stopTracks: false,
      appData: { source },
      ...(layers.length > 1 ? { encodings: layers, codec: vp8, codecOptions: { videoGoogleStartBitrate: 1000 } } : {}),
    });
    this.#producers.set(source, producer);
    // A demand that came before the producer existed here (fast nodes) is applied now.
    await this.#applyDemand(producer.id);
  }

  async #consume(p: ProducerInfo): Promise<void> {
    if (!this.#recvTransport || p.peerId === this.peerId || !this.#announced.delete(p.producerId)) return;
    await this.#consumeNow(p);
  }

  async #consumeNow(p: ProducerInfo, layer?: SpatialLayer): Promise<void> {
    if (!this.#recvTransport) return;
    const r = (await this.request('consume', { producerId: p.producerId, ...(layer !== undefined ? { layer } : {}) })) as ConsumeAnswer;
    if (!this.#recvTransport) return;
    const consumer = await this.#recvTransport.consume({ id: r.consumerId, producerId: r.producerId, kind: r.kind, rtpParameters: r.rtpParameters });
    if (r.playoutDelayMs) setPlayoutDelay(consumer, r.playoutDelayMs);
    const info: RemoteTrack = { consumerId: r.consumerId, producerId: r.producerId, peerId: r.peerId, kind: r.kind, source: r.source, track: consumer.track };
    this.#consumers.set(consumer.id, { consumer, info });
    await this.request('resumeConsumer', { consumerId: consumer.id });
    this.#emit('tracks', this.tracks);
  }

  #dropConsumer(consumerId: string): void {
    const c = this.#consumers.get(consumerId) ?? this.#tiles.get(consumerId);
    if (!c) return;
    c.consumer.close();
    this.#consumers.delete(consumerId);
    this.#tiles.delete(consumerId);
  }

  #teardown(): void {
    for (const id of [...this.#consumers.keys(), ...this.#tiles.keys()]) this.#dropConsumer(id);
    for (const p of this.#producers.values()) p.close();
    this.#producers.clear();
    this.#sendTransport?.close();
    this.#recvTransport?.close();
    this.#sendTransport = undefined;
    this.#recvTransport = undefined;
    this.#peers.clear();
    this.#announced.clear();
  }

  #scheduleRejoin(): void {
    if (this.#closed || this.#rejoining) return;
    this.#setState('reconnecting');
    this.#teardown();
    this.#emit('tracks', []);
    this.#emit('peers', []);
    this.#rejoining = (async () => {
      for (let attempt = 0; !this.#closed; attempt++) {
        await new Promise((r) => setTimeout(r, Math.min(200 * 2 ** attempt, 5000)));
        try {
          // The token first: the node closes a connection that has not joined within its deadline.
          if (this.#refreshToken) this.#token = await this.#refreshToken();
          if (this.#ws?.readyState !== WebSocket.OPEN) await this.#openSocket();
          else await this.request('leave', {}).catch(() => undefined);
          await this.#joinRoom();
          this.reconnects++;
          return;
        } catch (err) {
          this.#emit('notice', (err as Error).message);
          this.#teardown();
        }
      }
    })().finally(() => {
      this.#rejoining = undefined;
    });
  }
}
