import net from 'node:net';

/**
 * A TCP relay in front of a node's /cascade endpoint, to break a control link on purpose.
 * `down = true` makes it silent (forwards nothing, refuses new connections, sends no FIN or RST:
 * a satellite or radio link dropping out); `cut()` also destroys the open connections.
 */
export class TcpRelay {
  down = false;
  target = { host: '127.0.0.1', port: 0 };
  readonly #sockets = new Set<net.Socket>();
  private constructor(readonly server: net.Server) {}

  static async create(): Promise<TcpRelay> {
    const server = net.createServer();
    const relay = new TcpRelay(server);
    server.on('connection', (client) => {
      client.on('error', () => undefined);
      if (relay.down) return void client.destroy();
      const upstream = net.connect(relay.target.port, relay.target.host);
      relay.#sockets.add(client).add(upstream);
      upstream.on('error', () => client.destroy());
      client.on('close', () => (upstream.destroy(), relay.#sockets.delete(client)));
      upstream.on('close', () => (client.destroy(), relay.#sockets.delete(upstream)));
      client.on('data', (d) => relay.down || upstream.write(d));
      upstream.on('data', (d) => relay.down || client.write(d));
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    return relay;
  }

  get port(): number {
    return (this.server.address() as net.AddressInfo).port;
  }

  cut(): void {
    this.down = true;
    for (const s of this.#sockets) s.destroy();
  }

  close(): void {
    this.cut();
    this.server.close();
  }
}
