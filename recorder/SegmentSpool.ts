import { EventEmitter } from 'node:events';
import fs from 'node:fs';
import path from 'node:path';
import type { Pool } from '../infra/db/pool.ts';
import type { Logger } from '../infra/logger.ts';
import type { ObjectStorage } from '../infra/storage/ObjectStorage.ts';
import type { RecorderConfig } from './config.ts';
import { ProbeError, probeWithRetry, type ProbeResult } from './probe.ts';
import type { SegmentJournal } from './SegmentJournal.ts';
import { makeReviewImages, type ReviewImages } from './thumbnails.ts';
import type { ClosedSegment, IndexedSegment } from './types.ts';

export interface SegmentSpoolEvents {
  indexed: [IndexedSegment];
  rejected: [ClosedSegment, string];
  dropped: [ClosedSegment];
  /** Failed too often (or refused for good by the database): set aside on disk, never retried again. */
  quarantined: [ClosedSegment, string];
  /** Upload or index attempt failed; it will be retried. */
  retry: [ClosedSegment, Error];
}

export interface SegmentSpoolOptions {
  pool: Pool;
  storage: ObjectStorage;
  journal: SegmentJournal;
  config: RecorderConfig;
  log: Logger;
}

interface Pending {
  seg: ClosedSegment;
  /** When the segment entered the spool (for close -> indexed latency). */
  queuedAt: number;
  probe?: ProbeResult;
  images?: ReviewImages | null;
  /** When the media object was stored (it is not re-sent on a later retry). */
  storedAt?: number;
  attempts: number;
}

// Data and constraint errors (class 22, 23): the database refuses this row as such, retrying cannot help.
function permanent(err: unknown): boolean {
  const code = (err as { code?: unknown }).code;
  return typeof code === 'string' && /^2[23]/.test(code);
}

/** Object key layout: unit / camera (or room) / UTC date / session / segment. */
export function objectKeyFor(seg: ClosedSegment): string {
  const start = new Date(seg.startedAt);
  const day = start.toISOString().slice(0, 10);
  const session = seg.sessionId !== null ? `session-${seg.sessionId}` : seg.captureJobId !== null ? `job-${seg.captureJobId}` : 'continuous';
  const who = seg.source.kind === 'camera' ? `camera/${seg.source.cameraId}` : `room/${encodeURIComponent(seg.source.roomId)}`;
  const stamp = start.toISOString().replace(/[-:]/g, '').replace('.', '');
  return `unit/${seg.source.unitId}/${who}/${day}/${session}/${stamp}_${seg.runId}_${String(seg.seq).padStart(6, '0')}.mp4`;
}

/**
 * The local spool between ffmpeg and the store. Each closed segment is verified (ffprobe), given a
 * thumbnail and preview strip, uploaded and indexed; failures of the store or the database are
 * retried with backoff while segments wait on disk in order (one in flight per camera/room, so each
 * source's segments land in order). The spool is bounded by bytes and count; when full, the oldest
 * waiting segment that is not meeting evidence is discarded, journalled and reported as `dropped`
 * (it then shows as a gap). Evidence is never discarded.
 */
export class SegmentSpool extends EventEmitter<SegmentSpoolEvents> {
  readonly #o: SegmentSpoolOptions;
  readonly #queues = new Map<string, Pending[]>();
  readonly #busy = new Set<string>();
  readonly #idleWaiters: (() => void)[] = [];
  #bytes = 0;
  #count = 0;
  #closed = false;
  readonly #rejectedDir: string;
  readonly #quarantineDir: string;
  #quarantined = 0;

  constructor(opts: SegmentSpoolOptions) {
    super();
    this.#o = opts;
    this.#rejectedDir = path.join(opts.config.spoolDir, 'rejected');
    this.#quarantineDir = path.join(opts.config.spoolDir, 'quarantine');
  }

  /** Segments quarantined since start (the alert metric). */
  get quarantinedSegments(): number {
    return this.#quarantined;
  }

  get pendingSegments(): number {
    return this.#count;
  }

  get pendingBytes(): number {
    return this.#bytes;
  }

  /** Adds a closed segment; `journalled` is true when it is being replayed from the journal. */
  enqueue(seg: ClosedSegment, journalled = false): void {
    if (!journalled) this.#o.journal.append({ t: 'seg', seg });
    const key = seg.source.kind === 'camera' ? `c${seg.source.cameraId}` : `r${seg.source.roomId}`;
    let q = this.#queues.get(key);
    if (!q) this.#queues.set(key, (q = []));
    q.push({ seg, queuedAt: Date.now(), attempts: 0 });
    this.#bytes += seg.bytes;
    this.#count++;
    this.#enforceBounds();
    this.#pump();
  }

  /** Resolves when nothing is waiting or in flight. */
  idle(): Promise<void> {
    if (this.#count === 0) return Promise.resolve();
    return new Promise((resolve) => this.#idleWaiters.push(resolve));
  }

  close(): void {
    this.#closed = true;
  }

  #enforceBounds(): void {
    const { spoolMaxBytes, spoolMaxSegments } = this.#o.config;
    while (this.#bytes > spoolMaxBytes || this.#count > spoolMaxSegments) {
      let victim: { key: string; idx: number; p: Pending } | undefined;
      for (const [key, q] of this.#queues) {
        // The head of a busy queue is in flight; never pull it out from under the uploader.
        const from = this.#busy.has(key) ? 1 : 0;
        for (let i = from; i < q.length; i++) {
          const p = q[i]!;
          if (p.seg.evidence) continue;
          if (!victim || p.seg.startedAt < victim.p.seg.startedAt) victim = { key, idx: i, p };
          break;
        }
      }
      if (!victim) {
        this.#o.log.error({ bytes: this.#bytes, count: this.#count }, 'spool full of meeting evidence; keeping it all');
        return;
      }
      this.#queues.get(victim.key)!.splice(victim.idx, 1);
      this.#forget(victim.p.seg);
      this.#o.journal.append({ t: 'dropped', id: victim.p.seg.id });
      fs.rmSync(victim.p.seg.file, { force: true });
      this.#o.log.error({ segment: victim.p.seg.id, startedAt: new Date(victim.p.seg.startedAt) }, 'spool full: oldest segment discarded');
      this.emit('dropped', victim.p.seg);
    }
  }

  #forget(seg: ClosedSegment): void {
    this.#bytes -= seg.bytes;
    this.#count--;
    if (this.#count === 0) for (const w of this.#idleWaiters.splice(0)) w();
  }

  #pump(): void {
    if (this.#closed) return;
    for (const [key, q] of this.#queues) {
      if (this.#busy.size >= this.#o.config.uploadConcurrency) return;
      if (this.#busy.has(key) || q.length === 0) continue;
      this.#busy.add(key);
      void this.#work(q).finally(() => {
        this.#busy.delete(key);
        if (q.length === 0) this.#queues.delete(key);
        this.#pump();
      });
    }
  }

  async #work(q: Pending[]): Promise<void> {
    let delay = this.#o.config.uploadRetryMinMs;
    while (q.length > 0 && !this.#closed) {
      const p = q[0]!;
      try {
        await this.#process(p);
        q.shift();
        delay = this.#o.config.uploadRetryMinMs;
      } catch (err) {
        p.attempts++;
        const cfg = this.#o.config;
        if (p.attempts >= cfg.uploadMaxAttempts || (permanent(err) && p.attempts >= cfg.permanentErrorAttempts)) {
          q.shift();
          await this.#quarantine(p.seg, `${permanent(err) ? 'refused' : 'gave up'} after ${p.attempts} attempts: ${(err as Error).message}`);
          delay = cfg.uploadRetryMinMs;
          continue;
        }
        this.#o.log.warn({ segment: p.seg.id, err: (err as Error).message, retryInMs: delay }, 'segment upload/index failed; will retry');
        this.emit('retry', p.seg, err as Error);
        await new Promise((r) => setTimeout(r, delay));
        delay = Math.min(delay * 2, this.#o.config.uploadRetryMaxMs);
      }
    }
  }

  /** Returns normally when the segment is finished with (indexed or rejected); throws to retry. */
  async #process(p: Pending): Promise<void> {
    const { seg } = p;
    const cfg = this.#o.config;
    if (!p.probe) {
      let reason: string | undefined;
      try {
        const r = await probeWithRetry(seg.file, { ffprobePath: cfg.ffprobePath, attempts: cfg.probeAttempts, retryMs: cfg.probeRetryMs });
        if (!r.videoCodec) reason = 'corrupt: no video stream';
        else if (!(r.durationS > 0)) reason = 'corrupt: zero duration';
        else p.probe = r;
      } catch (err) {
        if (!fs.existsSync(seg.file)) reason = 'file missing from spool';
        else if (err instanceof ProbeError && err.corrupt) reason = `corrupt: ${err.message}`;
        // Could not probe (ffprobe missing, killed, timed out): not a verdict on the file; retried.
        else throw new Error(`could not probe: ${(err as Error).message}`);
      }
      if (reason) {
        this.#reject(seg, reason);
        return;
      }
    }
    const pr = p.probe!;
    const key = objectKeyFor(seg);
    const storage = this.#o.storage;
    // The media first: it is what must not be lost; review images follow.
    if (p.storedAt === undefined) {
      await storage.putFile(key, seg.file, 'video/mp4', { 'x-amz-meta-segment-id': seg.id });
      p.storedAt = Date.now();
    }
    if (p.images === undefined) {
      p.images = null;
      if (cfg.thumbnails) {
        try {
          p.images = await makeReviewImages(seg.file, { durationS: pr.durationS, frames: cfg.stripFrames, thumbWidth: cfg.thumbWidth, stripFrameWidth: cfg.stripFrameWidth, ffmpegPath: cfg.ffmpegPath });
        } catch (err) {
          // Review images are a convenience; the recording itself must still go through.
          this.#o.log.warn({ segment: seg.id, err: (err as Error).message }, 'thumbnail failed');
        }
      }
    }
    const thumbKey = p.images ? key.replace(/\.mp4$/, '.thumb.jpg') : null;
    const stripKey = p.images ? key.replace(/\.mp4$/, '.strip.jpg') : null;
    if (p.images) {
      await storage.putBuffer(thumbKey!, p.images.thumb, 'image/jpeg');
      await storage.putBuffer(stripKey!, p.images.strip, 'image/jpeg');
    }
    const cameraId = seg.source.kind === 'camera' ? seg.source.cameraId : null;
    const roomId = seg.source.kind === 'room' ? seg.source.roomId : null;
    // Idempotent on object_key: a segment re-processed after a crash between insert and journal
    // leaves exactly one row.
    const res = await this.#o.pool.query<{ id: number }>(
      `INSERT INTO recording_segments (camera_id, room_id, unit_id, capture_job_id, started_at, ended_at, bytes, video_codec, audio_codec,
         bucket, object_key, evidence, width, height, thumb_key, strip_key, run_id, seq)
       VALUES ($1, $2, $3, $4, to_timestamp($5 / 1000.0), to_timestamp($6 / 1000.0), $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)
       ON CONFLICT (object_key) DO UPDATE SET bytes = EXCLUDED.bytes
       RETURNING id`,
      [cameraId, roomId, seg.source.unitId, seg.captureJobId, seg.startedAt, seg.endedAt, seg.bytes, pr.videoCodec ?? null, pr.audioCodec ?? null,
        storage.bucket, key, seg.evidence, pr.width ?? null, pr.height ?? null, thumbKey, stripKey, seg.runId, seg.seq],
    );
    this.#o.journal.append({ t: 'done', id: seg.id });
    fs.rmSync(seg.file, { force: true });
    // The run folder goes once its last segment has (ffmpeg keeps list.csv there while running).
    fs.rmdir(path.dirname(seg.file), () => undefined);
    this.#forget(seg);
    this.emit('indexed', {
      id: res.rows[0]!.id,
      segmentId: seg.id,
      cameraId,
      roomId,
      captureJobId: seg.captureJobId,
      startedAt: new Date(seg.startedAt),
      endedAt: new Date(seg.endedAt),
      bytes: seg.bytes,
      videoCodec: pr.videoCodec ?? null,
      audioCodec: pr.audioCodec ?? null,
      bucket: storage.bucket,
      objectKey: key,
      thumbKey,
      stripKey,
      evidence: seg.evidence,
      closeToIndexedMs: Date.now() - p.queuedAt,
      closeToStoredMs: p.storedAt - p.queuedAt,
    });
  }

  /** Sets a segment aside for an operator: file kept, journalled, listed in recorder_quarantine. */
  async #quarantine(seg: ClosedSegment, reason: string): Promise<void> {
    const file = path.join(this.#quarantineDir, `${seg.id}.mp4`);
    try {
      fs.mkdirSync(this.#quarantineDir, { recursive: true });
      fs.renameSync(seg.file, file);
    } catch {
      // file already gone
    }
    // Nothing in S3 without its index row: what was uploaded before the index refused goes again.
    const key = objectKeyFor(seg);
    await this.#o.storage
      .remove([key, key.replace(/\.mp4$/, '.thumb.jpg'), key.replace(/\.mp4$/, '.strip.jpg')])
      .catch((err: Error) => this.#o.log.warn({ err: err.message, key }, 'could not remove the quarantined segment from S3'));
    this.#o.journal.append({ t: 'quarantined', id: seg.id, reason });
    this.#forget(seg);
    this.#quarantined++;
    this.#o.log.error({ segment: seg.id, reason, file }, 'segment quarantined: it will not be retried');
    await this.#o.pool
      .query(
        `INSERT INTO recorder_quarantine (segment_id, recorder_id, camera_id, room_id, started_at, file, reason)
         VALUES ($1, $2, $3, $4, to_timestamp($5 / 1000.0), $6, $7) ON CONFLICT (segment_id) DO NOTHING`,
        [seg.id, this.#o.config.recorderId, seg.source.kind === 'camera' ? seg.source.cameraId : null, seg.source.kind === 'room' ? seg.source.roomId : null, seg.startedAt, file, reason.slice(0, 1000)],
      )
      .catch((err: Error) => this.#o.log.warn({ err: err.message }, 'could not list the quarantined segment in the database'));
    this.emit('quarantined', seg, reason);
  }

  #reject(seg: ClosedSegment, reason: string): void {
    // Kept aside (not deleted) so an operator can look at what failed verification.
    try {
      fs.mkdirSync(this.#rejectedDir, { recursive: true });
      fs.renameSync(seg.file, path.join(this.#rejectedDir, `${seg.id}.mp4`));
    } catch {
      // file already gone
    }
    this.#o.journal.append({ t: 'rejected', id: seg.id, reason });
    this.#forget(seg);
    this.#o.log.error({ segment: seg.id, reason }, 'segment failed verification');
    this.emit('rejected', seg, reason);
  }
}
