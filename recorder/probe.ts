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
        reject(new Error(`ffprobe failed: ${String(stderr).trim().split('\n').slice(-2).join(' ') || err.message}`));
        return;
      }
      let j: FfprobeJson;
      try {
        j = JSON.parse(stdout) as FfprobeJson;
      } catch {
        reject(new Error('ffprobe printed no JSON'));
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
