import { EventEmitter } from 'node:events';
import ffmpeg from 'fluent-ffmpeg';
import type { types } from 'mediasoup';
import { createLogger, type Logger } from '../infra/logger.ts';
import { probe } from './probe.ts';
import { ffmpegCommandPath, redact } from './SegmentCapture.ts';
import { pullSource, type PullSource } from './RtspAuthRelay.ts';

export interface LiveCameraIngestOptions {
  router: types.Router;
  /** RTSP URL including credentials (never logged), or a film's file path when `film` is set. */
  pullUrl: string;
  /** A film file played in real time (a meeting's broadcast) instead of a camera: transcoded, ended when it ends unless looped. */
  film?: { loop: boolean };
  /** Safe to log, e.g. "camera 12". */
  label: string;
  listenIp?: string;
  rtspTimeoutMs?: number;
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
  closed: [];
}

type ResolvedOptions = Required<Omit<LiveCameraIngestOptions, 'appData' | 'log' | 'film'>> & { log: Logger; film: LiveCameraIngestOptions['film'] };

const VIDEO_PT = 102;
const FFMPEG_EXITED = 'ffmpeg exited';
const AUDIO_PT = 111;

const PROFILE_IDC: Record<string, string> = {
  'Constrained Baseline': '42e0',
  Baseline: '4200',
  Main: '4d00',
  High: '6400',
};

/**
 * Brings an RTSP camera into a mediasoup router as producers, so browsers watch it like any
 * participant: ffmpeg pulls RTSP over TCP and pushes RTP into comedia PlainTransports. H.264 whose
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
  /** The loopback relay ffmpeg pulls through, so the camera's password is never in its argv. */
  #source: PullSource | undefined;
  #backoff: number;
  #timer: NodeJS.Timeout | undefined;
  #watch: NodeJS.Timeout | undefined;

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
      restartBackoffMinMs: 1_000,
      restartBackoffMaxMs: 30_000,
      stallTimeoutMs: 10_000,
      ffmpegPath: 'ffmpeg',
      ffprobePath: 'ffprobe',
      ...opts,
      film: opts.film,
      log: opts.log ?? createLogger('live-ingest', { camera: opts.label }),
    };
    const source = await pullSource(o.pullUrl);
    o.pullUrl = source.url;
    const info = await probe(o.pullUrl, { rtspTimeoutMs: o.rtspTimeoutMs, timeoutMs: o.rtspTimeoutMs * 2, ffprobePath: o.ffprobePath }).catch(async (err: Error) => {
      await source.close();
      throw new Error(`${o.label}: ${redact(err.message)}`);
    });
    if (!info.videoCodec) {
      await source.close();
      throw new Error(`${o.label}: no video stream`);
    }
    const appData = opts.appData ?? {};
    const transport = (): Promise<types.PlainTransport> =>
      // RTCP on its own port: ffmpeg sends RTP and RTCP from different local ports, and with a muxed
      // comedia transport whichever came first would win the tuple and the other would be dropped.
      o.router.createPlainTransport({ listenInfo: { protocol: 'udp', ip: o.listenIp }, rtcpMux: false, comedia: true, appData });
    const vt = await transport();
    const created: { close(): void }[] = [vt];
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
      const idc = info.videoCodec === 'h264' && !o.film ? PROFILE_IDC[info.videoProfile ?? ''] : undefined;
      if (idc) {
        const level = (info.videoLevel && info.videoLevel > 0 ? info.videoLevel : 31).toString(16).padStart(2, '0');
        // The router decides: a profile it does not list is refused, and we fall back to transcoding.
        vp = await produceH264(`${idc}${level}`).catch(() => undefined);
        passthrough = vp !== undefined;
      }
      vp ??= await produceH264('42e01f');
      created.push(vp);
      let at: types.PlainTransport | undefined;
      let ap: types.Producer | undefined;
      if (info.audioCodec) {
        at = await transport();
        created.push(at);
        ap = await at.produce({
          kind: 'audio',
          rtpParameters: { codecs: [{ mimeType: 'audio/opus', payloadType: AUDIO_PT, clockRate: 48000, channels: 2, parameters: { useinbandfec: 1 } }], encodings: [{ ssrc: randomSsrc() }] },
          appData,
        });
      }
      const ingest = new LiveCameraIngest(o, vt, vp, at, ap, passthrough);
      ingest.#source = source;
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

  #start(videoSsrc: number, audioSsrc: number | undefined): void {
    if (this.#closed) return;
    const o = this.#o;
    const v = this.#videoTransport.tuple.localPort;
    const vr = this.#videoTransport.rtcpTuple?.localPort ?? v;
    const cmd = ffmpeg(o.pullUrl)
      .setFfmpegPath(ffmpegCommandPath(o.ffmpegPath))
      .inputOptions(
        o.film
          ? ['-re', ...(o.film.loop ? ['-stream_loop', '-1'] : [])]
          : ['-rtsp_transport', 'tcp', '-timeout', String(o.rtspTimeoutMs * 1000), '-fflags', '+genpts+nobuffer', '-flags', 'low_delay'],
      )
      .output(`rtp://${o.listenIp}:${v}?rtcpport=${vr}&pkt_size=1200`)
      .outputOptions(['-map', '0:v:0', '-an', '-ssrc', String(videoSsrc), '-payload_type', String(VIDEO_PT), '-f', 'rtp']);
    if (this.passthrough) cmd.outputOptions(['-c:v', 'copy', '-bsf:v', 'dump_extra=freq=keyframe']);
    else cmd.outputOptions(['-c:v', 'libx264', '-preset', 'ultrafast', '-tune', 'zerolatency', '-profile:v', 'baseline', '-pix_fmt', 'yuv420p', '-g', '30', '-bsf:v', 'dump_extra=freq=keyframe']);
    if (this.#audioTransport && audioSsrc !== undefined) {
      const a = this.#audioTransport.tuple.localPort;
      const ar = this.#audioTransport.rtcpTuple?.localPort ?? a;
      cmd
        .output(`rtp://${o.listenIp}:${a}?rtcpport=${ar}&pkt_size=1200`)
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
          if (lastBytes >= 0 && bytes > lastBytes && Date.now() - started > 1000) this.#backoff = o.restartBackoffMinMs;
          lastBytes = bytes;
          lastChange = Date.now();
        } else if (Date.now() - lastChange > o.stallTimeoutMs) {
          o.log.warn('no RTP from ffmpeg; restarting it');
          lastChange = Date.now();
          cmd.kill('SIGKILL');
        }
      }, () => undefined);
    }, 1_000);
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
      this.#timer = setTimeout(() => this.#start(videoSsrc, audioSsrc), wait);
    };
    cmd.on('start', (line: string) => {
      o.log.debug({ cmd: redact(line) }, 'live ingest ffmpeg started');
      this.emit('running');
    });
    cmd.on('end', () => ended(FFMPEG_EXITED));
    cmd.on('error', (err: Error) => ended(err.message));
    cmd.run();
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    clearTimeout(this.#timer);
    clearInterval(this.#watch);
    this.#cmd?.kill('SIGKILL');
    this.#videoTransport.close();
    this.#audioTransport?.close();
    void this.#source?.close();
    this.emit('closed');
  }
}

function randomSsrc(): number {
  return 100_000_000 + Math.floor(Math.random() * 800_000_000);
}
