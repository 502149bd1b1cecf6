import type { Logger } from '../infra/logger.ts';
import { LiveCameraIngest, type LiveCameraState } from '../recorder/LiveCameraIngest.ts';
import { CameraUnavailableError } from '../recorder/CameraUnavailableError.ts';
import { Ingest } from '../sfu/Ingest.ts';
import type { SfuNode } from '../sfu/SfuNode.ts';
import type { types } from 'mediasoup';
import { LiveCapacityError, liveRoomFor, type LiveCameraProvider, type LiveCameraSession, type LiveCameraTarget, type LiveStream } from './api/routes/live-cameras.ts';

export interface LiveCameraProviderOptions {
  sfu: SfuNode;
  log: Logger;
  /** Cameras pulled at once; the next request is refused until one is released. */
  maxCameras?: number;
  /** A camera nobody has watched for this long is released. */
  idleMs?: number;
  /** While a watched camera is down, it is asked (RTSP DESCRIBE) this often; it resumes as soon as it answers. */
  cameraProbeIntervalMs?: number;
  /** ffmpeg's RTSP socket timeout for live pulls. */
  rtspTimeoutMs?: number;
  /** How long the first viewer's answer waits for video before it says 'connecting'. */
  firstFrameWaitMs?: number;
}

interface Live {
  ingest: LiveCameraIngest;
  /** The producers as the room knows them. */
  adopted: Ingest[];
  session: LiveCameraSession;
  idleSince: number | null;
  roomId: string;
  cameraId: number;
  stream: LiveStream;
}

/** Pulls are keyed by camera and stream: the wall's sub-stream and the inspection's main are two pulls. */
const keyOf = (cameraId: number, stream: LiveStream = 'main'): string => `${cameraId}:${stream}`;

/**
 * Live inspection on this node: pulls a camera's RTSP with ffmpeg into the camera's SFU room
 * (recorder/LiveCameraIngest) and registers its producers with the room, so viewers consume it like
 * any participant. One pull per camera and stream (main / sub) however many watch; released when
 * nobody has watched for a while, or when the room goes away (its worker died).
 */
export class NodeLiveCameraProvider implements LiveCameraProvider {
  readonly #o: Required<LiveCameraProviderOptions>;
  readonly #live = new Map<string, Live>();
  readonly #pending = new Map<string, Promise<LiveCameraSession>>();
  readonly #sweep: NodeJS.Timeout;

  constructor(options: LiveCameraProviderOptions) {
    this.#o = { maxCameras: 32, idleMs: 60_000, cameraProbeIntervalMs: 2_000, rtspTimeoutMs: 5_000, firstFrameWaitMs: 10_000, ...options };
    this.#sweep = setInterval(() => this.#release(), Math.min(10_000, this.#o.idleMs));
    this.#sweep.unref();
  }

  get count(): number {
    return this.#live.size;
  }

  /** The camera's state if this node pulls it. */
  state(cameraId: number, stream: LiveStream = 'main'): LiveCameraState | undefined {
    const l = this.#live.get(keyOf(cameraId, stream));
    return l && !l.ingest.closed ? l.ingest.state : undefined;
  }

  ensure(camera: LiveCameraTarget): Promise<LiveCameraSession> {
    const key = keyOf(camera.id, camera.stream);
    const live = this.#live.get(key);
    if (live && !live.ingest.closed) {
      // A camera that is down is followed (probed, restarted) but its dark session is not handed out.
      const st = live.ingest.state;
      if (st.state === 'offline') return Promise.reject(new CameraUnavailableError(st.failure));
      return Promise.resolve({ ...live.session, state: st.state });
    }
    let pending = this.#pending.get(key);
    if (!pending) {
      // Starts still under way count against the cap too: #start awaits before it adds to #live.
      const stale = live ? 1 : 0; // a closed pull of this camera, replaced by the start
      if (this.#live.size - stale + this.#pending.size >= this.#o.maxCameras) return Promise.reject(new LiveCapacityError(this.#o.maxCameras));
      pending = this.#start(camera).finally(() => this.#pending.delete(key));
      this.#pending.set(key, pending);
    }
    return pending;
  }

  close(): void {
    clearInterval(this.#sweep);
    for (const l of this.#live.values()) l.ingest.close();
    this.#live.clear();
  }

  async #start(camera: LiveCameraTarget): Promise<LiveCameraSession> {
    const stream = camera.stream ?? 'main';
    const key = keyOf(camera.id, stream);
    const roomId = liveRoomFor(camera.id, stream);
    const room = await this.#o.sfu.openRoom(roomId);
    const ingest = await LiveCameraIngest.create({
      router: room.router,
      pullUrl: camera.pullUrl,
      label: stream === 'main' ? `camera ${camera.id}` : `camera ${camera.id} (${stream})`,
      log: this.#o.log,
      rtspTransport: camera.rtspTransport ?? 'auto',
      cameraProbeIntervalMs: this.#o.cameraProbeIntervalMs,
      rtspTimeoutMs: this.#o.rtspTimeoutMs,
    });
    const who = { displayName: camera.name.slice(0, 64), unitId: camera.unitId, peerId: stream === 'main' ? `camera-${camera.id}` : `camera-${camera.id}-${stream}` };
    // Forwarded as the camera sends it: a viewer whose browser lacks that H.264 profile is given a
    // baseline rendition, started on the first such request (through the restreamer: same RTSP session).
    const rendition = async (): Promise<types.Producer> => {
      const r = await LiveCameraIngest.create({
        router: room.router,
        pullUrl: camera.pullUrl,
        label: `camera ${camera.id} (${stream}, baseline rendition)`,
        log: this.#o.log,
        rtspTransport: camera.rtspTransport ?? 'auto',
        cameraProbeIntervalMs: this.#o.cameraProbeIntervalMs,
        rtspTimeoutMs: this.#o.rtspTimeoutMs,
        rendition: true,
      });
      if (ingest.closed) r.close();
      else ingest.once('closed', () => r.close());
      return r.videoProducer;
    };
    const adopted = [Ingest.adopt(room, ingest.videoProducer, { ...who, source: 'camera', ...(ingest.passthrough ? { rendition } : {}) })];
    if (ingest.audioProducer) adopted.push(Ingest.adopt(room, ingest.audioProducer, { ...who, source: 'microphone' }));
    // Producers are not paused while the camera is down: a resumed consumer waits for a keyframe
    // request that ffmpeg never answers. The RtpRunJoiner keeps the stream continuous instead.
    const session: LiveCameraSession = {
      room: roomId,
      producers: [
        { kind: 'video', producerId: ingest.videoProducer.id },
        ...(ingest.audioProducer ? [{ kind: 'audio' as const, producerId: ingest.audioProducer.id }] : []),
      ],
    };
    const live: Live = { ingest, adopted, session, idleSince: null, roomId, cameraId: camera.id, stream };
    this.#live.set(key, live);
    room.once('close', () => {
      ingest.close();
      if (this.#live.get(key) === live) this.#live.delete(key);
    });
    this.#o.log.info({ camera: camera.id, stream, room: roomId, passthrough: ingest.passthrough }, 'live camera started');
    // The first viewer is answered once video flows (or the camera fails, or a bound passes: then
    // 'connecting'), so a token never stands for a session that is dark from the start.
    const first = await new Promise<LiveCameraState>((resolve) => {
      const done = (s: LiveCameraState): void => {
        if (s.state === 'connecting') return;
        clearTimeout(timer);
        ingest.off('state', done);
        resolve(s);
      };
      const timer = setTimeout(() => done({ state: 'live' }), this.#o.firstFrameWaitMs);
      ingest.on('state', done);
      ingest.once('closed', () => done({ state: 'live' }));
    });
    if (first.state === 'offline') throw new CameraUnavailableError(first.failure);
    return { ...session, state: ingest.state.state === 'live' ? 'live' : 'connecting' };
  }

  #release(): void {
    const now = Date.now();
    for (const [key, l] of this.#live) {
      const viewers = this.#o.sfu.rooms.get(l.roomId)?.peers.size ?? 0;
      if (viewers > 0) l.idleSince = null;
      else if (l.idleSince === null) l.idleSince = now;
      else if (now - l.idleSince >= this.#o.idleMs) {
        this.#live.delete(key);
        l.ingest.close();
        this.#o.log.info({ camera: l.cameraId, stream: l.stream }, 'live camera released (no viewers)');
      }
    }
  }
}
