import crypto from 'node:crypto';
import net from 'node:net';
import { EventEmitter } from 'node:events';

// A small RTSP relay for tests, in the spirit of MediaMTX: a publisher (ffmpeg -f rtsp) ANNOUNCEs and
// RECORDs a path over TCP-interleaved RTP; pullers DESCRIBE/SETUP/PLAY the same path over
// TCP-interleaved RTP and receive the publisher's RTP/RTCP frames. Only TCP transport is offered
// (the recorder pulls with -rtsp_transport tcp). When a publisher goes away its readers are closed,
// as a real camera disappearing would look to the recorder.

interface Track {
  control: string;
}

interface Stream {
  path: string;
  sdp: string;
  tracks: Track[];
  publisher: Conn;
  readers: Set<Conn>;
}

interface Conn {
  socket: net.Socket;
  session: string;
  path?: string;
  role?: 'publisher' | 'reader';
  playing: boolean;
  /** reader: track index -> interleaved channel (RTP; RTCP is +1). */
  channels: Map<number, number>;
  buf: Buffer;
}

export interface RtspServerEvents {
  publish: [path: string];
  unpublish: [path: string];
  play: [path: string];
}

const MAX_READER_BACKLOG = 4 * 1024 * 1024;

/** Credentials readers must present, as a camera demands them (publishers are not asked). */
export interface RtspAuth {
  scheme: 'basic' | 'digest';
  username: string;
  password: string;
}

export class RtspServer extends EventEmitter<RtspServerEvents> {
  readonly #server: net.Server;
  readonly #streams = new Map<string, Stream>();
  readonly #conns = new Set<Conn>();
  #port = 0;
  #nextSession = 1;
  readonly #frozen = new Set<string>();
  #auth: RtspAuth | undefined;
  readonly #nonce = crypto.randomBytes(8).toString('hex');
  /** Reader requests refused for want of valid credentials. */
  unauthorised = 0;
  /** Every request received (the latest 1000), with its Authorization header: what a hostile server would learn. */
  readonly requests: Array<{ method: string; url: string; authorization: string | undefined }> = [];

  private constructor() {
    super();
    this.#server = net.createServer((s) => this.#onConnection(s));
  }

  static async start(port = 0, host = '127.0.0.1', opts: { auth?: RtspAuth } = {}): Promise<RtspServer> {
    const srv = new RtspServer();
    srv.#auth = opts.auth;
    await new Promise<void>((resolve, reject) => {
      srv.#server.once('error', reject);
      srv.#server.listen(port, host, () => resolve());
    });
    const addr = srv.#server.address();
    srv.#port = typeof addr === 'object' && addr ? addr.port : port;
    return srv;
  }

  get port(): number {
    return this.#port;
  }

  url(path: string): string {
    return `rtsp://127.0.0.1:${this.#port}/${path.replace(/^\//, '')}`;
  }

  /** Stops (or resumes) relaying a path to its readers while keeping every connection open: a hung camera. */
  freeze(path: string, frozen = true): void {
    if (frozen) this.#frozen.add(normalise(path));
    else this.#frozen.delete(normalise(path));
  }

  isPublished(path: string): boolean {
    return this.#streams.has(normalise(path));
  }

  /** Resolves once `path` has a publisher that is recording. */
  waitForPublish(path: string, timeoutMs = 15_000): Promise<void> {
    const p = normalise(path);
    if (this.#streams.has(p)) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.off('publish', on);
        reject(new Error(`no publisher on ${p} within ${timeoutMs} ms`));
      }, timeoutMs);
      const on = (published: string): void => {
        if (published !== p) return;
        clearTimeout(timer);
        this.off('publish', on);
        resolve();
      };
      this.on('publish', on);
    });
  }

  async close(): Promise<void> {
    for (const c of this.#conns) c.socket.destroy();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  #onConnection(socket: net.Socket): void {
    socket.setNoDelay(true);
    const conn: Conn = { socket, session: String(this.#nextSession++), playing: false, channels: new Map(), buf: Buffer.alloc(0) };
    this.#conns.add(conn);
    socket.on('data', (d) => {
      conn.buf = conn.buf.length ? Buffer.concat([conn.buf, d]) : d;
      try {
        this.#drain(conn);
      } catch {
        socket.destroy();
      }
    });
    socket.on('error', () => undefined);
    socket.on('close', () => this.#onClose(conn));
  }

  #onClose(conn: Conn): void {
    this.#conns.delete(conn);
    if (!conn.path) return;
    const stream = this.#streams.get(conn.path);
    if (!stream) return;
    if (conn.role === 'publisher' && stream.publisher === conn) {
      this.#streams.delete(conn.path);
      for (const r of stream.readers) r.socket.destroy();
      this.emit('unpublish', conn.path);
    } else {
      stream.readers.delete(conn);
    }
  }

  #drain(conn: Conn): void {
    for (;;) {
      if (conn.buf.length === 0) return;
      if (conn.buf[0] === 0x24) {
        if (conn.buf.length < 4) return;
        const channel = conn.buf[1]!;
        const len = conn.buf.readUInt16BE(2);
        if (conn.buf.length < 4 + len) return;
        const frame = conn.buf.subarray(0, 4 + len);
        conn.buf = conn.buf.subarray(4 + len);
        if (conn.role === 'publisher') this.#relay(conn, channel, frame);
        continue;
      }
      const headerEnd = conn.buf.indexOf('\r\n\r\n');
      if (headerEnd < 0) {
        if (conn.buf.length > 64 * 1024) throw new Error('RTSP header too long');
        return;
      }
      const head = conn.buf.subarray(0, headerEnd).toString('utf8');
      const lines = head.split('\r\n');
      const headers = new Map<string, string>();
      for (const l of lines.slice(1)) {
        const i = l.indexOf(':');
        if (i > 0) headers.set(l.slice(0, i).trim().toLowerCase(), l.slice(i + 1).trim());
      }
      const bodyLen = Number(headers.get('content-length') ?? '0');
      if (conn.buf.length < headerEnd + 4 + bodyLen) return;
      const body = conn.buf.subarray(headerEnd + 4, headerEnd + 4 + bodyLen).toString('utf8');
      conn.buf = conn.buf.subarray(headerEnd + 4 + bodyLen);
      const [method = '', url = ''] = (lines[0] ?? '').split(' ');
      this.#handle(conn, method, url, headers, body);
    }
  }

  #reply(conn: Conn, cseq: string, status: string, headers: Record<string, string> = {}, body = ''): void {
    let out = `RTSP/1.0 ${status}\r\nCSeq: ${cseq}\r\nServer: test-rtsp\r\nSession: ${conn.session};timeout=60\r\n`;
    for (const [k, v] of Object.entries(headers)) out += `${k}: ${v}\r\n`;
    if (body) out += `Content-Length: ${Buffer.byteLength(body)}\r\n`;
    conn.socket.write(`${out}\r\n${body}`);
  }

  #handle(conn: Conn, method: string, url: string, headers: Map<string, string>, body: string): void {
    const cseq = headers.get('cseq') ?? '0';
    this.requests.push({ method, url, authorization: headers.get('authorization') });
    if (this.requests.length > 1000) this.requests.shift();
    let pathname: string;
    try {
      pathname = normalise(new URL(url).pathname);
    } catch {
      pathname = '';
    }
    if (this.#auth && conn.role !== 'publisher' && ['DESCRIBE', 'SETUP', 'PLAY'].includes(method) && !this.#authorised(method, headers.get('authorization'))) {
      this.unauthorised++;
      const challenge = this.#auth.scheme === 'basic' ? 'Basic realm="camera"' : `Digest realm="camera", nonce="${this.#nonce}", qop="auth"`;
      return this.#reply(conn, cseq, '401 Unauthorized', { 'WWW-Authenticate': challenge });
    }
    switch (method) {
      case 'OPTIONS':
        return this.#reply(conn, cseq, '200 OK', {
          Public: 'OPTIONS, DESCRIBE, ANNOUNCE, SETUP, PLAY, RECORD, TEARDOWN, GET_PARAMETER',
        });
      case 'ANNOUNCE': {
        if (this.#streams.has(pathname)) return this.#reply(conn, cseq, '403 Forbidden');
        const tracks = [...body.matchAll(/^a=control:(\S+)/gm)]
          .map((m) => ({ control: m[1]! }))
          .filter((t) => t.control !== '*');
        conn.path = pathname;
        conn.role = 'publisher';
        this.#streams.set(pathname, { path: pathname, sdp: body, tracks, publisher: conn, readers: new Set() });
        return this.#reply(conn, cseq, '200 OK');
      }
      case 'DESCRIBE': {
        const s = this.#streams.get(pathname);
        if (!s) return this.#reply(conn, cseq, '404 Not Found');
        const base = url.endsWith('/') ? url : `${url}/`;
        return this.#reply(conn, cseq, '200 OK', { 'Content-Base': base, 'Content-Type': 'application/sdp' }, s.sdp);
      }
      case 'SETUP': {
        const transport = headers.get('transport') ?? '';
        if (!/RTP\/AVP\/TCP/i.test(transport)) return this.#reply(conn, cseq, '461 Unsupported Transport');
        const m = /interleaved=(\d+)-(\d+)/.exec(transport);
        if (conn.role === 'publisher') {
          return this.#reply(conn, cseq, '200 OK', { Transport: transport });
        }
        // Reader: find the stream whose path prefixes the URL and the track named by its tail.
        let stream: Stream | undefined;
        for (const s of this.#streams.values()) {
          if (pathname === s.path || pathname.startsWith(`${s.path}/`)) stream = s;
        }
        if (!stream) return this.#reply(conn, cseq, '404 Not Found');
        const tail = pathname.slice(stream.path.length + 1);
        const idx = Math.max(0, stream.tracks.findIndex((t) => t.control === tail || url.endsWith(t.control)));
        const ch = m ? Number(m[1]) : idx * 2;
        conn.path = stream.path;
        conn.role = 'reader';
        conn.channels.set(idx, ch);
        return this.#reply(conn, cseq, '200 OK', {
          Transport: `RTP/AVP/TCP;unicast;interleaved=${ch}-${ch + 1}`,
        });
      }
      case 'RECORD':
        if (conn.role === 'publisher' && conn.path) this.emit('publish', conn.path);
        return this.#reply(conn, cseq, '200 OK');
      case 'PLAY': {
        const s = conn.path ? this.#streams.get(conn.path) : undefined;
        if (!s || conn.role !== 'reader') return this.#reply(conn, cseq, '454 Session Not Found');
        s.readers.add(conn);
        conn.playing = true;
        this.emit('play', s.path);
        return this.#reply(conn, cseq, '200 OK', { Range: 'npt=0.000-' });
      }
      case 'GET_PARAMETER':
      case 'SET_PARAMETER':
        return this.#reply(conn, cseq, '200 OK');
      case 'TEARDOWN':
        this.#reply(conn, cseq, '200 OK');
        conn.socket.end();
        return;
      default:
        return this.#reply(conn, cseq, '501 Not Implemented');
    }
  }

  #authorised(method: string, header: string | undefined): boolean {
    const a = this.#auth!;
    if (!header) return false;
    if (a.scheme === 'basic') return header === `Basic ${Buffer.from(`${a.username}:${a.password}`).toString('base64')}`;
    if (!/^Digest /i.test(header)) return false;
    const p: Record<string, string> = {};
    for (const m of header.slice(7).matchAll(/(\w+)=(?:"([^"]*)"|([^,\s]*))/g)) p[m[1]!.toLowerCase()] = m[2] ?? m[3] ?? '';
    if (p.username !== a.username || p.nonce !== this.#nonce || !p.uri) return false;
    const md5 = (x: string): string => crypto.createHash('md5').update(x).digest('hex');
    const ha1 = md5(`${a.username}:camera:${a.password}`);
    const ha2 = md5(`${method}:${p.uri}`);
    const expected = p.qop === 'auth' ? md5(`${ha1}:${this.#nonce}:${p.nc}:${p.cnonce}:auth:${ha2}`) : md5(`${ha1}:${this.#nonce}:${ha2}`);
    return p.response === expected;
  }

  #relay(pub: Conn, channel: number, frame: Buffer): void {
    const s = pub.path ? this.#streams.get(pub.path) : undefined;
    if (!s || this.#frozen.has(s.path)) return;
    const track = channel >> 1;
    for (const r of s.readers) {
      if (!r.playing) continue;
      const base = r.channels.get(track);
      if (base === undefined) continue;
      // A reader that cannot keep up loses frames rather than growing memory without bound.
      if (r.socket.writableLength > MAX_READER_BACKLOG) continue;
      const out = Buffer.from(frame);
      out[1] = base + (channel & 1);
      r.socket.write(out);
    }
  }
}

function normalise(p: string): string {
  return p.replace(/^\/+/, '').replace(/\/+$/, '');
}
