import http from 'node:http';
import net from 'node:net';
import onvif from 'onvif';
import type { Cam as OnvifCam } from 'onvif';
import { authorizationHeader, parseChallenge } from './RtspAuth.ts';
import type { LookupFunction } from '../infra/net/CameraNetworks.ts';

// Talks to one camera's ONVIF services (Profile S, Media service ver10) through the `onvif` library:
// device information, media profiles with their encoder settings, the RTSP stream URI and the snapshot
// URI of each profile. Main = the profile with the most pixels, sub = the one with the fewest.
//
// What the camera answers is not trusted:
// - every service call goes to the host and port we were given (`preserveAddress`), whatever XAddr
//   the device names, and so do the credentials (WS-Security PasswordDigest, or HTTP Digest when the
//   camera asks for it: the password itself never crosses the wire);
// - stream and snapshot URIs lose any user:password@, and a URI naming another host (a camera behind
//   NAT answers its LAN address) is pointed at the host we reached: the camera's stored credentials
//   are later sent only there;
// - each answer is bounded in bytes and each request in time, and the whole discovery has a deadline.
// Credentials are never logged and never part of what this returns.

export type OnvifFailureReason = 'auth' | 'unreachable' | 'not_onvif';

export const ONVIF_FAILURE_TEXT: Record<OnvifFailureReason, string> = {
  auth: 'ONVIF 用户名或密码错误（摄像机拒绝授权） / wrong ONVIF username or password (the camera refused: NotAuthorized)',
  unreachable: '无法连接摄像机的 ONVIF 服务（地址或端口不通、无应答） / cannot reach the camera\'s ONVIF service (address or port unreachable, or no answer)',
  not_onvif: '该地址端口不是 ONVIF 服务（回答不是 ONVIF SOAP） / this address and port is not an ONVIF service (the answer is not ONVIF SOAP)',
};

export class OnvifError extends Error {
  constructor(
    readonly reason: OnvifFailureReason,
    /** What went wrong, without credentials (the library's words, shortened). */
    readonly detail: string,
  ) {
    super(`${ONVIF_FAILURE_TEXT[reason]}: ${detail}`);
    this.name = 'OnvifError';
  }
}

export interface OnvifTarget {
  host: string;
  /** The device service's HTTP port (80 on most cameras). */
  port: number;
  username: string | null;
  password: string | null;
  /** Deadline for the whole discovery; default 15 s. */
  timeoutMs?: number;
  /** Deadline per request; default 5 s. */
  requestTimeoutMs?: number;
  /** Resolves the host for every connection (CameraNetworks.lookup: a name outside CAMERA_NETWORKS fails). */
  lookup?: LookupFunction;
}

export interface OnvifDeviceInfo {
  manufacturer: string | null;
  model: string | null;
  firmware_version: string | null;
  serial_number: string | null;
  hardware_id: string | null;
}

export interface OnvifProfile {
  token: string;
  name: string;
  /** Video encoding as the camera names it (H264, H265, JPEG, MPEG4). */
  encoding: string | null;
  /** H.264 profile (Baseline, Main, High) when the camera says. */
  h264_profile: string | null;
  width: number | null;
  height: number | null;
  fps: number | null;
  bitrate_kbps: number | null;
  /** RTSP URI without credentials (null: the camera gave none, or one that could not be used). */
  stream_uri: string | null;
  snapshot_uri: string | null;
}

export interface OnvifDiscovery {
  device: OnvifDeviceInfo;
  profiles: OnvifProfile[];
  /** Token of the highest-resolution profile with a stream URI. */
  main: string | null;
  /** Token of the lowest-resolution one (null with a single profile). */
  sub: string | null;
  main_stream_uri: string | null;
  sub_stream_uri: string | null;
  snapshot_uri: string | null;
  /** Some URI named another host and was pointed at the camera's address (NAT). */
  address_rewritten: boolean;
}

/** Bytes one ONVIF answer may have (a GetProfiles of a 16-channel NVR is ~200 KB). */
const MAX_ANSWER_BYTES = 2 * 1024 * 1024;
const MAX_SNAPSHOT_BYTES = 4 * 1024 * 1024;
const MAX_PROFILES = 32;

const UNREACHABLE_CODES = new Set(['ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN', 'ETIMEDOUT', 'ECONNRESET', 'EPIPE', 'EADDRNOTAVAIL']);

/** Sorts a library error into auth / unreachable / not_onvif from its code, its words and the answer. */
export function classifyOnvifError(err: unknown, xml?: string | null): OnvifError {
  if (err instanceof OnvifError) return err;
  const e = err as (Error & { code?: string }) | undefined;
  const message = String(e?.message ?? err ?? 'error');
  const answer = typeof xml === 'string' ? xml.slice(0, 4000) : '';
  const detail = message.replace(/\s+/g, ' ').slice(0, 200);
  if (/NotAuthori[sz]ed|not authori[sz]ed|unauthori[sz]ed|Digest authentication failed|\b401\b/i.test(`${message} ${answer}`)) return new OnvifError('auth', detail);
  if ((e?.code && UNREACHABLE_CODES.has(e.code)) || /Network timeout|socket hang up|timed out/i.test(message)) return new OnvifError('unreachable', detail);
  return new OnvifError('not_onvif', detail);
}

/** A URL's host as http.request wants it (no IPv6 brackets), lower case. */
function bareHost(host: string): string {
  return host.replace(/^\[|\]$/g, '').toLowerCase();
}

/**
 * A camera-given URI made safe to store and show: no userinfo, only the allowed schemes, the host
 * we reach the camera at. Returns null for anything unusable.
 */
export function cameraUri(raw: unknown, host: string, schemes: readonly string[]): { uri: string; rewritten: boolean } | null {
  if (typeof raw !== 'string' || raw.length === 0 || raw.length > 1000) return null;
  let u: URL;
  try {
    u = new URL(raw.trim());
  } catch {
    return null;
  }
  if (!schemes.includes(u.protocol)) return null;
  u.username = '';
  u.password = '';
  u.hash = '';
  const rewritten = bareHost(u.hostname) !== bareHost(host);
  if (rewritten) u.hostname = net.isIPv6(bareHost(host)) ? `[${bareHost(host)}]` : host;
  return { uri: u.toString(), rewritten };
}

/** Text of a linerased ONVIF value ('' and objects become null; numbers kept as the camera wrote them). */
function text(v: unknown): string | null {
  if (typeof v === 'string') return v.length ? v.slice(0, 200) : null;
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  return null;
}

function num(v: unknown): number | null {
  const n = typeof v === 'number' ? v : typeof v === 'string' ? Number(v) : NaN;
  return Number.isFinite(n) && n >= 0 && n < 1e7 ? n : null;
}

function obj(v: unknown): Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : {};
}

/** An http.Agent whose sockets are cut once an answer passes `limit` bytes. */
function boundedAgent(limit: number, lookup: LookupFunction | undefined): http.Agent {
  const agent = new http.Agent({ keepAlive: false, maxSockets: 2 });
  const create = agent.createConnection.bind(agent);
  agent.createConnection = ((options: net.NetConnectOpts, cb?: Parameters<typeof create>[1]) => {
    const socket = create(lookup ? { ...options, lookup } : options, cb) as net.Socket;
    let received = 0;
    socket.on('data', (d: Buffer) => {
      received += d.length;
      if (received > limit) socket.destroy(Object.assign(new Error(`answer larger than ${limit} bytes`), { code: 'ETOOBIG' }));
    });
    return socket;
  }) as typeof agent.createConnection;
  return agent;
}

export class OnvifCamera {
  readonly #t: Required<Omit<OnvifTarget, 'username' | 'password' | 'lookup'>> & Pick<OnvifTarget, 'username' | 'password' | 'lookup'>;

  constructor(target: OnvifTarget) {
    this.#t = { timeoutMs: 15_000, requestTimeoutMs: 5_000, ...target, host: bareHost(target.host) };
  }

  /** Device information, profiles and URIs; rejects with an OnvifError (auth / unreachable / not_onvif). */
  async discover(): Promise<OnvifDiscovery> {
    const agent = boundedAgent(MAX_ANSWER_BYTES, this.#t.lookup);
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new OnvifError('unreachable', `no complete ONVIF answer within ${this.#t.timeoutMs} ms`)), this.#t.timeoutMs);
    });
    try {
      return await Promise.race([this.#discover(agent), deadline]);
    } finally {
      clearTimeout(timer);
      agent.destroy();
    }
  }

  async #discover(agent: http.Agent): Promise<OnvifDiscovery> {
    const t = this.#t;
    const cam: OnvifCam = new onvif.Cam({
      hostname: t.host,
      port: t.port,
      ...(t.username ? { username: t.username, password: t.password ?? '' } : {}),
      timeout: t.requestTimeoutMs,
      autoconnect: false,
      preserveAddress: true,
      agent,
    });
    // The library's own words go nowhere else: it is told nothing to print.
    cam.on('warning', () => undefined);
    const call = <T>(what: string, fn: (cb: (err: Error | null, data?: T, xml?: string) => void) => void): Promise<T | undefined> =>
      new Promise<T | undefined>((resolve, reject) => {
        let settled = false;
        try {
          fn((err, data, xml) => {
            if (settled) return;
            settled = true;
            if (err) reject(classifyOnvifError(Object.assign(err, { message: `${what}: ${err.message}` }), xml));
            else resolve(data);
          });
        } catch (err) {
          if (!settled) {
            settled = true;
            reject(classifyOnvifError(err));
          }
        }
      });

    // Core spec: the device's clock first (UsernameToken's Created is in the device's time).
    await call<Date>('GetSystemDateAndTime', (cb) => cam.getSystemDateAndTime(cb));
    // Service addresses: GetServices, or GetCapabilities on devices older than it.
    try {
      await call('GetServices', (cb) => cam.getServices(true, cb));
    } catch (err) {
      if (!(err instanceof OnvifError) || err.reason !== 'not_onvif') throw err;
      await call('GetCapabilities', (cb) => cam.getCapabilities(cb));
    }
    const uri = (cam as unknown as { uri?: Record<string, unknown> }).uri;
    if (!uri?.media) throw new OnvifError('not_onvif', 'the device names no media service (not Profile S)');
    // Profile S: Media service ver10, whatever else the device offers (its answers have one shape).
    (cam as unknown as { media2Support: boolean }).media2Support = false;

    const info = obj(await call<unknown>('GetDeviceInformation', (cb) => cam.getDeviceInformation(cb as never)));
    const device: OnvifDeviceInfo = {
      manufacturer: text(info.manufacturer),
      model: text(info.model),
      firmware_version: text(info.firmwareVersion),
      serial_number: text(info.serialNumber),
      hardware_id: text(info.hardwareId),
    };
    const raw = await call<unknown>('GetProfiles', (cb) => cam.getProfiles(cb as never));
    const list = (Array.isArray(raw) ? raw : raw ? [raw] : []).slice(0, MAX_PROFILES).map(obj);
    const profiles: OnvifProfile[] = [];
    let rewritten = false;
    for (const p of list) {
      const token = text(obj(p.$).token);
      if (!token) continue;
      const enc = obj(p.videoEncoderConfiguration);
      const res = obj(enc.resolution);
      const rate = obj(enc.rateControl);
      const stream = await call<unknown>(`GetStreamUri ${token}`, (cb) => cam.getStreamUri({ protocol: 'RTSP', stream: 'RTP-Unicast', profileToken: token }, cb as never)).catch(
        (err: OnvifError) => {
          // A profile without a stream (audio-only, metadata) is listed without one; a refusal stops everything.
          if (err.reason !== 'not_onvif') throw err;
          return undefined;
        },
      );
      const snap = await call<unknown>(`GetSnapshotUri ${token}`, (cb) => cam.getSnapshotUri({ profileToken: token }, cb as never)).catch((err: OnvifError) => {
        if (err.reason !== 'not_onvif') throw err;
        return undefined;
      });
      const s = cameraUri(obj(stream).uri, t.host, ['rtsp:', 'rtsps:']);
      const j = cameraUri(obj(snap).uri, t.host, ['http:', 'https:']);
      rewritten ||= Boolean(s?.rewritten || j?.rewritten);
      profiles.push({
        token,
        name: text(p.name) ?? token,
        encoding: text(enc.encoding),
        h264_profile: text(obj(enc.H264).H264Profile),
        width: num(res.width),
        height: num(res.height),
        fps: num(rate.frameRateLimit),
        bitrate_kbps: num(rate.bitrateLimit),
        stream_uri: s?.uri ?? null,
        snapshot_uri: j?.uri ?? null,
      });
    }
    if (profiles.length === 0) throw new OnvifError('not_onvif', 'the device lists no media profile');
    const pixels = (p: OnvifProfile): number => (p.width ?? 0) * (p.height ?? 0);
    const streams = profiles.filter((p) => p.stream_uri);
    // Stable: among equals the camera's own order decides (its first profile is its main stream).
    const byPixels = [...streams].sort((a, b) => pixels(b) - pixels(a));
    const main = byPixels[0] ?? null;
    const sub = byPixels.length > 1 ? byPixels[byPixels.length - 1]! : null;
    const snapshot = main?.snapshot_uri ?? profiles.find((p) => p.snapshot_uri)?.snapshot_uri ?? null;
    return {
      device,
      profiles,
      main: main?.token ?? null,
      sub: sub?.token ?? null,
      main_stream_uri: main?.stream_uri ?? null,
      sub_stream_uri: sub?.stream_uri ?? null,
      snapshot_uri: snapshot,
      address_rewritten: rewritten,
    };
  }

  /**
   * One JPEG from a snapshot URI of this camera (as discovered: its host is the camera's), answering
   * HTTP Digest or Basic with the camera's credentials; bounded in size and time.
   */
  async snapshot(uri: string): Promise<Buffer> {
    const t = this.#t;
    const target = cameraUri(uri, t.host, ['http:']);
    if (!target || target.rewritten) throw new OnvifError('not_onvif', 'the snapshot address is not this camera\'s');
    const url = new URL(target.uri);
    const path = `${url.pathname}${url.search}`;
    const get = (authorization?: string): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: Buffer }> =>
      new Promise((resolve, reject) => {
        const req = http.request(
          { host: bareHost(url.hostname), port: Number(url.port || 80), path, method: 'GET', timeout: t.requestTimeoutMs, headers: authorization ? { authorization } : {}, ...(t.lookup ? { lookup: t.lookup } : {}) },
          (res) => {
            const chunks: Buffer[] = [];
            let n = 0;
            res.on('data', (d: Buffer) => {
              n += d.length;
              if (n > MAX_SNAPSHOT_BYTES) req.destroy(new Error('snapshot larger than 4 MiB'));
              else chunks.push(d);
            });
            res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
            res.on('error', reject);
          },
        );
        req.on('timeout', () => req.destroy(Object.assign(new Error('Network timeout'), { code: 'ETIMEDOUT' })));
        req.on('error', reject);
        req.end();
      });
    let res;
    try {
      res = await get();
      if (res.status === 401 && t.username) {
        const challenge = parseChallenge(([] as string[]).concat(res.headers['www-authenticate'] ?? []));
        if (challenge) res = await get(authorizationHeader(challenge, 'GET', path, t.username, t.password ?? '', 1));
      }
    } catch (err) {
      throw classifyOnvifError(err);
    }
    if (res.status === 401 || res.status === 403) throw new OnvifError('auth', `snapshot: HTTP ${res.status}`);
    if (res.status !== 200 || res.body[0] !== 0xff || res.body[1] !== 0xd8) throw new OnvifError('not_onvif', `snapshot: HTTP ${res.status}, not a JPEG`);
    return res.body;
  }
}

