import fs from 'node:fs';
import type { Pool } from '../infra/db/pool.ts';
import { createLogger, type Logger } from '../infra/logger.ts';
import type { ObjectStorage } from '../infra/storage/ObjectStorage.ts';
import { renditionKeyFor } from './TranscodeCache.ts';

export interface RetentionOptions {
  pool: Pool;
  storage: ObjectStorage;
  /** Segments older than this are deleted (unless meeting evidence). */
  maxAgeMs: number;
  /** Below this many free bytes, the oldest non-evidence segments go regardless of age. */
  minFreeBytes: number;
  /** Free space measure; default: statfs of `diskPath`. */
  freeBytes?: () => Promise<number>;
  /** The disk that fills up (the S3 data directory on a one-machine install, or the spool). */
  diskPath?: string;
  batchSize?: number;
  /** Segments deleted per step of an emergency purge before free space is measured again. */
  emergencyBatch?: number;
  /** Upper bound of segments one emergency sweep may delete. */
  emergencyMaxSegments?: number;
  log?: Logger;
}

export interface SweepResult {
  aged: number;
  emergency: number;
  bytes: number;
}

interface Victim {
  id: number;
  bytes: number;
  object_key: string;
  thumb_key: string | null;
  strip_key: string | null;
}

// A segment is evidence if it was marked so itself or its capture job was (a job can be marked
// after its segments were indexed).
const NOT_EVIDENCE = `NOT s.evidence AND NOT COALESCE((SELECT j.evidence FROM capture_jobs j WHERE j.id = s.capture_job_id), false)`;

/**
 * Retention: deletes recordings past their age, and in an emergency (low disk) the oldest recordings
 * first until enough space is free. Recordings marked as meeting evidence are never deleted. Objects
 * go before their index rows, so a failed delete is retried on the next sweep rather than orphaned.
 */
export class Retention {
  readonly #o: Required<Omit<RetentionOptions, 'freeBytes' | 'diskPath'>> & { freeBytes: () => Promise<number> };

  constructor(opts: RetentionOptions) {
    const diskPath = opts.diskPath ?? '.';
    this.#o = {
      batchSize: 200,
      emergencyMaxSegments: 5_000,
      emergencyBatch: 20,
      log: createLogger('retention'),
      ...opts,
      freeBytes:
        opts.freeBytes ??
        (async () => {
          const s = await fs.promises.statfs(diskPath);
          return s.bavail * s.bsize;
        }),
    };
  }

  /** Marks recordings as meeting evidence (exempt from retention) by capture job or session. */
  static async markEvidence(pool: Pool, by: { captureJobId: number } | { sessionId: number }): Promise<number> {
    if ('captureJobId' in by) {
      await pool.query('UPDATE capture_jobs SET evidence = true WHERE id = $1', [by.captureJobId]);
      const r = await pool.query('UPDATE recording_segments SET evidence = true WHERE capture_job_id = $1 AND NOT evidence', [by.captureJobId]);
      return r.rowCount ?? 0;
    }
    await pool.query('UPDATE capture_jobs SET evidence = true WHERE session_id = $1', [by.sessionId]);
    const r = await pool.query(
      'UPDATE recording_segments SET evidence = true WHERE capture_job_id IN (SELECT id FROM capture_jobs WHERE session_id = $1) AND NOT evidence',
      [by.sessionId],
    );
    return r.rowCount ?? 0;
  }

  async sweep(now = new Date()): Promise<SweepResult> {
    const result: SweepResult = { aged: 0, emergency: 0, bytes: 0 };
    const cutoff = new Date(now.getTime() - this.#o.maxAgeMs);
    for (;;) {
      const batch = await this.#select(`s.started_at < $1 AND ${NOT_EVIDENCE}`, [cutoff]);
      if (batch.length === 0) break;
      result.bytes += await this.#delete(batch);
      result.aged += batch.length;
      if (batch.length < this.#o.batchSize) break;
    }
    let free = await this.#o.freeBytes();
    if (free < this.#o.minFreeBytes) {
      this.#o.log.error({ free, minFree: this.#o.minFreeBytes }, 'low disk: emergency purge of the oldest recordings (evidence kept)');
      while (free < this.#o.minFreeBytes && result.emergency < this.#o.emergencyMaxSegments) {
        // Small batches so no more is deleted than needed.
        const batch = await this.#select(NOT_EVIDENCE, [], this.#o.emergencyBatch);
        if (batch.length === 0) {
          this.#o.log.error('low disk and nothing left but meeting evidence');
          break;
        }
        result.bytes += await this.#delete(batch);
        result.emergency += batch.length;
        free = await this.#o.freeBytes();
      }
    }
    if (result.aged || result.emergency) this.#o.log.info(result, 'retention sweep');
    return result;
  }

  async #select(where: string, params: unknown[], limit = this.#o.batchSize): Promise<Victim[]> {
    const r = await this.#o.pool.query<Victim>(
      `SELECT s.id, s.bytes, s.object_key, s.thumb_key, s.strip_key FROM recording_segments s WHERE ${where} ORDER BY s.started_at LIMIT ${Number(limit)}`,
      params,
    );
    return r.rows;
  }

  async #delete(batch: Victim[]): Promise<number> {
    // An H.264 rendition (made for browsers from H.265) goes with its original; deleting one never made is a no-op.
    // Review images are shared by the segments of a stretch (thumbnailEverySeconds): one still named
    // by a segment that stays is kept.
    const images = [...new Set(batch.flatMap((v) => [v.thumb_key, v.strip_key]).filter((k): k is string => !!k))];
    const thumbs = [...new Set(batch.map((v) => v.thumb_key).filter((k): k is string => !!k))];
    const keptThumbs = thumbs.length === 0 ? new Set<string>() : new Set((await this.#o.pool.query<{ k: string }>(
      'SELECT DISTINCT thumb_key AS k FROM recording_segments WHERE thumb_key = ANY($1::text[]) AND NOT id = ANY($2::bigint[])',
      [thumbs, batch.map((v) => v.id)],
    )).rows.map((r) => r.k));
    // A strip goes or stays with the thumbnail of its group.
    const kept = new Set(batch.filter((v) => v.thumb_key && keptThumbs.has(v.thumb_key)).flatMap((v) => [v.thumb_key, v.strip_key]));
    const keys = [...batch.flatMap((v) => [v.object_key, renditionKeyFor(v.object_key)]), ...images.filter((k) => !kept.has(k))];
    await this.#o.storage.remove(keys);
    await this.#o.pool.query('DELETE FROM recording_segments WHERE id = ANY($1::bigint[])', [batch.map((v) => v.id)]);
    return batch.reduce((n, v) => n + Number(v.bytes), 0);
  }
}
