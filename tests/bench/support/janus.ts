// Janus (Debian's `janus` package) driven through its plain-HTTP API, for the forwarding benchmark.
//
// A temporary configuration directory loads only the VideoRoom plugin and the HTTP transport (bound
// to 127.0.0.1 on a free port; no admin API, no event handlers, no loggers, no session timeout).
// Per benchmark step: a room (H.264), a VideoRoom *remote publisher* fed plain RTP (the
// `add_remote_publisher` request; Janus demultiplexes its input by SSRC: stream mindex m must arrive
// with SSRC 1000 + 10·m), then one `rtp_forward` per consumer towards the UDP sink, each with its own
// SSRC. Janus's CPU is read from /proc/<pid>/stat (all of its threads).
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync, existsSync, openSync, closeSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

/** SSRC Janus expects for stream mindex 0 of a remote publisher (REMOTE_PUBLISHER_BASE_SSRC). */
export const JANUS_REMOTE_SSRC = 1000;

const LIB_DIRS = ['/usr/lib/x86_64-linux-gnu/janus', '/usr/lib/aarch64-linux-gnu/janus', '/usr/lib/janus', '/usr/local/lib/janus', '/opt/janus/lib/janus'];

/** Where Janus's binary and plugins are, or why Janus cannot be used. */
export function findJanus(): { bin: string; libDir: string } | { missing: string } {
  const which = spawnSync('sh', ['-c', 'command -v janus'], { encoding: 'utf8' });
  const bin = which.stdout?.trim() ?? '';
  if (which.status !== 0 || !bin) return { missing: 'the `janus` binary is not on PATH (Debian package `janus`, see infra/setup/setup.sh)' };
  const libDir = LIB_DIRS.find((d) => existsSync(path.join(d, 'plugins', 'libjanus_videoroom.so')) && existsSync(path.join(d, 'transports', 'libjanus_http.so')));
  if (!libDir) return { missing: `janus is at ${bin} but libjanus_videoroom.so / libjanus_http.so were not found under ${LIB_DIRS.join(', ')}` };
  return { bin, libDir };
}

async function freeTcpPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

type JanusReply = { janus: string; data?: { id: number }; error?: { code: number; reason: string }; plugindata?: { plugin: string; data: Record<string, unknown> } };

export class Janus {
  private tx = 0;
  private session = 0;
  private handle = 0;
  private roomSeq = 1000;
  private constructor(
    readonly proc: ChildProcess,
    readonly dir: string,
    readonly url: string,
    readonly logFile: string,
  ) {}

  /** Starts Janus with a minimal configuration, waits for its HTTP API, attaches to the VideoRoom. */
  static async start(found: { bin: string; libDir: string }): Promise<Janus> {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'bench-janus-'));
    for (const sub of ['plugins', 'transports', 'events', 'loggers']) mkdirSync(path.join(dir, sub));
    symlinkSync(path.join(found.libDir, 'plugins', 'libjanus_videoroom.so'), path.join(dir, 'plugins', 'libjanus_videoroom.so'));
    symlinkSync(path.join(found.libDir, 'transports', 'libjanus_http.so'), path.join(dir, 'transports', 'libjanus_http.so'));
    const port = await freeTcpPort();
    writeFileSync(
      path.join(dir, 'janus.jcfg'),
      `general: {
  configs_folder = "${dir}"
  plugins_folder = "${dir}/plugins"
  transports_folder = "${dir}/transports"
  events_folder = "${dir}/events"
  loggers_folder = "${dir}/loggers"
  debug_level = 3
  debug_colors = false
  session_timeout = 0
}
certificates: {
}
media: {
}
nat: {
  nice_debug = false
  ice_enforce_list = "lo"
}
plugins: {
}
transports: {
}
loggers: {
}
events: {
  broadcast = false
}
`,
    );
    writeFileSync(
      path.join(dir, 'janus.transport.http.jcfg'),
      `general: {
  json = "plain"
  base_path = "/janus"
  http = true
  port = ${port}
  ip = "127.0.0.1"
  https = false
}
admin: {
  admin_http = false
  admin_https = false
}
cors: {
}
`,
    );
    writeFileSync(path.join(dir, 'janus.plugin.videoroom.jcfg'), 'general: {\n}\n');
    const logFile = path.join(dir, 'janus.log');
    const fd = openSync(logFile, 'a');
    const proc = spawn(found.bin, ['-C', path.join(dir, 'janus.jcfg'), '-F', dir], { stdio: ['ignore', fd, fd] });
    closeSync(fd);
    const j = new Janus(proc, dir, `http://127.0.0.1:${port}/janus`, logFile);
    let exited: string | null = null;
    proc.once('exit', (code, sig) => (exited = `exited with ${code ?? sig}`));
    // Wait (poll, bounded) for the HTTP API to answer `info`.
    const deadline = Date.now() + 30_000;
    for (;;) {
      if (exited) throw new Error(`janus ${exited} before its HTTP API answered; log:\n${j.tail()}`);
      try {
        const r = await fetch(`${j.url}/info`);
        if (r.ok) break;
      } catch {
        /* not listening yet */
      }
      if (Date.now() > deadline) {
        j.stop();
        throw new Error(`janus HTTP API did not answer within 30 s; log:\n${j.tail()}`);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    j.session = (await j.post('', { janus: 'create' })).data!.id;
    j.handle = (await j.post(`/${j.session}`, { janus: 'attach', plugin: 'janus.plugin.videoroom' })).data!.id;
    return j;
  }

  tail(): string {
    try {
      return readFileSync(this.logFile, 'utf8').split('\n').slice(-20).join('\n');
    } catch {
      return '(no log)';
    }
  }

  private async post(p: string, body: Record<string, unknown>): Promise<JanusReply> {
    const r = await fetch(`${this.url}${p}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ ...body, transaction: `t${++this.tx}` }) });
    const reply = (await r.json()) as JanusReply;
    if (reply.janus === 'error') throw new Error(`janus ${String(body.janus)}: ${reply.error?.code} ${reply.error?.reason}`);
    return reply;
  }

  /** A synchronous VideoRoom request; throws on a plugin error. */
  async videoroom(body: Record<string, unknown>): Promise<Record<string, unknown>> {
    const reply = await this.post(`/${this.session}/${this.handle}`, { janus: 'message', body });
    const data = reply.plugindata?.data;
    if (!data) throw new Error(`janus videoroom ${String(body.request)}: unexpected reply ${JSON.stringify(reply).slice(0, 300)}`);
    if (data.error_code) throw new Error(`janus videoroom ${String(body.request)}: ${String(data.error_code)} ${String(data.error)}`);
    return data;
  }

  /**
   * A room with one remote publisher (one H.264 video stream, mid "0") and `consumers` RTP forwarders
   * to sinkPort, forwarder i with SSRC ssrcBase + i. Returns the port to send plain RTP to (SSRC
   * JANUS_REMOTE_SSRC) and a function that removes the room.
   */
  async fanOut(consumers: number, sinkPort: number, ssrcBase: number): Promise<{ rtpPort: number; ssrcs: number[]; close: () => Promise<void> }> {
    const room = ++this.roomSeq;
    await this.videoroom({ request: 'create', room, permanent: false, publishers: 1, videocodec: 'h264', audiocodec: 'opus' });
    const pub = await this.videoroom({
      request: 'add_remote_publisher',
      room,
      id: 1,
      display: 'bench',
      iface: '127.0.0.1',
      streams: [{ type: 'video', mindex: 0, mid: '0', codec: 'h264' }],
    });
    const rtpPort = Number(pub.port);
    if (!rtpPort) throw new Error(`janus add_remote_publisher returned no port: ${JSON.stringify(pub)}`);
    // The remote publisher joins the room from its own thread: wait (poll, bounded) until it is listed.
    const deadline = Date.now() + 10_000;
    for (;;) {
      const list = await this.videoroom({ request: 'listparticipants', room });
      if ((list.participants as { id: number }[] | undefined)?.some((p) => p.id === 1)) break;
      if (Date.now() > deadline) throw new Error('janus remote publisher never joined its room');
      await new Promise((r) => setTimeout(r, 20));
    }
    const ssrcs: number[] = [];
    const BATCH = 200; // forwarders per rtp_forward request (each array entry is its own forwarder)
    for (let i = 0; i < consumers; i += BATCH) {
      const streams = [];
      for (let k = i; k < Math.min(consumers, i + BATCH); k++) {
        ssrcs.push(ssrcBase + k);
        streams.push({ mid: '0', port: sinkPort, ssrc: ssrcBase + k, pt: 102 });
      }
      const res = await this.videoroom({ request: 'rtp_forward', room, publisher_id: 1, host: '127.0.0.1', host_family: 'ipv4', streams });
      const made = (res.forwarders as unknown[] | undefined)?.length ?? 0;
      if (made !== streams.length) throw new Error(`janus rtp_forward created ${made} of ${streams.length} forwarders`);
    }
    return {
      rtpPort,
      ssrcs,
      close: async () => {
        await this.videoroom({ request: 'destroy', room, permanent: false });
      },
    };
  }

  /** User + system CPU seconds of the whole Janus process (all threads), from /proc/<pid>/stat. */
  cpuSeconds(): number {
    return statCpuSeconds(readFileSync(`/proc/${this.proc.pid}/stat`, 'utf8'));
  }

  stop(): void {
    if (this.proc.exitCode === null && this.proc.signalCode === null) this.proc.kill('SIGTERM');
    rmSync(this.dir, { recursive: true, force: true });
  }

  /** Waits (bounded) for the process to end after stop(). */
  async exited(): Promise<void> {
    if (this.proc.exitCode !== null || this.proc.signalCode !== null) return;
    await new Promise<void>((resolve) => {
      const t = setTimeout(() => {
        this.proc.kill('SIGKILL');
        resolve();
      }, 5000);
      this.proc.once('exit', () => {
        clearTimeout(t);
        resolve();
      });
    });
  }
}

/** utime + stime in seconds from the text of a /proc/<pid>/stat or /proc/<pid>/task/<tid>/stat file. */
export function statCpuSeconds(stat: string): number {
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' '); // fields from #3 (state) on
  return (Number(fields[11]) + Number(fields[12])) / CLK_TCK; // #14 utime, #15 stime
}

const CLK_TCK = (() => {
  const r = spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' });
  const n = Number(r.stdout?.trim());
  return n > 0 ? n : 100;
})();
