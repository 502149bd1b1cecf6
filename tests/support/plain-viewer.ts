import dgram from 'node:dgram';
import type { types } from 'mediasoup';

/**
 * A viewer stand-in for server-side tests: a consumer sending RTP over a PlainTransport to a local UDP
 * socket, which keeps the arrival time and sequence number of the stream's own packets. Only the
 * consumer's SSRC counts: mediasoup also sends bandwidth probes (SSRC 1234, PT 127) with sequence
 * numbers of their own, and RTCP shares the socket.
 */
export class PlainViewer {
  readonly arrivals: Array<{ at: number; seq: number }> = [];
  private constructor(
    readonly socket: dgram.Socket,
    readonly transport: types.PlainTransport,
    readonly consumer: types.Consumer,
  ) {}

  static async open(router: types.Router, producerId: string): Promise<PlainViewer> {
    const socket = dgram.createSocket('udp4');
    await new Promise<void>((r) => socket.bind(0, '127.0.0.1', () => r()));
    const t = await router.createPlainTransport({ listenInfo: { protocol: 'udp', ip: '127.0.0.1' }, rtcpMux: true, comedia: false });
    await t.connect({ ip: '127.0.0.1', port: socket.address().port });
    const consumer = await t.consume({ producerId, rtpCapabilities: router.rtpCapabilities });
    const v = new PlainViewer(socket, t, consumer);
    const ssrc = consumer.rtpParameters.encodings![0]!.ssrc!;
    socket.on('message', (m) => {
      if (m.length > 12 && (m[1]! < 200 || m[1]! > 206) && m.readUInt32BE(8) === ssrc) v.arrivals.push({ at: Date.now(), seq: m.readUInt16BE(2) });
    });
    return v;
  }

  countSince(t: number): number {
    return this.arrivals.filter((a) => a.at >= t).length;
  }

  close(): void {
    this.consumer.close();
    this.transport.close();
    this.socket.close();
  }
}
