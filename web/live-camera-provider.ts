import type { Logger } from '../infra/logger.ts';
import { LiveCameraIngest } from '../recorder/LiveCameraIngest.ts';
import { Ingest } from '../sfu/Ingest.ts';
import type { SfuNode } from '../sfu/SfuNode.ts';
import { LiveCapacityError, liveRoomFor, type LiveCameraProvider, type LiveCameraSession, type LiveCameraTarget } from './api/routes/live-cameras.ts';

export interface LiveCameraProviderOptions {
  sfu: SfuNode;
  log: Logger;
  /** Cameras pulled at once; the next request is refused until one is released. */
  maxCameras?: number;
  /** A camera nobody has watched for this long is released. */
  idleMs?: number;
}

interface Live {
  ingest: LiveCameraIngest;
  session: LiveCameraSession;
  idleSince: number | null;
  roomId: string;
}

/**
 * Live inspection on this node: pulls a camera's RTSP with ffmpeg into the camera's SFU room
 * (recorder/LiveCameraIngest) and registers its producers with the room, so viewers consume it like
 * any participant. One pull per camera however many watch; released when nobody has watched for a
 * while, or when the room goes away (its worker died).
 */
export class NodeLiveCameraProvider implements LiveCameraProvider {
  readonly #o: Required<LiveCameraProviderOptions>;
  readonly #live = new Map<number, Live>();
  readonly #pending = new Map<number, Promise<LiveCameraSession>>();
  readonly #sweep: NodeJS.Timeout;

  constructor(options: LiveCameraProviderOptions) {
    this.#o = { maxCameras: 32, idleMs: 60_000, ...options };
    this.#sweep = setInterval(() => this.#release(), Math.min(10_000, this.#o.idleMs));
    this.#sweep.unref();
  }

  get count(): number {
    return this.#live.size;
  }

  ensure(camera: LiveCameraTarget): Promise<LiveCameraSession> {
    const live = this.#live.get(camera.id);
    if (live && !live.ingest.closed) return Promise.resolve(live.session);
    let pending = this.#pending.get(camera.id);
    if (!pending) {
      // Starts still under way count against the cap too: #start awaits before it adds to #live.
      const stale = live ? 1 : 0; // a closed pull of this camera, replaced by the start
      if (this.#live.size - stale + this.#pending.size >= this.#o.maxCameras) return Promise.reject(new LiveCapacityError(this.#o.maxCameras));
      pending = this.#start(camera).finally(() => this.#pending.delete(camera.id));
      this.#pending.set(camera.id, pending);
    }
    return pending;
  }

  close(): void {
    clearInterval(this.#sweep);
    for (const l of this.#live.values()) l.ingest.close();
    this.#live.clear();
  }

  async #start(camera: LiveCameraTarget): Promise<LiveCameraSession> {
    const roomId = liveRoomFor(camera.id);
    const room = await this.#o.sfu.openRoom(roomId);
    const ingest = await LiveCameraIngest.create({ router: room.router, pullUrl: camera.pullUrl, label: `camera ${camera.id}`, log: this.#o.log });
    const who = { displayName: camera.name.slice(0, 64), unitId: camera.unitId, peerId: `camera-${camera.id}` };
    Ingest.adopt(room, ingest.videoProducer, { ...who, source: 'camera' });
    if (ingest.audioProducer) Ingest.adopt(room, ingest.audioProducer, { ...who, source: 'microphone' });
    const session: LiveCameraSession = {
      room: roomId,
      producers: [
        { kind: 'video', producerId: ingest.videoProducer.id },
        ...(ingest.audioProducer ? [{ kind: 'audio' as const, producerId: ingest.audioProducer.id }] : []),
      ],
    };
    const live: Live = { ingest, session, idleSince: null, roomId };
    this.#live.set(camera.id, live);
    room.once('close', () => {
      ingest.close();
      if (this.#live.get(camera.id) === live) this.#live.delete(camera.id);
    });
    this.#o.log.info({ camera: camera.id, room: roomId, passthrough: ingest.passthrough }, 'live camera started');
    return session;
  }

  #release(): void {
    const now = Date.now();
    for (const [id, l] of this.#live) {
      const viewers = this.#o.sfu.rooms.get(l.roomId)?.peers.size ?? 0;
      if (viewers > 0) l.idleSince = null;
      else if (l.idleSince === null) l.idleSince = now;
      else if (now - l.idleSince >= this.#o.idleMs) {
        this.#live.delete(id);
        l.ingest.close();
        this.#o.log.info({ camera: id }, 'live camera released (no viewers)');
      }
    }
  }
}
