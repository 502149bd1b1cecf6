import crypto from 'node:crypto';
import type { types } from 'mediasoup';
import type { MediaSource, PeerInfo, ProducerInfo } from './protocol.ts';
import type { Room } from './Room.ts';

export interface IngestOptions {
  displayName: string;
  unitId: number;
  kind: 'audio' | 'video';
  source: MediaSource;
  /** What the sender will send (codec, payload type, SSRC). */
  rtpParameters: types.RtpParameters;
  listenIp: string;
  announcedAddress?: string;
  keyFrameRequestDelayMs: number;
}

/**
 * A server-side participant that sends one stream into a room through a PlainTransport (comedia:
 * the first packets tell where the sender is, RTCP such as keyframe requests goes back there).
 * Village cameras enter this way (ffmpeg pulling RTSP), and so does synthetic RTP in tests.
 * To everyone else it looks like a peer with one producer.
 */
export class Ingest {
  readonly id = crypto.randomUUID();
  readonly transport: types.PlainTransport;
  readonly producer: types.Producer;
  readonly peerInfo: PeerInfo;
  readonly #room: Room;
  readonly #source: MediaSource;

  private constructor(room: Room, transport: types.PlainTransport, producer: types.Producer, options: IngestOptions) {
    this.#room = room;
    this.transport = transport;
    this.producer = producer;
    this.#source = options.source;
    this.peerInfo = { peerId: this.id, displayName: options.displayName, unitId: options.unitId, role: 'participant' };
  }

  static async open(room: Room, options: IngestOptions): Promise<Ingest> {
    const transport = await room.router.createPlainTransport({
      listenInfo: { protocol: 'udp', ip: options.listenIp, ...(options.announcedAddress ? { announcedAddress: options.announcedAddress } : {}) },
      rtcpMux: true,
      comedia: true,
    });
    try {
      const producer = await transport.produce({
        kind: options.kind,
        rtpParameters: options.rtpParameters,
        ...(options.kind === 'video' ? { keyFrameRequestDelay: options.keyFrameRequestDelayMs } : {}),
      });
      const ingest = new Ingest(room, transport, producer, options);
      producer.observer.once('close', () => room.removeIngest(ingest));
      room.addIngest(ingest);
      return ingest;
    } catch (err) {
      transport.close();
      throw err;
    }
  }

  get producerInfo(): ProducerInfo {
    return { producerId: this.producer.id, peerId: this.id, kind: this.producer.kind, source: this.#source, paused: this.producer.paused };
  }

  /** Where the sender should send RTP (and will receive RTCP from). */
  get localPort(): number {
    return this.transport.tuple.localPort;
  }

  async pause(): Promise<void> {
    await this.producer.pause();
    this.#room.producerPauseChanged(this.producer.id, true);
  }

  async resume(): Promise<void> {
    await this.producer.resume();
    this.#room.producerPauseChanged(this.producer.id, false);
  }

  close(): void {
    this.transport.close();
    this.#room.removeIngest(this);
  }
}
