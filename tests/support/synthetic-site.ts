// A protocol-level site for scale tests and benchmarks: no browser, no WebRTC. It speaks a node's real
// browser signalling (/sfu WebSocket, join token, setRtpCapabilities, produce, consume) but carries its
// media over plain RTP transports (`createPlainTransport`, enabled on a node by SFU_PLAIN_RTP=1):
// synthetic Opus-like audio and a 3-layer simulcast H.264 camera out, whatever the node lets it consume
// in. Hundreds of sites share one UDP socket (UdpMux), demultiplexed by the node's transport port, so a
// 2-core machine holds them. Each received packet carries a mark (which layer, capture time, frame) in its
// payload, so a site can tell which simulcast layer the node forwarded to it.
import dgram from 'node:dgram';
import type { AddressInfo } from 'node:net';
import WebSocket from 'ws';
import { signJoinToken, type JoinClaims } from '../../infra/tokens.ts';
import { TEST_JOIN_KEYS } from './join-keys.ts';

export const OPUS_PT = 100;
export const H264_PT = 102;
/** SSRC of mediasoup's padding-only bandwidth probes (not media). */
const PROBATION_SSRC = 1234;
/** Second payload byte of every synthetic packet: tells our packets from anything else. */
const MAGIC = 0x5a;
/** The layer mark of an audio packet. */
export const AUDIO_MARK = 9;

/** One UDP socket for many sites: datagrams are routed by the sender's address (a node's transport port). */
export class UdpMux {
  readonly socket: dgram.Socket;
  readonly #routes = new Map<string, (msg: Buffer) => void>();
  /** Datagrams from ports nobody registered (e.g. a transport closed a moment ago). */
  strays = 0;
  received = 0;

  private constructor(socket: dgram.Socket) {
    this.socket = socket;
    socket.on('message', (msg, rinfo) => {
      this.received++;
      const route = this.#routes.get(`${rinfo.address}:${rinfo.port}`);
      if (route) route(msg);
      else this.strays++;
    });
  }

  static async create(host = '127.0.0.1'): Promise<UdpMux> {
    const s = dgram.createSocket({ type: 'udp4', recvBufferSize: 32 << 20, sendBufferSize: 8 << 20 });
    await new Promise<void>((r) => s.bind(0, host, r));
    return new UdpMux(s);
  }

  get port(): number {
    return (this.socket.address() as AddressInfo).port;
  }

  get host(): string {
    return (this.socket.address() as AddressInfo).address;
  }

  route(ip: string, port: number, handler: (msg: Buffer) => void): () => void {
    const key = `${ip}:${port}`;
    this.#routes.set(key, handler);
    return () => {
      if (this.#routes.get(key) === handler) this.#routes.delete(key);
    };
  }

  send(pkt: Buffer, ip: string, port: number): void {
    if (!this.#closed) this.socket.send(pkt, port, ip);
  }

  #closed = false;

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.socket.close();
  }
}

/** One simulcast layer of the synthetic camera: each frame is `packets` single-NAL packets of `size` bytes. */
export interface LayerSpec {
  size: number;
  packets: number;
  /** The encoding's maxBitrate as announced in `produce` (bits/s). */
  maxBitrate: number;
}

export interface SiteMedia {
  /** Audio packets per second (0 = no microphone); sent only while the site is not muted. */
  audioPps: number;
  audioSize: number;
  /** Camera frames per second (0 = no camera). */
  fps: number;
  layers: [LayerSpec, LayerSpec, LayerSpec];
  /** A keyframe on every layer at least this often (ms), besides those the node asks for. */
  keyframeEveryMs: number;
}

/** A village site's camera and microphone, kept light so hundreds fit on 2 cores. */
export const SITE_MEDIA: SiteMedia = {
  audioPps: 25,
  audioSize: 100,
  fps: 5,
  layers: [
    { size: 300, packets: 1, maxBitrate: 120_000 },
    { size: 700, packets: 1, maxBitrate: 400_000 },
    { size: 1000, packets: 2, maxBitrate: 1_200_000 },
  ],
  keyframeEveryMs: 4000,
};

/**
 * The chair's camera: layer 0 ≈ 40 kbit/s, layer 1 ≈ 240 kbit/s, layer 2 ≈ 350 kbit/s at 10 fps — so a
 * 300 kbit/s link (budget 0.85 × 300 − 48 per audio stream ≈ 207 kbit/s for one video) fits only layer 0.
 */
export const CHAIR_MEDIA: SiteMedia = {
  audioPps: 25,
  audioSize: 100,
  fps: 10,
  layers: [
    { size: 500, packets: 1, maxBitrate: 120_000 },
    { size: 1000, packets: 3, maxBitrate: 400_000 },
    { size: 1100, packets: 4, maxBitrate: 1_200_000 },
  ],
  keyframeEveryMs: 2000,
};

export interface SyntheticSiteOptions {
  /** The node's signalling URL, ws://host:port/sfu. */
  url: string;
  room: string;
  userId: number;
  displayName: string;
  unitId: number;
  role: 'chair' | 'participant' | 'viewer';
  layout?: 'open' | 'venue';
  /** May consume any producer (the chair's rotation); a chair has it anyway. */
  rotate?: boolean;
  media: SiteMedia | null;
  mux: UdpMux;
  /**
   * What to consume: 'stage' (venue: the join answer's producers and every `stage` notification) or
   * 'all' (open rooms: the join answer's producers and every `newProducer`), or nothing.
   */
  consume: 'stage' | 'all' | 'none';
  /** Layer asked for in `consume` (default: none given, i.e. the node's default, 2). */
  layer?: 0 | 1 | 2;
  /** Layers the camera sends before the node says anything (`layerDemand`); default 2 (all). */
  initialMaxLayer?: -1 | 0 | 1 | 2;
  /** Request timeout (ms). */
  timeoutMs?: number;
  /** CA certificate (PEM) to trust for a wss:// node (a deployment's own CA). */
  ca?: string;
}

export interface ProducerInfoLite {
  producerId: string;
  peerId: string;
  kind: 'audio' | 'video';
  source: string;
  paused: boolean;
}

export interface PeerInfoLite {
  peerId: string;
  displayName: string;
  unitId: number;
  role: string;
}

/** What arrived on one consumer. */
export interface ConsumerCount {
  consumerId: string;
  producerId: string;
  peerId: string;
  kind: 'audio' | 'video';
  ssrc: number;
  consumedAt: number;
  packets: number;
  bytes: number;
  /** performance.now() of the first / last media packet. */
  firstAt: number;
  lastAt: number;
  /** Packets per layer mark (0..2; audio counts under 0). */
  layerPackets: [number, number, number];
  lastLayer: number;
  closed: boolean;
}

type Pending = { resolve: (v: unknown) => void; reject: (e: Error) => void; timer: NodeJS.Timeout };

export class SignallingError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = 'SignallingError';
  }
}

/** One outgoing RTP stream (an audio stream or one simulcast layer). */
class OutStream {
  seq = Math.floor(Math.random() * 0xffff);
  frame = 0;
  lastKeyAt = 0;
  keyAsked = false;
  sending = false;
  constructor(
    readonly ssrc: number,
    readonly pt: number,
    readonly clockRate: number,
    readonly mark: number,
  ) {}
}

let nextSsrc = 0x10000000 + Math.floor(Math.random() * 0x1000000);

/**
 * A site: joins, produces its microphone and camera over a plain send transport, consumes what the
 * node offers over a plain recv transport, and counts everything it receives.
 */
export class SyntheticSite {
  readonly options: SyntheticSiteOptions;
  ws: WebSocket | undefined;
  peerId = '';
  layout: string | undefined;
  joinAnswer: Record<string, unknown> | undefined;
  /** performance.now() marks: start() called, token signed, WebSocket open, join answered, ready (transports + producers). */
  startedAt = 0;
  signedAt = 0;
  openAt = 0;
  joinedAt = 0;
  readyAt = 0;
  /** Signalling received: every message, and notifications by method. */
  readonly notifications = new Map<string, number>();
  bytesReceived = 0;
  messagesReceived = 0;
  notificationBytes = 0;
  bytesSent = 0;
  /** Latest `stage`, `counts`, `conferenceState` seen. */
  stage: { peers: PeerInfoLite[]; producers: ProducerInfoLite[] } | undefined;
  stageAt = 0;
  joinedCount: number | undefined;
  /** Every `counts` value received, in order (bounded). */
  readonly countsSeen: number[] = [];
  conference: Record<string, unknown> | undefined;
  selfMuted = false;
  /** Own producers. */
  audioProducerId: string | undefined;
  videoProducerId: string | undefined;
  /** The highest layer the node asked the camera for (`layerDemand`); -1 = nobody watches. */
  maxLayer: -1 | 0 | 1 | 2;
  /** Keyframe requests (PLI/FIR) the node sent this site's camera. */
  keyRequests = 0;
  packetsSent = 0;
  readonly consumers = new Map<string, ConsumerCount>();
  readonly #bySsrc = new Map<number, ConsumerCount>();
  readonly errors: string[] = [];
  /** Producers this site knows of and should consume ('all' mode) / the stage's ('stage' mode). */
  #known = new Map<string, ProducerInfoLite>();
  #consuming = new Set<string>();
  #pumping = false;
  #pumpAgain = false;
  /** Consuming starts once the recv transport exists (a `stage` may come before). */
  #ready = false;
  /** The last `layerDemand` per producer id (it may arrive before the `produce` answer is handled). */
  readonly #demands = new Map<string, -1 | 0 | 1 | 2>();
  #nextId = 1;
  readonly #pending = new Map<string, Pending>();
  #send: { transportId: string; ip: string; port: number } | undefined;
  #recv: { transportId: string; ip: string; port: number } | undefined;
  readonly #unroute: Array<() => void> = [];
  #audio: OutStream | undefined;
  #layers: OutStream[] = [];
  #timers: NodeJS.Timeout[] = [];
  #closed = false;
  /** Called with every notification (after the site's own handling). */
  onNotification: ((method: string, data: unknown) => void) | undefined;

  constructor(options: SyntheticSiteOptions) {
    this.options = options;
    this.maxLayer = options.initialMaxLayer ?? 2;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Joins and sets up media; resolves when the site is producing (consumption goes on by itself). */
  async start(): Promise<void> {
    const o = this.options;
    this.startedAt = performance.now();
    const claims = {
      userId: o.userId,
      displayName: o.displayName,
      unitId: o.unitId,
      room: o.room,
      role: o.role,
      ...(o.layout ? { layout: o.layout } : {}),
      ...(o.rotate ? { rotate: true } : {}),
    } as JoinClaims;
    const token = await signJoinToken(TEST_JOIN_KEYS.privateKey, claims);
    this.signedAt = performance.now();
    await this.#connect();
    this.openAt = performance.now();
    const answer = (await this.request('join', { token })) as Record<string, unknown> & {
      peerId: string;
      routerRtpCapabilities: { codecs?: Array<Record<string, unknown>> };
      producers?: ProducerInfoLite[];
      conference?: Record<string, unknown>;
      layout?: string;
      counts?: { joined: number };
    };
    this.joinedAt = performance.now();
    this.joinAnswer = answer;
    this.peerId = answer.peerId;
    this.layout = answer.layout;
    if (answer.counts) this.joinedCount = answer.counts.joined;
    if (answer.conference) this.#onConference(answer.conference);
    // Only what a synthetic site can receive: Opus and H.264, no RTX, no header extensions.
    const codecs = (answer.routerRtpCapabilities.codecs ?? []).filter((c) => c.mimeType === 'audio/opus' || c.mimeType === 'video/H264');
    await this.request('setRtpCapabilities', { rtpCapabilities: { codecs, headerExtensions: [] } });
    if (o.consume !== 'none') {
      this.#recv = (await this.request('createPlainTransport', { direction: 'recv' })) as { transportId: string; ip: string; port: number };
      this.#unroute.push(o.mux.route(this.#recv.ip, this.#recv.port, (m) => this.#onMedia(m)));
      await this.request('connectPlainTransport', { transportId: this.#recv.transportId, ip: o.mux.host, port: o.mux.port });
    }
    if (o.media && o.role !== 'viewer') await this.#produce(o.media);
    this.readyAt = performance.now();
    // A `stage` that came meanwhile is newer than the join answer.
    if (!this.stage) for (const p of answer.producers ?? []) this.#known.set(p.producerId, p);
    this.#ready = true;
    this.#pump();
  }

  async #connect(): Promise<void> {
    const ws = new WebSocket(this.options.url, { perMessageDeflate: false, ...(this.options.ca ? { ca: this.options.ca } : {}) });
    this.ws = ws;
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
    });
    ws.on('error', (err) => this.errors.push(`ws: ${err.message}`));
    ws.on('message', (data: Buffer) => this.#onMessage(data));
    ws.on('close', () => {
      for (const p of this.#pending.values()) (clearTimeout(p.timer), p.reject(new Error('signalling closed')));
      this.#pending.clear();
      if (!this.#closed) this.errors.push('signalling closed by the node');
    });
  }

  /** One signalling request; rejects with SignallingError for an error answer. */
  request(method: string, data: unknown): Promise<unknown> {
    const ws = this.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) return Promise.reject(new Error('not connected'));
    const id = String(this.#nextId++);
    const text = JSON.stringify({ id, method, data });
    this.bytesSent += text.length;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        reject(new Error(`${method}: no answer in ${this.options.timeoutMs ?? 20_000} ms`));
      }, this.options.timeoutMs ?? 20_000);
      this.#pending.set(id, { resolve, reject, timer });
      ws.send(text);
    });
  }

  #onMessage(data: Buffer): void {
    this.bytesReceived += data.length;
    this.messagesReceived++;
    let msg: { type: string; id?: string; ok?: boolean; data?: unknown; error?: { code: string; message: string }; method?: string };
    try {
      msg = JSON.parse(data.toString('utf8'));
    } catch {
      this.errors.push('bad json from node');
      return;
    }
    if (msg.type === 'response') {
      const p = msg.id ? this.#pending.get(msg.id) : undefined;
      if (!p) return;
      this.#pending.delete(msg.id!);
      clearTimeout(p.timer);
      if (msg.ok) p.resolve(msg.data);
      else p.reject(new SignallingError(msg.error?.code ?? 'unknown', msg.error?.message ?? ''));
      return;
    }
    if (msg.type !== 'notification' || !msg.method) return;
    this.notificationBytes += data.length;
    this.notifications.set(msg.method, (this.notifications.get(msg.method) ?? 0) + 1);
    this.#onNotification(msg.method, msg.data);
    this.onNotification?.(msg.method, msg.data);
  }

  /** Total notifications received (all methods). */
  get notificationCount(): number {
    let n = 0;
    for (const v of this.notifications.values()) n += v;
    return n;
  }

  #onNotification(method: string, data: unknown): void {
    const o = this.options;
    switch (method) {
      case 'stage': {
        const s = data as { peers: PeerInfoLite[]; producers: ProducerInfoLite[] };
        this.stage = s;
        this.stageAt = performance.now();
        if (o.consume === 'stage') {
          this.#known = new Map(s.producers.map((p) => [p.producerId, p]));
          this.#pump();
        }
        break;
      }
      case 'newProducer': {
        const p = data as ProducerInfoLite;
        if (o.consume === 'all') {
          this.#known.set(p.producerId, p);
          this.#pump();
        }
        break;
      }
      case 'producerClosed':
        this.#known.delete((data as { producerId: string }).producerId);
        break;
      case 'consumerClosed': {
        const { consumerId, producerId } = data as { consumerId: string; producerId: string };
        const c = this.consumers.get(consumerId);
        if (c) {
          c.closed = true;
          this.#bySsrc.delete(c.ssrc);
        }
        this.#consuming.delete(producerId);
        break;
      }
      case 'conferenceState':
        this.#onConference(data as Record<string, unknown>);
        break;
      case 'counts':
        this.joinedCount = (data as { joined: number }).joined;
        if (this.countsSeen.length < 200) this.countsSeen.push(this.joinedCount);
        break;
      case 'layerDemand': {
        // It may come in the same socket read as the `produce` answer, before videoProducerId is set.
        const d = data as { producerId: string; maxSpatialLayer: -1 | 0 | 1 | 2 };
        this.#demands.set(d.producerId, d.maxSpatialLayer);
        if (d.producerId === this.videoProducerId) this.maxLayer = d.maxSpatialLayer;
        break;
      }
    }
  }

  #onConference(c: Record<string, unknown>): void {
    this.conference = c;
    this.selfMuted = c.selfMuted === true;
  }

  /** Consumes, one at a time, whatever it should and does not yet. */
  #pump(): void {
    if (!this.#ready || this.options.consume === 'none') return;
    if (this.#pumping) {
      this.#pumpAgain = true;
      return;
    }
    this.#pumping = true;
    void (async () => {
      try {
        do {
          this.#pumpAgain = false;
          for (const p of [...this.#known.values()]) {
            if (this.#closed) return;
            if (p.peerId === this.peerId || this.#consuming.has(p.producerId) || !this.#known.has(p.producerId)) continue;
            try {
              await this.consume(p.producerId);
            } catch (err) {
              // A producer that left the stage meanwhile is expected; anything else is recorded.
              if (this.#known.has(p.producerId)) this.errors.push(`consume ${p.kind}: ${(err as Error).message}`);
            }
          }
        } while (this.#pumpAgain && !this.#closed);
      } finally {
        this.#pumping = false;
      }
    })();
  }

  /** Consumes one producer (and resumes the consumer). */
  async consume(producerId: string, layer = this.options.layer): Promise<ConsumerCount> {
    this.#consuming.add(producerId);
    try {
      const a = (await this.request('consume', { producerId, ...(layer !== undefined ? { layer } : {}) })) as {
        consumerId: string;
        producerId: string;
        kind: 'audio' | 'video';
        peerId: string;
        rtpParameters: { encodings?: Array<{ ssrc?: number }> };
      };
      const ssrc = a.rtpParameters.encodings?.[0]?.ssrc ?? 0;
      const c: ConsumerCount = {
        consumerId: a.consumerId,
        producerId,
        peerId: a.peerId,
        kind: a.kind,
        ssrc,
        consumedAt: performance.now(),
        packets: 0,
        bytes: 0,
        firstAt: 0,
        lastAt: 0,
        layerPackets: [0, 0, 0],
        lastLayer: -1,
        closed: false,
      };
      this.consumers.set(a.consumerId, c);
      this.#bySsrc.set(ssrc, c);
      await this.request('resumeConsumer', { consumerId: a.consumerId });
      return c;
    } catch (err) {
      this.#consuming.delete(producerId);
      throw err;
    }
  }

  #onMedia(msg: Buffer): void {
    if (msg.length < 12) return;
    const pt = msg[1]!;
    if (pt >= 192 && pt <= 223) return; // RTCP (sender reports)
    const ssrc = msg.readUInt32BE(8);
    if (ssrc === PROBATION_SSRC) return;
    const c = this.#bySsrc.get(ssrc);
    if (!c) return;
    const now = performance.now();
    c.packets++;
    c.bytes += msg.length;
    if (!c.firstAt) c.firstAt = now;
    c.lastAt = now;
    const off = payloadOffset(msg);
    if (msg.length >= off + 3 && msg[off + 1] === MAGIC) {
      const layer = msg[off + 2]!;
      if (layer <= 2) {
        c.layerPackets[layer]!++;
        c.lastLayer = layer;
      }
    }
  }

  /** Active (not closed) consumers, optionally of one kind. */
  active(kind?: 'audio' | 'video'): ConsumerCount[] {
    return [...this.consumers.values()].filter((c) => !c.closed && (!kind || c.kind === kind));
  }

  /** The active consumer of a producer, if any. */
  consumerOf(producerId: string): ConsumerCount | undefined {
    return this.active().find((c) => c.producerId === producerId);
  }

  /** Whether media of this producer has arrived (at least `min` packets). */
  receiving(producerId: string | undefined, min = 1): boolean {
    if (!producerId) return false;
    const c = this.consumerOf(producerId);
    return !!c && c.packets >= min;
  }

  async #produce(m: SiteMedia): Promise<void> {
    const o = this.options;
    this.#send = (await this.request('createPlainTransport', { direction: 'send' })) as { transportId: string; ip: string; port: number };
    const send = this.#send;
    this.#unroute.push(o.mux.route(send.ip, send.port, (msg) => this.#onRtcp(msg)));
    const cname = `synthetic-${o.userId}`;
    if (m.audioPps > 0) {
      const a = new OutStream(nextSsrc++, OPUS_PT, 48000, AUDIO_MARK);
      // comedia: the node learns where we send from with the first packet (after produce).
      this.#audio = a;
      const r = (await this.request('produce', {
        transportId: send.transportId,
        kind: 'audio',
        source: 'microphone',
        rtpParameters: {
          codecs: [{ mimeType: 'audio/opus', payloadType: OPUS_PT, clockRate: 48000, channels: 2, parameters: { useinbandfec: 1 } }],
          encodings: [{ ssrc: a.ssrc }],
          rtcp: { cname, reducedSize: true },
        },
      })) as { producerId: string };
      this.audioProducerId = r.producerId;
    }
    if (m.fps > 0) {
      this.#layers = m.layers.map((_, i) => new OutStream(nextSsrc++, H264_PT, 90000, i));
      const r = (await this.request('produce', {
        transportId: send.transportId,
        kind: 'video',
        source: 'camera',
        rtpParameters: {
          codecs: [
            {
              mimeType: 'video/H264',
              payloadType: H264_PT,
              clockRate: 90000,
              parameters: { 'packetization-mode': 1, 'profile-level-id': '42e01f', 'level-asymmetry-allowed': 1 },
              rtcpFeedback: [{ type: 'nack' }, { type: 'nack', parameter: 'pli' }, { type: 'ccm', parameter: 'fir' }],
            },
          ],
          encodings: this.#layers.map((l, i) => ({ ssrc: l.ssrc, maxBitrate: m.layers[i]!.maxBitrate })),
          rtcp: { cname, reducedSize: true },
        },
      })) as { producerId: string };
      this.videoProducerId = r.producerId;
      const early = this.#demands.get(r.producerId);
      if (early !== undefined) this.maxLayer = early;
    }
    // Spread the sites' packets over time rather than all on the same tick.
    const jitter = Math.random() * 40;
    if (this.#audio) {
      const a = this.#audio;
      const t = setTimeout(() => this.#timers.push(setInterval(() => this.#sendAudio(m, a), 1000 / m.audioPps)), jitter);
      this.#timers.push(t);
    }
    if (this.#layers.length) {
      const t = setTimeout(() => {
        this.#sendFrame(m);
        this.#timers.push(setInterval(() => this.#sendFrame(m), 1000 / m.fps));
      }, jitter);
      this.#timers.push(t);
    }
  }

  /** Audio flows only while the site may speak (a muted browser page sends nothing worth counting). */
  #sendAudio(m: SiteMedia, a: OutStream): void {
    if (this.#closed || this.selfMuted) return;
    this.#sendPacket(a, m.audioSize, false, true, 48000 / m.audioPps);
  }

  #sendFrame(m: SiteMedia): void {
    if (this.#closed) return;
    const now = performance.now();
    // Layers nobody asked for are not encoded (producer.setMaxSpatialLayer); layer 0 always.
    const top = Math.max(0, this.maxLayer);
    for (const [i, l] of this.#layers.entries()) {
      if (i > top) {
        l.sending = false;
        continue;
      }
      // An encoder that (re)starts a layer starts it with a keyframe.
      if (!l.sending) {
        l.sending = true;
        l.keyAsked = true;
      }
      this.#sendLayerFrame(m, l, now);
    }
  }

  #sendLayerFrame(m: SiteMedia, l: OutStream, now: number): void {
    const spec = m.layers[l.mark]!;
    const key = l.keyAsked || now - l.lastKeyAt >= m.keyframeEveryMs;
    if (key) {
      l.keyAsked = false;
      l.lastKeyAt = now;
    }
    for (let k = 0; k < spec.packets; k++) this.#sendPacket(l, spec.size, key && k === 0, k === spec.packets - 1, 0);
    l.frame++;
  }

  #sendPacket(s: OutStream, size: number, key: boolean, marker: boolean, tsStepAudio: number): void {
    const send = this.#send;
    if (!send) return;
    const pkt = Buffer.alloc(Math.max(size, 28));
    pkt[0] = 0x80;
    pkt[1] = (marker ? 0x80 : 0) | s.pt;
    pkt.writeUInt16BE(s.seq++ & 0xffff, 2);
    const ts = tsStepAudio ? s.frame++ * tsStepAudio : s.frame * (90000 / Math.max(1, this.options.media?.fps ?? 1));
    pkt.writeUInt32BE(Math.floor(ts) >>> 0, 4);
    pkt.writeUInt32BE(s.ssrc, 8);
    // Payload: NAL header (SPS = keyframe for mediasoup, else a non-IDR slice) or an Opus TOC byte,
    // then our mark: magic, layer, capture time, frame number.
    pkt[12] = s.pt === OPUS_PT ? 0x78 : key ? 0x67 : 0x41;
    pkt[13] = MAGIC;
    pkt[14] = s.mark;
    pkt.writeDoubleBE(performance.timeOrigin + performance.now(), 16);
    pkt.writeUInt32BE(s.frame >>> 0, 24);
    this.packetsSent++;
    this.options.mux.send(pkt, send.ip, send.port);
  }

  /** PLI / FIR from the node: a keyframe on the layer asked, at once (at most every 100 ms). */
  #onRtcp(msg: Buffer): void {
    let off = 0;
    while (off + 12 <= msg.length) {
      const fmt = msg[off]! & 0x1f;
      const pt = msg[off + 1]!;
      const len = (msg.readUInt16BE(off + 2) + 1) * 4;
      let ssrc: number | undefined;
      if (pt === 206 && fmt === 1) ssrc = msg.readUInt32BE(off + 8);
      if (pt === 206 && fmt === 4 && off + 16 <= msg.length) ssrc = msg.readUInt32BE(off + 12);
      if (ssrc !== undefined) {
        this.keyRequests++;
        const l = this.#layers.find((x) => x.ssrc === ssrc);
        const m = this.options.media;
        if (l && m && !l.keyAsked) {
          l.keyAsked = true;
          const now = performance.now();
          if (now - l.lastKeyAt > 100 && l.mark <= Math.max(0, this.maxLayer)) this.#sendLayerFrame(m, l, now);
        }
      }
      off += len;
    }
  }

  raiseHand(raised = true): Promise<unknown> {
    return this.request('raiseHand', { raised });
  }

  /** The chair gives the floor to a site (null takes it back). */
  giveFloor(peerId: string | null): Promise<unknown> {
    return this.request('chairCommand', { action: 'giveFloor', peerId });
  }

  chairCommand(cmd: Record<string, unknown>): Promise<unknown> {
    return this.request('chairCommand', cmd);
  }

  /** Snapshot of the signalling counters (for deltas). */
  signalling(): { messages: number; bytes: number; notifications: number; byMethod: Record<string, number> } {
    return { messages: this.messagesReceived, bytes: this.bytesReceived, notifications: this.notificationCount, byMethod: Object.fromEntries(this.notifications) };
  }

  /** Leaves (closing the WebSocket is a leave for the node) and stops sending. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const t of this.#timers) (clearInterval(t), clearTimeout(t));
    for (const u of this.#unroute) u();
    this.ws?.close();
  }
}

/** Where an RTP packet's payload starts: after CSRCs and the header extension, if any. */
function payloadOffset(pkt: Buffer): number {
  let off = 12 + 4 * (pkt[0]! & 0x0f);
  if (pkt[0]! & 0x10 && pkt.length >= off + 4) off += 4 + 4 * pkt.readUInt16BE(off + 2);
  return off;
}

/** p-quantile (0..1) of a list of numbers (nearest rank). */
export function quantile(values: readonly number[], p: number): number {
  if (!values.length) return NaN;
  const s = [...values].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(p * s.length) - 1))]!;
}

/** Runs `fn` over `items` with at most `n` at once. */
export async function inBatches<T, R>(items: readonly T[], n: number, fn: (item: T, i: number) => Promise<R>): Promise<Array<PromiseSettledResult<R>>> {
  const out: Array<PromiseSettledResult<R>> = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      try {
        out[i] = { status: 'fulfilled', value: await fn(items[i]!, i) };
      } catch (reason) {
        out[i] = { status: 'rejected', reason };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(n, items.length) }, worker));
  return out;
}
