import net from 'node:net';

/**
 * A TCP forward from an address of the lab's bridge (reachable from every namespace host) to a server
 * of the host namespace, e.g. the test PostgreSQL on 127.0.0.1: the "database host" of a namespace
 * deployment. `cut()` takes the service away (open connections destroyed, new ones refused) until `restore()`.
 */
export class BridgeForward {
  readonly #sockets = new Set<net.Socket>();
  #down = false;

  private constructor(
    readonly server: net.Server,
    readonly host: string,
  ) {}

  static async start(host: string, target: { host: string; port: number }): Promise<BridgeForward> {
    const server = net.createServer();
    const fwd = new BridgeForward(server, host);
    server.on('connection', (client) => {
      client.on('error', () => undefined);
      if (fwd.#down) return void client.destroy();
      const upstream = net.connect(target.port, target.host);
      upstream.on('error', () => client.destroy());
      fwd.#sockets.add(client).add(upstream);
      client.on('close', () => (upstream.destroy(), fwd.#sockets.delete(client)));
      upstream.on('close', () => (client.destroy(), fwd.#sockets.delete(upstream)));
      client.pipe(upstream);
      upstream.pipe(client);
    });
    await new Promise<void>((r) => server.listen(0, host, r));
    return fwd;
  }

  get port(): number {
    return (this.server.address() as net.AddressInfo).port;
  }

  cut(): void {
    this.#down = true;
    for (const s of this.#sockets) s.destroy();
  }

  restore(): void {
    this.#down = false;
  }

  close(): void {
    this.cut();
    this.server.close();
  }
}
