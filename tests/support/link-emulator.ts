// A user-space WAN link between two UDP endpoints, for tests: the kernel here has no netem, so
// delay and loss are emulated by relaying datagrams through two sockets of our own.
//
//   endpoint A  <-->  [sideA socket | emulator | sideB socket]  <-->  endpoint B
//
// A sends to sideA.port and hears from it; B sends to sideB.port and hears from it. Each direction
// has its own bottleneck: a token-bucket rate (bits/s) with a bounded queue (tail drop), then a
// propagation delay with optional jitter (never reordering), and Bernoulli loss from a seeded PRNG,
// so a run with the same seed and the same traffic drops the same packets. Byte and packet counters
// per direction say what went in, what was delivered and why the rest was dropped.
import dgram from 'node:dgram';
import type { AddressInfo } from 'node:net';

export interface Endpoint {
  host: string;
  port: number;
}

export interface DirectionConfig {
  /** One-way propagation delay. */
  delayMs: number;
  /** Extra delay drawn uniformly from [0, jitterMs) (packets keep their order). */
  jitterMs?: number;
  /** Probability that a packet is lost, 0..1. */
  loss?: number;
  /** Bottleneck rate in bits per second; 0 or absent = unlimited. */
  rateBps?: number;
  /** Bytes that may wait for the bottleneck before tail drop (default 64 KiB). */
  queueBytes?: number;
}

export interface LinkEmulatorOptions {
  /** Where packets arriving on sideB go; if absent, learnt from the first packet A sends. */
  a?: Endpoint;
  b?: Endpoint;
  /** Applied to both directions unless aToB / bToA override fields. */
  link: DirectionConfig;
  aToB?: Partial<DirectionConfig>;
  bToA?: Partial<DirectionConfig>;
  seed: number;
  host?: string;
  /** Bound on datagrams in flight per direction (beyond: dropped, counted as queue drops). */
  maxInFlight?: number;
  /** Sees every datagram as it enters the link (e.g. to check that media is encrypted). */
  inspect?: (direction: 'aToB' | 'bToA', data: Buffer) => void;
}

export interface DirectionCounters {
  packetsIn: number;
  bytesIn: number;
  packetsOut: number;
  bytesOut: number;
  lost: number;
  queueDrops: number;
}

/** mulberry32: small, fast, good enough for loss decisions, and reproducible from a seed. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

class Direction {
  readonly counters: DirectionCounters = { packetsIn: 0, bytesIn: 0, packetsOut: 0, bytesOut: 0, lost: 0, queueDrops: 0 };
  readonly #cfg: Required<DirectionConfig>;
  readonly #random: () => number;
  readonly #maxInFlight: number;
  readonly #queue: Array<{ at: number; data: Buffer }> = [];
  #busyUntil = 0;
  #lastDelivery = 0;
  #timer: NodeJS.Timeout | undefined;
  #send: (data: Buffer) => void;

  constructor(cfg: DirectionConfig, random: () => number, maxInFlight: number, send: (data: Buffer) => void) {
    this.#cfg = { jitterMs: 0, loss: 0, rateBps: 0, queueBytes: 64 * 1024, ...cfg };
    this.#random = random;
    this.#maxInFlight = maxInFlight;
    this.#send = send;
  }

  /** A cut link (outage): everything entering is lost until restored. */
  down = false;

  push(data: Buffer): void {
    const c = this.counters;
    c.packetsIn++;
    c.bytesIn += data.length;
    if (this.down) {
      c.lost++;
      return;
    }
    // Draw for every packet, kept or not, so the loss pattern depends only on seed and order.
    const lossDraw = this.#random();
    const jitterDraw = this.#random();
    const now = performance.now();
    let txDone = now;
    if (this.#cfg.rateBps > 0) {
      const queued = (Math.max(0, this.#busyUntil - now) * this.#cfg.rateBps) / 8000;
      if (queued + data.length > this.#cfg.queueBytes) {
        c.queueDrops++;
        return;
      }
      txDone = Math.max(now, this.#busyUntil) + (data.length * 8000) / this.#cfg.rateBps;
      this.#busyUntil = txDone;
    }
    // A packet lost on the wire still used the bottleneck.
    if (lossDraw < this.#cfg.loss) {
      c.lost++;
      return;
    }
    if (this.#queue.length >= this.#maxInFlight) {
      c.queueDrops++;
      return;
    }
    const at = Math.max(this.#lastDelivery, txDone + this.#cfg.delayMs + jitterDraw * this.#cfg.jitterMs);
    this.#lastDelivery = at;
    this.#queue.push({ at, data });
    if (this.#queue.length === 1) this.#arm();
  }

  close(): void {
    clearTimeout(this.#timer);
    this.#queue.length = 0;
  }

  #arm(): void {
    clearTimeout(this.#timer);
    const head = this.#queue[0];
    if (!head) return;
    this.#timer = setTimeout(() => this.#flush(), Math.max(0, head.at - performance.now()));
  }

  #flush(): void {
    const now = performance.now();
    // Timers fire late by a millisecond or so; send everything that is due.
    while (this.#queue.length && this.#queue[0]!.at <= now + 0.5) {
      const { data } = this.#queue.shift()!;
      this.counters.packetsOut++;
      this.counters.bytesOut += data.length;
      this.#send(data);
    }
    this.#arm();
  }
}

export class LinkEmulator {
  readonly sideA: dgram.Socket;
  readonly sideB: dgram.Socket;
  #a: Endpoint | undefined;
  #b: Endpoint | undefined;
  readonly #ab: Direction;
  readonly #ba: Direction;

  private constructor(options: LinkEmulatorOptions, sideA: dgram.Socket, sideB: dgram.Socket) {
    this.sideA = sideA;
    this.sideB = sideB;
    this.#a = options.a;
    this.#b = options.b;
    const random = seededRandom(options.seed);
    const random2 = seededRandom(options.seed ^ 0x5bd1e995);
    const maxInFlight = options.maxInFlight ?? 20_000;
    this.#ab = new Direction({ ...options.link, ...options.aToB }, random, maxInFlight, (d) => {
      if (this.#b) sideB.send(d, this.#b.port, this.#b.host);
    });
    this.#ba = new Direction({ ...options.link, ...options.bToA }, random2, maxInFlight, (d) => {
      if (this.#a) sideA.send(d, this.#a.port, this.#a.host);
    });
    sideA.on('message', (msg, rinfo) => {
      this.#a ??= { host: rinfo.address, port: rinfo.port };
      options.inspect?.('aToB', msg);
      this.#ab.push(msg);
    });
    sideB.on('message', (msg, rinfo) => {
      this.#b ??= { host: rinfo.address, port: rinfo.port };
      options.inspect?.('bToA', msg);
      this.#ba.push(msg);
    });
  }

  static async create(options: LinkEmulatorOptions): Promise<LinkEmulator> {
    const host = options.host ?? '127.0.0.1';
    const bind = async () => {
      const s = dgram.createSocket({ type: 'udp4', recvBufferSize: 8 << 20, sendBufferSize: 8 << 20 });
      s.on('error', () => undefined);
      await new Promise<void>((r) => s.bind(0, host, r));
      return s;
    };
    return new LinkEmulator(options, await bind(), await bind());
  }

  /** Where endpoint A must send (and what it will see as its peer). */
  get portA(): number {
    return (this.sideA.address() as AddressInfo).port;
  }

  /** Where endpoint B must send. */
  get portB(): number {
    return (this.sideB.address() as AddressInfo).port;
  }

  /** Sets (or changes) the endpoints once they are known. */
  setEndpoints(a: Endpoint | undefined, b: Endpoint | undefined): void {
    if (a) this.#a = a;
    if (b) this.#b = b;
  }

  /** Cuts (true) or restores (false) the link in both directions, as an outage would. */
  setDown(down: boolean): void {
    this.#ab.down = down;
    this.#ba.down = down;
  }

  get counters(): { aToB: DirectionCounters; bToA: DirectionCounters } {
    return { aToB: { ...this.#ab.counters }, bToA: { ...this.#ba.counters } };
  }

  close(): void {
    this.#ab.close();
    this.#ba.close();
    this.sideA.close();
    this.sideB.close();
  }
}
