import { EventEmitter } from 'node:events';
import type { Logger } from '../infra/logger.ts';
import { createLogger } from '../infra/logger.ts';
import type { ProducerInfo } from '../sfu/protocol.ts';
import type { Room } from '../sfu/Room.ts';
import type { SfuNode } from '../sfu/SfuNode.ts';
import { ConferenceRecorder } from './ConferenceRecorder.ts';
import type { Recorder } from './Recorder.ts';

/** What to record of a room: one site's camera and microphone (the station in a face-to-face call). */
export interface RoomRecordingRequest {
  roomId: string;
  /** The site (peer unit) whose producers are recorded. */
  siteUnitId: number;
  /** The unit that owns the recording: access to it follows this unit. */
  unitId: number;
  evidence?: boolean;
}

export interface RoomRecordingsOptions {
  sfu: SfuNode;
  recorder: Recorder;
  /** How long to wait for the site's microphone once its camera is there before recording video alone. */
  audioWaitMs?: number;
  log?: Logger;
}

export interface RoomRecordingsEvents {
  started: [roomId: string, recording: ConferenceRecorder];
  stopped: [roomId: string];
  failed: [roomId: string, err: Error];
}

/** Rooms asked for at once (open calls); more are refused rather than grown without bound. */
export const MAX_RECORDED_ROOMS = 1000;

interface Wanted {
  request: RoomRecordingRequest;
  room: Room | undefined;
  unwatch: (() => void) | undefined;
  recording: ConferenceRecorder | undefined;
  starting: boolean;
  audioTimer: NodeJS.Timeout | undefined;
  audioWaited: boolean;
}

/**
 * Records rooms on request (a face-to-face call with its record flag): as soon as the chosen site's
 * camera is in the conference — on this node or, through the cascade, on another — its camera and
 * microphone go to a ConferenceRecorder; recording stops when the request is withdrawn or the
 * site's producers go, and starts again if they come back (a kiosk that reconnects).
 */
export class RoomRecordings extends EventEmitter<RoomRecordingsEvents> {
  readonly #sfu: SfuNode;
  readonly #recorder: Recorder;
  readonly #audioWaitMs: number;
  readonly #log: Logger;
  readonly #wanted = new Map<string, Wanted>();
  readonly #onRoom = (room: Room): void => {
    const w = this.#wanted.get(room.id);
    if (w) this.#watch(w, room);
  };

  constructor(opts: RoomRecordingsOptions) {
    super();
    this.#sfu = opts.sfu;
    this.#recorder = opts.recorder;
    this.#audioWaitMs = opts.audioWaitMs ?? 3000;
    this.#log = opts.log ?? createLogger('room-recordings');
    this.#sfu.on('roomcreated', this.#onRoom);
  }

  /** Asks for a room to be recorded (idempotent). Returns false when too many rooms are already asked for. */
  record(request: RoomRecordingRequest): boolean {
    if (this.#wanted.has(request.roomId)) return true;
    if (this.#wanted.size >= MAX_RECORDED_ROOMS) return false;
    const w: Wanted = { request, room: undefined, unwatch: undefined, recording: undefined, starting: false, audioTimer: undefined, audioWaited: false };
    this.#wanted.set(request.roomId, w);
    const room = this.#sfu.rooms.get(request.roomId);
    if (room && !room.closed) this.#watch(w, room);
    return true;
  }

  /** The running recording of a room, if its site is being recorded now. */
  recording(roomId: string): ConferenceRecorder | undefined {
    return this.#wanted.get(roomId)?.recording;
  }

  /** Withdraws the request; a running recording finishes its last segment, which is still uploaded. */
  async stop(roomId: string): Promise<void> {
    const w = this.#wanted.get(roomId);
    if (!w) return;
    this.#wanted.delete(roomId);
    w.unwatch?.();
    clearTimeout(w.audioTimer);
    await w.recording?.stop();
  }

  async close(): Promise<void> {
    this.#sfu.off('roomcreated', this.#onRoom);
    await Promise.all([...this.#wanted.keys()].map((id) => this.stop(id)));
  }

  #watch(w: Wanted, room: Room): void {
    w.unwatch?.();
    w.room = room;
    const onProducer = (): void => this.#consider(w);
    const onClose = (): void => {
      w.unwatch?.();
      w.unwatch = undefined;
      w.room = undefined;
      // The router is gone (worker died, node closing): nothing more arrives for this recording.
      void w.recording?.stop();
    };
    room.on('produceravailable', onProducer);
    room.once('close', onClose);
    w.unwatch = () => {
      room.off('produceravailable', onProducer);
      room.off('close', onClose);
    };
    this.#consider(w);
  }

  #siteProducers(room: Room, siteUnitId: number): { video: ProducerInfo | undefined; audio: ProducerInfo | undefined } {
    const site = room.producerInfos().filter((p) => room.peerInfo(p.peerId)?.unitId === siteUnitId);
    return {
      video: site.find((p) => p.kind === 'video' && p.source === 'camera') ?? site.find((p) => p.kind === 'video'),
      audio: site.find((p) => p.kind === 'audio'),
    };
  }

  #consider(w: Wanted): void {
    const room = w.room;
    if (!room || room.closed || w.recording || w.starting || this.#wanted.get(w.request.roomId) !== w) return;
    const { video, audio } = this.#siteProducers(room, w.request.siteUnitId);
    if (!video) return;
    if (!audio && !w.audioWaited) {
      // Browsers publish camera and microphone one after the other: give the microphone a moment.
      w.audioTimer ??= setTimeout(() => {
        w.audioWaited = true;
        this.#consider(w);
      }, this.#audioWaitMs);
      return;
    }
    clearTimeout(w.audioTimer);
    w.audioTimer = undefined;
    void this.#start(w, room, video, audio);
  }

  async #start(w: Wanted, room: Room, video: ProducerInfo, audio: ProducerInfo | undefined): Promise<void> {
    w.starting = true;
    const unhold = room.retain();
    try {
      const recording = await ConferenceRecorder.create({
        router: room.router,
        recorder: this.#recorder,
        roomId: w.request.roomId,
        unitId: w.request.unitId,
        videoProducerId: video.producerId,
        ...(audio ? { audioProducerId: audio.producerId } : {}),
        ...(room.remote ? { acquire: (id: string) => room.remote!.acquire(id) } : {}),
        evidence: w.request.evidence ?? false,
        log: this.#log.child({ room: w.request.roomId }),
      });
      recording.once('closed', () => {
        unhold();
        if (w.recording === recording) w.recording = undefined;
        w.audioWaited = false;
        this.emit('stopped', w.request.roomId);
        // Still wanted (the site reconnected with new producers): record again.
        this.#consider(w);
      });
      w.recording = recording;
      this.#log.info({ room: w.request.roomId, video: video.producerId, audio: audio?.producerId }, 'recording the site');
      this.emit('started', w.request.roomId, recording);
      if (this.#wanted.get(w.request.roomId) !== w) await recording.stop();
    } catch (err) {
      unhold();
      this.#log.warn({ room: w.request.roomId, err: (err as Error).message }, 'recording could not start');
      this.emit('failed', w.request.roomId, err as Error);
    } finally {
      w.starting = false;
    }
  }
}
