// Shared by the cascade tests and benchmarks: a chain of SFU nodes (city -> county -> town ->
// community -> village) in this process, a synthetic H.264 RTP source that answers keyframe
// requests and counts them, and a UDP sink that counts what server-side taps deliver.
import dgram from 'node:dgram';
import http from 'node:http';
import path from 'node:path';
import express from 'express';
import type { AddressInfo, Socket } from 'node:net';
import type { types } from 'mediasoup';
import { createLogger } from '../../infra/logger.ts';
import { SfuNode } from '../../sfu/SfuNode.ts';
import type { Ingest } from '../../sfu/Ingest.ts';
import type { CascadeRoom, PipeRoute } from '../../sfu/cascade/CascadeRoom.ts';
import type { CascadeOptions } from '../../sfu/cascade/CascadeNode.ts';
import type { RoomLink } from '../../sfu/cascade/RoomLink.ts';
import type { PipeInfo } from '../../sfu/cascade/protocol.ts';
import { LinkEmulator, type DirectionConfig } from '../support/link-emulator.ts';
import { TEST_JOIN_KEYS } from './join-keys.ts';
import { rtcPortRange } from './rtc-ports.ts';

export const CASCADE_SECRET = 'cascade-secret-cascade-secret-0123456789';
export const LEVELS = ['city', 'county', 'town', 'community', 'village'] as const;

export interface TreeNodeOptions {
  lingerMs?: number;
  pingIntervalMs?: number;
  /** Port range for this node's PipeTransports / PlainTransports; default 400 ports no other test process uses (rtc-ports.ts). */
  rtcMinPort?: number;
  rtcMaxPort?: number;
  /** Per node: its own key for the link to its parent, and its children's registered keys (instead of the shared secret). */
  nodeAuthFor?: (nodeName: string) => Pick<CascadeOptions, 'nodeKey' | 'childKey' | 'childKeys' | 'childKeyRecheckMs'> | undefined;
  /**
   * How a parent admits its children's conferences: `grant` (default, as in production: a child shows a
   * join token for the room) or `open` (tests whose sites are server-side synthetic sources without one).
   */
  admission?: 'grant' | 'open';
  /** Serve the built web front end (web/dist) beside /sfu, for Chromium pages. */
  serveWeb?: boolean;
  /** Rewrites the URL a child dials its parent at (e.g. through a TCP proxy that can cut the link). */
  parentUrlFor?: (childName: string, parentUrl: string) => string;
  /** Per node: send a link's media through a relay (a WAN link emulator) instead of directly. */
  pipeRouteFor?: (nodeName: string) => PipeRoute | undefined;
  /** Per node: the capacity of its uplink in kbit/s (SFU_UPLINK_KBPS): video to/from its parent single-layer. */
  uplinkKbpsFor?: (nodeName: string) => number | undefined;
  /** Allow peers' plain RTP transports (SFU_PLAIN_RTP=1): in-process synthetic sites. */
  plainRtp?: boolean;
  /** Least time between two count/total messages on a link (default 1000 ms). */
  countIntervalMs?: number;
}

/** One SFU node of the chain, with its HTTP server (browsers' /sfu and children's /cascade). */
export class TreeNode {
  readonly name: string;
  readonly unitId: number;
  readonly parentUrl: string | undefined;
  readonly #options: TreeNodeOptions;
  /** Kept across stop()/start(): a restarted node comes back on the same range. */
  readonly #ports: { rtcMinPort: number; rtcMaxPort: number };
  node!: SfuNode;
  #server: http.Server | undefined;
  #sockets = new Set<Socket>();
  port = 0;

  constructor(name: string, unitId: number, parentUrl: string | undefined, options: TreeNodeOptions) {
    this.name = name;
    this.unitId = unitId;
    this.parentUrl = parentUrl;
    this.#options = options;
    this.#ports = options.rtcMinPort !== undefined && options.rtcMaxPort !== undefined ? { rtcMinPort: options.rtcMinPort, rtcMaxPort: options.rtcMaxPort } : rtcPortRange(400);
  }

  get cascadeUrl(): string {
    return `ws://127.0.0.1:${this.port}/cascade`;
  }

  get baseUrl(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  get wsUrl(): string {
    return `ws://127.0.0.1:${this.port}/sfu`;
  }

  async start(): Promise<void> {
    this.node = new SfuNode({
      joinKey: TEST_JOIN_KEYS.publicKey,
      numWorkers: 1,
      listenIp: '127.0.0.1',
      webRtcBasePort: 0,
      rtcMinPort: this.#ports.rtcMinPort,
      rtcMaxPort: this.#ports.rtcMaxPort,
      logger: createLogger(`sfu-${this.name}`),
      ...(this.#options.plainRtp ? { plainRtp: true } : {}),
      cascade: {
        nodeId: this.name,
        unitId: this.unitId,
        secret: CASCADE_SECRET,
        ...(this.parentUrl ? { parentUrl: this.parentUrl } : {}),
        pipeListenIp: '127.0.0.1',
        admission: this.#options.admission ?? 'grant',
        ...this.#options.nodeAuthFor?.(this.name),
        ...(this.#options.pipeRouteFor?.(this.name) ? { pipeRoute: this.#options.pipeRouteFor(this.name)! } : {}),
        ...(this.#options.uplinkKbpsFor?.(this.name) ? { uplinkKbps: this.#options.uplinkKbpsFor(this.name)! } : {}),
        ...(this.#options.countIntervalMs !== undefined ? { countIntervalMs: this.#options.countIntervalMs } : {}),
        unsubscribeLingerMs: this.#options.lingerMs ?? 300,
        pingIntervalMs: this.#options.pingIntervalMs ?? 1000,
        requestTimeoutMs: 5000,
        backoffMinMs: 100,
        backoffMaxMs: 1000,
      },
    });
    await this.node.start();
    const app = express();
    if (this.#options.serveWeb) app.use(express.static(path.resolve('web/dist')));
    const server = http.createServer(app);
    // Upgraded sockets leave the server's books; keep our own so stop() can cut them like a crash.
    const sockets = new Set<Socket>();
    server.on('connection', (s) => (sockets.add(s), s.once('close', () => sockets.delete(s))));
    this.#sockets = sockets;
    this.node.attach(server, '/sfu');
    await new Promise<void>((r) => server.listen(this.port, '127.0.0.1', r));
    this.port = (server.address() as AddressInfo).port;
    this.#server = server;
  }

  /** Stops the node as a crash would look to its neighbours: sockets cut, workers gone. */
  async stop(): Promise<void> {
    const server = this.#server;
    this.#server = undefined;
    for (const s of this.#sockets) s.destroy();
    await this.node.close();
    if (server) await new Promise((r) => server.close(r));
  }

  cascadeRoom(roomId: string): CascadeRoom | undefined {
    return this.node.cascade?.rooms.get(roomId);
  }

  /** This room's pipe over the link to a neighbour ('parent' or 'child:<name>'). */
  link(roomId: string, linkId: string): RoomLink | undefined {
    return this.cascadeRoom(roomId)?.links.get(linkId);
  }

  /** A site camera at this node: a synthetic H.264 source sending into a video ingest of the room. */
  async camera(roomId: string, o: { ssrc: number; fps: number; size: number; displayName?: string }): Promise<{ ingest: Ingest; source: RtpSource }> {
    const source = await RtpSource.create(o.ssrc, o.fps, o.size);
    const ingest = await this.node.ingest(roomId, { displayName: o.displayName ?? this.name, unitId: this.unitId, kind: 'video', source: 'camera', rtpParameters: h264RtpParameters(o.ssrc) });
    source.start(ingest.localPort);
    return { ingest, source };
  }

  /** A simulcast site camera: a synthetic 3-layer H.264 source sending into a video ingest of the room. */
  async simulcastCamera(roomId: string, o: { layers: readonly LayerSpec[]; displayName?: string }): Promise<{ ingest: Ingest; source: SimulcastRtpSource }> {
    const source = await SimulcastRtpSource.create(o.layers);
    const ingest = await this.node.ingest(roomId, { displayName: o.displayName ?? this.name, unitId: this.unitId, kind: 'video', source: 'camera', rtpParameters: source.rtpParameters() });
    source.start(ingest.localPort);
    return { ingest, source };
  }
}

/** Starts the chain top-down; resolves when every child's link to its parent is up. */
export async function startChain(names: readonly string[], options: Omit<TreeNodeOptions, 'rtcMinPort' | 'rtcMaxPort'> = {}): Promise<TreeNode[]> {
  const nodes: TreeNode[] = [];
  for (const [i, name] of names.entries()) {
    const parent = nodes[i - 1];
    const parentUrl = parent && (options.parentUrlFor ? options.parentUrlFor(name, parent.cascadeUrl) : parent.cascadeUrl);
    const n = new TreeNode(name, i + 1, parentUrl, { ...options, ...rtcPortRange(400) });
    await n.start();
    nodes.push(n);
  }
  await waitFor('every parent link up', () => nodes.slice(1).every((n) => n.node.cascade?.parentConnected), 10_000);
  return nodes;
}

/**
 * Puts a WAN link emulator between a child node and its parent on the media path: one emulator per
 * conference pipe pair (A = the child's pipe, B = the parent's), created by whichever end connects
 * first. Pass `routeFor` as the harness's `pipeRouteFor`.
 */
export class EmulatedLink {
  readonly #emulators = new Map<string, Promise<LinkEmulator>>();
  constructor(
    readonly child: string,
    readonly parent: string,
    readonly options: { link: DirectionConfig; seed: number; inspect?: (direction: 'aToB' | 'bToA', data: Buffer) => void },
  ) {}

  #emulator(childPipe: PipeInfo, parentPipe: PipeInfo): Promise<LinkEmulator> {
    const key = `${childPipe.port}-${parentPipe.port}`;
    let emu = this.#emulators.get(key);
    if (!emu) {
      emu = LinkEmulator.create({
        a: { host: childPipe.ip, port: childPipe.port },
        b: { host: parentPipe.ip, port: parentPipe.port },
        link: this.options.link,
        seed: this.options.seed,
        ...(this.options.inspect ? { inspect: this.options.inspect } : {}),
      });
      this.#emulators.set(key, emu);
    }
    return emu;
  }

  readonly routeFor = (name: string): PipeRoute | undefined => {
    if (name === this.child) {
      return async ({ linkId, local, remote }) => (linkId === 'parent' ? { ip: '127.0.0.1', port: (await this.#emulator(local, remote)).portA } : remote);
    }
    if (name === this.parent) {
      return async ({ linkId, local, remote }) => (linkId === `child:${this.child}` ? { ip: '127.0.0.1', port: (await this.#emulator(remote, local)).portB } : remote);
    }
    return undefined;
  };

  /** Bytes that entered the link each way, over every emulator (pipe and plain paths of every conference). */
  async bytesIn(): Promise<{ aToB: number; bToA: number }> {
    let aToB = 0;
    let bToA = 0;
    for (const e of await this.emulators()) {
      aToB += e.counters.aToB.bytesIn;
      bToA += e.counters.bToA.bytesIn;
    }
    return { aToB, bToA };
  }

  /** Cuts or restores the media path of every conference on this link. */
  async setDown(down: boolean): Promise<void> {
    for (const e of await this.emulators()) e.setDown(down);
  }

  emulators(): Promise<LinkEmulator[]> {
    return Promise.all(this.#emulators.values());
  }

  async close(): Promise<void> {
    for (const e of await this.emulators()) e.close();
  }
}

/** Starts a tree given as [name, parentName?] pairs in parent-first order; resolves when every link is up. */
export async function startTree(spec: ReadonlyArray<readonly [string, string?]>, options: Omit<TreeNodeOptions, 'rtcMinPort' | 'rtcMaxPort'> = {}): Promise<Map<string, TreeNode>> {
  const nodes = new Map<string, TreeNode>();
  for (const [i, [name, parentName]] of spec.entries()) {
    const parent = parentName ? nodes.get(parentName) : undefined;
    if (parentName && !parent) throw new Error(`parent ${parentName} of ${name} must come first`);
    const n = new TreeNode(name, i + 1, parent?.cascadeUrl, { ...options, ...rtcPortRange(300) });
    await n.start();
    nodes.set(name, n);
  }
  await waitFor('every parent link up', () => [...nodes.values()].every((n) => !n.parentUrl || n.node.cascade?.parentConnected), 10_000);
  return nodes;
}

/** Polls a condition (cheap, in-process) until it holds or the time is up. */
export async function waitFor(what: string, ok: () => boolean | Promise<boolean>, timeoutMs = 10_000, everyMs = 20): Promise<number> {
  const t0 = performance.now();
  while (performance.now() - t0 < timeoutMs) {
    if (await ok()) return performance.now() - t0;
    await new Promise((r) => setTimeout(r, everyMs));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
}

export const H264_PT = 102;
/** SSRC of the padding-only probation packets mediasoup sends to probe bandwidth. */
const PROBATION_SSRC = 1234;

/** RTP parameters a synthetic H.264 sender uses (PLI and FIR feedback so keyframes can be asked). */
export function h264RtpParameters(ssrc: number): types.RtpParameters {
  return {
    codecs: [
      {
        mimeType: 'video/H264',
        payloadType: H264_PT,
        clockRate: 90000,
        parameters: { 'packetization-mode': 1, 'profile-level-id': '42e01f', 'level-asymmetry-allowed': 1 },
        rtcpFeedback: [{ type: 'nack' }, { type: 'nack', parameter: 'pli' }, { type: 'ccm', parameter: 'fir' }],
      },
    ],
    encodings: [{ ssrc }],
  };
}

/**
 * A synthetic camera: one RTP packet per frame (single NAL unit), a keyframe (SPS NAL, which
 * mediasoup marks as key) every second and at once on every PLI/FIR it receives, which it counts.
 */
export class RtpSource {
  readonly socket: dgram.Socket;
  readonly ssrc: number;
  readonly #fps: number;
  readonly #size: number;
  #timer: NodeJS.Timeout | undefined;
  #seq = 0;
  #frame = 0;
  #port = 0;
  sent = 0;
  plis = 0;
  firs = 0;
  nacks = 0;
  keyframes = 0;

  private constructor(socket: dgram.Socket, ssrc: number, fps: number, size: number) {
    this.socket = socket;
    this.ssrc = ssrc;
    this.#fps = fps;
    this.#size = size;
    socket.on('message', (msg) => this.#onRtcp(msg));
  }

  static async create(ssrc: number, fps = 30, size = 1000): Promise<RtpSource> {
    const s = dgram.createSocket('udp4');
    await new Promise<void>((r) => s.bind(0, '127.0.0.1', r));
    return new RtpSource(s, ssrc, fps, size);
  }

  start(port: number): void {
    this.#port = port;
    clearInterval(this.#timer);
    this.#timer = setInterval(() => this.#send(this.#frame % this.#fps === 0), 1000 / this.#fps);
  }

  stop(): void {
    clearInterval(this.#timer);
  }

  close(): void {
    this.stop();
    this.socket.close();
  }

  #send(key: boolean): void {
    const pkt = Buffer.alloc(this.#size);
    pkt[0] = 0x80;
    pkt[1] = 0x80 | H264_PT;
    pkt.writeUInt16BE(this.#seq++ & 0xffff, 2);
    pkt.writeUInt32BE(Math.floor(this.#frame * (90000 / this.#fps)) >>> 0, 4);
    pkt.writeUInt32BE(this.ssrc, 8);
    pkt[12] = key ? 0x67 : 0x41;
    // Capture time (for latency figures), after the NAL header.
    pkt.writeDoubleBE(performance.timeOrigin + performance.now(), 16);
    pkt.writeUInt32BE(this.#frame, 24);
    if (key) this.keyframes++;
    this.#frame++;
    this.sent++;
    this.socket.send(pkt, this.#port, '127.0.0.1');
  }

  #onRtcp(msg: Buffer): void {
    let off = 0;
    let asked = false;
    while (off + 4 <= msg.length) {
      const fmt = msg[off]! & 0x1f;
      const pt = msg[off + 1]!;
      const len = (msg.readUInt16BE(off + 2) + 1) * 4;
      if (pt === 206 && fmt === 1) (this.plis++, (asked = true));
      if (pt === 206 && fmt === 4) (this.firs++, (asked = true));
      if (pt === 205 && fmt === 1) this.nacks++;
      off += len;
    }
    if (asked) this.#send(true);
  }
}

interface SinkCount {
  packets: number;
  bytes: number;
  last: number;
  /** Capture-to-receive latency of the last packets (ms), from the source's timestamp. */
  latencies: number[];
  /** Arrival time of each frame number received (each synthetic frame is one packet); bounded. */
  frames: Map<number, number>;
  /** Arrival gaps longer than FREEZE_MS: how many, and their total length. */
  freezes: number;
  freezeMs: number;
  /** Packets per simulcast layer mark (SimulcastRtpSource), and the last layer seen. */
  layers: Map<number, number>;
  lastLayer: number;
}

/** A gap in arrivals this long counts as a freeze (as WebRTC stats do: ~150 ms beyond the frame interval). */
export const FREEZE_MS = 200;

/**
 * Freezes as a decoder without a jitter buffer would show them: every frame depends on the one
 * before, so frame f is shown at max(its arrival, when f-1 was shown); a freeze is a gap between
 * shown frames longer than FREEZE_MS. Frames never received hold the picture until the next keyframe,
 * approximated here as the next received frame.
 */
export function playoutFreezes(arrivals: ReadonlyMap<number, number>, from: number, to: number): { count: number; totalMs: number; longestMs: number } {
  let shown: number | undefined;
  let count = 0;
  let totalMs = 0;
  let longestMs = 0;
  for (let f = from; f < to; f++) {
    const at = arrivals.get(f);
    if (at === undefined) continue;
    const t = shown === undefined ? at : Math.max(at, shown);
    if (shown !== undefined && t - shown > FREEZE_MS) {
      count++;
      totalMs += t - shown;
      longestMs = Math.max(longestMs, t - shown);
    }
    shown = t;
  }
  return { count, totalMs, longestMs };
}

/** Where an RTP packet's payload starts: after CSRCs and the header extension, if any. */
export function rtpPayloadOffset(pkt: Buffer): number {
  let off = 12 + 4 * (pkt[0]! & 0x0f);
  if (pkt[0]! & 0x10 && pkt.length >= off + 4) off += 4 + 4 * pkt.readUInt16BE(off + 2);
  return off;
}

function emptyCount(): SinkCount {
  return { packets: 0, bytes: 0, last: 0, latencies: [], frames: new Map(), freezes: 0, freezeMs: 0, layers: new Map(), lastLayer: -1 };
}

/** Counts RTP arriving from taps, per sending port (one tap = one PlainTransport = one port). */
export class RtpSink {
  readonly socket: dgram.Socket;
  readonly #counts = new Map<number, SinkCount>();

  private constructor(socket: dgram.Socket) {
    this.socket = socket;
    socket.on('message', (msg, rinfo) => {
      if (msg.length < 12) return;
      const pt = msg[1]!;
      if (pt >= 192 && pt <= 223) return; // RTCP
      if (msg.readUInt32BE(8) === PROBATION_SSRC) return; // mediasoup's bandwidth probes, not media
      let c = this.#counts.get(rinfo.port);
      if (!c) this.#counts.set(rinfo.port, (c = emptyCount()));
      const now = performance.now();
      if (c.last && now - c.last > FREEZE_MS) {
        c.freezes++;
        c.freezeMs += now - c.last;
      }
      c.packets++;
      c.bytes += msg.length;
      c.last = now;
      const off = rtpPayloadOffset(msg);
      const nal = msg[off];
      if (msg.length >= off + 16 && (nal === 0x67 || nal === 0x41)) {
        const sentAt = msg.readDoubleBE(off + 4);
        const lat = performance.timeOrigin + performance.now() - sentAt;
        const f = msg.readUInt32BE(off + 12);
        if (c.frames.size < 100_000 && !c.frames.has(f)) c.frames.set(f, now);
        if (msg.length >= off + 18 && msg[off + 17] === LAYER_MAGIC) {
          const layer = msg[off + 16]!;
          c.layers.set(layer, (c.layers.get(layer) ?? 0) + 1);
          c.lastLayer = layer;
        }
        if (lat >= 0 && lat < 10_000) {
          c.latencies.push(lat);
          if (c.latencies.length > 500) c.latencies.shift();
        }
      }
    });
  }

  static async create(): Promise<RtpSink> {
    const s = dgram.createSocket({ type: 'udp4', recvBufferSize: 16 << 20 });
    await new Promise<void>((r) => s.bind(0, '127.0.0.1', r));
    return new RtpSink(s);
  }

  get port(): number {
    return (this.socket.address() as AddressInfo).port;
  }

  count(fromPort: number): SinkCount {
    return this.#counts.get(fromPort) ?? emptyCount();
  }

  get totalPackets(): number {
    let n = 0;
    for (const c of this.#counts.values()) n += c.packets;
    return n;
  }

  close(): void {
    this.socket.close();
  }
}

/** One layer of a synthetic simulcast camera: its own frame rate and packet size (so its bitrate), and the maxBitrate it announces. */
export interface LayerSpec {
  ssrc: number;
  fps: number;
  size: number;
  maxBitrate: number;
}

/** Marks the payload byte after the layer number (tells a SimulcastRtpSource packet from others). */
const LAYER_MAGIC = 0xa5;

/** RTP parameters of a 3-layer H.264 simulcast sender (one SSRC per layer, lowest first). */
export function h264SimulcastRtpParameters(layers: readonly LayerSpec[]): types.RtpParameters {
  const p = h264RtpParameters(layers[0]!.ssrc);
  return { ...p, encodings: layers.map((l) => ({ ssrc: l.ssrc, maxBitrate: l.maxBitrate })) };
}

/**
 * A synthetic simulcast camera: each layer is a stream of one-packet frames on its own SSRC at its own
 * rate and size, the payload marked with the layer (byte 16 after the NAL header's offset) so a receiver
 * behind a consumer (which rewrites SSRCs) can tell which layer it gets. A keyframe every second per
 * layer, and at once on the layer a PLI/FIR names (all layers if it names none of them).
 */
export class SimulcastRtpSource {
  readonly socket: dgram.Socket;
  readonly layers: readonly LayerSpec[];
  readonly #seq: number[];
  readonly #frame: number[];
  readonly #timers: NodeJS.Timeout[] = [];
  #port = 0;
  sent: number[];
  sentBytes: number[];
  /** Keyframe requests per layer. */
  plis: number[];
  keyframes: number[];

  private constructor(socket: dgram.Socket, layers: readonly LayerSpec[]) {
    this.socket = socket;
    this.layers = layers;
    this.#seq = layers.map(() => 0);
    this.#frame = layers.map(() => 0);
    this.sent = layers.map(() => 0);
    this.sentBytes = layers.map(() => 0);
    this.plis = layers.map(() => 0);
    this.keyframes = layers.map(() => 0);
    socket.on('message', (msg) => this.#onRtcp(msg));
  }

  static async create(layers: readonly LayerSpec[]): Promise<SimulcastRtpSource> {
    const s = dgram.createSocket('udp4');
    await new Promise<void>((r) => s.bind(0, '127.0.0.1', r));
    return new SimulcastRtpSource(s, layers);
  }

  rtpParameters(): types.RtpParameters {
    return h264SimulcastRtpParameters(this.layers);
  }

  start(port: number): void {
    this.#port = port;
    this.stop();
    for (const [i, l] of this.layers.entries()) {
      this.#timers.push(setInterval(() => this.#send(i, this.#frame[i]! % l.fps === 0), 1000 / l.fps));
    }
  }

  stop(): void {
    for (const t of this.#timers.splice(0)) clearInterval(t);
  }

  close(): void {
    this.stop();
    this.socket.close();
  }

  #send(layer: number, key: boolean): void {
    const l = this.layers[layer]!;
    const pkt = Buffer.alloc(l.size);
    const frame = this.#frame[layer]!;
    pkt[0] = 0x80;
    pkt[1] = 0x80 | H264_PT;
    pkt.writeUInt16BE(this.#seq[layer]!++ & 0xffff, 2);
    pkt.writeUInt32BE(Math.floor(frame * (90000 / l.fps)) >>> 0, 4);
    pkt.writeUInt32BE(l.ssrc, 8);
    pkt[12] = key ? 0x67 : 0x41;
    pkt.writeDoubleBE(performance.timeOrigin + performance.now(), 16);
    pkt.writeUInt32BE(frame, 24);
    pkt[28] = layer;
    pkt[29] = LAYER_MAGIC;
    if (key) this.keyframes[layer]!++;
    this.#frame[layer]!++;
    this.sent[layer]!++;
    this.sentBytes[layer]! += pkt.length;
    this.socket.send(pkt, this.#port, '127.0.0.1');
  }

  #onRtcp(msg: Buffer): void {
    let off = 0;
    const asked = new Set<number>();
    while (off + 4 <= msg.length) {
      const fmt = msg[off]! & 0x1f;
      const pt = msg[off + 1]!;
      const len = (msg.readUInt16BE(off + 2) + 1) * 4;
      // PLI names the media SSRC at +8; FIR names it in its FCI at +12.
      const named = pt === 206 && fmt === 1 && off + 12 <= msg.length ? msg.readUInt32BE(off + 8) : pt === 206 && fmt === 4 && off + 16 <= msg.length ? msg.readUInt32BE(off + 12) : undefined;
      if (named !== undefined) {
        const i = this.layers.findIndex((l) => l.ssrc === named);
        if (i >= 0) asked.add(i);
        else for (const j of this.layers.keys()) asked.add(j);
      }
      off += len;
    }
    for (const i of asked) {
      this.plis[i]!++;
      this.#send(i, true);
    }
  }
}
