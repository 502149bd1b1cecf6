import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import type { Logger } from '../logger.ts';

export interface CoturnOptions {
  /** Folder for its configuration (holds the secret: mode 0600), log and pid file. */
  dir: string;
  listenIp: string;
  port: number;
  /** TURN over TLS (turns:) on this port when `cert`/`key` are given. */
  tlsPort: number;
  tls?: { cert: string; key: string };
  secret: string;
  /** Relayed addresses (the media side); default listenIp. */
  relayIp?: string;
  relayMinPort: number;
  relayMaxPort: number;
  /**
   * The only addresses the relay may reach: the SFU nodes' media addresses. Everything else is denied,
   * so the relay cannot be used to reach the county's internal network.
   */
  allowedPeers: readonly string[];
  /** Only TCP and TLS client listeners (tests of a network that drops UDP). */
  noUdp?: boolean;
  logger: Logger;
  /** Debian's binary by default. */
  binary?: string;
}

/** Debian's coturn (`turnserver`), configured for TURN REST credentials and started as a child process. */
export class CoturnServer {
  readonly #options: CoturnOptions;
  #child: ChildProcess | undefined;
  #stopping = false;

  constructor(options: CoturnOptions) {
    this.#options = options;
  }

  get pid(): number | undefined {
    return this.#child?.pid;
  }

  /** Writes the configuration and starts turnserver; resolves once it accepts TCP connections. */
  async start(timeoutMs = 15_000): Promise<void> {
    const o = this.#options;
    fs.mkdirSync(o.dir, { recursive: true, mode: 0o700 });
    const lines = [
      `listening-ip=${o.listenIp}`,
      `listening-port=${o.port}`,
      `relay-ip=${o.relayIp ?? o.listenIp}`,
      `min-port=${o.relayMinPort}`,
      `max-port=${o.relayMaxPort}`,
      'realm=grassroots-av',
      'use-auth-secret',
      // In a file, never on the command line: a process list must not show it.
      `static-auth-secret=${o.secret}`,
      'fingerprint',
      'no-cli',
      'no-software-attribute',
      'no-multicast-peers',
      'no-tlsv1',
      'no-tlsv1_1',
      'denied-peer-ip=0.0.0.0-255.255.255.255',
      'denied-peer-ip=::-ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff',
      ...o.allowedPeers.map((p) => `allowed-peer-ip=${p}`),
      ...(o.allowedPeers.some((p) => p.startsWith('127.')) ? ['allow-loopback-peers'] : []),
      `pidfile=${path.join(o.dir, 'turnserver.pid')}`,
      `log-file=${path.join(o.dir, 'turnserver.log')}`,
      'simple-log',
      'no-stdout-log',
      ...(o.noUdp ? ['no-udp', 'no-dtls'] : []),
    ];
    if (o.tls) {
      fs.writeFileSync(path.join(o.dir, 'turn.crt'), o.tls.cert);
      fs.writeFileSync(path.join(o.dir, 'turn.key'), o.tls.key, { mode: 0o600 });
      lines.push(`tls-listening-port=${o.tlsPort}`, `cert=${path.join(o.dir, 'turn.crt')}`, `pkey=${path.join(o.dir, 'turn.key')}`);
    } else {
      lines.push('no-tls', 'no-dtls');
    }
    const conf = path.join(o.dir, 'turnserver.conf');
    fs.writeFileSync(conf, lines.join('\n') + '\n', { mode: 0o600 });
    fs.chmodSync(conf, 0o600);
    const child = spawn(o.binary ?? '/usr/bin/turnserver', ['-c', conf], { stdio: ['ignore', 'ignore', 'pipe'] });
    this.#child = child;
    let stderr = '';
    child.stderr?.on('data', (d: Buffer) => void (stderr = (stderr + d.toString()).slice(-2000)));
    child.on('exit', (code, signal) => {
      if (!this.#stopping) o.logger.error({ code, signal, stderr }, 'turnserver exited');
    });
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (child.exitCode !== null) throw new Error(`turnserver exited with ${child.exitCode}: ${stderr}`);
      if (await this.#accepts()) break;
      if (Date.now() > deadline) {
        this.stop();
        throw new Error(`turnserver did not listen on ${o.listenIp}:${o.port} within ${timeoutMs} ms`);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    o.logger.info({ pid: child.pid, ip: o.listenIp, port: o.port, tlsPort: o.tls ? o.tlsPort : undefined }, 'TURN server started');
  }

  #accepts(): Promise<boolean> {
    return new Promise((resolve) => {
      const s = net.connect({ host: this.#options.listenIp, port: this.#options.port });
      s.once('connect', () => (s.destroy(), resolve(true)));
      s.once('error', () => resolve(false));
    });
  }

  stop(): void {
    this.#stopping = true;
    if (this.#child && this.#child.exitCode === null) this.#child.kill('SIGTERM');
  }
}
