import { Counter, Gauge, type Registry } from 'prom-client';
import type { Pool } from '../infra/db/pool.ts';
import type { Logger } from '../infra/logger.ts';
import type { PeerInfo } from '../sfu/protocol.ts';
import type { Room } from '../sfu/Room.ts';
import type { SfuNode } from '../sfu/SfuNode.ts';

// Attendance of meetings (issue 11), kept in PostgreSQL: the SFU node inside the API process is the
// cascade's root, so its meeting rooms `m-<id>` hear of every site of the conference, wherever it
// joined (`sitejoined` / `siteleft`). A start storm is thousands of joins a minute: events are queued
// and written in batches (one transaction per flush, at most every `flushMs`), never one query per
// join. The queue is bounded: when the database is down for long the newest events are dropped and
// counted, and the process carries on — the meeting itself never waits for its record.

/** What the recorder needs of the node (SfuNode in production; tests may pass the node itself). */
export type AttendanceSource = Pick<SfuNode, 'rooms' | 'on' | 'off'>;

export interface AttendanceRecorderOptions {
  pool: Pool;
  sfu: AttendanceSource;
  log: Logger;
  /** Longest wait between an event and its write; default 500 ms. */
  flushMs?: number;
  /** Events held while the database does not answer; beyond it new events are dropped (counted). Default 200,000. */
  maxQueue?: number;
  /** Events per transaction; default 5,000. */
  batchSize?: number;
}

type AttendanceEvent =
  | { kind: 'join'; meetingId: number; peerId: string; unitId: number; displayName: string; role: 'chair' | 'participant'; at: Date }
  | { kind: 'leave'; meetingId: number; peerId: string; at: Date }
  | { kind: 'close'; meetingId: number; at: Date };

const MEETING_ROOM = /^m-([1-9][0-9]{0,15})$/;
/** Waits between attempts while the database refuses, doubling up to this. */
const MAX_RETRY_MS = 10_000;

/** The meeting id of a meeting room's name, or undefined for calls, camera rooms, anything else. */
export function meetingIdOfRoom(roomId: string): number | undefined {
  const m = MEETING_ROOM.exec(roomId);
  const id = m ? Number(m[1]) : NaN;
  return Number.isSafeInteger(id) ? id : undefined;
}

export class AttendanceRecorder {
  readonly #pool: Pool;
  readonly #sfu: AttendanceSource;
  readonly #log: Logger;
  readonly #flushMs: number;
  readonly #maxQueue: number;
  readonly #batchSize: number;
  #queue: AttendanceEvent[] = [];
  /** Rooms listened to, and how to stop listening. */
  readonly #rooms = new Map<Room, () => void>();
  #timer: NodeJS.Timeout | undefined;
  #flushing: Promise<void> | undefined;
  #retryMs = 0;
  #closed = false;
  #closing: Promise<void> | undefined;
  /** Start-up: rows a previous process left open are closed before anything new is written. */
  #ready: Promise<void> | undefined;
  #dropped = 0;
  #written = 0;
  #failures = 0;
  readonly #onRoomCreated = (room: Room): void => this.#attach(room);

  constructor(options: AttendanceRecorderOptions) {
    this.#pool = options.pool;
    this.#sfu = options.sfu;
    this.#log = options.log;
    this.#flushMs = options.flushMs ?? 500;
    this.#maxQueue = options.maxQueue ?? 200_000;
    this.#batchSize = options.batchSize ?? 5_000;
  }

  /** Events dropped because the queue was full (the database was away for long). */
  get dropped(): number {
    return this.#dropped;
  }

  /** Events written since start. */
  get written(): number {
    return this.#written;
  }

  /** Events waiting to be written. */
  get pending(): number {
    return this.#queue.length;
  }

  /**
   * Closes what a previous process left open (its rooms died with it: those sessions ended when it
   * stopped, at the latest now), then listens to the node's meeting rooms. Never rejects.
   */
  start(): Promise<void> {
    if (this.#ready) return this.#ready;
    this.#sfu.on('roomcreated', this.#onRoomCreated);
    for (const room of this.#sfu.rooms.values()) this.#attach(room);
    this.#ready = this.#closeLeftOpen();
    return this.#ready;
  }

  /** Prometheus: events dropped, written, waiting, failed flushes. Skipped if already registered. */
  registerMetrics(registry: Registry): void {
    if (registry.getSingleMetric('attendance_events_dropped_total')) return;
    const self = this;
    const registers = [registry];
    new Counter({
      name: 'attendance_events_dropped_total',
      help: 'Meeting attendance events dropped because the database was away for long (queue full)',
      registers,
      collect() {
        this.reset();
        this.inc(self.#dropped);
      },
    });
    new Counter({
      name: 'attendance_events_written_total',
      help: 'Meeting attendance events written to the database',
      registers,
      collect() {
        this.reset();
        this.inc(self.#written);
      },
    });
    new Gauge({ name: 'attendance_events_pending', help: 'Meeting attendance events waiting to be written', registers, collect() { this.set(self.#queue.length); } });
    new Counter({
      name: 'attendance_flush_failures_total',
      help: 'Attendance batches the database refused (retried)',
      registers,
      collect() {
        this.reset();
        this.inc(self.#failures);
      },
    });
  }

  /** Writes whatever is queued (tests; shutdown). Resolves when the queue is empty or a write failed. */
  async flush(): Promise<void> {
    await this.#ready;
    while (this.#queue.length > 0) {
      if (this.#flushing) {
        await this.#flushing;
        continue;
      }
      const before = this.#queue.length;
      await this.#runFlush();
      if (this.#queue.length >= before) return; // the database refused: the retry timer carries on
    }
  }

  /** Stops listening; one last attempt (bounded) to write what is queued. Idempotent. */
  close(timeoutMs = 3_000): Promise<void> {
    this.#closing ??= this.#close(timeoutMs);
    return this.#closing;
  }

  async #close(timeoutMs: number): Promise<void> {
    this.#sfu.off('roomcreated', this.#onRoomCreated);
    for (const stop of this.#rooms.values()) stop();
    this.#rooms.clear();
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([this.flush().catch(() => undefined), new Promise<void>((r) => (timer = setTimeout(r, timeoutMs)))]);
    clearTimeout(timer);
    this.#closed = true;
    if (this.#queue.length) this.#log.warn({ lost: this.#queue.length }, 'attendance events not written at shutdown');
  }

  #attach(room: Room): void {
    const meetingId = meetingIdOfRoom(room.id);
    if (meetingId === undefined || this.#rooms.has(room) || this.#closed) return;
    const joined = (info: PeerInfo, at: Date): void => {
      // Sites only: chairs and participants (viewers and ingests are not counted).
      if (info.role !== 'chair' && info.role !== 'participant') return;
      this.#push({ kind: 'join', meetingId, peerId: info.peerId, unitId: info.unitId, displayName: info.displayName, role: info.role, at });
    };
    const left = (peerId: string, at: Date): void => this.#push({ kind: 'leave', meetingId, peerId, at });
    const closed = (): void => {
      // Whoever was still in the room when it closed (meeting ended, worker lost) left now.
      this.#push({ kind: 'close', meetingId, at: new Date() }, true);
      this.#rooms.get(room)?.();
      this.#rooms.delete(room);
    };
    room.on('sitejoined', joined);
    room.on('siteleft', left);
    room.on('close', closed);
    this.#rooms.set(room, () => {
      room.off('sitejoined', joined);
      room.off('siteleft', left);
      room.off('close', closed);
    });
  }

  /** Queues an event; room closes are kept even when full (one per room, they end its open rows). */
  #push(event: AttendanceEvent, always = false): void {
    if (this.#closed) return;
    if (!always && this.#queue.length >= this.#maxQueue) {
      if (this.#dropped++ % 10_000 === 0) this.#log.error({ dropped: this.#dropped, queued: this.#queue.length }, 'attendance queue full: events dropped');
      return;
    }
    this.#queue.push(event);
    this.#schedule(this.#flushMs);
  }

  #schedule(delayMs: number): void {
    if (this.#timer || this.#closed) return;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      if (!this.#flushing) void this.#runFlush();
    }, delayMs);
    this.#timer.unref?.();
  }

  /** One flush: the oldest batch in one transaction. On failure the batch stays at the head of the queue. */
  #runFlush(): Promise<void> {
    const run = (async () => {
      await this.#ready;
      const batch = this.#queue.slice(0, this.#batchSize);
      if (batch.length === 0) return;
      try {
        await this.#write(batch);
        this.#queue.splice(0, batch.length);
        this.#written += batch.length;
        this.#retryMs = 0;
      } catch (err) {
        this.#failures++;
        this.#retryMs = Math.min(MAX_RETRY_MS, Math.max(this.#flushMs, this.#retryMs * 2));
        if (this.#failures === 1 || this.#failures % 20 === 0) this.#log.warn({ err: (err as Error).message, queued: this.#queue.length, retryMs: this.#retryMs }, 'attendance write failed; retrying');
      }
    })().finally(() => {
      this.#flushing = undefined;
      if (this.#queue.length > 0) this.#schedule(this.#retryMs || (this.#queue.length >= this.#batchSize ? 0 : this.#flushMs));
    });
    this.#flushing = run;
    return run;
  }

  /**
   * Applies a batch in order, in one transaction: joins inserted (skipping meetings or units that no
   * longer exist, and rows already written by a retried batch), then leaves and room closes close the
   * open rows they name. A leave or close only ends sessions that began before it, so a close followed
   * by a new join in the same batch (the room reopened) keeps the new session open.
   */
  async #write(batch: AttendanceEvent[]): Promise<void> {
    const joins = batch.filter((e) => e.kind === 'join');
    const leaves = batch.filter((e) => e.kind === 'leave');
    const closes = batch.filter((e) => e.kind === 'close');
    const client = await this.#pool.connect();
    try {
      await client.query('BEGIN');
      if (joins.length) {
        await client.query(
          `INSERT INTO meeting_attendance (meeting_id, unit_id, peer_id, display_name, role, joined_at)
           SELECT v.meeting_id, v.unit_id, v.peer_id, left(v.display_name, 100), v.role, v.at
             FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::timestamptz[]) AS v(meeting_id, unit_id, peer_id, display_name, role, at)
            WHERE EXISTS (SELECT 1 FROM meetings m WHERE m.id = v.meeting_id) AND EXISTS (SELECT 1 FROM units u WHERE u.id = v.unit_id)
           ON CONFLICT (meeting_id, peer_id, joined_at) DO NOTHING`,
          [joins.map((e) => e.meetingId), joins.map((e) => e.unitId), joins.map((e) => e.peerId), joins.map((e) => e.displayName), joins.map((e) => e.role), joins.map((e) => e.at)],
        );
      }
      if (leaves.length) {
        await client.query(
          `UPDATE meeting_attendance a SET left_at = greatest(v.at, a.joined_at)
             FROM unnest($1::bigint[], $2::text[], $3::timestamptz[]) AS v(meeting_id, peer_id, at)
            WHERE a.meeting_id = v.meeting_id AND a.peer_id = v.peer_id AND a.left_at IS NULL AND a.joined_at <= v.at`,
          [leaves.map((e) => e.meetingId), leaves.map((e) => e.peerId), leaves.map((e) => e.at)],
        );
      }
      if (closes.length) {
        await client.query(
          `UPDATE meeting_attendance a SET left_at = greatest(v.at, a.joined_at)
             FROM unnest($1::bigint[], $2::timestamptz[]) AS v(meeting_id, at)
            WHERE a.meeting_id = v.meeting_id AND a.left_at IS NULL AND a.joined_at <= v.at`,
          [closes.map((e) => e.meetingId), closes.map((e) => e.at)],
        );
      }
      await client.query('COMMIT');
    } catch (err) {
      await client.query('ROLLBACK').catch(() => undefined);
      throw err;
    } finally {
      client.release();
    }
  }

  /** Rows left open by a previous process (it stopped or died with its rooms). Retried until the database answers. */
  async #closeLeftOpen(): Promise<void> {
    const startedAt = new Date();
    for (let wait = 500; !this.#closed; wait = Math.min(MAX_RETRY_MS, wait * 2)) {
      try {
        const r = await this.#pool.query('UPDATE meeting_attendance SET left_at = greatest($1::timestamptz, joined_at) WHERE left_at IS NULL AND joined_at <= $1', [startedAt]);
        if (r.rowCount) this.#log.info({ closed: r.rowCount }, 'closed attendance left open by a previous process');
        return;
      } catch (err) {
        this.#log.warn({ err: (err as Error).message }, 'could not close attendance left open; retrying');
        await new Promise((r) => setTimeout(r, wait).unref?.());
      }
    }
  }
}
