import crypto from 'node:crypto';
import net from 'node:net';
import tls from 'node:tls';

// ffmpeg 5.1 takes RTSP credentials only inside the input URL, and an ffmpeg's arguments can be read
// by every local user (/proc/<pid>/cmdline, `ps`). So ffmpeg is given a loopback URL without them,
// and this relay forwards its RTSP session to the camera, answering the camera's Basic or Digest
// challenge itself. The relay's path starts with a random token: a local user who reads the argv can
// at most watch that camera while the run lasts, never learn its password. Media (interleaved RTP
// over the same TCP connection) passes through untouched.

export interface PullSource {
  /** What to give ffmpeg/ffprobe: never holds a password. */
  url: string;
  close(): Promise<void>;
}

/** A source ffmpeg can be given: the URL itself when it holds no credentials, else a relay for it. */
export async function pullSource(url: string): Promise<PullSource> {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return { url, close: async () => undefined };
  }
  if (!/^rtsps?:$/.test(u.protocol) || (!u.username && !u.password)) return { url, close: async () => undefined };
  return RtspAuthRelay.open(u);
}

interface Message {
  /** Request: [method, uri, version]; response: [version, status, reason]. */
  start: [string, string, string];
  headers: Array<[string, string]>;
  body: Buffer;
}

type Challenge = { scheme: 'basic' } | { scheme: 'digest'; realm: string; nonce: string; qop: string | undefined; opaque: string | undefined; algorithm: string | undefined };

const MAX_HEADER = 64 * 1024;

/** Splits an RTSP byte stream into interleaved frames and messages; returns what is left over. */
function frames(buf: Buffer, onFrame: (raw: Buffer) => void, onMessage: (m: Message, raw: Buffer) => void): Buffer {
  for (;;) {
    if (buf.length === 0) return buf;
    if (buf[0] === 0x24) {
      if (buf.length < 4) return buf;
      const len = 4 + buf.readUInt16BE(2);
      if (buf.length < len) return buf;
      onFrame(buf.subarray(0, len));
      buf = buf.subarray(len);
      continue;
    }
    const end = buf.indexOf('\r\n\r\n');
    if (end < 0) {
      if (buf.length > MAX_HEADER) throw new Error('RTSP header too long');
      return buf;
    }
    const lines = buf.subarray(0, end).toString('utf8').split('\r\n');
    const headers: Array<[string, string]> = [];
    for (const l of lines.slice(1)) {
      const i = l.indexOf(':');
      if (i > 0) headers.push([l.slice(0, i).trim(), l.slice(i + 1).trim()]);
    }
    const bodyLen = Number(header(headers, 'content-length') ?? '0');
    if (!Number.isInteger(bodyLen) || bodyLen < 0 || bodyLen > 1 << 20) throw new Error('bad Content-Length');
    if (buf.length < end + 4 + bodyLen) return buf;
    const [a = '', b = '', ...rest] = (lines[0] ?? '').split(' ');
    onMessage({ start: [a, b, rest.join(' ')], headers, body: buf.subarray(end + 4, end + 4 + bodyLen) }, buf.subarray(0, end + 4 + bodyLen));
    buf = buf.subarray(end + 4 + bodyLen);
  }
}

function header(headers: Array<[string, string]>, name: string): string | undefined {
  return headers.find(([k]) => k.toLowerCase() === name)?.[1];
}

function serialise(m: Message): Buffer {
  const head = `${m.start.join(' ')}\r\n${m.headers.map(([k, v]) => `${k}: ${v}\r\n`).join('')}\r\n`;
  return Buffer.concat([Buffer.from(head), m.body]);
}

function parseChallenge(values: string[]): Challenge | undefined {
  const digest = values.find((v) => /^digest\s/i.test(v));
  if (digest) {
    const p: Record<string, string> = {};
    for (const m of digest.slice(7).matchAll(/(\w+)=(?:"([^"]*)"|([^,\s]*))/g)) p[m[1]!.toLowerCase()] = m[2] ?? m[3] ?? '';
    if (p.realm === undefined || p.nonce === undefined) return undefined;
    return { scheme: 'digest', realm: p.realm, nonce: p.nonce, qop: p.qop, opaque: p.opaque, algorithm: p.algorithm };
  }
  return values.some((v) => /^basic/i.test(v)) ? { scheme: 'basic' } : undefined;
}

const md5 = (s: string): string => crypto.createHash('md5').update(s).digest('hex');

export class RtspAuthRelay implements PullSource {
  readonly url: string;
  readonly #server: net.Server;
  readonly #target: URL;
  readonly #prefix: string;
  readonly #sockets = new Set<net.Socket>();

  private constructor(server: net.Server, target: URL, port: number, token: string) {
    this.#server = server;
    this.#target = target;
    this.#prefix = `rtsp://127.0.0.1:${port}/${token}`;
    this.url = `${this.#prefix}${target.pathname}${target.search}`;
  }

  static async open(target: URL): Promise<RtspAuthRelay> {
    const server = net.createServer();
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => resolve());
    });
    const port = (server.address() as net.AddressInfo).port;
    const relay = new RtspAuthRelay(server, target, port, crypto.randomBytes(18).toString('base64url'));
    server.on('connection', (s) => relay.#serve(s));
    return relay;
  }

  async close(): Promise<void> {
    for (const s of this.#sockets) s.destroy();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  #serve(client: net.Socket): void {
    const t = this.#target;
    const origin = `rtsp://${t.host || `${t.hostname}:${t.protocol === 'rtsps:' ? 322 : 554}`}`;
    const user = decodeURIComponent(t.username);
    const pass = decodeURIComponent(t.password);
    const port = Number(t.port || (t.protocol === 'rtsps:' ? 322 : 554));
    const upstream: net.Socket = t.protocol === 'rtsps:' ? tls.connect({ host: t.hostname, port, servername: t.hostname }) : net.connect({ host: t.hostname, port });
    this.#sockets.add(client);
    this.#sockets.add(upstream);
    const end = (): void => {
      client.destroy();
      upstream.destroy();
      this.#sockets.delete(client);
      this.#sockets.delete(upstream);
    };
    client.on('error', end).on('close', end);
    upstream.on('error', end).on('close', end);
    client.setNoDelay(true);
    upstream.setNoDelay(true);

    let proven = false;
    let challenge: Challenge | undefined;
    let nc = 0;
    const pending = new Map<string, { m: Message; retried: boolean }>();
    const authorise = (m: Message): Message => {
      const headers = m.headers.filter(([k]) => k.toLowerCase() !== 'authorization');
      if (challenge?.scheme === 'basic') headers.push(['Authorization', `Basic ${Buffer.from(`${user}:${pass}`).toString('base64')}`]);
      else if (challenge?.scheme === 'digest') {
        const [method, uri] = m.start;
        const ha1 = md5(`${user}:${challenge.realm}:${pass}`);
        const ha2 = md5(`${method}:${uri}`);
        const parts = [`username="${user}"`, `realm="${challenge.realm}"`, `nonce="${challenge.nonce}"`, `uri="${uri}"`];
        if (challenge.qop && /(^|,)\s*auth\s*(,|$)/.test(challenge.qop)) {
          const n = (++nc).toString(16).padStart(8, '0');
          const cnonce = crypto.randomBytes(8).toString('hex');
          parts.push(`response="${md5(`${ha1}:${challenge.nonce}:${n}:${cnonce}:auth:${ha2}`)}"`, 'qop=auth', `nc=${n}`, `cnonce="${cnonce}"`);
        } else parts.push(`response="${md5(`${ha1}:${challenge.nonce}:${ha2}`)}"`);
        if (challenge.opaque !== undefined) parts.push(`opaque="${challenge.opaque}"`);
        if (challenge.algorithm) parts.push(`algorithm=${challenge.algorithm}`);
        headers.push(['Authorization', `Digest ${parts.join(', ')}`]);
      }
      return { ...m, headers };
    };

    let fromClient: Buffer = Buffer.alloc(0);
    client.on('data', (d) => {
      fromClient = Buffer.concat([fromClient, d]);
      try {
        fromClient = frames(
          fromClient,
          (raw) => upstream.write(raw),
          (m) => {
            const [method, uri, version] = m.start;
            // The token proves the caller was given this relay's URL; without it nothing is forwarded.
            if (uri.startsWith(`${this.#prefix}/`) || uri === this.#prefix) proven = true;
            if (!proven) {
              client.end(`RTSP/1.0 403 Forbidden\r\nCSeq: ${header(m.headers, 'cseq') ?? '0'}\r\n\r\n`);
              return;
            }
            const rewritten: Message = { ...m, start: [method, uri.startsWith(this.#prefix) ? origin + uri.slice(this.#prefix.length) : uri, version] };
            pending.set(header(m.headers, 'cseq') ?? '', { m: rewritten, retried: false });
            upstream.write(serialise(authorise(rewritten)));
          },
        );
      } catch {
        end();
      }
    });

    let fromUpstream: Buffer = Buffer.alloc(0);
    upstream.on('data', (d) => {
      fromUpstream = Buffer.concat([fromUpstream, d]);
      try {
        fromUpstream = frames(
          fromUpstream,
          (raw) => client.write(raw),
          (m, raw) => {
            const cseq = header(m.headers, 'cseq') ?? '';
            const req = pending.get(cseq);
            if (m.start[1] === '401' && req && !req.retried) {
              // Answer the challenge once per request (a fresh or stale nonce), then let the camera decide.
              const c = parseChallenge(m.headers.filter(([k]) => k.toLowerCase() === 'www-authenticate').map(([, v]) => v));
              if (c) {
                challenge = c;
                nc = 0;
                req.retried = true;
                upstream.write(serialise(authorise(req.m)));
                return;
              }
            }
            pending.delete(cseq);
            client.write(raw);
          },
        );
      } catch {
        end();
      }
    });
  }
}
