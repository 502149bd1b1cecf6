import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { ObjectStorage } from '../infra/storage/ObjectStorage.ts';
import { TranscodeBusyError } from './TranscodeBusyError.ts';

export { TranscodeBusyError };

// H.265 is recorded by stream copy (what the camera sends), but browsers without a hardware HEVC
// decoder (Chromium on Linux among them) cannot play it. Playback therefore gets an H.264 rendition
// made on first demand and kept in S3 beside the original (`<segment>.h264.mp4`), so each segment is
// transcoded at most once however often it is watched.

/** Video codecs a browser is assumed to play from an MP4 as they are. */
const BROWSER_CODECS = new Set(['h264', 'vp8', 'vp9', 'av1']);

/** True when a segment of this codec needs an H.264 rendition for browsers. */
export function needsRendition(videoCodec: string | null | undefined): boolean {
  return !!videoCodec && !BROWSER_CODECS.has(videoCodec);
}

/** The rendition's object key, beside the original. */
export function renditionKeyFor(objectKey: string): string {
  return objectKey.replace(/\.mp4$/, '') + '.h264.mp4';
}

/** The x264 settings of renditions and transcoded exports (one place, so both look alike). */
export function h264EncodeArgs(preset: string): string[] {
  return ['-c:v', 'libx264', '-preset', preset, '-crf', '23', '-pix_fmt', 'yuv420p', '-profile:v', 'high', '-threads', '1'];
}

export interface TranscodeCost {
  /** CPU seconds (user + system) ffmpeg spent. */
  cpuS: number;
  /** Seconds of video transcoded. */
  mediaS: number;
}

/** Parses ffmpeg's `-benchmark` line (`bench: utime=1.2s stime=0.1s rtime=...`). */
export function parseBenchmark(stderr: string): number | undefined {
  const m = /bench: utime=([\d.]+)s stime=([\d.]+)s/.exec(stderr);
  return m ? Number(m[1]) + Number(m[2]) : undefined;
}

/** Parses the last `time=HH:MM:SS.xx` ffmpeg reported (seconds of output written). */
export function parseOutTime(stderr: string): number | undefined {
  const all = [...stderr.matchAll(/time=(\d+):(\d+):([\d.]+)/g)];
  const m = all.at(-1);
  return m ? Number(m[1]) * 3600 + Number(m[2]) * 60 + Number(m[3]) : undefined;
}

export interface TranscodeCacheOptions {
  storage: ObjectStorage;
  ffmpegPath?: string;
  /** Transcodes running at once on this node; further requests wait their turn. */
  maxConcurrent?: number;
  /** Requests waiting for a slot; beyond it `TranscodeBusyError`. */
  maxWaiting?: number;
  /** x264 preset: `ultrafast` (about 25 CPU s per minute of 1080p25, 12 s of 720p25) so playback starts soon; `veryfast` is smaller at about twice the CPU. */
  preset?: string;
  timeoutMs?: number;
}


/** On-demand H.264 renditions of segments, cached in S3, one ffmpeg per segment however many ask. */
export class TranscodeCache {
  readonly #o: TranscodeCacheOptions;
  readonly #inFlight = new Map<string, Promise<string>>();
  readonly #waiters: (() => void)[] = [];
  #running = 0;
  readonly #costs: TranscodeCost[] = [];

  constructor(opts: TranscodeCacheOptions) {
    this.#o = opts;
  }

  /** Costs of the transcodes this process ran (newest last, at most 1,000 kept). */
  get costs(): readonly TranscodeCost[] {
    return this.#costs;
  }

  /** The rendition's key, made now if it is not in S3 yet. */
  async ensure(objectKey: string): Promise<string> {
    const key = renditionKeyFor(objectKey);
    const pending = this.#inFlight.get(key);
    if (pending) return pending;
    const p = (async () => {
      if (await this.#o.storage.stat(key)) return key;
      await this.#slot();
      try {
        // Another process may have made it while this one waited.
        if (await this.#o.storage.stat(key)) return key;
        await this.#transcode(objectKey, key);
        return key;
      } finally {
        this.#release();
      }
    })();
    this.#inFlight.set(key, p);
    try {
      return await p;
    } finally {
      this.#inFlight.delete(key);
    }
  }

  async #slot(): Promise<void> {
    if (this.#running < (this.#o.maxConcurrent ?? 2)) {
      this.#running++;
      return;
    }
    if (this.#waiters.length >= (this.#o.maxWaiting ?? 64)) throw new TranscodeBusyError('too many transcodes waiting');
    await new Promise<void>((resolve) => this.#waiters.push(resolve));
  }

  #release(): void {
    const next = this.#waiters.shift();
    // The slot passes straight to the next waiter; otherwise it is freed.
    if (next) next();
    else this.#running--;
  }

  async #transcode(objectKey: string, key: string): Promise<void> {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rendition-'));
    const out = path.join(dir, 'out.mp4');
    try {
      const input = await this.#o.storage.presignInternal(objectKey, 3600);
      // Audio is already what MP4 holds (the recorder made it so): copied. faststart so a player can
      // begin before the whole file has arrived.
      const args = ['-hide_banner', '-nostats', '-benchmark', '-i', input, '-map', '0:v:0', '-map', '0:a:0?',
        ...h264EncodeArgs(this.#o.preset ?? 'ultrafast'), '-c:a', 'copy', '-movflags', '+faststart', '-f', 'mp4', '-y', out];
      const stderr = await new Promise<string>((resolve, reject) => {
        const ff = spawn(this.#o.ffmpegPath ?? 'ffmpeg', args, { stdio: ['ignore', 'ignore', 'pipe'] });
        let err = '';
        ff.stderr.on('data', (d: Buffer) => (err = (err + d.toString()).slice(-8000)));
        const timer = setTimeout(() => ff.kill('SIGKILL'), this.#o.timeoutMs ?? 5 * 60_000);
        ff.on('error', (e) => {
          clearTimeout(timer);
          reject(e);
        });
        ff.on('close', (code) => {
          clearTimeout(timer);
          if (code === 0) resolve(err);
          else reject(new Error(`transcode failed (${code}): ${err.trim().split('\n').slice(-2).join(' ')}`));
        });
      });
      await this.#o.storage.putFile(key, out, 'video/mp4');
      const cpuS = parseBenchmark(stderr);
      const mediaS = parseOutTime(stderr);
      if (cpuS !== undefined && mediaS !== undefined) {
        this.#costs.push({ cpuS, mediaS });
        if (this.#costs.length > 1000) this.#costs.shift();
      }
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }
}
