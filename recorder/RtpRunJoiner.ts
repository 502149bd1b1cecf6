import dgram from 'node:dgram';

/**
 * Sits between ffmpeg and a mediasoup PlainTransport and makes the RTP of successive ffmpeg runs
 * look like one stream: each run starts at a random sequence number and timestamp, and a browser
 * drops packets and frames that look older than what it has already seen (the picture would stay
 * frozen after a camera's reboot). Here every run continues where the last one ended: sequence
 * numbers follow on, timestamps advance by the wall-clock time between them; RTCP sender reports
 * are shifted alike. Packets leave from one fixed socket, so the transport's tuple never changes.
 */
export class RtpRunJoiner {
  /** Where ffmpeg sends RTP (`port`) and RTCP (`rtcpPort`). */
  readonly port: number;
  readonly rtcpPort: number;
  /** The fixed socket packets leave from: the transport is connected to this address. */
  readonly sourcePort: number;
  readonly #rtp: dgram.Socket;
  readonly #rtcp: dgram.Socket;
  readonly #clockRate: number;
  #target: { ip: string; port: number } | undefined;
  #seqOffset: number | undefined;
  #tsOffset: number | undefined;
  #lastSeq: number | undefined;
  #lastTs: number | undefined;
  #lastAt = 0;

  private constructor(rtp: dgram.Socket, rtcp: dgram.Socket, clockRate: number) {
    this.#rtp = rtp;
    this.#rtcp = rtcp;
    this.#clockRate = clockRate;
    this.port = rtp.address().port;
    this.rtcpPort = rtcp.address().port;
    this.sourcePort = this.port;
    rtp.on('message', (m, from) => {
      // The transport's own RTCP (receiver reports, keyframe requests) comes back to this socket:
      // ffmpeg could not answer it, and it must never be taken for the stream.
      if (this.#target && from.port === this.#target.port) return;
      this.#onRtp(m);
    });
    rtcp.on('message', (m) => this.#onRtcp(m));
    // A stray datagram error (ICMP port unreachable while the transport restarts) is not fatal.
    rtp.on('error', () => undefined);
    rtcp.on('error', () => undefined);
  }

  static async open(ip: string, clockRate: number): Promise<RtpRunJoiner> {
    const bind = (): Promise<dgram.Socket> =>
      new Promise((resolve, reject) => {
        const s = dgram.createSocket('udp4');
        s.once('error', reject);
        s.bind(0, ip, () => resolve(s));
      });
    return new RtpRunJoiner(await bind(), await bind(), clockRate);
  }

  /** Where to forward (the PlainTransport's local address). */
  connect(ip: string, port: number): void {
    this.#target = { ip, port };
  }

  /** A new ffmpeg run starts: its first packet defines the offsets that continue the stream. */
  newRun(): void {
    this.#seqOffset = undefined;
    this.#tsOffset = undefined;
  }

  close(): void {
    this.#rtp.close();
    this.#rtcp.close();
  }

  #onRtp(m: Buffer): void {
    // RTP only: RTCP packet types (192-223) share the second byte's range with marker+payload type.
    if (!this.#target || m.length < 12 || m[0]! >> 6 !== 2 || (m[1]! >= 192 && m[1]! <= 223)) return;
    const seq = m.readUInt16BE(2);
    const ts = m.readUInt32BE(4);
    const now = Date.now();
    if (this.#seqOffset === undefined || this.#tsOffset === undefined) {
      const nextSeq = this.#lastSeq === undefined ? seq : (this.#lastSeq + 1) & 0xffff;
      const elapsed = Math.max(1, Math.round(((now - this.#lastAt) * this.#clockRate) / 1000));
      const nextTs = this.#lastTs === undefined ? ts : (this.#lastTs + elapsed) >>> 0;
      this.#seqOffset = (nextSeq - seq + 0x10000) & 0xffff;
      this.#tsOffset = (nextTs - ts) >>> 0;
    }
    const outSeq = (seq + this.#seqOffset) & 0xffff;
    const outTs = (ts + this.#tsOffset) >>> 0;
    m.writeUInt16BE(outSeq, 2);
    m.writeUInt32BE(outTs, 4);
    this.#lastSeq = outSeq;
    this.#lastTs = outTs;
    this.#lastAt = now;
    this.#rtp.send(m, this.#target.port, this.#target.ip);
  }

  #onRtcp(m: Buffer): void {
    if (!this.#target || m.length < 8) return;
    // Sender reports carry an RTP timestamp: shift it like the run's packets (drop it before the first).
    if (m[1] === 200) {
      if (this.#tsOffset === undefined || m.length < 20) return;
      m.writeUInt32BE((m.readUInt32BE(16) + this.#tsOffset) >>> 0, 16);
    }
    // Muxed onto the RTP socket: the transport has one tuple.
    this.#rtp.send(m, this.#target.port, this.#target.ip);
  }
}
