import net from 'node:net';

/**
 * A TCP relay in front of a node's /cascade endpoint, to break a control link on purpose.
 * `down = true` makes it silent (forwards nothing, sends no FIN or RST: a satellite or radio link
 * dropping out). New connections during a silent outage are blackholed by default: accepted and
 * held without an answer, their bytes kept as TCP would keep retransmitting them, and connected
 * through once the link is back — never refused. `create({ whileDown: 'refuse' })` selects the old
 * behaviour (an immediate close). `cut()` also destroys the open connections.
 */
export class TcpRelay {
  #down = false;
  target = { host: '127.0.0.1', port: 0 };
  readonly #sockets = new Set<net.Socket>();
  readonly #held = new Map<net.Socket, Buffer[]>();
  /** Connections that arrived while the link was down (blackholed or refused). */
  heldDuringOutage = 0;
  private constructor(
    readonly server: net.Server,
    readonly whileDown: 'blackhole' | 'refuse',
  ) {}

  static async create(opts: { whileDown?: 'blackhole' | 'refuse' } = {}): Promise<TcpRelay> {
    const server = net.createServer();
    const relay = new TcpRelay(server, opts.whileDown ?? 'blackhole');
    server.on('connection', (client) => {
      client.on('error', () => undefined);
      if (relay.#down) {
        relay.heldDuringOutage++;
        if (relay.whileDown === 'refuse') return void client.destroy();
        const queued: Buffer[] = [];
        relay.#held.set(client, queued);
        relay.#sockets.add(client);
        client.on('data', (d) => queued.push(d));
        client.on('close', () => (relay.#held.delete(client), relay.#sockets.delete(client)));
        return;
      }
      relay.#pipe(client, []);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    return relay;
  }

  #pipe(client: net.Socket, queued: Buffer[]): void {
    client.removeAllListeners('data');
    const upstream = net.connect(this.target.port, this.target.host);
    this.#sockets.add(client).add(upstream);
    for (const d of queued) upstream.write(d);
    upstream.on('error', () => client.destroy());
    client.on('close', () => (upstream.destroy(), this.#sockets.delete(client)));
    upstream.on('close', () => (client.destroy(), this.#sockets.delete(upstream)));
    client.on('data', (d) => this.#down || upstream.write(d));
    upstream.on('data', (d) => this.#down || client.write(d));
  }

  get down(): boolean {
    return this.#down;
  }

  set down(v: boolean) {
    this.#down = v;
    if (v) return;
    // The link is back: what was blackholed goes through now.
    for (const [client, queued] of this.#held) {
      this.#held.delete(client);
      if (!client.destroyed) this.#pipe(client, queued);
    }
  }

  get port(): number {
    return (this.server.address() as net.AddressInfo).port;
  }

  cut(): void {
    this.#down = true;
    for (const s of this.#sockets) s.destroy();
    this.#held.clear();
  }

  close(): void {
    this.cut();
    this.server.close();
  }
}
