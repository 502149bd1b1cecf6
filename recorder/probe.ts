import { execFile } from 'node:child_process';

export interface ProbeResult {
  durationS: number;
  videoCodec: string | undefined;
  audioCodec: string | undefined;
  width: number | undefined;
  height: number | undefined;
  /** e.g. 'Constrained Baseline', 'Main', 'High' for H.264. */
  videoProfile: string | undefined;
  /** H.264 level_idc, e.g. 31. */
  videoLevel: number | undefined;
}

interface FfprobeJson {
  format?: { duration?: string };
  streams?: { codec_type?: string; codec_name?: string; width?: number; height?: number; duration?: string; profile?: string; level?: number }[];
}

/** A probe that failed; `corrupt` when ffprobe ran and found the data invalid (not worth retrying). */
export class ProbeError extends Error {
  readonly corrupt: boolean;
  constructor(message: string, corrupt: boolean) {
    super(message);
    this.corrupt = corrupt;
  }
}

// What ffprobe prints about data it cannot read.
const CORRUPT = /Invalid data found|moov atom not found|could not find codec parameters|Invalid argument|error reading header|End of file/i;

/**
 * Probes with bounded retries: a transient failure (ffprobe could not run, timed out, was killed)
 * is tried again with backoff; a verdict of corrupt data is final at once.
 */
export async function probeWithRetry(input: string, opts: { ffprobePath?: string; attempts?: number; retryMs?: number; timeoutMs?: number } = {}): Promise<ProbeResult> {
  const attempts = Math.max(1, opts.attempts ?? 4);
  let delay = opts.retryMs ?? 500;
  for (let i = 1; ; i++) {
    try {
      return await probe(input, { ...(opts.ffprobePath ? { ffprobePath: opts.ffprobePath } : {}), ...(opts.timeoutMs ? { timeoutMs: opts.timeoutMs } : {}) });
    } catch (err) {
      if ((err instanceof ProbeError && err.corrupt) || i >= attempts) throw err;
      await new Promise((r) => setTimeout(r, delay));
      delay *= 2;
    }
  }
}

/**
 * Runs ffprobe on a file or URL with a hard timeout. Rejects with the tool's own message when the input
 * is unreadable, so a bad segment is reported with a reason rather than dropped.
 */
export function probe(input: string, opts: { timeoutMs?: number; rtspTimeoutMs?: number; ffprobePath?: string } = {}): Promise<ProbeResult> {
  const args = ['-v', 'error', '-print_format', 'json', '-show_format', '-show_streams'];
  if (/^rtsps?:/.test(input)) args.push('-rtsp_transport', 'tcp', '-timeout', String((opts.rtspTimeoutMs ?? 5000) * 1000));
  args.push(input);
  return new Promise((resolve, reject) => {
    execFile(opts.ffprobePath ?? 'ffprobe', args, { timeout: opts.timeoutMs ?? 15_000, killSignal: 'SIGKILL', maxBuffer: 4 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (err) {
        const text = String(stderr).trim().split('\n').slice(-2).join(' ');
        // Only ffprobe itself saying the data is bad makes a file corrupt; a tool that could not run,
        // was killed or timed out says nothing about the file.
        const e = err as NodeJS.ErrnoException & { killed?: boolean; signal?: string | null };
        const ran = typeof e.code === 'number' && !e.killed && !e.signal;
        reject(new ProbeError(`ffprobe failed: ${text || err.message}`, ran && CORRUPT.test(text)));
        return;
      }
      let j: FfprobeJson;
      try {
        j = JSON.parse(stdout) as FfprobeJson;
      } catch {
        reject(new ProbeError('ffprobe printed no JSON', false));
        return;
      }
      const v = j.streams?.find((s) => s.codec_type === 'video');
      const a = j.streams?.find((s) => s.codec_type === 'audio');
      const durationS = Number(j.format?.duration ?? v?.duration ?? NaN);
      resolve({
        durationS: Number.isFinite(durationS) ? durationS : 0,
        videoCodec: v?.codec_name,
        audioCodec: a?.codec_name,
        width: v?.width,
        height: v?.height,
        videoProfile: v?.profile,
        videoLevel: v?.level,
      });
    });
  });
}
