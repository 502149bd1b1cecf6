import { EventEmitter } from 'node:events';
import fs from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';
import { fileURLToPath } from 'node:url';
import ffmpeg from 'fluent-ffmpeg';
import type { Logger } from '../infra/logger.ts';
import type { RecorderConfig } from './config.ts';
import { probe, ProbeError, probeWithRetry } from './probe.ts';
import { pullSource, type PullSource } from './RtspRestreamer.ts';
import { classifyFfmpegOutput, type CaptureFailure } from './CaptureFailure.ts';
import { probeCamera } from './CameraProbe.ts';
import type { SegmentFile } from './types.ts';

/** What one ffmpeg run reads. `url` may hold credentials: it is never logged; `label` is. */
export interface CaptureInput {
  url: string;
  label: string;
  inputOptions: string[];
  /** Audio codec of the input when the caller knows it; otherwise the input is probed. */
  audioCodec?: string | null;
  /** Video codec arguments; default stream copy. (A conference's VP8 cannot go into MP4 as-is.) */
  videoArgs?: string[];
  /**
   * RTSP lower transport (the camera's setting), used between the restreamer and the camera
   * ('auto': TCP, and UDP after the camera refuses TCP with 461). ffmpeg itself always reads the
   * loopback restreamer over TCP (any `-rtsp_transport` in inputOptions is replaced).
   */
  rtspTransport?: RtspTransport;
}

export type RtspTransport = 'tcp' | 'udp' | 'auto';

/** Input options with `-rtsp_transport` set to `transport` (replacing any given). */
export function withRtspTransport(inputOptions: readonly string[], transport: 'tcp' | 'udp'): string[] {
  const out: string[] = [];
  for (let i = 0; i < inputOptions.length; i++) {
    if (inputOptions[i] === '-rtsp_transport') {
      i++;
      continue;
    }
    out.push(inputOptions[i]!);
  }
  return ['-rtsp_transport', transport, ...out];
}

/** A segment closed by ffmpeg, as the capture reports it. */
export interface RawSegment extends SegmentFile {
  /** Set when ffmpeg died before listing it and the partial (fragmented) file was recovered. */
  recovered: boolean;
}

export interface RunInfo {
  runId: string;
  dir: string;
  /** Wall-clock time (epoch ms) of the input's first timestamp; segment times are relative to it. */
  inputStartMs: number;
}

export type CaptureState = 'idle' | 'connecting' | 'recording' | 'backoff' | 'stopped';

export interface SegmentCaptureEvents {
  state: [CaptureState];
  run: [RunInfo];
  segment: [RawSegment];
  runEnded: [{ runId: string; reason: string; segments: number }];
  /**
   * A run ended (or could not start) while the capture should be running, classified from ffmpeg's
   * output and, where that is not decisive, an RTSP DESCRIBE of the camera. Emitted before the wait.
   */
  failure: [CaptureFailure];
}

export interface SegmentCaptureOptions {
  /** Safe to log, used in names. */
  name: string;
  /** Parent directory; each ffmpeg run writes into its own `run-<id>` folder below it. */
  dir: string;
  input: () => Promise<CaptureInput>;
  config: RecorderConfig;
  log: Logger;
}

// Audio codecs the MP4 muxer stores as-is; anything else is transcoded to AAC rather than risk a
// muxer error that would lose the whole segment.
const MP4_AUDIO = new Set(['aac', 'mp3', 'alac']);

const guardScript = path.join(path.dirname(fileURLToPath(import.meta.url)), 'bin', 'ffmpeg-guard.sh');
let guardUsable: boolean | undefined;
/** The ffmpeg to run: through the guard script (dies with the recorder) when it is usable. */
export function ffmpegCommandPath(configured: string): string {
  guardUsable ??= (() => {
    try {
      fs.accessSync(guardScript, fs.constants.X_OK);
      return true;
    } catch {
      return false;
    }
  })();
  if (!guardUsable) return configured;
  // The guard runs $GRASSROOTS_FFMPEG, so a configured binary is still honoured.
  if (configured !== 'ffmpeg') process.env.GRASSROOTS_FFMPEG = configured;
  return guardScript;
}

/**
 * Records one input into short MP4 segments by stream copy, run after run: a watchdog outside ffmpeg
 * kills a run that stops making progress, and any run that ends while the capture should be running
 * is restarted after an exponential backoff. Segments are reported as ffmpeg lists them; a run that
 * dies mid-segment has its partial fragmented-MP4 file probed and reported too.
 */
export class SegmentCapture extends EventEmitter<SegmentCaptureEvents> {
  readonly name: string;
  readonly #opts: SegmentCaptureOptions;
  readonly #log: Logger;
  #state: CaptureState = 'idle';
  #wantRunning = false;
  #cmd: ffmpeg.FfmpegCommand | undefined;
  #runPromise: Promise<void> | undefined;
  #backoffMs: number;
  #backoffTimer: NodeJS.Timeout | undefined;
  #wake: (() => void) | undefined;
  #audioCodec: string | null | undefined;
  #lastFailure: CaptureFailure | undefined;

  constructor(opts: SegmentCaptureOptions) {
    super();
    this.name = opts.name;
    this.#opts = opts;
    this.#log = opts.log.child({ capture: opts.name });
    this.#backoffMs = opts.config.restartBackoffMinMs;
  }

  get state(): CaptureState {
    return this.#state;
  }

  /** Why the last run ended without media; cleared by a run that records. */
  get lastFailure(): CaptureFailure | undefined {
    return this.#lastFailure;
  }

  start(): void {
    if (this.#wantRunning) return;
    this.#wantRunning = true;
    this.#runPromise ??= this.#loop().finally(() => {
      this.#runPromise = undefined;
    });
  }

  /** Asks ffmpeg to finish its current segment and waits until every segment has been reported. */
  async stop(graceMs = 5_000): Promise<void> {
    this.#wantRunning = false;
    this.#wake?.();
    const cmd = this.#cmd;
    if (cmd) {
      // SIGINT makes ffmpeg finish and list the segment in progress; SIGKILL is the last resort.
      cmd.kill('SIGINT');
      const t = setTimeout(() => cmd.kill('SIGKILL'), graceMs);
      await this.#runPromise;
      clearTimeout(t);
    } else {
      await this.#runPromise;
    }
    this.#setState('stopped');
  }

  #setState(s: CaptureState): void {
    if (s === this.#state) return;
    this.#state = s;
    this.emit('state', s);
  }

  async #loop(): Promise<void> {
    while (this.#wantRunning) {
      const started = Date.now();
      let produced = 0;
      let reason: string;
      let source: PullSource | undefined;
      let lines: string[] = [];
      let failure: CaptureFailure | undefined;
      let cameraUrl: string | undefined;
      let transport: RtspTransport | undefined;
      try {
        this.#setState('connecting');
        const given = await this.#opts.input();
        const rtsp = /^rtsps?:/i.test(given.url);
        cameraUrl = rtsp ? given.url : undefined;
        transport = rtsp ? (given.rtspTransport ?? 'tcp') : undefined;
        // Credentials stay in this process: ffmpeg gets the restreamer's loopback URL (one camera
        // session shared with live viewing), read over TCP; the camera's transport is the restreamer's.
        source = await pullSource(given.url, transport ? { transport } : {});
        const input = { ...given, url: source.url, inputOptions: rtsp ? withRtspTransport(given.inputOptions, 'tcp') : given.inputOptions };
        if (!this.#wantRunning) break;
        const audio = await this.#resolveAudio(input, cameraUrl);
        if (!this.#wantRunning) break;
        if (typeof audio !== 'string' && audio !== null) {
          failure = audio;
          reason = `${failure.reason}: ${failure.detail}`;
        } else {
          const r = await this.#runOnce(input, audio);
          produced = r.segments;
          reason = r.reason;
          lines = r.lines;
        }
      } catch (err) {
        reason = redact((err as Error).message);
        lines = [reason];
      } finally {
        await source?.close();
      }
      if (!this.#wantRunning) break;
      failure ??= classifyFfmpegOutput(lines);
      if (!failure && cameraUrl) {
        // ffmpeg's output was not decisive (a timeout, a stream that just stopped): ask the camera.
        const p = await probeCamera(cameraUrl, { timeoutMs: this.#opts.config.rtspTimeoutMs });
        failure = p.ok ? { reason: 'no_media', detail: redact(lines.at(-1) ?? reason).slice(0, 300), at: new Date() } : p.failure;
      }
      failure ??= { reason: 'no_media', detail: reason.slice(0, 300), at: new Date() };
      this.#lastFailure = failure;
      this.emit('failure', failure);
      // A run that produced media or lived long proves the input works: start the backoff afresh.
      if (produced > 0 || Date.now() - started >= this.#opts.config.healthyRunMs) this.#backoffMs = this.#opts.config.restartBackoffMinMs;
      const wait = this.#backoffMs;
      this.#backoffMs = Math.min(this.#backoffMs * 2, this.#opts.config.restartBackoffMaxMs);
      this.#log.warn({ reason, failure: failure.reason, restartInMs: wait }, 'capture run ended; restarting');
      this.#setState('backoff');
      // Reasons a DESCRIBE sees too: the probe can tell when they clear (a 404 until an encoder republishes).
      await this.#waitForRetry(wait, cameraUrl, failure.reason === 'unreachable' || failure.reason === 'not_found' || failure.reason === 'auth');
    }
  }

  /**
   * Waits out the backoff, but while it lasts asks the camera (cheap DESCRIBE) every
   * cameraProbeIntervalMs: a camera seen down and then answering ends the wait at once, so a
   * reboot costs seconds of footage, not the doubled backoff.
   */
  async #waitForRetry(wait: number, cameraUrl: string | undefined, seenDown: boolean): Promise<void> {
    const until = Date.now() + wait;
    let down = seenDown;
    let woken = false;
    const wake = new Promise<void>((resolve) => {
      this.#wake = () => {
        woken = true;
        resolve();
      };
    });
    try {
      while (!woken && this.#wantRunning) {
        const left = until - Date.now();
        if (left <= 0) return;
        const step = cameraUrl ? Math.min(left, this.#opts.config.cameraProbeIntervalMs) : left;
        await Promise.race([wake, new Promise<void>((r) => (this.#backoffTimer = setTimeout(r, step)))]);
        clearTimeout(this.#backoffTimer);
        if (woken || !cameraUrl || Date.now() >= until) return;
        // The whole RTSP timeout: a server that prepares its media on DESCRIBE may take over a second to answer.
        const p = await probeCamera(cameraUrl, { timeoutMs: this.#opts.config.rtspTimeoutMs });
        if (!p.ok) {
          down = true;
          this.#lastFailure = p.failure;
        } else if (down) {
          this.#log.info('camera answers again; restarting capture now');
          return;
        }
      }
    } finally {
      clearTimeout(this.#backoffTimer);
      this.#wake = undefined;
    }
  }

  /** The input's audio codec (null: none or dropped), or why the camera gave no streams. */
  async #resolveAudio(input: CaptureInput, cameraUrl: string | undefined): Promise<string | null | CaptureFailure> {
    if (this.#opts.config.audio === 'drop') return null;
    if (input.audioCodec !== undefined) return input.audioCodec;
    if (this.#audioCodec !== undefined) return this.#audioCodec;
    if (cameraUrl) {
      // The camera's SDP says what it sends, whatever the transport: no ffprobe session needed.
      const p = await probeCamera(cameraUrl, { timeoutMs: this.#opts.config.rtspTimeoutMs });
      if (!p.ok) return p.failure;
      if (!p.videoCodec) return { reason: 'no_media', detail: 'the camera offers no video stream', at: new Date() };
      this.#audioCodec = p.audioCodec;
      return this.#audioCodec;
    }
    const p = await probe(input.url, { rtspTimeoutMs: this.#opts.config.rtspTimeoutMs, timeoutMs: this.#opts.config.rtspTimeoutMs * 2, ffprobePath: this.#opts.config.ffprobePath });
    if (!p.videoCodec) throw new Error(`${input.label}: no video stream`);
    this.#audioCodec = p.audioCodec ?? null;
    return this.#audioCodec;
  }

  #runOnce(input: CaptureInput, audioCodec: string | null): Promise<{ segments: number; reason: string; lines: string[] }> {
    const cfg = this.#opts.config;
    const runId = `${Date.now().toString(36)}${crypto.randomBytes(3).toString('hex')}`;
    const dir = path.join(this.#opts.dir, `run-${runId}`);
    fs.mkdirSync(dir, { recursive: true });
    const listFile = path.join(dir, 'list.csv');
    const out: string[] = ['-map', '0:v:0', ...(input.videoArgs ?? ['-c:v', 'copy'])];
    if (audioCodec) {
      out.push('-map', '0:a:0?');
      out.push(...(MP4_AUDIO.has(audioCodec) ? ['-c:a', 'copy'] : ['-c:a', 'aac', '-b:a', '64k']));
    }
    out.push(
      '-dn', '-sn',
      '-f', 'segment',
      '-segment_time', String(cfg.segmentSeconds),
      '-segment_format', 'mp4',
      // Fragmented MP4, a fragment at least every half second and flushed at once: a file cut short
      // by a crash is still playable up to its last fragment.
      '-segment_format_options', 'movflags=+frag_keyframe+empty_moov+default_base_moof:frag_duration=500000:flush_packets=1',
      '-reset_timestamps', '1',
      '-segment_list', listFile,
      '-segment_list_type', 'csv',
    );
    const cmd = ffmpeg(input.url)
      .setFfmpegPath(ffmpegCommandPath(cfg.ffmpegPath))
      .inputOptions(input.inputOptions)
      .outputOptions(out)
      .output(path.join(dir, 'seg_%06d.mp4'));
    this.#cmd = cmd;
    const log = this.#log.child({ runId });

    return new Promise((resolve) => {
      let inputStartMs: number | undefined;
      let listOffset = 0;
      let partial = '';
      let segments = 0;
      let lastEndMs: number | undefined;
      let lastProgress = Date.now();
      let lastTimemark = '';
      let finished = false;
      const listed = new Set<string>();
      // ffmpeg's last words, for classifying why the run ended (bounded).
      const lines: string[] = [];

      const readList = (): void => {
        if (inputStartMs === undefined) return;
        let data: Buffer;
        try {
          const fd = fs.openSync(listFile, 'r');
          try {
            const size = fs.fstatSync(fd).size;
            if (size <= listOffset) return;
            data = Buffer.alloc(size - listOffset);
            fs.readSync(fd, data, 0, data.length, listOffset);
            listOffset = size;
          } finally {
            fs.closeSync(fd);
          }
        } catch {
          return;
        }
        partial += data.toString('utf8');
        const lines = partial.split('\n');
        partial = lines.pop() ?? '';
        for (const line of lines) {
          const [name, s, e] = line.trim().split(',');
          if (!name || s === undefined || e === undefined) continue;
          const file = path.join(dir, name);
          listed.add(name);
          const bytes = fileSize(file);
          if (bytes === undefined) continue;
          const startedAt = Math.round(inputStartMs + Number(s) * 1000);
          const endedAt = Math.round(inputStartMs + Number(e) * 1000);
          if (!(endedAt > startedAt) || bytes === 0) continue;
          segments++;
          lastEndMs = endedAt;
          lastProgress = Date.now();
          this.emit('segment', { runId, seq: seqOf(name), file, startedAt, endedAt, bytes, recovered: false });
        }
      };

      const poll = setInterval(() => {
        readList();
        if (Date.now() - lastProgress > cfg.stallTimeoutMs && !finished) {
          log.warn({ stallTimeoutMs: cfg.stallTimeoutMs }, 'ffmpeg stalled; killing it');
          lastProgress = Date.now();
          cmd.kill('SIGKILL');
        }
      }, 200);

      cmd.on('start', () => {
        // fluent-ffmpeg exposes the child process only as an untyped property.
        const pid = (cmd as unknown as { ffmpegProc?: { pid?: number } }).ffmpegProc?.pid;
        try {
          if (pid) fs.writeFileSync(path.join(dir, 'ffmpeg.pid'), String(pid));
        } catch (err) {
          // A full disk must not throw out of an ffmpeg callback; only crash recovery loses the pid.
          log.warn({ err: (err as Error).message }, 'could not write ffmpeg.pid');
        }
        log.debug({ input: input.label }, 'ffmpeg started');
        // stop() came while fluent-ffmpeg was still preparing (no process to signal then): stop it now,
        // or it records on and stop() waits for it for ever.
        if (!this.#wantRunning) cmd.kill('SIGINT');
      });
      const startRun = (ms: number): void => {
        inputStartMs = ms;
        this.#setState('recording');
        this.emit('run', { runId, dir, inputStartMs });
      };
      cmd.on('stderr', (line: string) => {
        if (inputStartMs === undefined) {
          // With -use_wallclock_as_timestamps the input's start is wall-clock seconds.
          const m = /Duration: .*?, start: (-?[\d.]+)/.exec(line);
          if (m && Number(m[1]) > 1e9) startRun(Math.round(Number(m[1]) * 1000));
          else if (/^Output #0|^\s*Stream mapping/.test(line)) {
            // No usable start printed: take the wall clock now (less exact, but never silent).
            log.warn('input start time not reported; using the wall clock');
            startRun(Date.now());
          }
        }
        const t = /time=\s*(-?[\d:.]+)/.exec(line);
        if (t && t[1] !== lastTimemark) {
          lastTimemark = t[1]!;
          lastProgress = Date.now();
        } else if (!t) {
          lines.push(line);
          if (lines.length > 40) lines.shift();
          log.debug({ ffmpeg: redact(line) }, 'ffmpeg');
        }
      });
      const done = async (reason: string): Promise<void> => {
        if (finished) return;
        finished = true;
        clearInterval(poll);
        if (this.#cmd === cmd) this.#cmd = undefined;
        readList();
        if (inputStartMs !== undefined) {
          // Files ffmpeg opened but never listed: the segment in progress when it died.
          for (const r of await recoverUnlisted(dir, listed, lastEndMs ?? inputStartMs, runId, cfg.ffprobePath)) {
            segments++;
            this.emit('segment', r);
          }
        }
        fs.rmSync(path.join(dir, 'ffmpeg.pid'), { force: true });
        // Every listed segment has been handed on (and journalled) by now.
        fs.rmSync(listFile, { force: true });
        fs.rmdir(dir, () => undefined);
        this.emit('runEnded', { runId, reason, segments });
        if (segments > 0) this.#lastFailure = undefined;
        resolve({ segments, reason, lines: [...lines, reason] });
      };
      cmd.on('end', () => void done('ffmpeg exited'));
      cmd.on('error', (err: Error) => void done(redact(err.message.split('\n').slice(-3).join(' ')).slice(0, 500)));
      cmd.run();
    });
  }
}

/** ffmpeg echoes its input URL in errors: never let camera credentials reach a log. */
export function redact(text: string): string {
  return text.replace(/([a-z][a-z0-9+.-]*:\/\/)[^@\s/]+@/gi, '$1***@');
}

function seqOf(name: string): number {
  const m = /seg_(\d+)\.mp4$/.exec(name);
  return m ? Number(m[1]) : 0;
}

/**
 * Turns segment files that ffmpeg never listed (it was killed, or the recorder died with it) into
 * segments, if they hold any media. Bounds: they follow the last listed segment.
 */
/** The size of a file ffmpeg wrote, or undefined when it is gone. */
export function fileSize(file: string): number | undefined {
  try {
    return fs.statSync(file).size;
  } catch {
    return undefined;
  }
}

export async function recoverUnlisted(dir: string, listed: Set<string>, afterMs: number, runId: string, ffprobePath = 'ffprobe'): Promise<RawSegment[]> {
  let names: string[];
  try {
    names = fs.readdirSync(dir).filter((n) => /^seg_\d+\.mp4$/.test(n) && !listed.has(n)).sort();
  } catch {
    return [];
  }
  const out: RawSegment[] = [];
  let t = afterMs;
  for (const name of names) {
    const file = path.join(dir, name);
    const bytes = fileSize(file);
    if (bytes === undefined) continue;
    let dur: number;
    try {
      const p = bytes > 0 ? await probeWithRetry(file, { ffprobePath }) : undefined;
      if (!p || !p.videoCodec || p.durationS <= 0) throw new ProbeError('no media', true);
      dur = Math.round(p.durationS * 1000);
    } catch (err) {
      if (err instanceof ProbeError && err.corrupt) {
        fs.rmSync(file, { force: true });
        continue;
      }
      // Could not probe it now: keep it, bounded by its last write; the spool verifies it again.
      const mtime = fs.statSync(file, { throwIfNoEntry: false })?.mtimeMs ?? t + 1;
      dur = Math.max(1, Math.round(mtime) - t);
    }
    out.push({ runId, seq: seqOf(name), file, startedAt: t, endedAt: t + dur, bytes, recovered: true });
    t += dur;
  }
  return out;
}
