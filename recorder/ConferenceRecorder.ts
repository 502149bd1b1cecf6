import dgram from 'node:dgram';
import fs from 'node:fs';
import path from 'node:path';
import { EventEmitter } from 'node:events';
import type { types } from 'mediasoup';
import { createLogger, type Logger } from '../infra/logger.ts';
import type { Recorder } from './Recorder.ts';
import { SegmentCapture } from './SegmentCapture.ts';

export interface ConferenceRecorderOptions {
  router: types.Router;
  recorder: Recorder;
  /** Room id (SFU room) and the unit that owns the meeting: access to the recording follows it. */
  roomId: string;
  unitId: number;
  /** One video producer (e.g. the chair or the active site) and optionally one audio producer. */
  videoProducerId: string;
  audioProducerId?: string;
  /**
   * Makes a producer consumable on `router` first and returns its release: a conference's producer
   * that lives on another SFU node is piped here through the cascade while it is recorded.
   */
  acquire?: (producerId: string) => Promise<() => void>;
  sessionId?: number | null;
  captureJobId?: number | null;
  evidence?: boolean;
  listenIp?: string;
  log?: Logger;
}

export interface ConferenceRecorderEvents {
  closed: [];
}

interface Leg {
  kind: 'audio' | 'video';
  transport: types.PlainTransport;
  consumer: types.Consumer;
  port: number;
}

/**
 * Records a meeting room: the chosen producers are consumed into PlainTransports that send RTP to
 * ports ffmpeg listens on, described to ffmpeg by a generated SDP. ffmpeg writes the same short MP4
 * segments as camera capture (H.264 by stream copy, VP8 transcoded to H.264, Opus to AAC), and the
 * segments follow the recorder's verify -> upload -> index path with the room as their source.
 * Keyframes are requested once per segment length so segments can be cut on time.
 */
export class ConferenceRecorder extends EventEmitter<ConferenceRecorderEvents> {
  readonly roomId: string;
  readonly capture: SegmentCapture;
  readonly #legs: Leg[];
  readonly #dir: string;
  readonly #releases: Array<() => void>;
  #kfTimer: NodeJS.Timeout | undefined;
  #closed = false;

  private constructor(roomId: string, capture: SegmentCapture, legs: Leg[], dir: string, releases: Array<() => void>) {
    super();
    this.roomId = roomId;
    this.capture = capture;
    this.#legs = legs;
    this.#dir = dir;
    this.#releases = releases;
  }

  static async create(opts: ConferenceRecorderOptions): Promise<ConferenceRecorder> {
    const ip = opts.listenIp ?? '127.0.0.1';
    const log = opts.log ?? createLogger('conference-recorder', { room: opts.roomId });
    const cfg = opts.recorder.config;
    const legs: Leg[] = [];
    const releases: Array<() => void> = [];
    const wanted: ['video' | 'audio', string][] = [['video', opts.videoProducerId]];
    if (opts.audioProducerId) wanted.push(['audio', opts.audioProducerId]);
    try {
      for (const [kind, producerId] of wanted) {
        if (opts.acquire) releases.push(await opts.acquire(producerId));
        const port = await reserveRtpPortPair(ip);
        const transport = await opts.router.createPlainTransport({ listenInfo: { protocol: 'udp', ip }, rtcpMux: false, comedia: false });
        await transport.connect({ ip, port, rtcpPort: port + 1 });
        const consumer = await transport.consume({ producerId, rtpCapabilities: opts.router.rtpCapabilities, paused: true });
        if (consumer.kind !== kind) throw new Error(`producer ${producerId} is ${consumer.kind}, expected ${kind}`);
        legs.push({ kind, transport, consumer, port });
      }
    } catch (err) {
      for (const l of legs) l.transport.close();
      for (const release of releases) release();
      throw err;
    }
    const dir = path.join(cfg.spoolDir, `room-${encodeURIComponent(opts.roomId)}`);
    fs.mkdirSync(dir, { recursive: true });
    const sdpFile = path.join(dir, 'input.sdp');
    fs.writeFileSync(sdpFile, sdpFor(ip, legs));
    const video = legs[0]!.consumer.rtpParameters.codecs[0]!;
    const videoArgs = /h264/i.test(video.mimeType)
      ? ['-c:v', 'copy']
      : // RTP input has no frame rate (ffmpeg guesses 90k fps and would duplicate frames to fill it):
        // keep the senders' timestamps (vfr). Keyframes on the segment clock, so segments can be cut.
        ['-fps_mode', 'vfr', '-c:v', 'libx264', '-preset', 'ultrafast', '-tune', 'zerolatency', '-pix_fmt', 'yuv420p',
          '-force_key_frames', `expr:gte(t,n_forced*${cfg.segmentSeconds})`, '-sc_threshold', '0'];
    const capture = new SegmentCapture({
      name: `room-${opts.roomId}`,
      dir,
      config: cfg,
      log,
      input: async () => ({
        url: sdpFile,
        label: `room ${opts.roomId}`,
        inputOptions: ['-protocol_whitelist', 'file,udp,rtp', '-use_wallclock_as_timestamps', '1', '-fflags', '+genpts+discardcorrupt', '-reorder_queue_size', '128'],
        audioCodec: legs.some((l) => l.kind === 'audio') ? 'opus' : null,
        videoArgs,
      }),
    });
    const rec = new ConferenceRecorder(opts.roomId, capture, legs, dir, releases);
    opts.recorder.attachCapture(capture, () => ({
      source: { kind: 'room', roomId: opts.roomId, unitId: opts.unitId },
      captureJobId: opts.captureJobId ?? null,
      sessionId: opts.sessionId ?? null,
      evidence: opts.evidence ?? false,
    }));
    for (const l of legs) await l.consumer.resume();
    capture.start();
    // ffmpeg needs a keyframe to start and the segmenter needs one to cut: ask for one per segment
    // length (mediasoup forwards at most one per second to the sender anyway).
    const askKeyframe = (): void => {
      for (const l of legs) if (l.kind === 'video' && !l.consumer.closed) void l.consumer.requestKeyFrame().catch(() => undefined);
    };
    let last = Date.now();
    askKeyframe();
    rec.#kfTimer = setInterval(() => {
      // Every second until ffmpeg has started, then once per segment length.
      if (capture.state === 'recording' && Date.now() - last < cfg.segmentSeconds * 1000 - 500) return;
      last = Date.now();
      askKeyframe();
    }, 1000);
    for (const l of legs) l.consumer.on('producerclose', () => void rec.stop());
    return rec;
  }

  /** Stops recording: ffmpeg finishes the last segment, which still goes through the spool. */
  async stop(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#kfTimer);
    await this.capture.stop();
    for (const l of this.#legs) l.transport.close();
    for (const release of this.#releases) release();
    fs.rmSync(path.join(this.#dir, 'input.sdp'), { force: true });
    this.emit('closed');
  }
}

function sdpFor(ip: string, legs: Leg[]): string {
  const lines = ['v=0', `o=- 0 0 IN IP4 ${ip}`, 's=conference recording', `c=IN IP4 ${ip}`, 't=0 0'];
  for (const l of legs) {
    const c = l.consumer.rtpParameters.codecs[0]!;
    const [, name = ''] = c.mimeType.split('/');
    lines.push(`m=${l.kind} ${l.port} RTP/AVP ${c.payloadType}`);
    lines.push(`a=rtpmap:${c.payloadType} ${name}/${c.clockRate}${c.channels && c.channels > 1 ? `/${c.channels}` : ''}`);
    const fmtp = Object.entries(c.parameters ?? {}).map(([k, v]) => `${k}=${String(v)}`).join(';');
    if (fmtp) lines.push(`a=fmtp:${c.payloadType} ${fmtp}`);
    lines.push('a=recvonly');
  }
  return `${lines.join('\r\n')}\r\n`;
}

/** An even UDP port with the next one free too (RTP + RTCP) for ffmpeg to listen on. */
async function reserveRtpPortPair(ip: string): Promise<number> {
  const bind = (port: number): Promise<dgram.Socket | undefined> =>
    new Promise((resolve) => {
      const s = dgram.createSocket('udp4');
      s.once('error', () => {
        s.close();
        resolve(undefined);
      });
      s.bind(port, ip, () => resolve(s));
    });
  for (let i = 0; i < 50; i++) {
    const a = await bind(0);
    if (!a) continue;
    const port = a.address().port;
    if (port % 2 !== 0 || port > 65000) {
      a.close();
      continue;
    }
    const b = await bind(port + 1);
    a.close();
    if (b) {
      b.close();
      return port;
    }
  }
  throw new Error('no free UDP port pair for the recording');
}
