import type { Pool } from '../infra/db/pool.ts';
import { MicroBatch } from './MicroBatch.ts';

// Index rows of segments that finish close together (many cameras closing segments on the same
// clock) go into recording_segments as one INSERT: one round trip and one commit instead of one per
// segment. A batch the database refuses is retried row by row, so one bad row (its camera deleted)
// fails alone and the others are indexed.

const COLUMNS = `camera_id, room_id, unit_id, capture_job_id, started_at, ended_at, bytes, video_codec, audio_codec,
  bucket, object_key, evidence, width, height, thumb_key, strip_key, run_id, seq`;
const N = 18;
/** Where object_key sits in a row's parameters (the conflict key that maps answers back to rows). */
const KEY = 10;

/** A row's parameters in COLUMNS order; started_at/ended_at as epoch milliseconds. */
export type SegmentIndexRow = readonly unknown[];

function values(rows: number): string {
  const out: string[] = [];
  for (let r = 0; r < rows; r++) {
    const p = (i: number): string => `$${r * N + i + 1}`;
    const cols = Array.from({ length: N }, (_, i) => (i === 4 || i === 5 ? `to_timestamp(${p(i)} / 1000.0)` : p(i)));
    out.push(`(${cols.join(', ')})`);
  }
  return out.join(', ');
}

interface Waiting {
  row: SegmentIndexRow;
  resolve: (id: number) => void;
  reject: (err: unknown) => void;
}

export class SegmentIndexBatch {
  readonly #pool: Pool;
  readonly #windowMs: number;
  readonly #batch: MicroBatch<Waiting>;

  constructor(pool: Pool, windowMs: number, maxRows = 64) {
    this.#pool = pool;
    this.#windowMs = windowMs;
    this.#batch = new MicroBatch(windowMs, maxRows, (batch) => void this.#write(batch));
  }

  /** Inserts (or finds, on the same object key) the row; resolves with its id once committed. */
  insert(row: SegmentIndexRow): Promise<number> {
    if (row.length !== N) return Promise.reject(new Error(`index row has ${row.length} values, not ${N}`));
    if (this.#windowMs === 0) return this.#one(row);
    return new Promise((resolve, reject) => this.#batch.add({ row, resolve, reject }));
  }

  async #write(batch: Waiting[]): Promise<void> {
    if (batch.length > 1) {
      try {
        const res = await this.#pool.query<{ id: number; object_key: string }>(
          `INSERT INTO recording_segments (${COLUMNS}) VALUES ${values(batch.length)}
           ON CONFLICT (object_key) DO UPDATE SET bytes = EXCLUDED.bytes RETURNING id, object_key`,
          batch.flatMap((w) => [...w.row]),
        );
        const ids = new Map(res.rows.map((r) => [r.object_key, Number(r.id)]));
        for (const w of batch) {
          const id = ids.get(String(w.row[KEY]));
          if (id === undefined) w.reject(new Error('index row missing from the batch answer'));
          else w.resolve(id);
        }
        return;
      } catch {
        // Fall through: each row on its own, so only the bad one fails.
      }
    }
    await Promise.all(batch.map((w) => this.#one(w.row).then(w.resolve, w.reject)));
  }

  async #one(row: SegmentIndexRow): Promise<number> {
    const res = await this.#pool.query<{ id: number }>(
      `INSERT INTO recording_segments (${COLUMNS}) VALUES ${values(1)}
       ON CONFLICT (object_key) DO UPDATE SET bytes = EXCLUDED.bytes RETURNING id`,
      [...row],
    );
    return Number(res.rows[0]!.id);
  }
}
