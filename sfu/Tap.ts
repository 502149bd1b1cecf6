import type { types } from 'mediasoup';
import { TypedEmitter } from './TypedEmitter.ts';
import type { Room } from './Room.ts';

export interface TapOptions {
  /** Where to send the RTP (and RTCP, muxed). */
  ip: string;
  port: number;
  listenIp: string;
}

export type TapEvents = {
  /** The tapped producer went away (closed at its origin, or its link was lost). */
  close: [];
};

/**
 * A server-side consumer that sends one producer of a room, local or on another node of the
 * conference, to a UDP address through a PlainTransport: for recording a conference (ffmpeg
 * reads it with an SDP) and for tests. Counts as a consumer like any browser's.
 */
export class Tap extends TypedEmitter<TapEvents> {
  readonly transport: types.PlainTransport;
  readonly consumer: types.Consumer;
  #closed = false;

  private constructor(transport: types.PlainTransport, consumer: types.Consumer, release: () => void, unhold: () => void) {
    super();
    this.transport = transport;
    this.consumer = consumer;
    consumer.observer.once('close', () => {
      release();
      unhold();
      transport.close();
      if (!this.#closed) {
        this.#closed = true;
        this.emit('close');
      }
    });
  }

  static async open(room: Room, producerId: string, options: TapOptions): Promise<Tap> {
    const unhold = room.retain();
    let release: () => void = () => undefined;
    let transport: types.PlainTransport | undefined;
    try {
      if (!room.localProducer(producerId)) {
        if (!room.remote?.producer(producerId)) throw new Error('no such producer in this conference');
        release = await room.remote.acquire(producerId);
      }
      transport = await room.router.createPlainTransport({ listenInfo: { protocol: 'udp', ip: options.listenIp }, rtcpMux: true, comedia: false });
      await transport.connect({ ip: options.ip, port: options.port });
      const consumer = await transport.consume({ producerId, rtpCapabilities: room.router.rtpCapabilities });
      return new Tap(transport, consumer, release, unhold);
    } catch (err) {
      transport?.close();
      release();
      unhold();
      throw err;
    }
  }

  get closed(): boolean {
    return this.#closed;
  }

  close(): void {
    this.consumer.close();
  }
}
