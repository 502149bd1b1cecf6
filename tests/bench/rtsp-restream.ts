// What the camera relay costs the recorder process: the restreamer (recorder/RtspRestreamer.ts, one
// camera session shared by every local reader) against the per-reader relay it replaced
// (RtspAuthRelay, read from git history at RELAY_COMMIT), each camera read twice (recording + live).
// The cameras (one RTSP server with Digest auth, fed by one stream-copied 2 Mbit/s H.264 clip; camera i
// is its URL with ?cam=i, so each is a session of its own) run in a child process, the readers (raw
// RTSP/TCP clients that count bytes) in another: the CPU measured is the relay's process alone.
//
//   node --import tsx tests/bench/rtsp-restream.ts            # 20 cameras, 2 Mbit/s, 20 s per variant
//   BENCH_CAMERAS=40 BENCH_SECONDS=30 node --import tsx tests/bench/rtsp-restream.ts
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath, pathToFileURL } from 'node:url';

const RELAY_COMMIT = '8d26e90';
const here = fileURLToPath(import.meta.url);
const repo = path.resolve(path.dirname(here), '../..');

async function host(clip: string): Promise<void> {
  const { RtspServer } = await import('../support/rtsp-server.ts');
  const rtsp = await RtspServer.start(0, '127.0.0.1', { auth: { scheme: 'digest', username: 'admin', password: 'p@ss#w0rd' } });
  const publisher = spawn('ffmpeg', ['-v', 'error', '-re', '-stream_loop', '-1', '-i', clip, '-c', 'copy', '-f', 'rtsp', '-rtsp_transport', 'tcp', rtsp.url('bench')], { stdio: 'ignore' });
  await rtsp.waitForPublish('bench');
  process.stdout.write(`${JSON.stringify({ url: `rtsp://admin:${encodeURIComponent('p@ss#w0rd')}@127.0.0.1:${rtsp.port}/bench` })}\n`);
  // Each line on stdin asks how many PLAYs the cameras have served.
  readline.createInterface({ input: process.stdin }).on('line', () => process.stdout.write(`${JSON.stringify({ plays: rtsp.requests.filter((r) => r.method === 'PLAY').length })}\n`));
  process.stdin.on('end', () => {
    publisher.kill('SIGKILL');
    void rtsp.close().then(() => process.exit(0));
  });
}

/** A minimal RTSP reader: DESCRIBE, SETUP of the first track over TCP, PLAY, then counts bytes. */
function read(url: string, onBytes: (n: number) => void): Promise<net.Socket> {
  const u = new URL(url);
  const sock = net.connect({ host: u.hostname, port: Number(u.port) });
  let buf = Buffer.alloc(0);
  let cseq = 0;
  let waiting: ((m: { head: string; body: string }) => void) | undefined;
  let playing = false;
  sock.on('data', (d: Buffer) => {
    if (playing) return onBytes(d.length);
    buf = Buffer.concat([buf, d]);
    const end = buf.indexOf('\r\n\r\n');
    if (end < 0 || !waiting) return;
    const head = buf.subarray(0, end).toString();
    const len = Number(/content-length:\s*(\d+)/i.exec(head)?.[1] ?? 0);
    if (buf.length < end + 4 + len) return;
    const body = buf.subarray(end + 4, end + 4 + len).toString();
    buf = buf.subarray(end + 4 + len);
    const w = waiting;
    waiting = undefined;
    w({ head, body });
  });
  const ask = (method: string, uri: string, headers: string[] = []): Promise<{ head: string; body: string }> =>
    new Promise((resolve) => {
      waiting = resolve;
      sock.write(`${method} ${uri} RTSP/1.0\r\nCSeq: ${++cseq}\r\n${headers.map((h) => `${h}\r\n`).join('')}\r\n`);
    });
  return new Promise((resolve, reject) => {
    sock.once('error', reject);
    sock.once('connect', async () => {
      const d = await ask('DESCRIBE', url, ['Accept: application/sdp']);
      if (!/^RTSP\/1.0 200/.test(d.head)) return reject(new Error(d.head.split('\r\n')[0]));
      const base = /content-base:\s*(\S+)/i.exec(d.head)?.[1] ?? `${url}/`;
      const media = d.body.slice(d.body.indexOf('m='));
      const control = /a=control:(\S+)/.exec(media)?.[1] ?? '';
      const trackUrl = /^rtsp:/.test(control) ? control : `${base.replace(/\/$/, '')}/${control}`;
      const s = await ask('SETUP', trackUrl, ['Transport: RTP/AVP/TCP;unicast;interleaved=0-1']);
      const session = /session:\s*([^;\r\n]+)/i.exec(s.head)?.[1] ?? '';
      const p = await ask('PLAY', base, [`Session: ${session}`, 'Range: npt=0.000-']);
      if (!/^RTSP\/1.0 200/.test(p.head)) return reject(new Error(p.head.split('\r\n')[0]));
      playing = true;
      if (buf.length) onBytes(buf.length);
      resolve(sock);
    });
  });
}

async function readers(urls: string[]): Promise<void> {
  let bytes = 0;
  const socks = await Promise.all(urls.map((u) => read(u, (n) => (bytes += n))));
  process.stdout.write(`${JSON.stringify({ ready: socks.length })}\n`);
  readline.createInterface({ input: process.stdin }).on('line', () => process.stdout.write(`${JSON.stringify({ bytes })}\n`));
  process.stdin.on('end', () => {
    for (const s of socks) s.destroy();
    process.exit(0);
  });
}

/** A child running this file in `mode`, answering one JSON line per line asked. */
function child(mode: string, args: string[]): { proc: ChildProcess; next(): Promise<Record<string, number | string>>; ask(): void; end(): void } {
  const proc = spawn(process.execPath, ['--import', 'tsx', here, mode, ...args], { cwd: repo, stdio: ['pipe', 'pipe', 'inherit'], env: { ...process.env, NODE_ENV: 'test' } });
  const lines = readline.createInterface({ input: proc.stdout! });
  const queue: string[] = [];
  const waiters: Array<(l: string) => void> = [];
  lines.on('line', (l) => {
    const w = waiters.shift();
    if (w) w(l);
    else queue.push(l);
  });
  return {
    proc,
    next: () => new Promise((resolve) => {
      const l = queue.shift();
      if (l !== undefined) resolve(JSON.parse(l));
      else waiters.push((x) => resolve(JSON.parse(x)));
    }),
    ask: () => proc.stdin!.write('?\n'),
    end: () => proc.stdin!.end(),
  };
}

interface PullSourceLike {
  url: string;
  close(): Promise<void>;
}

async function main(): Promise<void> {
  const cameras = Number(process.env.BENCH_CAMERAS ?? 20);
  const seconds = Number(process.env.BENCH_SECONDS ?? 20);
  const perCamera = 2; // recording + live
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'restream-bench-'));
  const clip = path.join(tmp, 'clip.mp4');
  execFileSync('ffmpeg', ['-v', 'error', '-f', 'lavfi', '-i', 'testsrc2=size=1280x720:rate=25', '-t', '10', '-c:v', 'libx264', '-preset', 'ultrafast', '-b:v', '2M', '-maxrate', '2M', '-bufsize', '1M', '-g', '50', '-pix_fmt', 'yuv420p', clip]);
  const oldRelayFile = path.join(tmp, 'RtspAuthRelay.ts');
  fs.writeFileSync(oldRelayFile, execFileSync('git', ['show', `${RELAY_COMMIT}:recorder/RtspAuthRelay.ts`], { cwd: repo }));
  const { RtspAuthRelay } = (await import(pathToFileURL(oldRelayFile).href)) as { RtspAuthRelay: { open(u: URL): Promise<PullSourceLike> } };
  const { RtspRestreamer } = await import('../../recorder/RtspRestreamer.ts');

  const media = child('host', [clip]);
  const { url } = (await media.next()) as { url: string };
  const results: string[] = [];
  const variants: Array<[string, () => Promise<{ urls: string[]; close(): Promise<void> }>]> = [
    [
      'per-reader relay (RtspAuthRelay, before)',
      async () => {
        const relays = await Promise.all(Array.from({ length: cameras }, (_, i) => RtspAuthRelay.open(new URL(`${url}?cam=${i}`))));
        return { urls: relays.flatMap((r) => Array.from({ length: perCamera }, () => r.url)), close: async () => void (await Promise.all(relays.map((r) => r.close()))) };
      },
    ],
    [
      'restreamer (one camera session)',
      async () => {
        const r = await RtspRestreamer.start();
        const sources = Array.from({ length: cameras }, (_, i) => Array.from({ length: perCamera }, () => r.source(`${url}?cam=${i}`, 'tcp'))).flat();
        return { urls: sources.map((s) => s.url), close: () => r.close() };
      },
    ],
  ];
  for (const [name, open] of variants) {
    media.ask();
    const playsBefore = Number((await media.next()).plays);
    const v = await open();
    const rd = child('readers', v.urls);
    await rd.next();
    await new Promise((r) => setTimeout(r, 3_000)); // warm-up
    rd.ask();
    const b0 = Number((await rd.next()).bytes);
    const c0 = process.cpuUsage();
    const t0 = process.hrtime.bigint();
    await new Promise((r) => setTimeout(r, seconds * 1000));
    const cpu = process.cpuUsage(c0);
    const wallS = Number(process.hrtime.bigint() - t0) / 1e9;
    rd.ask();
    const b1 = Number((await rd.next()).bytes);
    media.ask();
    const plays = Number((await media.next()).plays) - playsBefore;
    rd.end();
    await new Promise((r) => rd.proc.once('exit', r));
    await v.close();
    const corePct = ((cpu.user + cpu.system) / 1e6 / wallS) * 100;
    const mbps = ((b1 - b0) * 8) / wallS / 1e6;
    results.push(
      `| ${name} | ${cameras} | ${v.urls.length} | ${plays} | ${corePct.toFixed(1)} % | ${(corePct / cameras).toFixed(2)} % | ${mbps.toFixed(1)} | ${(100 / (corePct / cameras)).toFixed(0)} |`,
    );
  }
  media.end();
  console.log(`\nRelay CPU in the recorder process, ${cameras} cameras x ${perCamera} readers, ~2 Mbit/s each, ${seconds} s per variant (${os.cpus().length} cores, ${os.cpus()[0]?.model ?? ''})`);
  console.log('| variant | cameras | readers | camera sessions (PLAY) | relay CPU (one core) | per camera | Mbit/s delivered | cameras per core (relay alone) |');
  console.log('|---|---|---|---|---|---|---|---|');
  for (const r of results) console.log(r);
  fs.rmSync(tmp, { recursive: true, force: true });
}

const [mode, ...args] = process.argv.slice(2);
if (mode === 'host') await host(args[0]!);
else if (mode === 'readers') await readers(args);
else await main();
