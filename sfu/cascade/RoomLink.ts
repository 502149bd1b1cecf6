import type { types } from 'mediasoup';
import type { Link } from './Link.ts';
import type { PipeInfo } from './protocol.ts';

/**
 * A conference as carried over one link: the PipeTransport pair's local end (one per room per
 * link, SRTP-protected, NACK/RTX enabled) and the producers piped out over it (at most one pipe
 * consumer per producer: a stream crosses a link once, however many consume it beyond).
 */
export class RoomLink {
  readonly link: Link;
  readonly transport: types.PipeTransport;
  /** Producers sent over this link, by id; a promise while the pipe consumer is being set up. */
  readonly outgoing = new Map<string, Promise<types.Consumer>>();
  readonly #release: () => void;
  #closed = false;

  constructor(link: Link, transport: types.PipeTransport, release: () => void) {
    this.link = link;
    this.transport = transport;
    this.#release = release;
  }

  static async createTransport(router: types.Router, listenIp: string, announcedAddress: string | undefined): Promise<types.PipeTransport> {
    return router.createPipeTransport({
      listenInfo: { protocol: 'udp', ip: listenIp, ...(announcedAddress ? { announcedAddress } : {}) },
      enableRtx: true,
      enableSrtp: true,
      enableSctp: false,
    });
  }

  static pipeInfo(transport: types.PipeTransport, announcedAddress: string | undefined): PipeInfo {
    const srtp = transport.srtpParameters;
    if (!srtp) throw new Error('pipe transport without SRTP parameters');
    return { ip: announcedAddress ?? transport.tuple.localAddress, port: transport.tuple.localPort, srtp };
  }

  get closed(): boolean {
    return this.#closed;
  }

  async connect(to: { ip: string; port: number }, srtp: PipeInfo['srtp']): Promise<void> {
    await this.transport.connect({ ip: to.ip, port: to.port, srtpParameters: srtp });
  }

  /** Bytes each way on this link for this conference (RTP, RTX and RTCP, after SRTP). */
  async bytes(): Promise<{ sent: number; received: number; rtpSent: number; rtxSent: number }> {
    const [s] = await this.transport.getStats();
    return { sent: s?.bytesSent ?? 0, received: s?.bytesReceived ?? 0, rtpSent: s?.rtpBytesSent ?? 0, rtxSent: s?.rtxBytesSent ?? 0 };
  }

  /** Closes the pipe (and so every pipe consumer and producer on it) and lets go of the room. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.transport.close();
    this.#release();
  }
}
