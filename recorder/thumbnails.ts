import { spawn } from 'node:child_process';
import sharp from 'sharp';
import { MicroBatch } from './MicroBatch.ts';

export interface ReviewImages {
  /** One JPEG frame from the segment's start, for lists and the timeline. */
  thumb: Buffer;
  /** A horizontal strip of evenly spaced small frames for cheap scrubbing. */
  strip: Buffer;
  /** Frames in the strip (keyframes only: as many as the segment had, up to the asked number). */
  frames: number;
}

export interface ThumbnailOptions {
  durationS: number;
  frames: number;
  thumbWidth: number;
  stripFrameWidth: number;
  ffmpegPath?: string;
  timeoutMs?: number;
  /** Decode keyframes only: a fraction of the work; the strip shows up to `frames` keyframes. */
  keyframesOnly?: boolean;
}

/** Decodes `frames` evenly spaced frames as raw RGB (ffmpeg) and composes the JPEGs with sharp. */
export async function makeReviewImages(file: string, opts: ThumbnailOptions): Promise<ReviewImages> {
  const a = requestArgs(file, opts, 'pipe:3');
  const [raw] = await runFfmpeg(opts.ffmpegPath ?? 'ffmpeg', ['-v', 'error', ...a.input, ...a.output], 1, opts.timeoutMs ?? 20_000);
  return compose(raw!, opts);
}

interface ImageRequest {
  file: string;
  opts: ThumbnailOptions;
  resolve: (images: ReviewImages) => void;
  reject: (err: unknown) => void;
}

/** The ffmpeg arguments that decode one request's frames (input and output parts). */
function requestArgs(file: string, opts: ThumbnailOptions, output: string): { input: string[]; output: string[] } {
  const { w, h } = thumbSize(opts);
  const fit = `scale=${w}:${h}:force_original_aspect_ratio=decrease,pad=${w}:${h}:(ow-iw)/2:(oh-ih)/2`;
  const fps = opts.frames / Math.max(opts.durationS, 0.1);
  return {
    input: opts.keyframesOnly ? ['-skip_frame', 'nokey', '-i', file] : ['-i', file],
    output: ['-an', '-vf', opts.keyframesOnly ? fit : `fps=${fps.toFixed(4)},${fit}`, ...(opts.keyframesOnly ? ['-fps_mode', 'passthrough'] : []),
      '-frames:v', String(opts.frames), '-f', 'rawvideo', '-pix_fmt', 'rgb24', output],
  };
}

function thumbSize(opts: ThumbnailOptions): { w: number; h: number } {
  const w = opts.thumbWidth & ~1;
  return { w, h: Math.max(2, Math.round((w * 9) / 16) & ~1) };
}

/** Runs ffmpeg with `outputs` extra pipes (fds 3..) and returns what each pipe carried. */
function runFfmpeg(ffmpegPath: string, args: string[], outputs: number, timeoutMs: number): Promise<Buffer[]> {
  return new Promise<Buffer[]>((resolve, reject) => {
    const p = spawn(ffmpegPath, args, { stdio: ['ignore', 'ignore', 'pipe', ...Array.from({ length: outputs }, () => 'pipe' as const)] });
    const out: Buffer[][] = Array.from({ length: outputs }, () => []);
    let err = '';
    const timer = setTimeout(() => p.kill('SIGKILL'), timeoutMs);
    for (let i = 0; i < outputs; i++) (p.stdio[3 + i] as NodeJS.ReadableStream).on('data', (d: Buffer) => out[i]!.push(d));
    p.stderr!.on('data', (d: Buffer) => (err = (err + d.toString()).slice(-1000)));
    p.on('error', reject);
    p.on('close', (code) => {
      clearTimeout(timer);
      if (code === 0) resolve(out.map((chunks) => Buffer.concat(chunks)));
      else reject(new Error(`frame extraction failed (${code}): ${err.trim()}`));
    });
  });
}

/** Thumbnail and strip JPEGs from decoded RGB frames (sharp). */
async function compose(raw: Buffer, opts: ThumbnailOptions): Promise<ReviewImages> {
  const { w, h } = thumbSize(opts);
  const frameBytes = w * h * 3;
  const n = Math.floor(raw.length / frameBytes);
  if (n < 1) throw new Error('segment yielded no video frame');
  const frame = (i: number): Buffer => raw.subarray(i * frameBytes, (i + 1) * frameBytes);
  const thumb = await sharp(frame(0), { raw: { width: w, height: h, channels: 3 } }).jpeg({ quality: 75 }).toBuffer();
  const sw = opts.stripFrameWidth & ~1;
  const sh = Math.max(2, Math.round((sw * h) / w));
  const tiles = await Promise.all(
    Array.from({ length: n }, (_, i) => sharp(frame(i), { raw: { width: w, height: h, channels: 3 } }).resize(sw, sh).png().toBuffer()),
  );
  const strip = await sharp({ create: { width: sw * n, height: sh, channels: 3, background: { r: 0, g: 0, b: 0 } } })
    .composite(tiles.map((input, i) => ({ input, left: i * sw, top: 0 })))
    .jpeg({ quality: 70 })
    .toBuffer();
  return { thumb, strip, frames: n };
}

/**
 * Review images for segments that ask within `windowMs` of each other are decoded by ONE ffmpeg
 * (one input and one output pipe per segment): when many cameras start together, or their
 * every-30-s images fall due together, the recorder spawns one process instead of dozens (forking
 * the recorder and starting ffmpeg cost more than decoding a few keyframes). A batch ffmpeg refuses
 * is retried one segment per ffmpeg, so a damaged file fails alone.
 */
export class ReviewImageBatch {
  readonly #ffmpegPath: string;
  readonly #windowMs: number;
  readonly #run: <T>(task: () => Promise<T>) => Promise<T>;
  readonly #batch: MicroBatch<ImageRequest>;

  /** `run` wraps each ffmpeg (the spool's tool concurrency limit). */
  constructor(opts: { ffmpegPath: string; windowMs?: number; maxBatch?: number; run?: <T>(task: () => Promise<T>) => Promise<T> }) {
    this.#ffmpegPath = opts.ffmpegPath;
    this.#windowMs = opts.windowMs ?? 100;
    this.#batch = new MicroBatch(this.#windowMs, opts.maxBatch ?? 16, (batch) => void this.#decode(batch));
    this.#run = opts.run ?? ((task) => task());
  }

  make(file: string, opts: Omit<ThumbnailOptions, 'ffmpegPath'>): Promise<ReviewImages> {
    if (this.#windowMs === 0) return this.#run(() => makeReviewImages(file, { ...opts, ffmpegPath: this.#ffmpegPath }));
    return new Promise((resolve, reject) => this.#batch.add({ file, opts: { ...opts, ffmpegPath: this.#ffmpegPath }, resolve, reject }));
  }

  async #decode(batch: ImageRequest[]): Promise<void> {
    if (batch.length > 1) {
      const input: string[] = [];
      const output: string[] = [];
      batch.forEach((r, i) => {
        const a = requestArgs(r.file, r.opts, `pipe:${3 + i}`);
        input.push(...a.input);
        output.push('-map', `${i}:v:0`, ...a.output);
      });
      let raws: Buffer[] | undefined;
      try {
        raws = await this.#run(() => runFfmpeg(this.#ffmpegPath, ['-v', 'error', ...input, ...output], batch.length, 20_000 + 2_000 * batch.length));
      } catch {
        // One of them is unreadable: each on its own below, so only that one fails.
      }
      if (raws) {
        await Promise.all(batch.map((r, i) => compose(raws[i]!, r.opts).then(r.resolve, r.reject)));
        return;
      }
    }
    await Promise.all(batch.map((r) => this.#run(() => makeReviewImages(r.file, r.opts)).then(r.resolve, r.reject)));
  }
}
