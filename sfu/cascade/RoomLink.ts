import type { types } from 'mediasoup';
import { Coalescer } from './Coalescer.ts';
import type { Link } from './Link.ts';
import type { PipeInfo } from './protocol.ts';

/**
 * A conference as carried over one link: the PipeTransport pair's local end (one per room per
 * link, SRTP-protected, NACK/RTX enabled) and the producers piped out over it (at most one pipe
 * consumer per producer: a stream crosses a link once, however many consume it beyond).
 *
 * On a capped link (the child's uplink has a configured capacity) a PlainTransport pair sits beside
 * the pipe: every video stream crosses it as ONE layer (an ordinary consumer with preferred layers),
 * audio stays on the pipe.
 */
export class RoomLink {
  readonly link: Link;
  readonly transport: types.PipeTransport;
  /** The single-layer video path of a capped link. */
  #plain: types.PlainTransport | undefined;
  /** The link's capacity in kbit/s (capped links only). */
  #capacityKbps: number | undefined;
  /** Producers sent over this link, by id; a promise while the consumer is being set up. */
  readonly outgoing = new Map<string, Promise<types.Consumer>>();
  /** Capped links: the video consumers on the plain transport, by producer id (one layer each). */
  readonly single = new Map<string, types.Consumer>();
  /** Capped links: re-evaluates the layers every few seconds. */
  capTimer: NodeJS.Timeout | undefined;
  /** What the node beyond wants of each producer we send over this link (its `demand`). */
  readonly demand = new Map<string, number>();
  /** The link's media round trip as its last measured pipe stream saw it: a new stream starts from it. */
  rttMs: number | undefined;
  /** Child links: the peers / producers this child has been told of (venue rooms: the stage). */
  readonly toldPeers = new Set<string>();
  readonly toldProducers = new Set<string>();
  /** The neighbour told us the room is a venue (no need to tell it back). */
  layoutFrom = false;
  /** `count` towards the parent, or `total` towards a child: coalesced, only on change. */
  counter: Coalescer<number> | undefined;
  /** Resolves once the neighbour's snapshot is applied (at once on the parent's side). */
  readonly imported: Promise<void>;
  readonly #markImported: () => void;
  readonly #release: () => void;
  #closed = false;

  constructor(link: Link, transport: types.PipeTransport, release: () => void, plain?: { transport: types.PlainTransport; capacityKbps: number }) {
    this.link = link;
    this.transport = transport;
    this.#plain = plain?.transport;
    this.#capacityKbps = plain?.capacityKbps;
    this.#release = release;
    let mark: () => void = () => undefined;
    this.imported = new Promise<void>((r) => (mark = r));
    this.#markImported = mark;
  }

  static async createTransport(router: types.Router, listenIp: string, announcedAddress: string | undefined): Promise<types.PipeTransport> {
    return router.createPipeTransport({
      listenInfo: { protocol: 'udp', ip: listenIp, ...(announcedAddress ? { announcedAddress } : {}) },
      enableRtx: true,
      enableSrtp: true,
      enableSctp: false,
    });
  }

  /** The capped link's single-layer path: plain RTP, SRTP, RTP and RTCP on one port. */
  static async createPlainTransport(router: types.Router, listenIp: string, announcedAddress: string | undefined): Promise<types.PlainTransport> {
    return router.createPlainTransport({
      listenInfo: { protocol: 'udp', ip: listenIp, ...(announcedAddress ? { announcedAddress } : {}) },
      rtcpMux: true,
      comedia: false,
      enableSrtp: true,
      srtpCryptoSuite: 'AES_CM_128_HMAC_SHA1_80',
    });
  }

  static pipeInfo(transport: types.PipeTransport | types.PlainTransport, announcedAddress: string | undefined): PipeInfo {
    const srtp = transport.srtpParameters;
    if (!srtp) throw new Error('pipe transport without SRTP parameters');
    return { ip: announcedAddress ?? transport.tuple.localAddress, port: transport.tuple.localPort, srtp };
  }

  get closed(): boolean {
    return this.#closed;
  }

  get plain(): types.PlainTransport | undefined {
    return this.#plain;
  }

  get capacityKbps(): number | undefined {
    return this.#capacityKbps;
  }

  /** The neighbour did not take the capped path (an older node): everything goes over the pipe. */
  dropPlain(): void {
    this.#plain?.close();
    this.#plain = undefined;
    this.#capacityKbps = undefined;
  }

  markImported(): void {
    this.#markImported();
  }

  async connect(to: { ip: string; port: number }, srtp: PipeInfo['srtp']): Promise<void> {
    await this.transport.connect({ ip: to.ip, port: to.port, srtpParameters: srtp });
  }

  /** Bytes each way on this link for this conference (pipe + plain; RTP, RTX and RTCP, after SRTP). */
  async bytes(): Promise<{ sent: number; received: number; rtpSent: number; rtxSent: number }> {
    const [[s], [p]] = await Promise.all([this.transport.getStats().catch(() => []), this.plain ? this.plain.getStats().catch(() => []) : Promise.resolve([])]);
    return {
      sent: (s?.bytesSent ?? 0) + (p?.bytesSent ?? 0),
      received: (s?.bytesReceived ?? 0) + (p?.bytesReceived ?? 0),
      rtpSent: (s?.rtpBytesSent ?? 0) + (p?.rtpBytesSent ?? 0),
      rtxSent: (s?.rtxBytesSent ?? 0) + (p?.rtxBytesSent ?? 0),
    };
  }

  /** Closes the pipe (and so every pipe consumer and producer on it) and lets go of the room. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.counter?.close();
    clearInterval(this.capTimer);
    this.transport.close();
    this.#plain?.close();
    this.#markImported();
    this.#release();
  }
}
