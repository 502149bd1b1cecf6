import { spawn } from 'node:child_process';
import sharp from 'sharp';

export interface ReviewImages {
  /** One JPEG frame from the segment's start, for lists and the timeline. */
  thumb: Buffer;
  /** A horizontal strip of evenly spaced small frames for cheap scrubbing. */
  strip: Buffer;
}

export interface ThumbnailOptions {
  durationS: number;
  frames: number;
  thumbWidth: number;
  stripFrameWidth: number;
  ffmpegPath?: string;
  timeoutMs?: number;
}

/** Decodes `frames` evenly spaced frames as raw RGB (ffmpeg) and composes the JPEGs with sharp. */
export async function makeReviewImages(file: string, opts: ThumbnailOptions): Promise<ReviewImages> {
  const w = opts.thumbWidth & ~1;
  const h = Math.max(2, Math.round((w * 9) / 16) & ~1);
  const fps = opts.frames / Math.max(opts.durationS, 0.1);
  const args = ['-v', 'error', '-i', file, '-an', '-vf', `fps=${fps.toFixed(4)},scale=${w}:${h}:force_original_aspect_ratio=decrease,pad=${w}:${h}:(ow-iw)/2:(oh-ih)/2`,
    '-frames:v', String(opts.frames), '-f', 'rawvideo', '-pix_fmt', 'rgb24', 'pipe:1'];
  const raw = await new Promise<Buffer>((resolve, reject) => {
    const p = spawn(opts.ffmpegPath ?? 'ffmpeg', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    let err = '';
    const timer = setTimeout(() => p.kill('SIGKILL'), opts.timeoutMs ?? 20_000);
    p.stdout.on('data', (d: Buffer) => out.push(d));
    p.stderr.on('data', (d: Buffer) => (err = (err + d.toString()).slice(-1000)));
    p.on('error', reject);
    p.on('close', (code) => {
      clearTimeout(timer);
      if (code === 0) resolve(Buffer.concat(out));
      else reject(new Error(`frame extraction failed (${code}): ${err.trim()}`));
    });
  });
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
  return { thumb, strip };
}
