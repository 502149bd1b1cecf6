import { spawn } from 'node:child_process';

export interface Stretch {
  start: number;
  end: number;
}

export interface MediaMeasurement {
  durationS: number;
  hasVideo: boolean;
  hasAudio: boolean;
  black: Stretch[];
  frozen: Stretch[];
  silent: Stretch[];
}

export interface ProbeOptions {
  ffmpegPath?: string;
  /** Shortest black / frozen / silent stretch ffmpeg reports, seconds. */
  detectMinS?: number;
  timeoutMs?: number;
  /** `input` is a lavfi graph (ffmpeg's self-test), not a file or URL. */
  lavfi?: boolean;
}

const num = (s: string | undefined): number | null => (s === undefined ? null : Number.isFinite(Number(s)) ? Number(s) : null);

/** Pairs "start" and "end" reports; a stretch still open at the end of the file runs to its end. */
function pair(starts: number[], ends: number[], duration: number): Stretch[] {
  return starts.map((start, i) => ({ start, end: ends[i] ?? duration }));
}

export function parseFfmpegLog(log: string): MediaMeasurement {
  const dur = /Duration:\s*(\d+):(\d+):(\d+(?:\.\d+)?)/.exec(log);
  // "time=" of the last progress line is the decoded length; Duration is the container's claim.
  const times = [...log.matchAll(/time=(\d+):(\d+):(\d+(?:\.\d+)?)/g)];
  const lastTime = times.at(-1);
  const toS = (m: RegExpExecArray | RegExpMatchArray | null | undefined) => (m ? Number(m[1]) * 3600 + Number(m[2]) * 60 + Number(m[3]) : 0);
  const durationS = lastTime ? toS(lastTime) : toS(dur);
  const black: Stretch[] = [];
  for (const m of log.matchAll(/black_start:\s*([\d.]+)\s+black_end:\s*([\d.]+)/g)) {
    black.push({ start: Number(m[1]), end: Number(m[2]) });
  }
  const fStarts = [...log.matchAll(/freezedetect\.freeze_start:\s*([\d.]+)/g)].map((m) => num(m[1]) ?? 0);
  const fEnds = [...log.matchAll(/freezedetect\.freeze_end:\s*([\d.]+)/g)].map((m) => num(m[1]) ?? 0);
  const sStarts = [...log.matchAll(/silence_start:\s*(-?[\d.]+)/g)].map((m) => Math.max(0, num(m[1]) ?? 0));
  const sEnds = [...log.matchAll(/silence_end:\s*([\d.]+)/g)].map((m) => num(m[1]) ?? 0);
  return {
    durationS,
    hasVideo: /Stream #\d+:\d+(?:\[\w+\])?(?:\(\w+\))?: Video:/.test(log),
    hasAudio: /Stream #\d+:\d+(?:\[\w+\])?(?:\(\w+\))?: Audio:/.test(log),
    black,
    frozen: pair(fStarts, fEnds, durationS),
    silent: pair(sStarts, sEnds, durationS),
  };
}

/**
 * One decoding pass over a segment with blackdetect, freezedetect and silencedetect.
 * The input may be a local path or an http(s) URL.
 */
export function probeMedia(input: string, opts: ProbeOptions = {}): Promise<MediaMeasurement> {
  const d = opts.detectMinS ?? 2;
  const args = [
    '-hide_banner', '-nostdin', '-loglevel', 'info', '-stats_period', '3600',
    ...(opts.lavfi ? ['-f', 'lavfi'] : []), '-i', input,
    '-vf', `blackdetect=d=${d}:pix_th=0.10,freezedetect=n=-60dB:d=${d}`,
    '-af', `silencedetect=n=-50dB:d=${d}`,
    '-f', 'null', '-',
  ];
  return new Promise((resolve, reject) => {
    const child = spawn(opts.ffmpegPath ?? 'ffmpeg', args, { stdio: ['ignore', 'ignore', 'pipe'] });
    const chunks: Buffer[] = [];
    let size = 0;
    child.stderr.on('data', (c: Buffer) => {
      // Keep the log bounded; the interesting lines are short.
      if (size < 4 * 1024 * 1024) {
        chunks.push(c);
        size += c.length;
      }
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 300_000);
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      const log = Buffer.concat(chunks).toString('utf8');
      if (code !== 0) return reject(new Error(`ffmpeg exited ${code}: ${log.split('\n').slice(-3).join(' ')}`));
      resolve(parseFfmpegLog(log));
    });
  });
}
