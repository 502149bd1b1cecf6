import { EventEmitter } from 'node:events';
import ffmpeg from 'fluent-ffmpeg';
import type { types } from 'mediasoup';
import { createLogger, type Logger } from '../infra/logger.ts';
import { probe } from './probe.ts';
import { ffmpegCommandPath, redact } from './SegmentCapture.ts';
import { pullSource, type PullSource } from './RtspRestreamer.ts';
import { classifyFfmpegOutput, type CaptureFailure } from './CaptureFailure.ts';
import { probeCamera } from './CameraProbe.ts';
import { CameraUnavailableError } from './CameraUnavailableError.ts';
import { withRtspTransport, type RtspTransport } from './SegmentCapture.ts';
import { RtpRunJoiner } from './RtpRunJoiner.ts';

/** What a viewer is told about the camera: being reached, sending, or down and why. */
export type LiveCameraState = { state: 'connecting' } | { state: 'live' } | { state: 'offline'; failure: CaptureFailure };

export interface LiveCameraIngestOptions {
  router: types.Router;
  /** RTSP URL including credentials (never logged), or a film's file path when `film` is set. */
  pullUrl: string;
  /** A film file played in real time (a meeting's broadcast) instead of a camera: transcoded, ended when it ends unless looped. */
  film?: { loop: boolean };
  /** A camera's constrained-baseline rendition, for viewers whose browser lacks the profile it is forwarded in: transcoded, video only. */
  rendition?: boolean;
  /** Safe to log, e.g. "camera 12". */
  label: string;
  listenIp?: string;
  rtspTimeoutMs?: number;
  /** The camera's lower transport, between the restreamer and the camera ('auto': TCP, then UDP after a 461). */
  rtspTransport?: RtspTransport;
  /** While the camera is down, DESCRIBE it this often and restart ffmpeg as soon as it answers. */
  cameraProbeIntervalMs?: number;
  restartBackoffMinMs?: number;
  restartBackoffMaxMs?: number;
  /** No RTP reaching the producer for this long = the pull stalled; restart ffmpeg. */
  stallTimeoutMs?: number;
  ffmpegPath?: string;
  ffprobePath?: string;
  log?: Logger;
  appData?: Record<string, unknown>;
}

export interface LiveCameraIngestEvents {
  /** ffmpeg (re)started pushing RTP. */
  running: [];
  /** ffmpeg ended; it will be restarted after `restartInMs`. */
  interrupted: [reason: string, restartInMs: number];
  /** A film that is not looped played to its end (the ingest closes next). */
  finished: [];
  /** The camera's state changed (see LiveCameraState). */
  state: [LiveCameraState];
  closed: [];
}

type ResolvedOptions = Required<Omit<LiveCameraIngestOptions, 'appData' | 'log' | 'film'>> & { log: Logger; film: LiveCameraIngestOptions['film'] };

const VIDEO_PT = 102;
const PROFILE_BY_IDC: Record<string, string> = { '42': 'Baseline', '4d': 'Main', '64': 'High' };
const FFMPEG_EXITED = 'ffmpeg exited';
const AUDIO_PT = 111;

const PROFILE_IDC: Record<string, string> = {
  'Constrained Baseline': '42e0',
  Baseline: '4200',
  Main: '4d00',
  // Signalled as High 4:4:4 Predictive, the profile Chromium lists (its decoder takes every profile
  // below it; H.264 A.2): a High camera then reaches Chromium viewers without transcoding.
  High: 'f400',
};

/**
 * Brings an RTSP camera into a mediasoup router as producers, so browsers watch it like any
 * participant: ffmpeg reads the camera through the process's RTSP restreamer (one camera session
 * shared with recording; TCP, UDP or auto towards the camera) and pushes RTP, through an RtpRunJoiner, into PlainTransports. H.264 whose
 * profile the router accepts is forwarded without transcoding (SPS/PPS repeated in-band before each
 * keyframe for late joiners); other video is transcoded to constrained-baseline H.264. Audio is
 * transcoded to Opus (what WebRTC peers decode). ffmpeg is watched from outside and restarted with
 * backoff when it exits or stops delivering RTP. The same path plays a film file in real time into
 * a meeting (the chair's broadcast), always transcoded.
 */
export class LiveCameraIngest extends EventEmitter<LiveCameraIngestEvents> {
  readonly videoProducer: types.Producer;
  readonly audioProducer: types.Producer | undefined;
  /** True when the camera's video is forwarded as-is. */
  readonly passthrough: boolean;
  readonly #o: ResolvedOptions;
  readonly #videoTransport: types.PlainTransport;
  readonly #audioTransport: types.PlainTransport | undefined;
  #cmd: ffmpeg.FfmpegCommand | undefined;
  #closed = false;
  /** The restreamer URL ffmpeg pulls from: the camera's password is never in its argv. */
  #source: PullSource | undefined;
  #backoff: number;
  #timer: NodeJS.Timeout | undefined;
  #watch: NodeJS.Timeout | undefined;
  #state: LiveCameraState = { state: 'connecting' };
  /** The camera's own URL (credentials included; only probed from this process). */
  #cameraUrl: string | undefined;
  /** The camera's SDP has the parameter sets: ffmpeg need not analyse seconds of stream before it starts. */
  #quickStart = false;
  /** ffmpeg sends here; every run's RTP continues the last one's (see RtpRunJoiner). */
  #videoJoin: RtpRunJoiner | undefined;
  #audioJoin: RtpRunJoiner | undefined;

  private constructor(
    o: ResolvedOptions,
    vt: types.PlainTransport,
    vp: types.Producer,
    at: types.PlainTransport | undefined,
    ap: types.Producer | undefined,
    passthrough: boolean,
  ) {
    super();
    this.#o = o;
    this.#videoTransport = vt;
    this.videoProducer = vp;
    this.#audioTransport = at;
    this.audioProducer = ap;
    this.passthrough = passthrough;
    this.#backoff = o.restartBackoffMinMs;
  }

  static async create(opts: LiveCameraIngestOptions): Promise<LiveCameraIngest> {
    const o: ResolvedOptions = {
      listenIp: '127.0.0.1',
      rtspTimeoutMs: 5_000,
      rtspTransport: 'auto',
      cameraProbeIntervalMs: 2_000,
      restartBackoffMinMs: 1_000,
      restartBackoffMaxMs: 30_000,
      stallTimeoutMs: 10_000,
      ffmpegPath: 'ffmpeg',
      rendition: false,
      ffprobePath: 'ffprobe',
      ...opts,
      film: opts.film,
      log: opts.log ?? createLogger('live-ingest', { camera: opts.label }),
    };
    const cameraUrl = !o.film && /^rtsps?:/i.test(o.pullUrl) ? o.pullUrl : undefined;
    let quickStart = false;
    let info: { videoCodec: string | undefined; videoProfile: string | undefined; videoLevel: number | undefined; audioCodec: string | undefined };
    if (cameraUrl) {
      // The camera's SDP says what it sends, over any transport; a camera that does not answer
      // is refused here with its reason rather than handed out as a dark session.
      const p = await probeCamera(cameraUrl, { timeoutMs: o.rtspTimeoutMs });
      if (!p.ok) throw new CameraUnavailableError(p.failure);
      const plid = p.h264ProfileLevelId;
      info = {
        videoCodec: p.videoCodec ?? undefined,
        videoProfile: plid ? (plid.startsWith('42') && (parseInt(plid.slice(2, 4), 16) & 0x40) !== 0 ? 'Constrained Baseline' : PROFILE_BY_IDC[plid.slice(0, 2)]) : undefined,
        videoLevel: plid ? parseInt(plid.slice(4, 6), 16) : undefined,
        audioCodec: p.audioCodec ?? undefined,
      };
      if (!info.videoCodec) throw new CameraUnavailableError({ reason: 'no_media', detail: 'the camera offers no video stream', at: new Date() });
      quickStart = p.parameterSets;
    }
    const source = await pullSource(o.pullUrl, { transport: o.rtspTransport });
    o.pullUrl = source.url;
    if (!cameraUrl) {
      info = await probe(o.pullUrl, { rtspTimeoutMs: o.rtspTimeoutMs, timeoutMs: o.rtspTimeoutMs * 2, ffprobePath: o.ffprobePath }).catch(async (err: Error) => {
        await source.close();
        throw new Error(`${o.label}: ${redact(err.message)}`);
      });
    }
    info = info!;
    if (!info.videoCodec) {
      await source.close();
      throw new Error(`${o.label}: no video stream`);
    }
    const appData = opts.appData ?? {};
    const transport = (): Promise<types.PlainTransport> =>
      // Not comedia: that locks onto the first sender's port, and a restarted ffmpeg sends from a new
      // one. ffmpeg sends to a joiner in this process, which forwards from one fixed socket (RTP and
      // RTCP muxed) that the transport is connected to.
      o.router.createPlainTransport({ listenInfo: { protocol: 'udp', ip: o.listenIp }, rtcpMux: true, comedia: false, appData });
    const vt = await transport();
    const videoJoin = await RtpRunJoiner.open(o.listenIp, 90_000);
    const created: { close(): void }[] = [vt, videoJoin];
    await vt.connect({ ip: o.listenIp, port: videoJoin.sourcePort });
    videoJoin.connect(o.listenIp, vt.tuple.localPort);
    try {
      const videoSsrc = randomSsrc();
      const produceH264 = (profileLevelId: string): Promise<types.Producer> =>
        vt.produce({
          kind: 'video',
          rtpParameters: {
            codecs: [{ mimeType: 'video/H264', payloadType: VIDEO_PT, clockRate: 90000, parameters: { 'packetization-mode': 1, 'profile-level-id': profileLevelId }, rtcpFeedback: [{ type: 'nack' }, { type: 'nack', parameter: 'pli' }, { type: 'ccm', parameter: 'fir' }] }],
            encodings: [{ ssrc: videoSsrc }],
          },
          appData,
        });
      let vp: types.Producer | undefined;
      let passthrough = false;
      // A film's H.264 sits in MP4 (length-prefixed, any profile): always transcoded.
      const idc = info.videoCodec === 'h264' && !o.film && !o.rendition ? PROFILE_IDC[info.videoProfile ?? ''] : undefined;
      if (idc) {
        const level = (info.videoLevel && info.videoLevel > 0 ? info.videoLevel : 31).toString(16).padStart(2, '0');
        // The router decides: a profile it does not list is refused, and we fall back to transcoding.
        vp = await produceH264(`${idc}${level}`).catch(() => undefined);
        passthrough = vp !== undefined;
      }
      vp ??= await produceH264('42e01f');
      created.push(vp);
      let at: types.PlainTransport | undefined;
      let audioJoin: RtpRunJoiner | undefined;
      let ap: types.Producer | undefined;
      if (info.audioCodec && !o.rendition) {
        at = await transport();
        created.push(at);
        audioJoin = await RtpRunJoiner.open(o.listenIp, 48_000);
        created.push(audioJoin);
        await at.connect({ ip: o.listenIp, port: audioJoin.sourcePort });
        audioJoin.connect(o.listenIp, at.tuple.localPort);
        ap = await at.produce({
          kind: 'audio',
          rtpParameters: { codecs: [{ mimeType: 'audio/opus', payloadType: AUDIO_PT, clockRate: 48000, channels: 2, parameters: { useinbandfec: 1 } }], encodings: [{ ssrc: randomSsrc() }] },
          appData,
        });
      }
      const ingest = new LiveCameraIngest(o, vt, vp, at, ap, passthrough);
      ingest.#source = source;
      ingest.#cameraUrl = cameraUrl;
      ingest.#quickStart = quickStart;
      ingest.#videoJoin = videoJoin;
      ingest.#audioJoin = audioJoin;
      ingest.#start(videoSsrc, ap?.rtpParameters.encodings?.[0]?.ssrc);
      return ingest;
    } catch (err) {
      for (const c of created.reverse()) c.close();
      await source.close();
      throw err;
    }
  }

  get closed(): boolean {
    return this.#closed;
  }

  get state(): LiveCameraState {
    return this.#state;
  }

  #setState(s: LiveCameraState): void {
    if (s.state === this.#state.state && s.state !== 'offline') return;
    this.#state = s;
    this.emit('state', s);
  }

  #start(videoSsrc: number, audioSsrc: number | undefined): void {
    if (this.#closed) return;
    const o = this.#o;
    const vj = this.#videoJoin!;
    vj.newRun();
    this.#audioJoin?.newRun();
    const cmd = ffmpeg(o.pullUrl)
      .setFfmpegPath(ffmpegCommandPath(o.ffmpegPath))
      .inputOptions(
        o.film
          ? ['-re', ...(o.film.loop ? ['-stream_loop', '-1'] : [])]
          : withRtspTransport(['-timeout', String(o.rtspTimeoutMs * 1000), '-fflags', '+genpts+nobuffer', '-flags', 'low_delay', ...(this.#quickStart ? ['-analyzeduration', '1000000'] : [])], 'tcp'),
      )
      .output(`rtp://${o.listenIp}:${vj.port}?rtcpport=${vj.rtcpPort}&pkt_size=1200`)
      .outputOptions(['-map', '0:v:0', '-an', '-ssrc', String(videoSsrc), '-payload_type', String(VIDEO_PT), '-f', 'rtp']);
    const lines: string[] = [];
    if (this.passthrough) cmd.outputOptions(['-c:v', 'copy', '-bsf:v', 'dump_extra=freq=keyframe']);
    else cmd.outputOptions(['-c:v', 'libx264', '-preset', 'ultrafast', '-tune', 'zerolatency', '-profile:v', 'baseline', '-pix_fmt', 'yuv420p', '-g', '30', '-bsf:v', 'dump_extra=freq=keyframe']);
    if (this.#audioJoin && audioSsrc !== undefined) {
      const aj = this.#audioJoin;
      cmd
        .output(`rtp://${o.listenIp}:${aj.port}?rtcpport=${aj.rtcpPort}&pkt_size=1200`)
        .outputOptions(['-map', '0:a:0', '-vn', '-c:a', 'libopus', '-ar', '48000', '-ac', '2', '-b:a', '32k', '-ssrc', String(audioSsrc), '-payload_type', String(AUDIO_PT), '-f', 'rtp']);
    }
    this.#cmd = cmd;
    const started = Date.now();
    let lastBytes = -1;
    let lastChange = Date.now();

    // The watchdog looks at what the producer actually receives, not at ffmpeg's own opinion.
    this.#watch = setInterval(() => {
      void this.videoProducer.getStats().then((stats) => {
        const bytes = stats.reduce((n, s) => n + s.byteCount, 0);
        if (bytes !== lastBytes) {
          if (lastBytes >= 0 && bytes > lastBytes) this.#setState({ state: 'live' });
          if (lastBytes >= 0 && bytes > lastBytes && Date.now() - started > 1000) this.#backoff = o.restartBackoffMinMs;
          lastBytes = bytes;
          lastChange = Date.now();
        } else if (Date.now() - lastChange > o.stallTimeoutMs) {
          o.log.warn('no RTP from ffmpeg; restarting it');
          lastChange = Date.now();
          cmd.kill('SIGKILL');
        }
      }, () => undefined);
    }, 500);
    const ended = (reason: string): void => {
      clearInterval(this.#watch);
      if (this.#cmd === cmd) this.#cmd = undefined;
      if (this.#closed) return;
      if (o.film && !o.film.loop && reason === FFMPEG_EXITED) {
        o.log.info('film finished');
        this.emit('finished');
        this.close();
        return;
      }
      const wait = this.#backoff;
      this.#backoff = Math.min(this.#backoff * 2, o.restartBackoffMaxMs);
      o.log.warn({ reason: redact(reason).slice(0, 300), restartInMs: wait }, 'live ingest ffmpeg ended');
      this.emit('interrupted', redact(reason), wait);
      void this.#afterRun([...lines, reason], wait).then(() => this.#start(videoSsrc, audioSsrc));
    };
    cmd.on('stderr', (line: string) => {
      if (/time=\s*-?[\d:.]+/.test(line)) return;
      lines.push(line);
      if (lines.length > 40) lines.shift();
    });
    cmd.on('start', (line: string) => {
      o.log.debug({ cmd: redact(line) }, 'live ingest ffmpeg started');
      if (this.#state.state !== 'offline') this.#setState({ state: 'connecting' });
      this.emit('running');
    });
    cmd.on('end', () => ended(FFMPEG_EXITED));
    cmd.on('error', (err: Error) => ended(err.message));
    cmd.run();
  }

  /**
   * After a run: says why the camera is down, then waits for it. The wait is the backoff, cut
   * short when the camera, seen down, answers a DESCRIBE again (probed every cameraProbeIntervalMs).
   */
  async #afterRun(lines: string[], wait: number): Promise<void> {
    const o = this.#o;
    if (!this.#cameraUrl) {
      await new Promise<void>((r) => (this.#timer = setTimeout(r, wait)));
      return;
    }
    let failure = classifyFfmpegOutput(lines);
    let down = false;
    if (!failure) {
      const p = await probeCamera(this.#cameraUrl, { timeoutMs: o.rtspTimeoutMs });
      failure = p.ok ? { reason: 'no_media', detail: redact(lines.at(-1) ?? 'ffmpeg ended').slice(0, 300), at: new Date() } : p.failure;
    }
    if (this.#closed) return;
    down = failure.reason !== 'no_media';
    this.#setState({ state: 'offline', failure });
    const until = Date.now() + wait;
    for (;;) {
      const left = until - Date.now();
      if (left <= 0 || this.#closed) return;
      await new Promise<void>((r) => (this.#timer = setTimeout(r, Math.min(left, o.cameraProbeIntervalMs))));
      if (this.#closed || Date.now() >= until) return;
      // The whole RTSP timeout, not a fraction of the interval: a server that prepares its media on DESCRIBE
      // (gst-rtsp-server, NVRs) may take over a second to answer on a busy host, and that is a camera that is back.
      const p = await probeCamera(this.#cameraUrl, { timeoutMs: o.rtspTimeoutMs });
      if (this.#closed) return;
      if (!p.ok) {
        down = true;
        if (p.failure.reason !== (this.#state.state === 'offline' ? this.#state.failure.reason : '')) this.#setState({ state: 'offline', failure: p.failure });
      } else if (down) {
        o.log.info('camera answers again; restarting live ingest now');
        return;
      }
    }
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    clearTimeout(this.#timer);
    clearInterval(this.#watch);
    this.#cmd?.kill('SIGKILL');
    this.#videoTransport.close();
    this.#audioTransport?.close();
    this.#videoJoin?.close();
    this.#audioJoin?.close();
    void this.#source?.close();
    this.emit('closed');
  }
}

function randomSsrc(): number {
  return 100_000_000 + Math.floor(Math.random() * 800_000_000);
}
