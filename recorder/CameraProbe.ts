import net from 'node:net';
import tls from 'node:tls';
import { reasonForRtspStatus, type CaptureFailure } from './CaptureFailure.ts';
import { authorizationHeader, parseChallenge } from './RtspAuth.ts';

export interface CameraProbeOptions {
  /** Whole probe, connect to answer. */
  timeoutMs?: number;
}

export interface CameraStreams {
  /** ffmpeg's codec names: 'h264', 'hevc', ...; null when the SDP offers no video. */
  videoCodec: string | null;
  /** H.264 profile-level-id (6 hex digits) from the SDP, when it says. */
  h264ProfileLevelId: string | null;
  audioCodec: string | null;
  /** The SDP carries the video's parameter sets (SPS/PPS, VPS): a decoder needs no in-band ones to start. */
  parameterSets: boolean;
}

export type CameraProbeResult = ({ ok: true; sdp: string } & CameraStreams) | { ok: false; failure: CaptureFailure };

interface Response {
  status: number;
  reason: string;
  headers: Array<[string, string]>;
  body: string;
}

const MAX_RESPONSE = 256 * 1024;

/**
 * One RTSP DESCRIBE (answering a Basic/Digest challenge once), the cheapest question that tells a
 * camera that is back from one still down, a wrong password from a wrong path: no ffmpeg, one TCP
 * connection, a few hundred bytes. Credentials stay in this process.
 */
export async function probeCamera(url: string, opts: CameraProbeOptions = {}): Promise<CameraProbeResult> {
  const timeoutMs = opts.timeoutMs ?? 3_000;
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return fail('not_found', 'not an RTSP URL');
  }
  if (!/^rtsps?:$/.test(u.protocol)) return fail('not_found', `not an RTSP URL (${u.protocol})`);
  const user = decodeURIComponent(u.username);
  const pass = decodeURIComponent(u.password);
  const port = Number(u.port || (u.protocol === 'rtsps:' ? 322 : 554));
  const uri = `${u.protocol}//${u.hostname.includes(':') ? `[${u.hostname}]` : u.hostname}:${port}${u.pathname}${u.search}`;
  const sock: net.Socket = u.protocol === 'rtsps:' ? tls.connect({ host: u.hostname, port, servername: u.hostname }) : net.connect({ host: u.hostname, port });
  const timer = setTimeout(() => sock.destroy(Object.assign(new Error('timed out'), { code: 'ETIMEDOUT' })), timeoutMs);
  try {
    const reader = responses(sock);
    const ask = async (cseq: number, auth: string | undefined): Promise<Response> => {
      const lines = [`DESCRIBE ${uri} RTSP/1.0`, `CSeq: ${cseq}`, 'Accept: application/sdp', 'User-Agent: grassroots-av probe'];
      if (auth) lines.push(`Authorization: ${auth}`);
      sock.write(`${lines.join('\r\n')}\r\n\r\n`);
      return reader.next();
    };
    let res = await ask(1, undefined);
    if (res.status === 401 && (user || pass)) {
      const challenge = parseChallenge(res.headers.filter(([k]) => k.toLowerCase() === 'www-authenticate').map(([, v]) => v));
      if (challenge) res = await ask(2, authorizationHeader(challenge, 'DESCRIBE', uri, user, pass, 1));
    }
    const reason = reasonForRtspStatus(res.status);
    if (reason) return fail(reason, `RTSP ${res.status} ${res.reason}`.trim());
    return { ok: true, sdp: res.body, ...streamsOf(res.body) };
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    return fail('unreachable', e.code ?? e.message.slice(0, 120));
  } finally {
    clearTimeout(timer);
    sock.destroy();
  }
}

function fail(reason: CaptureFailure['reason'], detail: string): CameraProbeResult {
  return { ok: false, failure: { reason, detail, at: new Date() } };
}

/** Reads RTSP responses off a socket one at a time. */
function responses(sock: net.Socket): { next(): Promise<Response> } {
  let buf = Buffer.alloc(0);
  let waiter: { resolve: (r: Response) => void; reject: (e: Error) => void } | undefined;
  let error: Error | undefined;
  const tryParse = (): void => {
    if (!waiter) return;
    const end = buf.indexOf('\r\n\r\n');
    if (end < 0) {
      if (buf.length > MAX_RESPONSE) fault(new Error('response too long'));
      return;
    }
    const lines = buf.subarray(0, end).toString('utf8').split('\r\n');
    const headers: Array<[string, string]> = [];
    for (const l of lines.slice(1)) {
      const i = l.indexOf(':');
      if (i > 0) headers.push([l.slice(0, i).trim(), l.slice(i + 1).trim()]);
    }
    const len = Number(headers.find(([k]) => k.toLowerCase() === 'content-length')?.[1] ?? '0');
    if (!Number.isInteger(len) || len < 0 || len > MAX_RESPONSE) return fault(new Error('bad Content-Length'));
    if (buf.length < end + 4 + len) return;
    const m = /^RTSP\/\d\.\d (\d{3}) ?(.*)$/.exec(lines[0] ?? '');
    if (!m) return fault(Object.assign(new Error('not an RTSP server'), { code: 'EPROTO' }));
    const body = buf.subarray(end + 4, end + 4 + len).toString('utf8');
    buf = buf.subarray(end + 4 + len);
    const w = waiter;
    waiter = undefined;
    w.resolve({ status: Number(m[1]), reason: m[2] ?? '', headers, body });
  };
  const fault = (e: Error): void => {
    error ??= e;
    const w = waiter;
    waiter = undefined;
    w?.reject(error);
  };
  sock.on('data', (d: Buffer) => {
    buf = Buffer.concat([buf, d]);
    tryParse();
  });
  sock.on('error', fault);
  sock.on('close', () => fault(Object.assign(new Error('connection closed'), { code: 'ECONNRESET' })));
  return {
    next: () =>
      new Promise<Response>((resolve, reject) => {
        if (error) return reject(error);
        waiter = { resolve, reject };
        tryParse();
      }),
  };
}

const CODEC: Record<string, string> = { h264: 'h264', h265: 'hevc', hevc: 'hevc', mp4v: 'mpeg4', jpeg: 'mjpeg', 'mpeg4-generic': 'aac', mp4a: 'aac', 'mp4a-latm': 'aac', pcma: 'pcm_alaw', pcmu: 'pcm_mulaw', opus: 'opus', g726: 'adpcm_g726', l16: 'pcm_s16be', mpa: 'mp3' };

const STATIC_AUDIO: Record<string, string> = { '0': 'pcm_mulaw', '8': 'pcm_alaw', '14': 'mp3' };

/** Codecs of the first video and audio media of an SDP. */
export function streamsOf(sdp: string): CameraStreams {
  let media: 'video' | 'audio' | null = null;
  let pts: string[] = [];
  const out: CameraStreams = { videoCodec: null, h264ProfileLevelId: null, audioCodec: null, parameterSets: false };
  const seen = { video: false, audio: false };
  for (const raw of sdp.split(/\r?\n/)) {
    const line = raw.trim();
    const m = /^m=(\w+) \d+(?:\/\d+)? \S+ (.*)$/.exec(line);
    if (m) {
      const kind = m[1] === 'video' || m[1] === 'audio' ? m[1] : null;
      media = kind && !seen[kind] ? kind : null; // only the first of each kind
      if (kind) seen[kind] = true;
      pts = (m[2] ?? '').split(' ');
      // Static payload types need no rtpmap.
      if (media === 'audio' && !out.audioCodec) out.audioCodec = STATIC_AUDIO[pts[0] ?? ''] ?? null;
      continue;
    }
    if (!media) continue;
    const rtpmap = /^a=rtpmap:(\d+) ([^/]+)/.exec(line);
    if (rtpmap && pts.includes(rtpmap[1]!)) {
      const codec = CODEC[rtpmap[2]!.toLowerCase()] ?? rtpmap[2]!.toLowerCase();
      if (media === 'video') out.videoCodec ??= codec;
      else out.audioCodec ??= codec;
    }
    if (media === 'video') {
      const plid = /profile-level-id=([0-9a-fA-F]{6})/.exec(line);
      if (plid) out.h264ProfileLevelId ??= plid[1]!.toLowerCase();
      if (/sprop-parameter-sets=|sprop-sps=/.test(line)) out.parameterSets = true;
      const sps = /sprop-parameter-sets=([A-Za-z0-9+/=]+)/.exec(line);
      if (sps && !out.h264ProfileLevelId) {
        const b = Buffer.from(sps[1]!, 'base64');
        if (b.length >= 4) out.h264ProfileLevelId = b.subarray(1, 4).toString('hex');
      }
    }
  }
  return out;
}
