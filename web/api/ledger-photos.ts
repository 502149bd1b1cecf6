import { spawn } from 'node:child_process';
import type { Pool } from '../../infra/db/pool.ts';
import type { ObjectStorage } from '../../infra/storage/ObjectStorage.ts';
import { createLogger } from '../../infra/logger.ts';

// The ledger's photos (台账照片): frames taken from the session's recording at even intervals with
// ffmpeg (seeking into the segment that covers each instant over its presigned URL), stored next to the
// recordings in S3 under `ledger/session-<id>/<offset>.jpg` and shown with presigned URLs.

const log = createLogger('ledger-photos');

export interface SessionPhotosOptions {
  /** Frames per session, evenly over its window. */
  count: number;
  /** Presigned URL lifetime. */
  expirySeconds: number;
  /** One ffmpeg is killed after this long; default 30 s. */
  frameTimeoutMs?: number;
}

interface SegmentRow {
  object_key: string;
  started_at: Date;
  ended_at: Date;
}

function grabFrame(url: string, seekS: number, timeoutMs: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const ff = spawn('ffmpeg', ['-hide_banner', '-loglevel', 'error', '-ss', seekS.toFixed(3), '-i', url, '-frames:v', '1',
      '-vf', 'scale=640:-2', '-f', 'image2', '-c:v', 'mjpeg', '-q:v', '4', 'pipe:1'], { stdio: ['ignore', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    let err = '';
    const timer = setTimeout(() => ff.kill('SIGKILL'), timeoutMs);
    ff.stdout.on('data', (d: Buffer) => out.push(d));
    ff.stderr.on('data', (d: Buffer) => {
      if (err.length < 2000) err += d.toString();
    });
    ff.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    ff.on('close', (code) => {
      clearTimeout(timer);
      const jpg = Buffer.concat(out);
      if (code === 0 && jpg.length > 0) resolve(jpg);
      else reject(new Error(`ffmpeg exited ${code}: ${err.trim().slice(0, 300)}`));
    });
  });
}

export class SessionPhotos {
  readonly #running = new Map<number, Promise<number>>();
  readonly #lastBackground = new Map<number, number>();

  constructor(
    private readonly pool: Pool,
    private readonly storage: ObjectStorage,
    private readonly opts: SessionPhotosOptions,
  ) {}

  /** The session's photos with presigned URLs, in time order. */
  async list(sessionId: number): Promise<Array<{ offsetS: number; url: string }>> {
    const { rows } = await this.pool.query<{ offset_s: number; object_key: string }>(
      'SELECT offset_s, object_key FROM session_photos WHERE session_id = $1 ORDER BY offset_s',
      [sessionId],
    );
    return Promise.all(rows.map(async (r) => ({ offsetS: r.offset_s, url: await this.storage.presignGet(r.object_key, this.opts.expirySeconds) })));
  }

  /** Takes the photos not taken yet; resolves with how many exist afterwards. One run per session at a time. */
  extract(sessionId: number): Promise<number> {
    let run = this.#running.get(sessionId);
    if (!run) {
      run = this.#extract(sessionId).finally(() => this.#running.delete(sessionId));
      this.#running.set(sessionId, run);
    }
    return run;
  }

  /** Background runs (on reads and submissions) are tried at most once in 10 minutes per session. */
  extractInBackground(sessionId: number): void {
    const last = this.#lastBackground.get(sessionId);
    if (last !== undefined && Date.now() - last < 10 * 60_000) return;
    if (this.#lastBackground.size > 10_000) this.#lastBackground.clear();
    this.#lastBackground.set(sessionId, Date.now());
    this.extract(sessionId).catch((err: unknown) => log.warn({ sessionId, err: String(err) }, 'taking the ledger photos failed'));
  }

  async #extract(sessionId: number): Promise<number> {
    const { rows: sessions } = await this.pool.query<{ camera_id: number | null; starts_at: Date; ends_at: Date }>(
      'SELECT camera_id, starts_at, ends_at FROM meeting_sessions WHERE id = $1',
      [sessionId],
    );
    const s = sessions[0];
    if (!s || s.camera_id === null) return 0;
    const { rows: segments } = await this.pool.query<SegmentRow>(
      `SELECT object_key, started_at, ended_at FROM recording_segments
        WHERE camera_id = $1 AND ended_at > $2 AND started_at < $3 ORDER BY started_at`,
      [s.camera_id, s.starts_at, s.ends_at],
    );
    const { rows: taken } = await this.pool.query<{ offset_s: number }>('SELECT offset_s FROM session_photos WHERE session_id = $1', [sessionId]);
    const have = new Set(taken.map((t) => t.offset_s));
    const windowMs = s.ends_at.getTime() - s.starts_at.getTime();
    const n = Math.max(1, this.opts.count);
    for (let i = 0; i < n; i++) {
      // The middle of each of n equal parts of the window.
      const atMs = s.starts_at.getTime() + ((i + 0.5) * windowMs) / n;
      const offsetS = Math.floor((atMs - s.starts_at.getTime()) / 1000);
      if (have.has(offsetS)) continue;
      const seg = segments.find((g) => g.started_at.getTime() <= atMs && g.ended_at.getTime() > atMs);
      if (!seg) continue; // a gap in the recording: no photo for that instant
      try {
        // ffmpeg here reads S3 at its internal address (S3_PUBLIC_URL is for browsers).
        const url = await this.storage.presignInternal(seg.object_key, 300);
        const jpg = await grabFrame(url, Math.max(0, (atMs - seg.started_at.getTime()) / 1000), this.opts.frameTimeoutMs ?? 30_000);
        const key = `ledger/session-${sessionId}/${offsetS}.jpg`;
        await this.storage.putBuffer(key, jpg, 'image/jpeg');
        await this.pool.query(
          'INSERT INTO session_photos (session_id, offset_s, object_key) VALUES ($1, $2, $3) ON CONFLICT (session_id, offset_s) DO NOTHING',
          [sessionId, offsetS, key],
        );
        have.add(offsetS);
      } catch (err) {
        log.warn({ sessionId, offsetS, err: String(err) }, 'a ledger photo could not be taken');
      }
    }
    return have.size;
  }
}
