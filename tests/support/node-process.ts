import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import { tmpDir } from './browser.ts';
import { CASCADE_SECRET } from './cascade-harness.ts';
import { TEST_JOIN_PUBLIC_PEM } from './join-keys.ts';
import { rtcPortRange } from './rtc-ports.ts';

// One SFU node as its own process (sfu/main.ts), configured only through its environment as in
// production; optionally inside a network namespace with its own address (tests/support/netns.ts).

export interface NodeProcessOptions {
  unitId: number;
  port: number;
  /** The parent's cascade URL (ws://host:port/cascade). */
  parentUrl?: string;
  /**
   * First media port; default a range no other test process uses (tests/support/rtc-ports.ts). A node
   * alone in its network namespace may name a fixed one.
   */
  rtcBase?: number;
  /** How many media ports from rtcBase (PipeTransports, PlainTransports); default 300. */
  rtcPorts?: number;
  /** The node's address (listen and announced); default 127.0.0.1. */
  ip?: string;
  /** Runs the process in this network namespace (`ip netns exec`). */
  netns?: string;
  /** More settings (e.g. per-node keys). */
  env?: Record<string, string>;
}

export interface NodeHealth {
  ok: boolean;
  cascade?: { parentConnected: boolean; children: string[] };
}

function rtcEnv(options: NodeProcessOptions): { SFU_RTC_MIN_PORT: string; SFU_RTC_MAX_PORT: string } {
  const ports = options.rtcPorts ?? 300;
  const r = options.rtcBase !== undefined ? { rtcMinPort: options.rtcBase, rtcMaxPort: options.rtcBase + ports - 1 } : rtcPortRange(ports);
  return { SFU_RTC_MIN_PORT: String(r.rtcMinPort), SFU_RTC_MAX_PORT: String(r.rtcMaxPort) };
}

export class NodeProcess {
  proc: ChildProcess | undefined;
  readonly name: string;
  readonly port: number;
  readonly ip: string;
  readonly #env: NodeJS.ProcessEnv;
  readonly #netns: string | undefined;

  constructor(name: string, options: NodeProcessOptions) {
    this.name = name;
    this.port = options.port;
    this.ip = options.ip ?? '127.0.0.1';
    this.#netns = options.netns;
    this.#env = {
      ...process.env,
      NODE_ENV: 'test',
      LOG_LEVEL: 'warn',
      DATA_DIR: tmpDir(`sfu-${name}-`),
      SFU_CASCADE_SECRET: CASCADE_SECRET,
      JOIN_PUBLIC_KEY: TEST_JOIN_PUBLIC_PEM,
      HTTP_HOST: this.ip,
      SFU_HTTP_PORT: String(options.port),
      SFU_NUM_WORKERS: '1',
      SFU_LISTEN_IP: this.ip,
      ...(options.ip ? { SFU_ANNOUNCED_IP: options.ip } : {}),
      SFU_RTC_PORT: '0',
      ...rtcEnv(options),
      SFU_NODE_ID: name,
      SFU_UNIT_ID: String(options.unitId),
      ...(options.parentUrl ? { SFU_PARENT_URL: options.parentUrl } : {}),
      // These labs speak ws:// between namespace addresses; TLS beyond loopback is tested in tests/sfu/cascade-tls and
      // tests/web/https-*: a test that wants it passes TLS_MODE in env.
      TLS_MODE: 'off',
      ...options.env,
    };
  }

  get wsUrl(): string {
    return `ws://${this.ip}:${this.port}/sfu`;
  }

  get cascadeUrl(): string {
    return `ws://${this.ip}:${this.port}/cascade`;
  }

  start(): void {
    const node = [process.execPath, '--import', 'tsx', 'sfu/main.ts'];
    const [cmd, ...args] = this.#netns ? ['ip', 'netns', 'exec', this.#netns, ...node] : node;
    this.proc = spawn(cmd!, args, { env: this.#env, stdio: ['ignore', 'ignore', 'pipe'] });
    this.proc.stderr?.on('data', (d: Buffer) => process.stderr.write(`[${this.name}] ${d}`));
    const proc = this.proc;
    proc.once('exit', (code, signal) => {
      if (signal !== 'SIGKILL') process.stderr.write(`[${this.name}] exited: code ${code} signal ${signal}\n`);
    });
  }

  async health(): Promise<NodeHealth> {
    const res = await fetch(`http://${this.ip}:${this.port}/healthz`);
    return (await res.json()) as NodeHealth;
  }

  /** The node's Prometheus metrics, parsed (loopback scrape, or METRICS_TOKEN from its env). */
  async metrics(): Promise<Metrics> {
    const token = this.#env.METRICS_TOKEN;
    // A kept-alive socket the server is just closing resets the request: try again (on a fresh one).
    for (let attempt = 1; ; attempt++) {
      try {
        const res = await fetch(`http://${this.ip}:${this.port}/metrics`, { headers: { connection: 'close', ...(token ? { authorization: `Bearer ${token}` } : {}) } });
        if (!res.ok) throw new Error(`${this.name} /metrics: HTTP ${res.status}`);
        return new Metrics(await res.text());
      } catch (err) {
        if (attempt >= 3) throw err;
        await new Promise((r) => setTimeout(r, 200 * attempt));
      }
    }
  }

  /**
   * CPU seconds (user + system) and resident memory of the node's processes, from /proc: the Node.js
   * process (signalling, cascade) and its mediasoup worker children (media), separately.
   */
  usage(): { node: ProcUsage; workers: ProcUsage } {
    const pid = this.proc?.pid;
    const none = { cpuSeconds: 0, rssBytes: 0 };
    if (!pid || this.proc?.exitCode !== null) return { node: none, workers: none };
    const workers = childPids(pid).map(procUsage);
    return {
      node: procUsage(pid),
      workers: workers.reduce((a, b) => ({ cpuSeconds: a.cpuSeconds + b.cpuSeconds, rssBytes: a.rssBytes + b.rssBytes }), none),
    };
  }

  kill(): Promise<void> {
    const p = this.proc;
    if (!p || p.exitCode !== null) return Promise.resolve();
    return new Promise((r) => {
      p.once('exit', () => r());
      p.kill('SIGKILL');
    });
  }
}

export async function freePort(): Promise<number> {
  return (await freePorts(1))[0]!;
}

/**
 * `n` distinct free ports: all are held until the last is found. Asked one after another, a port
 * closed a moment ago may be handed out again (a city node and a community node once got the same one).
 */
export async function freePorts(n: number): Promise<number[]> {
  const servers: net.Server[] = [];
  try {
    for (let i = 0; i < n; i++) {
      const srv = net.createServer();
      await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
      servers.push(srv);
    }
    return servers.map((s) => (s.address() as net.AddressInfo).port);
  } finally {
    await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  }
}

export interface ProcUsage {
  cpuSeconds: number;
  rssBytes: number;
}

const CLK_TCK = 100;
const PAGE = 4096;

function procUsage(pid: number): ProcUsage {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name (which may contain spaces): state is field 3; utime 14, stime 15.
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const cpu = (Number(f[11]) + Number(f[12])) / CLK_TCK;
    const rssPages = Number(fs.readFileSync(`/proc/${pid}/statm`, 'utf8').split(' ')[1]);
    return { cpuSeconds: cpu, rssBytes: rssPages * PAGE };
  } catch {
    return { cpuSeconds: 0, rssBytes: 0 };
  }
}

function childPids(pid: number): number[] {
  const out: number[] = [];
  try {
    for (const tid of fs.readdirSync(`/proc/${pid}/task`)) {
      const c = fs.readFileSync(`/proc/${pid}/task/${tid}/children`, 'utf8').trim();
      if (c) out.push(...c.split(/\s+/).map(Number));
    }
  } catch {
    // gone
  }
  return out;
}

/** One Prometheus text exposition, parsed into samples. */
export class Metrics {
  readonly samples: Array<{ name: string; labels: Record<string, string>; value: number }> = [];

  constructor(text: string) {
    for (const line of text.split('\n')) {
      if (!line || line.startsWith('#')) continue;
      const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line);
      if (!m) continue;
      const labels: Record<string, string> = {};
      for (const l of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]!] = l[2]!;
      this.samples.push({ name: m[1]!, labels, value: Number(m[3]) });
    }
  }

  /** Sum of a metric's samples whose labels match `where` (all of them if absent); undefined if none. */
  get(name: string, where: Record<string, string | ((v: string) => boolean)> = {}): number | undefined {
    let sum: number | undefined;
    for (const s of this.samples) {
      if (s.name !== name) continue;
      const ok = Object.entries(where).every(([k, v]) => (typeof v === 'function' ? s.labels[k] !== undefined && v(s.labels[k]!) : s.labels[k] === v));
      if (ok) sum = (sum ?? 0) + s.value;
    }
    return sum;
  }

  /** Every sample of a metric. */
  all(name: string): Array<{ labels: Record<string, string>; value: number }> {
    return this.samples.filter((s) => s.name === name);
  }
}

/** One node of a process tree: its name, its parent's name (none for the root), its unit and settings. */
export interface TreeSpec {
  name: string;
  parent?: string;
  unitId: number;
  env?: Record<string, string>;
  /** This node's media ports (default: the tree's `rtcPorts`). */
  rtcPorts?: number;
}

/**
 * The large-meeting test and benchmark tree: five levels, the city with two child links, three villages
 * (village-a2's uplink capped at `capKbps`). `rtcPorts` gives some nodes a larger media port range.
 */
export function wholeCityTree(capKbps: number, rtcPorts: Partial<Record<string, number>> = {}): TreeSpec[] {
  const spec: TreeSpec[] = [
    { name: 'city', unitId: 1 },
    { name: 'county-a', parent: 'city', unitId: 2 },
    { name: 'county-b', parent: 'city', unitId: 3 },
    { name: 'town-a', parent: 'county-a', unitId: 4 },
    { name: 'town-b', parent: 'county-b', unitId: 5 },
    { name: 'community-a', parent: 'town-a', unitId: 6 },
    { name: 'community-b', parent: 'town-b', unitId: 7 },
    { name: 'village-a1', parent: 'community-a', unitId: 8 },
    { name: 'village-a2', parent: 'community-a', unitId: 9, env: { SFU_UPLINK_KBPS: String(capKbps) } },
    { name: 'village-b1', parent: 'community-b', unitId: 10 },
  ];
  return spec.map((s) => (rtcPorts[s.name] === undefined ? s : { ...s, rtcPorts: rtcPorts[s.name]! }));
}

/**
 * Starts a tree of node processes (parent-first order), each with its own range of `rtcPorts` media ports
 * from `rtcBase` (default: ranges no other test process uses, tests/support/rtc-ports.ts); resolves when every node serves and every child's link to its parent is up.
 */
export async function startNodeTree(
  spec: readonly TreeSpec[],
  options: { rtcBase?: number; rtcPorts: number; env?: Record<string, string>; timeoutMs?: number },
): Promise<Map<string, NodeProcess>> {
  const nodes = new Map<string, NodeProcess>();
  let base = options.rtcBase;
  const ports = await freePorts(spec.length);
  for (const [i, s] of spec.entries()) {
    const parent = s.parent ? nodes.get(s.parent) : undefined;
    if (s.parent && !parent) throw new Error(`parent ${s.parent} of ${s.name} must come first`);
    const p = new NodeProcess(s.name, {
      unitId: s.unitId,
      port: ports[i]!,
      ...(base !== undefined ? { rtcBase: base } : {}),
      rtcPorts: s.rtcPorts ?? options.rtcPorts,
      ...(parent ? { parentUrl: parent.cascadeUrl } : {}),
      env: { ...options.env, ...s.env },
    });
    nodes.set(s.name, p);
    if (base !== undefined) base += s.rtcPorts ?? options.rtcPorts;
  }
  for (const p of nodes.values()) p.start();
  const deadline = Date.now() + (options.timeoutMs ?? 90_000);
  for (;;) {
    const hs = await Promise.all([...nodes.values()].map((p) => p.health().catch((): NodeHealth => ({ ok: false }))));
    if (hs.every((h, i) => h.ok && (!spec[i]!.parent || h.cascade?.parentConnected === true))) return nodes;
    if (Date.now() > deadline) {
      for (const p of nodes.values()) await p.kill();
      throw new Error(`node tree not up: ${JSON.stringify(hs)}`);
    }
    await new Promise((r) => setTimeout(r, 250));
  }
}
