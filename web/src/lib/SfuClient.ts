import { Device, type types } from 'mediasoup-client';
import type { ChairCommand, ConferenceStateView, ErrorBody, MediaSource, Notifications, PeerInfo, ProducerInfo, ServerMessage } from '../../../sfu/protocol.ts';

// Browser side of the SFU signalling protocol (sfu/protocol.ts). Joins one room with a join token,
// publishes local tracks, consumes every remote producer, and rejoins by itself when the node
// asks (its media worker died) or the socket drops, republishing the same local tracks.

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
}

export type ClientState = 'connecting' | 'joined' | 'reconnecting' | 'closed';

export interface ClientEvents {
  state: ClientState;
  peers: PeerInfo[];
  tracks: RemoteTrack[];
  notice: string;
  /** The chair's controls as they now stand (spotlight, broadcast, mute, hands). */
  conference: ConferenceStateView;
  /** The meeting was ended by the chair or the meetings API; the client will not rejoin. */
  ended: 'chair' | 'api';
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
  conference: ConferenceStateView | undefined;
  ended: 'chair' | 'api' | undefined;
  // The local microphone was paused because the chair muted this site (so it is resumed when let go).
  #mutedByChair = false;

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

  /** A chair's command (mute all, unmute a site, spotlight, broadcast, lower a hand, end). */
  chair(cmd: ChairCommand): Promise<unknown> {
    return this.request('chairCommand', cmd);
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

  /** Decoding figures for monitoring and tests: frames decoded per remote video, audio packets. */
  async stats(): Promise<{
    videoFramesDecoded: Record<string, number>;
    audioPacketsReceived: number;
    peers: number;
    /** Per remote peer's video: what a link in between costs (freezes as the browser counts them, repairs). */
    videoQuality: Record<string, VideoQuality>;
  }> {
    const videoFramesDecoded: Record<string, number> = {};
    const videoQuality: Record<string, VideoQuality> = {};
    let audioPacketsReceived = 0;
    for (const { consumer, info } of this.#consumers.values()) {
      const report = await consumer.getStats();
      report.forEach((s: InboundRtpStats) => {
        if (s.type !== 'inbound-rtp') return;
        if (s.kind === 'video') {
          videoFramesDecoded[info.peerId] = (videoFramesDecoded[info.peerId] ?? 0) + (s.framesDecoded ?? 0);
          const q = (videoQuality[info.peerId] ??= { freezeCount: 0, totalFreezesDuration: 0, packetsLost: 0, nackCount: 0, jitterBufferDelayMs: 0 });
          q.freezeCount += s.freezeCount ?? 0;
          q.totalFreezesDuration += s.totalFreezesDuration ?? 0;
          q.packetsLost += s.packetsLost ?? 0;
          q.nackCount += s.nackCount ?? 0;
          if (s.jitterBufferDelay && s.jitterBufferEmittedCount) q.jitterBufferDelayMs = (s.jitterBufferDelay / s.jitterBufferEmittedCount) * 1000;
        }
        if (s.kind === 'audio') audioPacketsReceived += s.packetsReceived ?? 0;
      });
    }
    return { videoFramesDecoded, audioPacketsReceived, peers: this.#peers.size, videoQuality };
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
        const p = data as ProducerInfo;
        this.#announced.set(p.producerId, p);
        if (this.#state === 'joined') await this.#consume(p).catch((e: Error) => this.#emit('notice', e.message));
        break;
      }
      case 'producerClosed':
        this.#announced.delete((data as Notifications['producerClosed']).producerId);
        break;
      case 'consumerClosed':
        this.#dropConsumer((data as Notifications['consumerClosed']).consumerId);
        this.#emit('tracks', this.tracks);
        break;
      case 'reconnect':
        this.#scheduleRejoin();
        break;
      case 'conferenceState':
        this.#applyConference(data as ConferenceStateView);
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

  #applyConference(view: ConferenceStateView): void {
    this.conference = view;
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
      conference?: ConferenceStateView;
    };
    this.peerId = result.peerId;
    this.role = result.role;
    this.#peers.clear();
    for (const p of result.peers) this.#peers.set(p.peerId, p);
    for (const p of result.producers) this.#announced.set(p.producerId, p);
    this.#emit('peers', this.peers);
    await device.load({ routerRtpCapabilities: result.routerRtpCapabilities });
    await this.request('setRtpCapabilities', { rtpCapabilities: device.rtpCapabilities });
    this.#recvTransport = await this.#createTransport('recv');
    this.#setState('joined');
    for (const [source, track] of this.#local) await this.#produce(track, source);
    if (result.conference) this.#applyConference(result.conference);
    for (const p of [...this.#announced.values()]) await this.#consume(p).catch((e: Error) => this.#emit('notice', e.message));
  }

  async #createTransport(direction: 'send' | 'recv'): Promise<types.Transport> {
    const device = this.#device!;
    const params = (await this.request('createTransport', { direction })) as {
      transportId: string;
      iceParameters: types.IceParameters;
      iceCandidates: types.IceCandidate[];
      dtlsParameters: types.DtlsParameters;
    };
    const options = { id: params.transportId, iceParameters: params.iceParameters, iceCandidates: params.iceCandidates, dtlsParameters: params.dtlsParameters };
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
    const producer = await this.#sendTransport.produce({ track, stopTracks: false, appData: { source } });
    this.#producers.set(source, producer);
  }

  async #consume(p: ProducerInfo): Promise<void> {
    if (!this.#recvTransport || p.peerId === this.peerId || !this.#announced.delete(p.producerId)) return;
    const r = (await this.request('consume', { producerId: p.producerId })) as {
      consumerId: string;
      producerId: string;
      kind: 'audio' | 'video';
      rtpParameters: types.RtpParameters;
      peerId: string;
      source: MediaSource;
    };
    const consumer = await this.#recvTransport.consume({ id: r.consumerId, producerId: r.producerId, kind: r.kind, rtpParameters: r.rtpParameters });
    const info: RemoteTrack = { consumerId: r.consumerId, producerId: r.producerId, peerId: r.peerId, kind: r.kind, source: r.source, track: consumer.track };
    this.#consumers.set(consumer.id, { consumer, info });
    await this.request('resumeConsumer', { consumerId: consumer.id });
    this.#emit('tracks', this.tracks);
  }

  #dropConsumer(consumerId: string): void {
    const c = this.#consumers.get(consumerId);
    if (!c) return;
    c.consumer.close();
    this.#consumers.delete(consumerId);
  }

  #teardown(): void {
    for (const id of [...this.#consumers.keys()]) this.#dropConsumer(id);
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
