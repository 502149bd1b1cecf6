import crypto from 'node:crypto';
import type { types } from 'mediasoup';
import type { JoinClaims } from '../infra/tokens.ts';
import {
  SignallingError,
  type ChairCommand,
  type MediaSource,
  type Notifications,
  type NotificationMethod,
  type PeerInfo,
  type ProducerInfo,
  type RequestData,
  type SpatialLayer,
} from './protocol.ts';
import type { Room } from './Room.ts';
import { refusedSource } from './sourcePolicy.ts';
import { playoutDelayForRepair } from './playoutDelay.ts';

// Per-peer bounds: a browser needs one send and one recv transport (a few more across ICE restarts),
// at most camera+microphone+screen+film producers, and one consumer per remote track.
const MAX_TRANSPORTS = 4;
const MAX_PRODUCERS = 4;
const MAX_CONSUMERS = 1024;
/** A rotating chair or supervisor may watch many sites at once, but not the whole conference. */
export const MAX_ROTATE_VIDEO_CONSUMERS = 60;
/** How long a warmed producer stays piped in without being consumed. */
export const WARM_HOLD_MS = 20_000;

type Direction = 'send' | 'recv';
interface TransportAppData extends types.AppData {
  direction: Direction;
  /** Plain RTP (no ICE/DTLS): hardware terminals, gateways, synthetic sites. */
  plain: boolean;
}
type AnyTransport = types.WebRtcTransport<TransportAppData> | types.PlainTransport<TransportAppData>;
interface ProducerAppData extends types.AppData {
  source: MediaSource;
  peerId: string;
}

export type Notify = <M extends NotificationMethod>(method: M, data: Notifications[M]) => void;

/** A participant in one room: its transports, producers and consumers on the room's router. */
export class Peer {
  readonly id = crypto.randomUUID();
  readonly claims: JoinClaims;
  #rtpCapabilities: types.RtpCapabilities | undefined;
  readonly notify: Notify;
  readonly #room: Room;
  readonly #transports = new Map<string, AnyTransport>();
  readonly #producers = new Map<string, types.Producer<ProducerAppData>>();
  readonly #consumers = new Map<string, types.Consumer>();
  /** Producers piped in for the next page of the rotation, each with its release. */
  readonly #warm = new Map<string, () => void>();
  #warmTimer: NodeJS.Timeout | undefined;
  #closed = false;
  readonly #token: string | undefined;

  constructor(room: Room, claims: JoinClaims, rtpCapabilities: types.RtpCapabilities | undefined, notify: Notify, token?: string) {
    this.#token = token;
    this.#room = room;
    this.claims = claims;
    this.#rtpCapabilities = rtpCapabilities;
    this.notify = notify;
  }

  get info(): PeerInfo {
    return { peerId: this.id, displayName: this.claims.displayName, unitId: this.claims.unitId, role: this.claims.role };
  }

  /**
   * A chair's join token: shown to the cascade parent (never to browsers, never down to children)
   * so that the parent believes this peer is the chair and accepts its commands from below.
   */
  get chairProof(): string | undefined {
    return this.claims.role === 'chair' ? this.#token : undefined;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** A chair, or a supervisor's token with `rotate`: may consume any site of a venue (the rotation). */
  get canRotate(): boolean {
    return this.claims.role === 'chair' || this.claims.rotate === true;
  }

  get transports(): ReadonlyMap<string, types.WebRtcTransport | types.PlainTransport> {
    return this.#transports;
  }

  get producers(): ReadonlyMap<string, types.Producer<ProducerAppData>> {
    return this.#producers;
  }

  get consumers(): ReadonlyMap<string, types.Consumer> {
    return this.#consumers;
  }

  setRtpCapabilities({ rtpCapabilities }: RequestData<'setRtpCapabilities'>) {
    this.#rtpCapabilities = rtpCapabilities as types.RtpCapabilities;
    return {};
  }

  producerInfos(): ProducerInfo[] {
    return [...this.#producers.values()].map((p) => ({
      producerId: p.id,
      peerId: this.id,
      kind: p.kind,
      source: p.appData.source,
      paused: p.paused,
    }));
  }

  async createTransport({ direction }: RequestData<'createTransport'>) {
    if (this.#transports.size >= MAX_TRANSPORTS) throw new SignallingError('bad_request', `at most ${MAX_TRANSPORTS} transports`);
    if (direction === 'send' && this.claims.role === 'viewer') throw new SignallingError('forbidden', 'viewers cannot send media');
    const transport = await this.#room.router.createWebRtcTransport<TransportAppData>({
      webRtcServer: this.#room.webRtcServer,
      enableUdp: true,
      enableTcp: true,
      preferUdp: true,
      initialAvailableOutgoingBitrate: 1_000_000,
      appData: { direction, plain: false },
    });
    this.#transports.set(transport.id, transport);
    transport.observer.on('close', () => this.#transports.delete(transport.id));
    transport.on('dtlsstatechange', (state) => {
      if (state === 'failed' || state === 'closed') transport.close();
    });
    return {
      transportId: transport.id,
      iceParameters: transport.iceParameters,
      iceCandidates: transport.iceCandidates,
      dtlsParameters: transport.dtlsParameters,
    };
  }

  async connectTransport({ transportId, dtlsParameters }: RequestData<'connectTransport'>) {
    await this.#webRtcTransport(transportId).connect({ dtlsParameters });
    return {};
  }

  async restartIce({ transportId }: RequestData<'restartIce'>) {
    const iceParameters = await this.#webRtcTransport(transportId).restartIce();
    return { iceParameters };
  }

  /**
   * Plain RTP, where the node allows it: a send transport learns the sender's address from its first
   * packet (comedia); a recv transport sends to the address given by connectPlainTransport. RTP and
   * RTCP share one port.
   */
  async createPlainTransport({ direction }: RequestData<'createPlainTransport'>) {
    const listen = this.#room.plainRtp;
    if (!listen) throw new SignallingError('forbidden', 'plain RTP is not enabled on this node');
    if (this.#transports.size >= MAX_TRANSPORTS) throw new SignallingError('bad_request', `at most ${MAX_TRANSPORTS} transports`);
    if (direction === 'send' && this.claims.role === 'viewer') throw new SignallingError('forbidden', 'viewers cannot send media');
    const transport = await this.#room.router.createPlainTransport<TransportAppData>({
      listenInfo: { protocol: 'udp', ip: listen.ip, ...(listen.announcedAddress ? { announcedAddress: listen.announcedAddress } : {}) },
      rtcpMux: true,
      comedia: direction === 'send',
      appData: { direction, plain: true },
    });
    if (this.#closed) {
      transport.close();
      throw new SignallingError('not_joined', 'left the room');
    }
    this.#transports.set(transport.id, transport);
    transport.observer.on('close', () => this.#transports.delete(transport.id));
    return { transportId: transport.id, ip: listen.announcedAddress ?? transport.tuple.localAddress, port: transport.tuple.localPort };
  }

  async connectPlainTransport({ transportId, ip, port }: RequestData<'connectPlainTransport'>) {
    const t = this.#transport(transportId);
    if (!t.appData.plain) throw new SignallingError('bad_request', 'not a plain transport');
    if (t.appData.direction !== 'recv') throw new SignallingError('bad_request', 'a send plain transport learns the address from the first packet');
    await (t as types.PlainTransport<TransportAppData>).connect({ ip, port });
    return {};
  }

  async produce({ transportId, kind, rtpParameters, source }: RequestData<'produce'>) {
    const refused = refusedSource(this.claims.role, kind, source);
    if (refused) throw new SignallingError(this.claims.role === 'viewer' ? 'forbidden' : 'bad_request', refused);
    const transport = this.#transport(transportId);
    if (transport.appData.direction !== 'send') throw new SignallingError('bad_request', 'produce needs a send transport');
    if (this.#producers.size >= MAX_PRODUCERS) throw new SignallingError('bad_request', `at most ${MAX_PRODUCERS} producers`);
    for (const p of this.#producers.values()) {
      if (p.appData.source === source) throw new SignallingError('bad_request', `already producing ${source}`);
    }
    const producer = await transport.produce<ProducerAppData>({
      kind,
      rtpParameters: rtpParameters as types.RtpParameters,
      // However many sites ask (across the whole cascade), the encoder sees one request per interval.
      ...(kind === 'video' ? { keyFrameRequestDelay: this.#room.keyFrameRequestDelayMs } : {}),
      appData: { source, peerId: this.id },
    });
    return { producerId: await this.#register(producer) };
  }

  /**
   * Makes a producer created on this room's router outside the peer's WebRTC transports (a gateway
   * bringing a site's phone line in over a PlainTransport; synthetic RTP in tests) one of the peer's own:
   * announced, muted by the chair, paused/resumed/closed through this peer like any other.
   */
  async adoptProducer(producer: types.Producer, source: MediaSource): Promise<string> {
    if (this.#closed) throw new SignallingError('not_joined', 'left the room');
    const refused = refusedSource(this.claims.role, producer.kind, source);
    if (refused) throw new SignallingError('bad_request', refused);
    if (this.#producers.size >= MAX_PRODUCERS) throw new SignallingError('bad_request', `at most ${MAX_PRODUCERS} producers`);
    for (const p of this.#producers.values()) {
      if (p.appData.source === source) throw new SignallingError('bad_request', `already producing ${source}`);
    }
    producer.appData.source = source;
    producer.appData.peerId = this.id;
    return this.#register(producer as types.Producer<ProducerAppData>);
  }

  async #register(producer: types.Producer<ProducerAppData>): Promise<string> {
    // A site the chair holds muted starts muted: paused before anyone hears of it.
    await this.#room.control.enforceOnNewProducer(this, producer);
    if (producer.closed || this.#closed) throw new SignallingError('not_joined', 'left the room');
    this.#producers.set(producer.id, producer);
    producer.observer.on('close', () => {
      this.#producers.delete(producer.id);
      this.#room.producerClosed(this, producer.id);
    });
    this.#room.producerAdded(this, producer);
    return producer.id;
  }

  /** The chair's mute taking hold (or letting go) of one of this peer's producers. */
  async setPausedByChair(producerId: string, paused: boolean): Promise<void> {
    const p = this.#producers.get(producerId);
    if (!p || p.closed || p.paused === paused) return;
    if (paused) await p.pause();
    else await p.resume();
    this.#room.producerPauseChanged(producerId, paused);
  }

  chairCommand(cmd: ChairCommand) {
    if (this.claims.role !== 'chair') throw new SignallingError('forbidden', 'only the chair controls the meeting');
    this.#room.control.command(cmd);
    return {};
  }

  raiseHand({ raised }: RequestData<'raiseHand'>) {
    if (this.claims.role === 'viewer') throw new SignallingError('forbidden', 'viewers do not take the floor');
    this.#room.control.raiseHand(this, raised);
    return {};
  }

  closeProducer({ producerId }: RequestData<'closeProducer'>) {
    this.#producer(producerId).close();
    return {};
  }

  async pauseProducer({ producerId }: RequestData<'pauseProducer'>) {
    await this.#producer(producerId).pause();
    this.#room.producerPauseChanged(producerId, true);
    return {};
  }

  async resumeProducer({ producerId }: RequestData<'resumeProducer'>) {
    const producer = this.#producer(producerId);
    // Any audio, whatever it is called: the chair's mute holds the site's sound.
    if (producer.kind === 'audio' && this.#room.control.isMuted(this.id, this.claims.role)) {
      throw new SignallingError('forbidden', 'the chair has muted this site');
    }
    await producer.resume();
    this.#room.producerPauseChanged(producerId, false);
    return {};
  }

  async consume({ producerId, layer = 2 }: RequestData<'consume'>) {
    // A producer of this node, or one elsewhere in the conference (piped in on acquire).
    const local = this.#room.localProducer(producerId);
    const remote = local ? undefined : this.#room.remote?.producer(producerId);
    const info = local?.info ?? remote;
    if (!info) throw new SignallingError('not_found', 'no such producer in this room');
    if (local?.peer === this) throw new SignallingError('bad_request', 'cannot consume own producer');
    this.#mayConsume(producerId, info.kind);
    if (this.#consumers.size >= MAX_CONSUMERS) throw new SignallingError('bad_request', 'too many consumers');
    const transport = [...this.#transports.values()].find((t) => t.appData.direction === 'recv');
    if (!transport) throw new SignallingError('bad_request', 'create a recv transport before consuming');
    const rtpCapabilities = this.#rtpCapabilities;
    if (!rtpCapabilities) throw new SignallingError('bad_request', 'send your rtpCapabilities before consuming');
    let release = (): void => undefined;
    if (remote) {
      try {
        release = await this.#room.remote!.acquire(producerId);
      } catch (err) {
        throw new SignallingError('not_found', `producer not reachable: ${(err as Error).message}`);
      }
    }
    let consumer: types.Consumer;
    try {
      if (this.#closed) throw new SignallingError('not_joined', 'left the room');
      let from = producerId;
      if (!this.#room.router.canConsume({ producerId, rtpCapabilities })) {
        // A camera forwarded in its own H.264 profile: a browser without that decoder gets the
        // ingest's constrained-baseline rendition (same camera, one RTSP session through the restreamer).
        const rendition = local ? await this.#room.renditionFor(producerId)?.catch(() => undefined) : undefined;
        if (!rendition || rendition.closed || !this.#room.router.canConsume({ producerId: rendition.id, rtpCapabilities })) {
          throw new SignallingError('cannot_consume', 'your device cannot decode this stream');
        }
        if (this.#closed) throw new SignallingError('not_joined', 'left the room');
        from = rendition.id;
      }
      // Paused until the client has set up its receiver, so the first packets (and keyframe) are not lost.
      consumer = await transport.consume({ producerId: from, rtpCapabilities, paused: true });
    } catch (err) {
      release();
      throw err;
    }
    try {
      // The stage may have moved while the producer was piped in.
      this.#mayConsume(producerId, info.kind);
    } catch (err) {
      consumer.close();
      release();
      throw err;
    }
    this.#consumers.set(consumer.id, consumer);
    const demandsLayers = consumer.kind === 'video';
    consumer.observer.on('close', () => {
      this.#consumers.delete(consumer.id);
      // consumer.producerId: a rendition's demand is kept under the rendition (see #setLayer).
      if (demandsLayers) this.#room.setConsumerDemand(consumer.producerId, consumer.id, -1);
      release();
    });
    consumer.on('producerclose', () => {
      consumer.close();
      this.notify('consumerClosed', { consumerId: consumer.id, producerId });
    });
    consumer.on('producerpause', () => this.notify('producerPaused', { producerId }));
    consumer.on('producerresume', () => this.notify('producerResumed', { producerId }));
    if (demandsLayers) {
      try {
        await this.#setLayer(consumer, layer);
      } catch (err) {
        if (!consumer.closed) throw err;
      }
    }
    const playoutDelayMs = remote ? playoutDelayForRepair(this.#room.remote?.repairRttMs?.(producerId)) : 0;
    return {
      consumerId: consumer.id,
      producerId,
      kind: consumer.kind,
      rtpParameters: consumer.rtpParameters,
      peerId: info.peerId,
      source: info.source,
      producerPaused: consumer.producerPaused,
      ...(playoutDelayMs > 0 ? { playoutDelayMs } : {}),
    };
  }

  /** Tells the page to hold its consumers of this producer `delayMs` (see playoutDelayForRepair). */
  setPlayoutDelay(producerId: string, delayMs: number): void {
    for (const c of this.#consumers.values()) if (c.producerId === producerId && !c.closed) this.notify('playoutDelay', { consumerId: c.id, delayMs });
  }

  async setConsumerLayer({ consumerId, layer }: RequestData<'setConsumerLayer'>) {
    const consumer = this.#consumer(consumerId);
    if (consumer.kind !== 'video') throw new SignallingError('bad_request', 'layers are for video consumers');
    await this.#setLayer(consumer, layer);
    return {};
  }

  /** The page is done with a stream (a rotation tile left the screen): the consumer and its pipe hold go. */
  closeConsumer({ consumerId }: RequestData<'closeConsumer'>) {
    this.#consumer(consumerId).close();
    return {};
  }

  /** Rotation: the sites of a page of tiles and their producers (chair / rotate only). */
  siteProducers({ peerIds }: RequestData<'siteProducers'>) {
    if (!this.canRotate) throw new SignallingError('forbidden', 'only the chair or a supervisor rotates through sites');
    return { sites: this.#room.siteProducers(peerIds) };
  }

  /**
   * Rotation: pipes the next page's producers in ahead of the step so they show within a second.
   * Replaces the previous warm set; each is held at most WARM_HOLD_MS, or until the peer leaves.
   */
  async warm({ producerIds }: RequestData<'warm'>) {
    if (!this.canRotate) throw new SignallingError('forbidden', 'only the chair or a supervisor rotates through sites');
    const wanted = new Set(producerIds);
    const next = new Map<string, () => void>();
    let warmed = 0;
    const jobs: Array<Promise<void>> = [];
    for (const id of wanted) {
      const held = this.#warm.get(id);
      if (held) {
        next.set(id, held);
        warmed++;
        continue;
      }
      if (this.#room.localProducer(id)) {
        warmed++; // already here
        continue;
      }
      const remote = this.#room.remote;
      if (!remote?.producer(id)) continue;
      jobs.push(
        remote.acquire(id).then((release) => {
          if (this.#closed) return release();
          next.set(id, release);
          warmed++;
        }),
      );
    }
    await Promise.allSettled(jobs);
    // Acquire the new set before letting go of the old one: what both name stays piped.
    for (const [id, release] of this.#warm) if (next.get(id) !== release) release();
    this.#warm.clear();
    for (const [id, release] of next) this.#warm.set(id, release);
    clearTimeout(this.#warmTimer);
    if (this.#warm.size) {
      this.#warmTimer = setTimeout(() => this.#releaseWarm(), WARM_HOLD_MS);
      this.#warmTimer.unref();
    }
    return { warmed };
  }

  /** Venue: a page without the rotate right keeps only consumers of what is on the stage. */
  enforceStage(allowed: ReadonlySet<string>): void {
    for (const consumer of [...this.#consumers.values()]) {
      if (allowed.has(consumer.producerId) || consumer.closed) continue;
      consumer.close();
      this.notify('consumerClosed', { consumerId: consumer.id, producerId: consumer.producerId });
    }
  }

  async pauseConsumer({ consumerId }: RequestData<'pauseConsumer'>) {
    await this.#consumer(consumerId).pause();
    return {};
  }

  async resumeConsumer({ consumerId }: RequestData<'resumeConsumer'>) {
    const consumer = this.#consumer(consumerId);
    await consumer.resume();
    if (consumer.kind === 'video') await consumer.requestKeyFrame();
    return {};
  }

  /** Closes every transport (and so producers and consumers); idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#releaseWarm();
    for (const t of [...this.#transports.values()]) t.close();
  }

  #releaseWarm(): void {
    clearTimeout(this.#warmTimer);
    this.#warmTimer = undefined;
    const releases = [...this.#warm.values()];
    this.#warm.clear();
    for (const release of releases) release();
  }

  /** Venue rules: a site consumes only the stage; a rotating peer at most MAX_ROTATE_VIDEO_CONSUMERS videos. */
  #mayConsume(producerId: string, kind: 'audio' | 'video'): void {
    if (this.#room.layout !== 'venue') return;
    if (!this.canRotate) {
      if (!this.#room.onStage(producerId)) throw new SignallingError('forbidden', 'only the stage can be watched in this meeting');
      return;
    }
    if (kind !== 'video') return;
    let videos = 0;
    for (const c of this.#consumers.values()) if (c.kind === 'video' && c.producerId !== producerId) videos++;
    if (videos >= MAX_ROTATE_VIDEO_CONSUMERS) throw new SignallingError('busy', `at most ${MAX_ROTATE_VIDEO_CONSUMERS} video streams at once`);
  }

  /** Simulcast/SVC: the layer the page asked for; every video consumer's layer counts in the producer's demand. */
  async #setLayer(consumer: types.Consumer, layer: SpatialLayer): Promise<void> {
    if (consumer.type === 'simulcast' || consumer.type === 'svc') await consumer.setPreferredLayers({ spatialLayer: layer });
    this.#room.setConsumerDemand(consumer.producerId, consumer.id, layer);
  }

  #transport(id: string): AnyTransport {
    const t = this.#transports.get(id);
    if (!t) throw new SignallingError('not_found', 'no such transport');
    return t;
  }

  #webRtcTransport(id: string): types.WebRtcTransport<TransportAppData> {
    const t = this.#transport(id);
    if (t.appData.plain) throw new SignallingError('bad_request', 'a plain transport has no ICE/DTLS');
    return t as types.WebRtcTransport<TransportAppData>;
  }

  #producer(id: string): types.Producer<ProducerAppData> {
    const p = this.#producers.get(id);
    if (!p) throw new SignallingError('not_found', 'no such producer');
    return p;
  }

  #consumer(id: string): types.Consumer {
    const c = this.#consumers.get(id);
    if (!c) throw new SignallingError('not_found', 'no such consumer');
    return c;
  }
}
