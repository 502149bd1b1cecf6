import dgram from 'node:dgram';
import net from 'node:net';
import tls from 'node:tls';
import crypto from 'node:crypto';
import type { Logger } from '../infra/logger.ts';
import { authorizationHeader, parseChallenge, type Challenge } from './RtspAuth.ts';
import { headerOf, RtspStreamError, RtspStreamReader, type RtspMessage } from './RtspStream.ts';
import { cameraNetworkError, type CameraNetworks } from '../infra/net/CameraNetworks.ts';

// The one RTSP session the restreamer (RtspRestreamer) holds with a camera: DESCRIBE, SETUP of its
// audio and video over TCP-interleaved or UDP (the camera's setting; 'auto' = TCP, then UDP after a
// 461), PLAY, keepalive at half the camera's session timeout, and every RTP/RTCP packet handed to
// the attached subscribers. It ends when the camera goes (connection lost, no media for a while) or
// when the restreamer no longer needs it; it never reconnects itself (the next DESCRIBE opens a new one).

export type RtspTransport = 'tcp' | 'udp' | 'auto';

/** What a downstream client is answered when the camera refused or could not be reached. */
export class UpstreamError extends Error {
  readonly status: number;
  readonly reason: string;
  constructor(status: number, reason: string) {
    super(`${status} ${reason}`);
    this.status = status;
    this.reason = reason;
  }
}

export interface UpstreamTrack {
  kind: 'video' | 'audio';
  /** The media section as the camera described it, without its control line. */
  sdp: string;
  clockRate: number;
  /** Last RTP packet seen (for RTP-Info to late joiners). */
  lastSeq: number | undefined;
  lastTs: number | undefined;
  lastAt: number;
}

/** A downstream client fed by the upstream: per track the interleaved RTP channel it asked for (-1: not set up). */
export interface Subscriber {
  readonly socket: net.Socket;
  channels: Int16Array;
  /** Called when the subscriber is dropped for falling behind. */
  dropped(reason: string): void;
}

export interface RtspUpstreamOptions {
  /** The camera's URL, credentials included (never logged). */
  url: URL;
  transport: RtspTransport;
  /** Bound on each request to the camera (connect included). */
  requestTimeoutMs: number;
  /** No RTP from the camera for this long while playing = it is gone. */
  mediaTimeoutMs: number;
  /** A subscriber whose socket holds more unsent bytes than this is dropped. */
  maxClientBacklogBytes: number;
  /** The transport 'auto' tries first (what worked last time for this camera). */
  autoFirst?: 'tcp' | 'udp';
  /** Where the camera may be (CAMERA_NETWORKS): an address outside is never connected to. */
  networks?: CameraNetworks;
  log: Logger;
}

const LIMITS = { maxHeaderBytes: 64 * 1024, maxBodyBytes: 256 * 1024 };
const STATIC_CLOCK: Record<string, number> = { '0': 8000, '8': 8000, '14': 90000, '26': 90000, '32': 90000, '33': 90000 };

interface Pending {
  resolve: (m: RtspMessage) => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout;
}

export class RtspUpstream {
  /** Safe to log: host, port, path. */
  readonly label: string;
  /** Resolves with the tracks once the camera has described its media (rejects with UpstreamError). */
  readonly described: Promise<UpstreamTrack[]>;
  /** Resolves once the camera plays (rejects with UpstreamError). */
  readonly ready: Promise<void>;
  /** The session-level part of the camera's SDP (control lines removed). */
  sessionSdp = '';
  tracks: UpstreamTrack[] = [];
  /** The lower transport actually in use, once set up. */
  lowerTransport: 'tcp' | 'udp' | undefined;
  /** Packets forwarded from the camera (RTP and RTCP). */
  packets = 0;
  readonly #o: RtspUpstreamOptions;
  readonly #uri: string;
  readonly #user: string;
  readonly #pass: string;
  readonly #sock: net.Socket;
  readonly #subs = new Set<Subscriber>();
  readonly #pending = new Map<string, Pending>();
  /** Upstream interleaved channel -> track * 2 + (1 for RTCP); 255 = unknown. */
  readonly #channelMap = new Uint8Array(256).fill(255);
  readonly #udp: dgram.Socket[] = [];
  #cseq = 0;
  #challenge: Challenge | undefined;
  #nc = 0;
  #session: string | undefined;
  /** The camera's Session header as first given (its timeout sets the keepalive). */
  #sessionHeader: string | undefined;
  /** UDP only: each sends an empty receiver report to the camera's RTCP port. */
  readonly #rtcpSenders: Array<() => void> = [];
  #keepaliveMethod = 'OPTIONS';
  #keepalive: NodeJS.Timeout | undefined;
  #mediaWatch: NodeJS.Timeout | undefined;
  #rtcpTimer: NodeJS.Timeout | undefined;
  #lastMediaAt = 0;
  #corked = false;
  #closed = false;
  #onClose: Array<(why: string) => void> = [];
  #resolveDescribed!: (t: UpstreamTrack[]) => void;
  #rejectDescribed!: (e: Error) => void;
  #resolveReady!: () => void;
  #rejectReady!: (e: Error) => void;
  #connectError: UpstreamError | undefined;

  constructor(o: RtspUpstreamOptions) {
    this.#o = o;
    const u = o.url;
    const port = Number(u.port || (u.protocol === 'rtsps:' ? 322 : 554));
    const host = u.hostname.includes(':') && !u.hostname.startsWith('[') ? `[${u.hostname}]` : u.hostname;
    this.#uri = `${u.protocol}//${host}:${port}${u.pathname}${u.search}`;
    this.label = `${host}:${port}${u.pathname}`;
    this.#user = decodeURIComponent(u.username);
    this.#pass = decodeURIComponent(u.password);
    this.described = new Promise((resolve, reject) => {
      this.#resolveDescribed = resolve;
      this.#rejectDescribed = reject;
    });
    this.ready = new Promise((resolve, reject) => {
      this.#resolveReady = resolve;
      this.#rejectReady = reject;
    });
    // Waiters attach later; a failure nobody waited for is not an unhandled rejection.
    this.described.catch(() => undefined);
    this.ready.catch(() => undefined);
    const bare = u.hostname.replace(/^\[|\]$/g, '');
    const refused = o.networks?.literalRefusal(bare);
    // A name is resolved through the list's lookup: the socket connects to the address it checked.
    const lookup = o.networks ? { lookup: o.networks.lookup } : {};
    this.#sock = refused
      ? new net.Socket()
      : u.protocol === 'rtsps:'
        ? tls.connect({ host: bare, port, servername: net.isIP(bare) ? undefined : bare, ...lookup })
        : net.connect({ host: bare, port, ...lookup });
    if (refused) process.nextTick(() => this.#sock.destroy(cameraNetworkError(bare, o.networks!.text)));
    this.#sock.setNoDelay(true);
    const reader = new RtspStreamReader(LIMITS, (ch, frame) => this.#onFrame(ch, frame), (m) => this.#onResponse(m));
    this.#sock.on('data', (d: Buffer) => {
      // The packets of one chunk leave to each reader in one writev, not one syscall per packet.
      for (const s of this.#subs) s.socket.cork();
      try {
        reader.push(d);
      } catch (err) {
        this.close(err instanceof RtspStreamError ? `camera sent bad RTSP: ${err.message}` : (err as Error).message);
      } finally {
        for (const s of this.#subs) s.socket.uncork();
      }
    });
    this.#sock.on('error', (err: NodeJS.ErrnoException) => {
      this.#connectError ??= err.code === 'ECAMERANET' ? new UpstreamError(403, 'Camera Address Not Allowed') : new UpstreamError(503, `Camera Unreachable (${err.code ?? 'EIO'})`);
      this.close(`camera connection: ${err.code ?? err.message}`);
    });
    this.#sock.on('close', () => this.close('camera closed the connection'));
    void this.#open();
  }

  get closed(): boolean {
    return this.#closed;
  }

  get subscribers(): number {
    return this.#subs.size;
  }

  /** Called once when the upstream ends (with why). */
  onClose(cb: (why: string) => void): void {
    if (this.#closed) cb('closed');
    else this.#onClose.push(cb);
  }

  /** RTP-Info for a late joiner: where each track's stream will continue. */
  rtpInfo(trackUrl: (i: number) => string): string | undefined {
    const now = Date.now();
    const parts: string[] = [];
    this.tracks.forEach((t, i) => {
      if (t.lastSeq === undefined || t.lastTs === undefined) return;
      const ts = (t.lastTs + Math.round(((now - t.lastAt) * t.clockRate) / 1000)) >>> 0;
      parts.push(`url=${trackUrl(i)};seq=${(t.lastSeq + 1) & 0xffff};rtptime=${ts}`);
    });
    return parts.length ? parts.join(',') : undefined;
  }

  attach(s: Subscriber): void {
    if (!this.#closed) this.#subs.add(s);
  }

  detach(s: Subscriber): void {
    this.#subs.delete(s);
  }

  /** Ends the camera session (TEARDOWN when it plays) and drops every subscriber. */
  close(why = 'closed'): void {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#keepalive);
    clearInterval(this.#mediaWatch);
    clearInterval(this.#rtcpTimer);
    const err = this.#connectError ?? new UpstreamError(503, 'Camera Unreachable (session ended)');
    for (const p of this.#pending.values()) {
      clearTimeout(p.timer);
      p.reject(err);
    }
    this.#pending.clear();
    this.#rejectDescribed(err);
    this.#rejectReady(err);
    if (this.#session && !this.#sock.destroyed) {
      this.#sock.end(this.#requestText('TEARDOWN', this.#uri, []));
      setTimeout(() => this.#sock.destroy(), 500).unref();
    } else this.#sock.destroy();
    for (const u of this.#udp) u.close();
    for (const s of this.#subs) s.socket.destroy();
    this.#subs.clear();
    for (const cb of this.#onClose.splice(0)) cb(why);
  }

  #fail(e: UpstreamError): void {
    this.#connectError = e;
    this.close(`camera answered ${e.status} ${e.reason}`);
  }

  async #open(): Promise<void> {
    try {
      const opts = await this.#request('OPTIONS', this.#uri, []);
      const pub = headerOf(opts.headers, 'public') ?? '';
      if (/\bGET_PARAMETER\b/i.test(pub)) this.#keepaliveMethod = 'GET_PARAMETER';
      const desc = await this.#request('DESCRIBE', this.#uri, [['Accept', 'application/sdp']]);
      const st = Number(desc.start[1]);
      if (st !== 200) return this.#fail(new UpstreamError(st || 502, desc.start[2] || 'Bad Gateway'));
      const base = headerOf(desc.headers, 'content-base') ?? headerOf(desc.headers, 'content-location') ?? this.#uri;
      const parsed = parseSdp(desc.body.toString('utf8'));
      if (parsed.media.length === 0) return this.#fail(new UpstreamError(415, 'No Audio Or Video In SDP'));
      this.sessionSdp = parsed.session;
      this.tracks = parsed.media.map((m) => ({ kind: m.kind, sdp: m.sdp, clockRate: m.clockRate, lastSeq: undefined, lastTs: undefined, lastAt: 0 }));
      this.#resolveDescribed(this.tracks);

      const order: Array<'tcp' | 'udp'> = this.#o.transport === 'auto' ? (this.#o.autoFirst === 'udp' ? ['udp', 'tcp'] : ['tcp', 'udp']) : [this.#o.transport];
      for (let i = 0; i < parsed.media.length; i++) {
        const url = resolveControl(base, parsed.media[i]!.control);
        for (;;) {
          const lower = this.lowerTransport ?? order[0]!;
          const res = await this.#setup(i, url, lower);
          const s = Number(res.start[1]);
          if (s === 200) {
            this.lowerTransport = lower;
            break;
          }
          // 'auto': the camera refuses this lower transport; the other one, once, for the first track.
          if (s === 461 && this.lowerTransport === undefined && order.length > 1) {
            order.shift();
            this.#o.log.info({ camera: this.label, transport: order[0] }, 'camera refuses the transport; trying the other');
            continue;
          }
          return this.#fail(new UpstreamError(s || 502, res.start[2] || 'Bad Gateway'));
        }
      }
      const play = await this.#request('PLAY', resolveControl(base, parsed.sessionControl), [['Range', 'npt=0.000-']]);
      const ps = Number(play.start[1]);
      if (ps !== 200) return this.#fail(new UpstreamError(ps || 502, play.start[2] || 'Bad Gateway'));
      this.#lastMediaAt = Date.now();
      this.#startTimers();
      this.#resolveReady();
    } catch (err) {
      if (err instanceof UpstreamError) this.#fail(err);
      else this.close((err as Error).message);
    }
  }

  async #setup(track: number, url: string, lower: 'tcp' | 'udp'): Promise<RtspMessage> {
    if (lower === 'tcp') {
      const res = await this.#request('SETUP', url, [['Transport', `RTP/AVP/TCP;unicast;interleaved=${track * 2}-${track * 2 + 1}`]]);
      if (Number(res.start[1]) === 200) {
        const m = /interleaved=(\d+)(?:-(\d+))?/.exec(headerOf(res.headers, 'transport') ?? '');
        const rtp = m ? Number(m[1]) : track * 2;
        const rtcp = m?.[2] !== undefined ? Number(m[2]) : rtp + 1;
        if (rtp > 255 || rtcp > 255) throw new UpstreamError(502, 'Bad Interleaved Channel');
        this.#channelMap[rtp] = track * 2;
        this.#channelMap[rtcp] = track * 2 + 1;
      }
      return res;
    }
    const [rtp, rtcp] = await bindPair(net.isIPv6(this.#sock.remoteAddress ?? '') ? 'udp6' : 'udp4');
    this.#udp.push(rtp, rtcp);
    const res = await this.#request('SETUP', url, [['Transport', `RTP/AVP;unicast;client_port=${rtp.address().port}-${rtcp.address().port}`]]);
    if (Number(res.start[1]) === 200) {
      const t = headerOf(res.headers, 'transport') ?? '';
      const sp = /server_port=(\d+)(?:-(\d+))?/.exec(t);
      const source = /source=([^;]+)/.exec(t)?.[1];
      const allowed = new Set([normaliseIp(this.#sock.remoteAddress ?? ''), ...(source ? [normaliseIp(source)] : [])]);
      const serverRtcp = sp ? Number(sp[2] ?? Number(sp[1]) + 1) : undefined;
      rtp.on('message', (msg, from) => {
        if (allowed.has(normaliseIp(from.address))) this.#onDatagram(track * 2, msg);
      });
      rtcp.on('message', (msg, from) => {
        if (allowed.has(normaliseIp(from.address))) this.#onDatagram(track * 2 + 1, msg);
      });
      if (serverRtcp !== undefined) {
        // An empty receiver report now and then: opens NAT/firewall state towards us, tells the camera we listen.
        const rr = Buffer.from([0x80, 201, 0, 1, 0, 0, 0, 0]);
        rr.writeUInt32BE(crypto.randomBytes(4).readUInt32BE(0), 4);
        const host = this.#sock.remoteAddress!;
        const send = (): void => rtcp.send(rr, serverRtcp, host, () => undefined);
        this.#rtcpSenders.push(send);
      }
    }
    return res;
  }

  #startTimers(): void {
    const timeoutS = Number(/timeout=(\d+)/.exec(this.#sessionHeader ?? '')?.[1] ?? '60');
    const every = Math.max(1_000, Math.min(60_000, (timeoutS * 1000) / 2));
    this.#keepalive = setInterval(() => {
      this.#request(this.#keepaliveMethod, this.#uri, []).catch(() => undefined);
    }, every);
    this.#keepalive.unref();
    this.#mediaWatch = setInterval(() => {
      if (Date.now() - this.#lastMediaAt > this.#o.mediaTimeoutMs) this.close(`no media from the camera for ${this.#o.mediaTimeoutMs} ms`);
    }, Math.min(1_000, this.#o.mediaTimeoutMs));
    this.#mediaWatch.unref();
    if (this.#rtcpSenders.length) {
      for (const s of this.#rtcpSenders) s();
      this.#rtcpTimer = setInterval(() => this.#rtcpSenders.forEach((s) => s()), 5_000);
      this.#rtcpTimer.unref();
    }
  }

  #requestText(method: string, uri: string, extra: Array<[string, string]>, cseq = ++this.#cseq): string {
    const lines = [`${method} ${uri} RTSP/1.0`, `CSeq: ${cseq}`, 'User-Agent: grassroots-av restreamer'];
    if (this.#session) lines.push(`Session: ${this.#session}`);
    if (this.#challenge) lines.push(`Authorization: ${authorizationHeader(this.#challenge, method, uri, this.#user, this.#pass, ++this.#nc)}`);
    for (const [k, v] of extra) lines.push(`${k}: ${v}`);
    return `${lines.join('\r\n')}\r\n\r\n`;
  }

  /** One request, answering a 401 challenge once. Rejects with UpstreamError when the camera cannot be reached. */
  async #request(method: string, uri: string, extra: Array<[string, string]>): Promise<RtspMessage> {
    let res = await this.#send(method, uri, extra);
    if (Number(res.start[1]) === 401 && (this.#user || this.#pass)) {
      const c = parseChallenge(res.headers.filter(([k]) => k.toLowerCase() === 'www-authenticate').map(([, v]) => v));
      if (c) {
        this.#challenge = c;
        this.#nc = 0;
        res = await this.#send(method, uri, extra);
      }
    }
    const session = headerOf(res.headers, 'session');
    if (session && Number(res.start[1]) === 200 && method === 'SETUP') {
      this.#sessionHeader ??= session;
      this.#session ??= session.split(';')[0]!.trim();
    }
    return res;
  }

  #send(method: string, uri: string, extra: Array<[string, string]>): Promise<RtspMessage> {
    if (this.#closed) return Promise.reject(this.#connectError ?? new UpstreamError(503, 'Camera Unreachable (session ended)'));
    const cseq = ++this.#cseq;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(String(cseq));
        const e = new UpstreamError(503, 'Camera Unreachable (ETIMEDOUT)');
        this.#connectError ??= e;
        reject(e);
        this.close(`camera did not answer ${method} in ${this.#o.requestTimeoutMs} ms`);
      }, this.#o.requestTimeoutMs);
      this.#pending.set(String(cseq), { resolve, reject, timer });
      this.#sock.write(this.#requestText(method, uri, extra, cseq));
    });
  }

  #onResponse(m: RtspMessage): void {
    if (!m.start[0].startsWith('RTSP/')) return; // a request from the camera (e.g. ANNOUNCE): not answered
    const cseq = headerOf(m.headers, 'cseq') ?? '';
    const p = this.#pending.get(cseq);
    if (!p) return;
    this.#pending.delete(cseq);
    clearTimeout(p.timer);
    p.resolve(m);
  }

  #onFrame(channel: number, frame: Buffer): void {
    const m = this.#channelMap[channel]!;
    if (m === 255) return;
    this.#forward(m, frame);
  }

  #onDatagram(m: number, msg: Buffer): void {
    if (msg.length > 0xffff) return;
    if (!this.#corked) {
      // Datagrams arriving in one turn of the event loop leave to each reader in one writev.
      this.#corked = true;
      const subs = [...this.#subs];
      for (const s of subs) s.socket.cork();
      setImmediate(() => {
        this.#corked = false;
        for (const s of subs) s.socket.uncork();
      });
    }
    // One copy per packet, whatever the number of subscribers.
    const frame = Buffer.allocUnsafe(4 + msg.length);
    frame[0] = 0x24;
    frame[1] = m;
    frame.writeUInt16BE(msg.length, 2);
    msg.copy(frame, 4);
    this.#forward(m, frame);
  }

  /** m = track * 2 + rtcp; frame = 4-byte interleaved header + packet. */
  #forward(m: number, frame: Buffer): void {
    const track = m >> 1;
    const t = this.tracks[track];
    if (!t) return;
    this.packets++;
    if ((m & 1) === 0) {
      if (frame.length < 16) return;
      this.#lastMediaAt = Date.now();
      t.lastSeq = frame.readUInt16BE(6);
      t.lastTs = frame.readUInt32BE(8);
      t.lastAt = this.#lastMediaAt;
    }
    for (const s of this.#subs) {
      const base = s.channels[track]!;
      if (base < 0) continue;
      const sock = s.socket;
      if (sock.writableLength > this.#o.maxClientBacklogBytes) {
        // A slow reader is dropped rather than buffered without bound; its owner reconnects.
        this.#subs.delete(s);
        s.dropped(`${sock.writableLength} bytes unsent`);
        sock.destroy();
        continue;
      }
      const ch = base + (m & 1);
      if (frame[1] === ch) sock.write(frame);
      else {
        const head = Buffer.from([0x24, ch, frame[2]!, frame[3]!]);
        sock.write(head);
        sock.write(frame.subarray(4));
      }
    }
  }
}

function normaliseIp(a: string): string {
  return a.startsWith('::ffff:') ? a.slice(7) : a;
}

/** An RTP socket on an even port and its RTCP socket on the next one. */
async function bindPair(type: 'udp4' | 'udp6'): Promise<[dgram.Socket, dgram.Socket]> {
  const bind = (s: dgram.Socket, port: number): Promise<boolean> =>
    new Promise((resolve) => {
      s.once('error', () => resolve(false));
      s.bind(port, () => resolve(true));
    });
  for (let attempt = 0; attempt < 50; attempt++) {
    const rtp = dgram.createSocket({ type, recvBufferSize: 2 * 1024 * 1024 });
    if (!(await bind(rtp, 0))) continue;
    const port = rtp.address().port;
    if (port % 2 !== 0 || port >= 65535) {
      rtp.close();
      continue;
    }
    const rtcp = dgram.createSocket({ type, recvBufferSize: 256 * 1024 });
    if (!(await bind(rtcp, port + 1))) {
      rtp.close();
      try {
        rtcp.close();
      } catch {
        // never bound
      }
      continue;
    }
    for (const s of [rtp, rtcp]) s.on('error', () => undefined);
    return [rtp, rtcp];
  }
  throw new UpstreamError(503, 'Camera Unreachable (no local UDP port pair)');
}

/** A control attribute resolved against the base URL (RFC 2326 C.1.1). */
export function resolveControl(base: string, control: string | undefined): string {
  if (!control || control === '*') return base;
  if (/^rtsps?:\/\//i.test(control)) return control;
  return base.endsWith('/') ? base + control : `${base}/${control}`;
}

interface ParsedSdp {
  session: string;
  sessionControl: string | undefined;
  media: Array<{ kind: 'video' | 'audio'; sdp: string; control: string | undefined; clockRate: number }>;
}

/** The SDP split into its session part and its audio/video sections (other media, e.g. ONVIF metadata, dropped). */
export function parseSdp(sdp: string): ParsedSdp {
  const lines = sdp.split(/\r?\n/).filter((l) => l.length > 0);
  const out: ParsedSdp = { session: '', sessionControl: undefined, media: [] };
  const session: string[] = [];
  let cur: { kind: string; lines: string[]; control: string | undefined; clockRate: number | undefined; pt: string } | undefined;
  const flush = (): void => {
    if (cur && (cur.kind === 'video' || cur.kind === 'audio')) {
      out.media.push({ kind: cur.kind, sdp: cur.lines.join('\r\n'), control: cur.control, clockRate: cur.clockRate ?? STATIC_CLOCK[cur.pt] ?? (cur.kind === 'video' ? 90000 : 8000) });
    }
  };
  for (const line of lines) {
    if (line.startsWith('m=')) {
      flush();
      const parts = line.slice(2).split(' ');
      cur = { kind: parts[0] ?? '', lines: [line], control: undefined, clockRate: undefined, pt: parts[3] ?? '' };
      continue;
    }
    const control = /^a=control:(.*)$/.exec(line);
    if (cur) {
      if (control) cur.control = control[1]!.trim();
      else {
        const rtpmap = /^a=rtpmap:(\d+) [^/]+\/(\d+)/.exec(line);
        if (rtpmap && rtpmap[1] === cur.pt) cur.clockRate = Number(rtpmap[2]);
        cur.lines.push(line);
      }
    } else if (control) out.sessionControl = control[1]!.trim();
    else session.push(line);
  }
  flush();
  out.session = session.join('\r\n');
  return out;
}
