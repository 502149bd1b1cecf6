import { spawn, type ChildProcess } from 'node:child_process';
import net from 'node:net';
import { tmpDir } from './browser.ts';
import { CASCADE_SECRET } from './cascade-harness.ts';
import { TEST_JOIN_PUBLIC_PEM } from './join-keys.ts';

// One SFU node as its own process (sfu/main.ts), configured only through its environment as in
// production; optionally inside a network namespace with its own address (tests/support/netns.ts).

export interface NodeProcessOptions {
  unitId: number;
  port: number;
  /** The parent's cascade URL (ws://host:port/cascade). */
  parentUrl?: string;
  rtcBase: number;
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
      SFU_RTC_MIN_PORT: String(options.rtcBase),
      SFU_RTC_MAX_PORT: String(options.rtcBase + 299),
      SFU_NODE_ID: name,
      SFU_UNIT_ID: String(options.unitId),
      ...(options.parentUrl ? { SFU_PARENT_URL: options.parentUrl } : {}),
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
  }

  async health(): Promise<NodeHealth> {
    const res = await fetch(`http://${this.ip}:${this.port}/healthz`);
    return (await res.json()) as NodeHealth;
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
  const srv = net.createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const { port } = srv.address() as net.AddressInfo;
  await new Promise((r) => srv.close(r));
  return port;
}
