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
  /** Undefined for an adopted producer, whose transport belongs to whoever made it. */
  readonly transport: types.PlainTransport | undefined;
  readonly producer: types.Producer;
  readonly peerInfo: PeerInfo;
  readonly #room: Room;
  readonly #source: MediaSource;
  readonly #makeRendition: (() => Promise<types.Producer>) | undefined;
  #rendition: Promise<types.Producer> | undefined;

  private constructor(
    room: Room,
    transport: types.PlainTransport | undefined,
    producer: types.Producer,
    options: Pick<IngestOptions, 'displayName' | 'unitId' | 'source'> & { peerId?: string; rendition?: () => Promise<types.Producer> },
  ) {
    this.#room = room;
    this.#makeRendition = options.rendition;
    this.transport = transport;
    this.producer = producer;
    this.#source = options.source;
    this.peerInfo = { peerId: options.peerId ?? this.id, displayName: options.displayName, unitId: options.unitId, role: 'participant' };
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

  /**
   * Registers a producer made elsewhere on this room's router (recorder/LiveCameraIngest runs
   * ffmpeg into its own PlainTransports) so the room announces and routes it like any ingest.
   * Producers adopted with the same `peerId` (a camera's video and audio) appear as one site.
   * `rendition`: makes the same picture in a form every browser decodes (a camera forwarded in its own
   * H.264 profile), asked for the first time a viewer cannot consume the producer; not announced.
   */
  static adopt(
    room: Room,
    producer: types.Producer,
    options: Pick<IngestOptions, 'displayName' | 'unitId' | 'source'> & { peerId?: string; rendition?: () => Promise<types.Producer> },
  ): Ingest {
    const ingest = new Ingest(room, undefined, producer, options);
    producer.observer.once('close', () => room.removeIngest(ingest));
    room.addIngest(ingest);
    return ingest;
  }

  get producerInfo(): ProducerInfo {
    return { producerId: this.producer.id, peerId: this.peerInfo.peerId, kind: this.producer.kind, source: this.#source, paused: this.producer.paused };
  }

  /** The producer's rendition for viewers that cannot decode it (made once, on first use); undefined if none. */
  rendition(): Promise<types.Producer> | undefined {
    if (!this.#makeRendition || this.producer.closed) return undefined;
    if (!this.#rendition) {
      const p = this.#makeRendition();
      this.#rendition = p;
      p.then(
        (r) => r.observer.once('close', () => this.#rendition === p && (this.#rendition = undefined)),
        () => this.#rendition === p && (this.#rendition = undefined),
      );
    }
    return this.#rendition;
  }

  /** Where the sender should send RTP (and will receive RTCP from). */
  get localPort(): number {
    if (!this.transport) throw new Error('an adopted producer has no transport of this ingest');
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
    if (this.transport) this.transport.close();
    else this.producer.close();
    this.#room.removeIngest(this);
  }
}
