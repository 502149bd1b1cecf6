import { spawn, type ChildProcess } from 'node:child_process';
import net from 'node:net';
import { waitForCondition } from './condition.ts';

// An RTSP server the project did not write: GStreamer's gst-rtsp-server from Debian
// (python3-gi, gir1.2-gst-rtsp-server-1.0, x264enc/x265enc from gstreamer1.0-plugins-ugly/-bad),
// serving a live test picture (a moving ball, so frozen video is visible) the way an IP camera does.
// Stoppable and restartable on the same port, for outage tests.

export interface DebianRtspOptions {
  codec?: 'h264' | 'h265';
  /** H.264 profile; cameras' main streams are High. */
  profile?: 'baseline' | 'main' | 'high';
  /** Lower transports the server accepts ('udp': a UDP-only camera/NVR, TCP SETUP gets 461). */
  protocols?: 'tcp' | 'udp' | 'all';
  /** Digest authentication with these credentials. */
  auth?: { user: string; password: string };
  path?: string;
  width?: number;
  height?: number;
  fps?: number;
  /** Fixed TCP port (a restart reuses it); default a free one. */
  port?: number;
  /** The loopback address it listens on (127.0.0.2: a camera on a network other than the server's own services); default 127.0.0.1. */
  host?: string;
}

const SCRIPT = String.raw`
import json, sys, gi
gi.require_version('Gst', '1.0'); gi.require_version('GstRtspServer', '1.0'); gi.require_version('GstRtsp', '1.0')
from gi.repository import Gst, GstRtspServer, GstRtsp, GLib
o = json.loads(sys.argv[1])
Gst.init(None)
server = GstRtspServer.RTSPServer()
server.set_address(o['host'])
server.set_service(str(o['port']))
src = 'videotestsrc is-live=true pattern=ball ! video/x-raw,width=%d,height=%d,framerate=%d/1 ! videoconvert ! video/x-raw,format=I420' % (o['width'], o['height'], o['fps'])
gop = o['fps']
if o['codec'] == 'h265':
    enc = 'x265enc tune=zerolatency speed-preset=ultrafast key-int-max=%d ! video/x-h265,profile=main ! h265parse config-interval=-1 ! rtph265pay name=pay0 pt=96 config-interval=-1' % gop
else:
    # x264 signals the least profile the stream needs: High needs 8x8 transforms, Main CABAC.
    tools = {'high': 'cabac=true dct8x8=true', 'main': 'cabac=true dct8x8=false', 'baseline': 'cabac=false dct8x8=false'}[o['profile']]
    enc = 'x264enc tune=zerolatency speed-preset=superfast %s key-int-max=%d ! video/x-h264,profile=%s ! h264parse config-interval=-1 ! rtph264pay name=pay0 pt=96 config-interval=-1' % (tools, gop, o['profile'])
factory = GstRtspServer.RTSPMediaFactory()
factory.set_launch('( %s ! %s )' % (src, enc))
factory.set_shared(True)
if o['protocols'] == 'udp':
    factory.set_protocols(GstRtsp.RTSPLowerTrans.UDP)
elif o['protocols'] == 'tcp':
    factory.set_protocols(GstRtsp.RTSPLowerTrans.TCP)
if o.get('user') is not None:
    auth = GstRtspServer.RTSPAuth()
    auth.set_supported_methods(GstRtsp.RTSPAuthMethod.DIGEST)
    token = GstRtspServer.RTSPToken()
    token.set_string('media.factory.role', 'user')
    auth.add_digest(o['user'], o['password'], token)
    server.set_auth(auth)
    perms = GstRtspServer.RTSPPermissions()
    perms.add_role_from_structure(Gst.Structure.new_from_string('user, media.factory.access=(boolean)true, media.factory.construct=(boolean)true'))
    factory.set_permissions(perms)
server.get_mount_points().add_factory(o['path'], factory)
# Media sessions as the server sees them (tests count them): a SETUP/PLAY that succeeded, a connection closed.
conn_ids = iter(range(1, 1 << 30))
def on_client(srv, client):
    n = next(conn_ids)
    client.connect('setup-request', lambda c, ctx: print('event setup %d' % n, flush=True))
    client.connect('play-request', lambda c, ctx: print('event play %d' % n, flush=True))
    client.connect('closed', lambda c: print('event closed %d' % n, flush=True))
server.connect('client-connected', on_client)
if server.attach(None) == 0:
    print('bind failed', flush=True); sys.exit(2)
print('ready', flush=True)
GLib.MainLoop().run()
`;

async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

type ServerSettings = Required<Omit<DebianRtspOptions, 'auth' | 'port'>> & Pick<DebianRtspOptions, 'auth'>;

const running = new Set<ChildProcess>();
process.once('exit', () => {
  for (const c of running) c.kill('SIGKILL');
});

export class DebianRtspServer {
  readonly port: number;
  readonly #o: ServerSettings;
  #child: ChildProcess | undefined;
  /** Successful SETUPs and PLAYs since start() (across restarts). */
  setups = 0;
  plays = 0;
  /** Connections that have played and are still open now, and the most at once. */
  readonly #playing = new Set<number>();
  maxPlaying = 0;
  readonly #sessionListeners = new Set<() => void>();

  private constructor(port: number, o: ServerSettings) {
    this.port = port;
    this.#o = o;
  }

  static async start(opts: DebianRtspOptions = {}): Promise<DebianRtspServer> {
    const port = opts.port ?? (await freePort());
    const s = new DebianRtspServer(port, {
      codec: opts.codec ?? 'h264',
      profile: opts.profile ?? 'high',
      protocols: opts.protocols ?? 'all',
      auth: opts.auth,
      path: opts.path ?? '/stream',
      width: opts.width ?? 320,
      height: opts.height ?? 240,
      fps: opts.fps ?? 15,
      host: opts.host ?? '127.0.0.1',
    });
    await s.resume();
    return s;
  }

  /** The camera's URL without credentials (what goes in cameras.rtsp_url). */
  get url(): string {
    return `rtsp://${this.#o.host}:${this.port}${this.#o.path}`;
  }

  /** The URL with the Digest credentials in it (percent-encoded), as a pull URL. */
  get urlWithAuth(): string {
    const a = this.#o.auth;
    if (!a) return this.url;
    return `rtsp://${encodeURIComponent(a.user)}:${encodeURIComponent(a.password)}@${this.#o.host}:${this.port}${this.#o.path}`;
  }

  /** Connections playing media now (one per RTSP session a client holds). */
  get playing(): number {
    return this.#playing.size;
  }

  /** Resolves once `pred` holds of the server's session counters (re-checked on every session event). */
  waitForSessions(pred: (s: DebianRtspServer) => boolean, timeoutMs = 15_000): Promise<void> {
    return waitForCondition(this.#sessionListeners, () => pred(this), timeoutMs, () => `session counters: plays ${this.plays}, playing ${this.playing}, max ${this.maxPlaying}`);
  }

  /** Starts counting anew (totals and the maximum). */
  resetSessionCounts(): void {
    this.setups = 0;
    this.plays = 0;
    this.maxPlaying = this.#playing.size;
  }

  #onEvent(line: string): void {
    const m = /^event (setup|play|closed) (\d+)$/.exec(line.trim());
    if (!m) return;
    const id = Number(m[2]);
    if (m[1] === 'setup') this.setups++;
    else if (m[1] === 'play') {
      this.plays++;
      this.#playing.add(id);
      this.maxPlaying = Math.max(this.maxPlaying, this.#playing.size);
    } else this.#playing.delete(id);
    for (const l of [...this.#sessionListeners]) l();
  }

  get running(): boolean {
    return this.#child !== undefined;
  }

  /** (Re)starts the server on its port; resolves when it listens. */
  async resume(): Promise<void> {
    if (this.#child) return;
    const o = this.#o;
    const args = { ...o, port: this.port, user: o.auth?.user ?? null, password: o.auth?.password ?? null };
    const child = spawn('/usr/bin/python3', ['-c', SCRIPT, JSON.stringify(args)], { stdio: ['ignore', 'pipe', 'pipe'] });
    running.add(child);
    this.#child = child;
    let err = '';
    child.stderr!.on('data', (d: Buffer) => {
      err = (err + d.toString()).slice(-2000);
    });
    child.once('exit', () => {
      running.delete(child);
      if (this.#child === child) this.#child = undefined;
      this.#playing.clear();
      for (const l of [...this.#sessionListeners]) l();
    });
    let lineBuf = '';
    child.stdout!.on('data', (d: Buffer) => {
      lineBuf += d.toString();
      const lines = lineBuf.split('\n');
      lineBuf = lines.pop() ?? '';
      for (const l of lines) this.#onEvent(l);
    });
    await new Promise<void>((resolve, reject) => {
      let out = '';
      const onData = (d: Buffer): void => {
        out += d.toString();
        if (out.includes('ready')) {
          child.stdout!.off('data', onData);
          child.off('exit', onExit);
          resolve();
        }
      };
      const onExit = (code: number | null): void => reject(new Error(`gst-rtsp-server exited (${code}): ${out} ${err}`));
      child.stdout!.on('data', onData);
      child.once('exit', onExit);
    });
  }

  /** A camera losing power: the process is killed, its connections drop. */
  async stop(): Promise<void> {
    const child = this.#child;
    if (!child) return;
    const gone = new Promise<void>((r) => child.once('exit', () => r()));
    child.kill('SIGKILL');
    await gone;
  }

  async close(): Promise<void> {
    await this.stop();
  }
}
