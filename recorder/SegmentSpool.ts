import { EventEmitter } from 'node:events';
import fs from 'node:fs';
import path from 'node:path';
import type { Pool } from '../infra/db/pool.ts';
import type { Logger } from '../infra/logger.ts';
import type { ObjectStorage } from '../infra/storage/ObjectStorage.ts';
import type { RecorderConfig } from './config.ts';
import { ProbeError, probeWithRetry, type ProbeResult } from './probe.ts';
import type { SegmentJournal } from './SegmentJournal.ts';
import { ReviewImageBatch, type ReviewImages } from './thumbnails.ts';
import { inspectFragmentedMp4 } from './Mp4Check.ts';
import { SegmentIndexBatch } from './SegmentIndexBatch.ts';
import { ConcurrencyLimit } from './ConcurrencyLimit.ts';
import type { ClosedSegment, IndexedSegment } from './types.ts';

export interface SegmentSpoolEvents {
  indexed: [IndexedSegment];
  rejected: [ClosedSegment, string];
  dropped: [ClosedSegment];
  /** Failed too often (or refused for good by the database): set aside on disk, never retried again. */
  quarantined: [ClosedSegment, string];
  /** Upload or index attempt failed; it will be retried. */
  retry: [ClosedSegment, Error];
  /** Where an indexed segment's time went (for the capacity benchmark and the stage metrics). */
  stages: [SegmentStageTimes];
}

/** Milliseconds per stage of one segment, from its closing (entering the spool) to its index row. */
export interface SegmentStageTimes {
  segmentId: string;
  /** Waiting behind the same source's earlier segments before its store stage began. */
  queuedMs: number;
  /** MP4 inspection, or ffprobe (including waiting for a tool slot). */
  verifyMs: number;
  /** Waiting for an upload slot. */
  uploadWaitMs: number;
  /** The media PUT itself. */
  uploadMs: number;
  /** From stored to the finish stage starting (behind the source's earlier rows). */
  finishWaitMs: number;
  /** Review images (tool slot wait, extraction, their PUTs); 0 when shared. */
  imagesMs: number;
  /** The index row (batched INSERT). */
  indexMs: number;
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
  /** Review images of an earlier segment of the same run, shared instead of made again. */
  sharedImages?: { thumbKey: string; stripKey: string };
  /** When the media object was stored (it is not re-sent on a later retry). */
  storedAt?: number;
  attempts: number;
  /**
   * waiting: to be verified and stored; storing: being so; stored: the media is in S3 and its review
   * images and index row follow (in order per source, behind the earlier segments' rows).
   */
  stage: 'waiting' | 'storing' | 'stored';
  /** Stage timings, filled as the segment goes (see SegmentStageTimes). */
  times: Omit<SegmentStageTimes, 'segmentId'>;
  /** When the store stage handed it on (start of finishWaitMs). */
  storedHandOff?: number;
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
 * The local spool between ffmpeg and the store. Each closed segment is verified (its MP4 structure,
 * or ffprobe), uploaded, given a thumbnail and preview strip, and indexed; failures of the store or
 * the database are retried with backoff while segments wait on disk in order. Per camera/room two
 * stages run in order: storing the media (one segment at a time, so each source's objects land in
 * order) and finishing (review images, index row, journal), so a segment's upload never waits for
 * the previous segment's images. Uploads, tool processes (ffprobe, thumbnail ffmpeg) each have their
 * own concurrency limit. The spool is bounded by bytes and count; when full, the oldest waiting
 * segment that is not meeting evidence is discarded, journalled and reported as `dropped` (it then
 * shows as a gap). Evidence is never discarded.
 */
export class SegmentSpool extends EventEmitter<SegmentSpoolEvents> {
  readonly #o: SegmentSpoolOptions;
  readonly #queues = new Map<string, Pending[]>();
  /** Sources whose store stage is running. */
  readonly #busy = new Set<string>();
  /** Per source: the finishing stage's tail (review images + index rows, in order). */
  readonly #finishing = new Map<string, Promise<void>>();
  readonly #uploads: ConcurrencyLimit;
  readonly #tools: ConcurrencyLimit;
  readonly #images: ReviewImageBatch;
  readonly #idleWaiters: (() => void)[] = [];
  #bytes = 0;
  #count = 0;
  #closed = false;
  readonly #rejectedDir: string;
  readonly #quarantineDir: string;
  #quarantined = 0;
  readonly #index: SegmentIndexBatch;
  /** What ffprobe found in the first segment of each ffmpeg run (stream copy: the rest are alike). */
  readonly #runMedia = new Map<string, ProbeResult>();
  /** Per source: the newest review images and when they were made. */
  readonly #lastImages = new Map<string, { runId: string; at: number; thumbKey: string; stripKey: string }>();

  constructor(opts: SegmentSpoolOptions) {
    super();
    this.#o = opts;
    this.#rejectedDir = path.join(opts.config.spoolDir, 'rejected');
    this.#quarantineDir = path.join(opts.config.spoolDir, 'quarantine');
    this.#index = new SegmentIndexBatch(opts.pool, opts.config.indexBatchMs);
    this.#uploads = new ConcurrencyLimit(opts.config.uploadConcurrency);
    this.#tools = new ConcurrencyLimit(opts.config.toolConcurrency);
    this.#images = new ReviewImageBatch({ ffmpegPath: opts.config.ffmpegPath, windowMs: opts.config.imageBatchMs, run: (task) => this.#slot(this.#tools, task) });
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
    q.push({ seg, queuedAt: Date.now(), attempts: 0, stage: 'waiting', times: { queuedMs: 0, verifyMs: 0, uploadWaitMs: 0, uploadMs: 0, finishWaitMs: 0, imagesMs: 0, indexMs: 0 } });
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
        // Never pull a segment out from under the uploader, nor one already stored (its row follows).
        for (let i = 0; i < q.length; i++) {
          const p = q[i]!;
          if (p.seg.evidence || p.stage !== 'waiting') continue;
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
      if (this.#busy.has(key) || !q.some((p) => p.stage === 'waiting')) continue;
      this.#busy.add(key);
      void this.#storeAll(key, q).finally(() => {
        this.#busy.delete(key);
        this.#dropQueueIfEmpty(key, q);
        this.#pump();
      });
    }
  }

  /** Runs `task` in a slot of `limit`, unless the spool closed while it waited (its segment stays journalled). */
  #slot<T>(limit: ConcurrencyLimit, task: () => Promise<T>): Promise<T> {
    return limit.run(() => (this.#closed ? Promise.reject(new Error('spool closed')) : task()));
  }

  #dropQueueIfEmpty(key: string, q: Pending[]): void {
    if (q.length === 0 && this.#queues.get(key) === q) this.#queues.delete(key);
  }

  #remove(q: Pending[], p: Pending): void {
    const i = q.indexOf(p);
    if (i >= 0) q.splice(i, 1);
  }

  /** True when the segment failed for good (quarantined); false to retry it after `delay`. */
  async #failed(q: Pending[], p: Pending, err: unknown, delay: number): Promise<boolean> {
    p.attempts++;
    const cfg = this.#o.config;
    if (p.attempts >= cfg.uploadMaxAttempts || (permanent(err) && p.attempts >= cfg.permanentErrorAttempts)) {
      this.#remove(q, p);
      await this.#quarantine(p.seg, `${permanent(err) ? 'refused' : 'gave up'} after ${p.attempts} attempts: ${(err as Error).message}`);
      return true;
    }
    this.#o.log.warn({ segment: p.seg.id, err: (err as Error).message, retryInMs: delay }, 'segment upload/index failed; will retry');
    this.emit('retry', p.seg, err as Error);
    await new Promise((r) => setTimeout(r, delay));
    return false;
  }

  /** Store stage: verifies and uploads the source's waiting segments in order, handing each to the finish stage. */
  async #storeAll(key: string, q: Pending[]): Promise<void> {
    let delay = this.#o.config.uploadRetryMinMs;
    while (!this.#closed) {
      const p = q.find((x) => x.stage === 'waiting');
      if (!p) return;
      p.stage = 'storing';
      if (p.attempts === 0) p.times.queuedMs = Date.now() - p.queuedAt;
      try {
        if (await this.#store(p)) {
          p.stage = 'stored';
          p.storedHandOff = Date.now();
          this.#finishLater(key, q, p);
        } else this.#remove(q, p);
        delay = this.#o.config.uploadRetryMinMs;
      } catch (err) {
        if (this.#closed) return;
        // Still 'storing' through the backoff: the bound never pulls out the segment being retried.
        if (await this.#failed(q, p, err, delay)) delay = this.#o.config.uploadRetryMinMs;
        else {
          p.stage = 'waiting';
          delay = Math.min(delay * 2, this.#o.config.uploadRetryMaxMs);
        }
      }
    }
  }

  /** Queues the finish stage of a stored segment behind the source's earlier ones. */
  #finishLater(key: string, q: Pending[], p: Pending): void {
    const tail = (this.#finishing.get(key) ?? Promise.resolve()).then(() => this.#finishWithRetry(q, p));
    this.#finishing.set(key, tail);
    void tail.finally(() => {
      if (this.#finishing.get(key) === tail) this.#finishing.delete(key);
      this.#dropQueueIfEmpty(key, q);
    });
  }

  async #finishWithRetry(q: Pending[], p: Pending): Promise<void> {
    let delay = this.#o.config.uploadRetryMinMs;
    // Closed: the segment stays journalled; the next start stores it again (same key) and indexes it.
    while (!this.#closed && q.includes(p)) {
      try {
        await this.#finish(p);
        this.#remove(q, p);
        return;
      } catch (err) {
        if (this.#closed || (await this.#failed(q, p, err, delay))) return;
        delay = Math.min(delay * 2, this.#o.config.uploadRetryMaxMs);
      }
    }
  }

  /**
   * Verifies the segment and puts its media into S3. False when it was rejected (set aside as
   * corrupt); throws to retry.
   */
  async #store(p: Pending): Promise<boolean> {
    const { seg } = p;
    const cfg = this.#o.config;
    const verifyFrom = Date.now();
    if (!p.probe && !cfg.probeEverySegment) {
      // ffmpeg listed the segment as closed: its boxes chain to the end, and its sample entries name
      // the codecs ffprobe would (a run's first segment included). Anything odd still goes to ffprobe.
      const check = await inspectFragmentedMp4(seg.file);
      const durationS = (seg.endedAt - seg.startedAt) / 1000;
      if (check.problem === undefined && check.media) {
        const m = check.media;
        p.probe = { durationS, videoCodec: m.videoCodec, audioCodec: m.audioCodec, width: m.width, height: m.height, videoProfile: undefined, videoLevel: undefined };
      } else if (check.problem === undefined) {
        // Codecs the check cannot name: those ffprobe found in this run's first segment (stream copy).
        const known = this.#runMedia.get(seg.runId);
        if (known) p.probe = { ...known, durationS };
      }
    }
    if (!p.probe) {
      let reason: string | undefined;
      try {
        const r = await this.#slot(this.#tools, () => probeWithRetry(seg.file, { ffprobePath: cfg.ffprobePath, attempts: cfg.probeAttempts, retryMs: cfg.probeRetryMs }));
        if (!r.videoCodec) reason = 'corrupt: no video stream';
        else if (!(r.durationS > 0)) reason = 'corrupt: zero duration';
        else {
          p.probe = r;
          this.#remember(seg.runId, r);
        }
      } catch (err) {
        if (!fs.existsSync(seg.file)) reason = 'file missing from spool';
        else if (err instanceof ProbeError && err.corrupt) reason = `corrupt: ${err.message}`;
        // Could not probe (ffprobe missing, killed, timed out): not a verdict on the file; retried.
        else throw new Error(`could not probe: ${(err as Error).message}`);
      }
      if (reason) {
        this.#reject(seg, reason);
        return false;
      }
    }
    // The media first: it is what must not be lost; review images follow.
    if (p.storedAt === undefined) {
      const waitFrom = Date.now();
      p.times.verifyMs = waitFrom - verifyFrom;
      let putFrom = 0;
      await this.#slot(this.#uploads, () => {
        putFrom = Date.now();
        // Streamed (no whole-file buffer, no payload hashing on the event loop) unless configured off.
        return cfg.streamUploads
          ? this.#o.storage.putFileStreamed(objectKeyFor(seg), seg.file, 'video/mp4')
          : this.#o.storage.putFile(objectKeyFor(seg), seg.file, 'video/mp4', { 'x-amz-meta-segment-id': seg.id });
      });
      p.storedAt = Date.now();
      p.times.uploadWaitMs = putFrom - waitFrom;
      p.times.uploadMs = p.storedAt - putFrom;
    }
    return true;
  }

  /** Review images (every thumbnailEverySeconds per source), the index row, the journal; throws to retry. */
  async #finish(p: Pending): Promise<void> {
    const { seg } = p;
    const cfg = this.#o.config;
    const pr = p.probe!;
    const key = objectKeyFor(seg);
    const storage = this.#o.storage;
    const sourceKey = seg.source.kind === 'camera' ? `c${seg.source.cameraId}` : `r${seg.source.roomId}`;
    const finishFrom = Date.now();
    if (p.storedHandOff !== undefined && p.times.finishWaitMs === 0) p.times.finishWaitMs = finishFrom - p.storedHandOff;
    if (p.images === undefined && p.sharedImages === undefined) {
      p.images = null;
      // Review images every thumbnailEverySeconds per source (and for each new run, e.g. after an
      // outage); the segments between point at the newest ones.
      const last = this.#lastImages.get(sourceKey);
      const fresh = !last || last.runId !== seg.runId || cfg.thumbnailEverySeconds === 0 || seg.startedAt - last.at >= cfg.thumbnailEverySeconds * 1000 || seg.startedAt < last.at;
      if (cfg.thumbnails && !fresh) p.sharedImages = { thumbKey: last.thumbKey, stripKey: last.stripKey };
      else if (cfg.thumbnails) {
        try {
          p.images = await this.#images.make(seg.file, { durationS: pr.durationS, frames: cfg.stripFrames, thumbWidth: cfg.thumbWidth, stripFrameWidth: cfg.stripFrameWidth, keyframesOnly: cfg.thumbnailKeyframesOnly });
        } catch (err) {
          // Review images are a convenience; the recording itself must still go through.
          this.#o.log.warn({ segment: seg.id, err: (err as Error).message }, 'thumbnail failed');
        }
      }
    }
    const thumbKey = p.images ? key.replace(/\.mp4$/, '.thumb.jpg') : (p.sharedImages?.thumbKey ?? null);
    const stripKey = p.images ? key.replace(/\.mp4$/, '.strip.jpg') : (p.sharedImages?.stripKey ?? null);
    if (p.images) {
      const images = p.images;
      await this.#slot(this.#uploads, () => Promise.all([storage.putBuffer(thumbKey!, images.thumb, 'image/jpeg'), storage.putBuffer(stripKey!, images.strip, 'image/jpeg')]));
    }
    const indexFrom = Date.now();
    p.times.imagesMs = indexFrom - finishFrom;
    const cameraId = seg.source.kind === 'camera' ? seg.source.cameraId : null;
    const roomId = seg.source.kind === 'room' ? seg.source.roomId : null;
    // Idempotent on object_key: a segment re-processed after a crash between insert and journal
    // leaves exactly one row.
    // Rows of segments closing together share one INSERT (SegmentIndexBatch).
    const rowId = await this.#index.insert(
      [cameraId, roomId, seg.source.unitId, seg.captureJobId, seg.startedAt, seg.endedAt, seg.bytes, pr.videoCodec ?? null, pr.audioCodec ?? null,
        storage.bucket, key, seg.evidence, pr.width ?? null, pr.height ?? null, thumbKey, stripKey, seg.runId, seg.seq],
    );
    // Shared with the next segments only once indexed (a quarantined segment's images are removed),
    // and only if its strip shows movement: a run's first segment, cut short, may hold one keyframe,
    // and a one-frame strip would then stand for the next 30 s. The next segment makes its own.
    if (p.images && p.images.frames >= Math.min(2, cfg.stripFrames)) this.#lastImages.set(sourceKey, { runId: seg.runId, at: seg.startedAt, thumbKey: thumbKey!, stripKey: stripKey! });
    p.times.indexMs = Date.now() - indexFrom;
    this.#o.journal.append({ t: 'done', id: seg.id });
    fs.rmSync(seg.file, { force: true });
    // The run folder goes once its last segment has (ffmpeg keeps list.csv there while running).
    fs.rmdir(path.dirname(seg.file), () => undefined);
    this.#forget(seg);
    this.emit('indexed', {
      id: rowId,
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
      closeToStoredMs: p.storedAt! - p.queuedAt,
    });
    this.emit('stages', { segmentId: seg.id, ...p.times });
  }

  #remember(runId: string, r: ProbeResult): void {
    this.#runMedia.set(runId, r);
    // Bounded: runs come and go; the oldest entries go first.
    if (this.#runMedia.size > 4096) this.#runMedia.delete(this.#runMedia.keys().next().value!);
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
