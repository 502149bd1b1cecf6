import crypto from 'node:crypto';
import net from 'node:net';
import { createLogger, type Logger } from '../infra/logger.ts';
import { headerOf, RtspStreamReader, type RtspMessage } from './RtspStream.ts';
import { RtspUpstream, UpstreamError, type RtspTransport, type Subscriber } from './RtspUpstream.ts';
import { CameraNetworks } from '../infra/net/CameraNetworks.ts';

// One RTSP session per camera, however many local readers (Frigate/go2rtc and MediaMTX do the same):
// cheap cameras allow 2-6 sessions, and a camera recorded and watched at once used to take two.
// A loopback RTSP server in this process holds at most one upstream session per camera (key: its URL
// with credentials, and its transport setting) and serves any number of local ffmpeg/ffprobe over
// RTSP/TCP-interleaved. ffmpeg is handed a URL with a random token in its path and no password (a
// local user reading its argv learns none); the restreamer answers the camera's Basic/Digest challenge
// itself. The camera's DESCRIBE/SETUP status (401, 404, 461, 503 when it cannot be reached) is what
// ffmpeg is answered, so its output is classified as before (recorder/CaptureFailure.ts). When the
// camera goes, every reader is disconnected (their owners restart); the next DESCRIBE opens a new
// session. The upstream stays a short linger after its last reader, so a restarted ffmpeg reuses it.

export type { RtspTransport } from './RtspUpstream.ts';

export interface PullSource {
  /** What to give ffmpeg/ffprobe (always with `-rtsp_transport tcp`): never holds a password. */
  url: string;
  close(): Promise<void>;
}

export interface RtspRestreamerOptions {
  /** How long an upstream session outlives its last reader. */
  lingerMs?: number;
  /** Bound on each request to a camera. */
  requestTimeoutMs?: number;
  /** No RTP from a playing camera for this long = it is gone (readers disconnected). */
  mediaTimeoutMs?: number;
  /** A reader with more unsent bytes than this is dropped. */
  maxClientBacklogBytes?: number;
  /** A reader that has not started playing this long after connecting is dropped. */
  handshakeTimeoutMs?: number;
  /** Where cameras may be; default CAMERA_NETWORKS from the environment (CameraNetworks.fromEnv). */
  networks?: CameraNetworks;
  log?: Logger;
}

interface Lease {
  token: string;
  camera: URL;
  transport: RtspTransport;
  /** What ffmpeg is given. */
  url: string;
  clients: Set<Client>;
}

interface Client extends Subscriber {
  lease: Lease | undefined;
  session: string;
  upstream: RtspUpstream | undefined;
  playing: boolean;
  timer: NodeJS.Timeout;
}

interface Held {
  upstream: RtspUpstream;
  /** Readers that have described it and are still connected. */
  readers: Set<Client>;
  linger: NodeJS.Timeout | undefined;
}

const LIMITS = { maxHeaderBytes: 16 * 1024, maxBodyBytes: 16 * 1024 };
const TOKEN = /^rtsp:\/\/[^/]+\/([A-Za-z0-9_-]{24})(?=\/|$)/;

export class RtspRestreamer {
  readonly port: number;
  readonly #server: net.Server;
  readonly #o: Required<Omit<RtspRestreamerOptions, 'log'>>;
  readonly #log: Logger;
  readonly #leases = new Map<string, Lease>();
  readonly #held = new Map<string, Held>();
  /** 'auto' cameras that needed UDP last time: tried with UDP first next time. */
  readonly #autoUdp = new Set<string>();
  /** Upstream sessions opened since start (for tests and metrics). */
  sessionsOpened = 0;

  /** Camera sessions opened from now on are held to this list. */
  setNetworks(networks: CameraNetworks): void {
    this.#o.networks = networks;
  }

  private constructor(server: net.Server, o: RtspRestreamerOptions) {
    this.#server = server;
    this.port = (server.address() as net.AddressInfo).port;
    this.#o = {
      lingerMs: o.lingerMs ?? 3_000,
      requestTimeoutMs: o.requestTimeoutMs ?? 10_000,
      mediaTimeoutMs: o.mediaTimeoutMs ?? 10_000,
      maxClientBacklogBytes: o.maxClientBacklogBytes ?? 4 * 1024 * 1024,
      handshakeTimeoutMs: o.handshakeTimeoutMs ?? 30_000,
      networks: o.networks ?? CameraNetworks.fromEnv(),
    };
    this.#log = o.log ?? createLogger('rtsp-restreamer');
    server.on('connection', (s) => this.#serve(s));
  }

  static async start(opts: RtspRestreamerOptions = {}): Promise<RtspRestreamer> {
    const server = net.createServer();
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => resolve());
    });
    // Serving readers is no reason to keep a process alive (their owners are).
    server.unref();
    return new RtspRestreamer(server, opts);
  }

  /**
   * A URL ffmpeg can read the camera from; `transport` is the camera's setting and applies between
   * the restreamer and the camera. close() revokes the URL and disconnects its readers.
   */
  source(cameraUrl: string, transport: RtspTransport = 'tcp'): PullSource {
    const camera = new URL(cameraUrl);
    const token = crypto.randomBytes(18).toString('base64url');
    const url = `rtsp://127.0.0.1:${this.port}/${token}${camera.pathname === '/' ? '' : camera.pathname}`;
    const lease: Lease = { token, camera, transport, url, clients: new Set() };
    this.#leases.set(token, lease);
    return {
      url,
      close: async () => {
        this.#leases.delete(token);
        for (const c of lease.clients) c.socket.destroy();
      },
    };
  }

  /** What is held now: one entry per camera session. */
  stats(): Array<{ camera: string; transport: 'tcp' | 'udp' | undefined; readers: number; playing: number; packets: number }> {
    return [...this.#held.values()].map((h) => ({
      camera: h.upstream.label,
      transport: h.upstream.lowerTransport,
      readers: h.readers.size,
      playing: h.upstream.subscribers,
      packets: h.upstream.packets,
    }));
  }

  async close(): Promise<void> {
    for (const h of this.#held.values()) {
      clearTimeout(h.linger);
      h.upstream.close('restreamer closed');
    }
    this.#held.clear();
    for (const l of this.#leases.values()) for (const c of l.clients) c.socket.destroy();
    this.#leases.clear();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  #keyOf(lease: Lease): string {
    return `${lease.transport} ${lease.camera.href}`;
  }

  /** The camera's session for this reader: the one held, or a new one. */
  #hold(client: Client, lease: Lease): RtspUpstream {
    const key = this.#keyOf(lease);
    let h = this.#held.get(key);
    if (!h || h.upstream.closed) {
      const upstream = new RtspUpstream({
        url: lease.camera,
        transport: lease.transport,
        autoFirst: this.#autoUdp.has(key) ? 'udp' : 'tcp',
        requestTimeoutMs: this.#o.requestTimeoutMs,
        mediaTimeoutMs: this.#o.mediaTimeoutMs,
        maxClientBacklogBytes: this.#o.maxClientBacklogBytes,
        networks: this.#o.networks,
        log: this.#log,
      });
      this.sessionsOpened++;
      const held: Held = { upstream, readers: new Set(), linger: undefined };
      h = held;
      this.#held.set(key, held);
      upstream.ready.then(
        () => {
          if (lease.transport === 'auto') {
            if (upstream.lowerTransport === 'udp') this.#autoUdp.add(key);
            else this.#autoUdp.delete(key);
          }
        },
        () => undefined,
      );
      upstream.onClose((why) => {
        clearTimeout(held.linger);
        if (this.#held.get(key) === held) this.#held.delete(key);
        // Playing readers lost their camera (the upstream disconnected them; their owners reconnect to a
        // new session); readers still in their handshake are answered the camera's status instead.
        held.readers.clear();
        this.#log.debug({ camera: upstream.label, why }, 'camera session ended');
      });
    }
    if (!h.readers.has(client)) {
      h.readers.add(client);
      clearTimeout(h.linger);
      h.linger = undefined;
    }
    return h.upstream;
  }

  #release(client: Client): void {
    const up = client.upstream;
    if (!up) return;
    up.detach(client);
    client.upstream = undefined;
    for (const [key, h] of this.#held) {
      if (h.upstream !== up || !h.readers.delete(client) || h.readers.size > 0) continue;
      clearTimeout(h.linger);
      h.linger = setTimeout(() => {
        if (h.readers.size > 0) return;
        if (this.#held.get(key) === h) this.#held.delete(key);
        up.close('no readers');
      }, this.#o.lingerMs);
      h.linger.unref();
    }
  }

  #serve(socket: net.Socket): void {
    socket.setNoDelay(true);
    const client: Client = {
      socket,
      channels: new Int16Array(0),
      dropped: (reason) => this.#log.warn({ reason }, 'slow reader dropped'),
      lease: undefined,
      session: crypto.randomBytes(8).toString('hex'),
      upstream: undefined,
      playing: false,
      timer: setTimeout(() => {
        if (!client.playing) socket.destroy();
      }, this.#o.handshakeTimeoutMs),
    };
    client.timer.unref();
    // Requests are answered in order, one at a time (a DESCRIBE may wait for the camera).
    let queue: Promise<void> = Promise.resolve();
    let queued = 0;
    const reader = new RtspStreamReader(
      LIMITS,
      () => undefined, // the readers' RTCP receiver reports are not the camera's business
      (m) => {
        // A reader that piles up requests without waiting for answers is not ffmpeg: dropped.
        if (++queued > 16) return void socket.destroy();
        queue = queue
          .then(() => this.#handle(client, m))
          .catch(() => void socket.destroy())
          .finally(() => void queued--);
      },
    );
    socket.on('data', (d: Buffer) => {
      try {
        reader.push(d);
      } catch {
        socket.destroy();
      }
    });
    socket.on('error', () => undefined);
    socket.on('close', () => {
      clearTimeout(client.timer);
      client.lease?.clients.delete(client);
      this.#release(client);
    });
  }

  async #handle(client: Client, m: RtspMessage): Promise<void> {
    const socket = client.socket;
    if (socket.destroyed) return;
    const [method, uri] = m.start;
    const cseq = headerOf(m.headers, 'cseq') ?? '0';
    const reply = (status: string, headers: Array<[string, string]> = [], body?: Buffer): void => {
      const hs: Array<[string, string]> = [['CSeq', cseq], ['Server', 'grassroots-av restreamer'], ...headers];
      if (client.playing || client.channels.length) hs.push(['Session', `${client.session};timeout=60`]);
      if (body) hs.push(['Content-Length', String(body.length)]);
      const head = `RTSP/1.0 ${status}\r\n${hs.map(([k, v]) => `${k}: ${v}\r\n`).join('')}\r\n`;
      socket.write(body ? Buffer.concat([Buffer.from(head), body]) : head);
    };
    // The token proves the caller was given this URL; nothing is done for anyone else.
    const token = TOKEN.exec(uri)?.[1];
    const lease = token ? this.#leases.get(token) : undefined;
    if (!lease || (client.lease && client.lease !== lease)) {
      socket.end(`RTSP/1.0 403 Forbidden\r\nCSeq: ${cseq}\r\n\r\n`);
      return;
    }
    if (!client.lease) {
      client.lease = lease;
      lease.clients.add(client);
    }
    const failed = (err: unknown): void => {
      const e = err instanceof UpstreamError ? err : new UpstreamError(503, 'Camera Unreachable (EIO)');
      reply(`${e.status} ${e.reason}`);
    };
    switch (method) {
      case 'OPTIONS':
        return reply('200 OK', [['Public', 'OPTIONS, DESCRIBE, SETUP, PLAY, TEARDOWN, GET_PARAMETER, SET_PARAMETER']]);
      case 'GET_PARAMETER':
      case 'SET_PARAMETER':
        return reply('200 OK');
      case 'DESCRIBE': {
        const up = client.upstream ?? this.#hold(client, lease);
        client.upstream = up;
        let tracks;
        try {
          tracks = await up.described;
        } catch (err) {
          return failed(err);
        }
        if (socket.destroyed) return;
        const sdp = [up.sessionSdp, 'a=control:*', ...tracks.map((t, i) => `${t.sdp}\r\na=control:trackID=${i}`)].join('\r\n') + '\r\n';
        return reply('200 OK', [['Content-Base', `${lease.url}/`], ['Content-Type', 'application/sdp']], Buffer.from(sdp));
      }
      case 'SETUP': {
        const up = client.upstream;
        if (!up) return reply('455 Method Not Valid In This State');
        const track = Number(/\/trackID=(\d+)\/?$/.exec(uri)?.[1] ?? NaN);
        const transport = headerOf(m.headers, 'transport') ?? '';
        // Readers are local: TCP-interleaved only (UDP would need ports per reader for nothing).
        if (!/RTP\/AVP\/TCP/i.test(transport)) return reply('461 Unsupported Transport');
        try {
          await up.ready;
        } catch (err) {
          return failed(err);
        }
        if (!Number.isInteger(track) || track < 0 || track >= up.tracks.length) return reply('404 Not Found');
        const il = /interleaved=(\d+)/.exec(transport);
        const ch = il ? Number(il[1]) : track * 2;
        if (ch > 254) return reply('461 Unsupported Transport');
        if (client.channels.length !== up.tracks.length) {
          client.channels = new Int16Array(up.tracks.length).fill(-1);
        }
        client.channels[track] = ch;
        return reply('200 OK', [['Transport', `RTP/AVP/TCP;unicast;interleaved=${ch}-${ch + 1}`]]);
      }
      case 'PLAY': {
        const up = client.upstream;
        if (!up || client.channels.length === 0) return reply('455 Method Not Valid In This State');
        try {
          await up.ready;
        } catch (err) {
          return failed(err);
        }
        if (socket.destroyed) return;
        if (up.closed) return failed(new UpstreamError(503, 'Camera Unreachable (session ended)'));
        const info = up.rtpInfo((i) => `${lease.url}/trackID=${i}`);
        reply('200 OK', [['Range', 'npt=0.000-'], ...(info ? ([['RTP-Info', info]] as Array<[string, string]>) : [])]);
        // Late joiners get packets from the next one on (SPS/PPS are in the SDP).
        client.playing = true;
        up.attach(client);
        return;
      }
      case 'TEARDOWN':
        reply('200 OK');
        socket.end();
        client.playing = false;
        this.#release(client);
        return;
      default:
        return reply('501 Not Implemented');
    }
  }
}

let shared: Promise<RtspRestreamer> | undefined;
let sharedNetworks: CameraNetworks | undefined;

/** CAMERA_NETWORKS as the process's config gives it (a host config file is not in the environment). */
export function setCameraNetworks(networks: CameraNetworks): void {
  sharedNetworks = networks;
  void shared?.then((r) => r.setNetworks(networks), () => undefined);
}

/** The process-wide restreamer (started on first use). */
export function restreamer(): Promise<RtspRestreamer> {
  shared ??= RtspRestreamer.start({
    ...(sharedNetworks ? { networks: sharedNetworks } : {}),
    ...(process.env.RTSP_RESTREAM_LINGER_MS ? { lingerMs: Number(process.env.RTSP_RESTREAM_LINGER_MS) } : {}),
  }).catch((err: unknown) => {
    shared = undefined;
    throw err;
  });
  return shared;
}

/**
 * A source ffmpeg can be given for `url`: for an RTSP camera, the process-wide restreamer's loopback
 * URL (one camera session shared by every reader, credentials kept here), read with `-rtsp_transport
 * tcp`; anything else (a file, a film) as it is. `transport` is the camera's own setting.
 */
export async function pullSource(url: string, opts: { transport?: RtspTransport; restreamer?: RtspRestreamer } = {}): Promise<PullSource> {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return { url, close: async () => undefined };
  }
  if (!/^rtsps?:$/.test(u.protocol)) return { url, close: async () => undefined };
  const r = opts.restreamer ?? (await restreamer());
  return r.source(url, opts.transport ?? 'tcp');
}
