import type http from 'node:http';
import type { Duplex } from 'node:stream';

/** Takes over an upgrade request on its path; the socket already has an 'error' handler and a handshake deadline. */
export type UpgradeRoute = (req: http.IncomingMessage, socket: Duplex, head: Buffer) => void;

/** Default deadline from the upgrade request to a completed WebSocket handshake (ws clears it then). */
export const HANDSHAKE_TIMEOUT_MS = 10_000;

const dispatchers = new WeakMap<http.Server, UpgradeDispatcher>();

/**
 * The one 'upgrade' listener of an HTTP server. Node hands an upgraded socket over with no 'error'
 * listener and no timeout: one reset would be an uncaught ECONNRESET, and a request nobody answers
 * stays open for ever. So, before anything asynchronous, every socket gets an error handler and a
 * handshake deadline; a path no route claims is answered 404 and closed.
 */
export class UpgradeDispatcher {
  readonly #routes = new Map<string, UpgradeRoute>();
  readonly #handshakeTimeoutMs: number;

  private constructor(server: http.Server, handshakeTimeoutMs: number) {
    this.#handshakeTimeoutMs = handshakeTimeoutMs;
    server.on('upgrade', (req: http.IncomingMessage, socket: Duplex, head: Buffer) => this.#dispatch(req, socket, head));
  }

  /** The server's dispatcher (made on first use; the first caller's deadline applies). */
  static for(server: http.Server, handshakeTimeoutMs = HANDSHAKE_TIMEOUT_MS): UpgradeDispatcher {
    let d = dispatchers.get(server);
    if (!d) {
      d = new UpgradeDispatcher(server, handshakeTimeoutMs);
      dispatchers.set(server, d);
    }
    return d;
  }

  route(path: string, handler: UpgradeRoute): void {
    if (this.#routes.has(path)) throw new Error(`an upgrade route for ${path} is already registered`);
    this.#routes.set(path, handler);
  }

  #dispatch(req: http.IncomingMessage, socket: Duplex, head: Buffer): void {
    socket.on('error', () => socket.destroy());
    const s = socket as Duplex & { setTimeout?: (ms: number, cb?: () => void) => void };
    s.setTimeout?.(this.#handshakeTimeoutMs, () => socket.destroy());
    let path: string | undefined;
    try {
      path = new URL(req.url ?? '/', 'http://localhost').pathname;
    } catch {
      path = undefined; // an unparseable target is just an unknown path
    }
    const handler = path === undefined ? undefined : this.#routes.get(path);
    if (!handler) return refuseUpgrade(socket, 404, 'Not Found');
    try {
      handler(req, socket, head);
    } catch {
      refuseUpgrade(socket, 500, 'Internal Server Error');
    }
  }
}

/** Answers an upgrade request with a bare HTTP status and closes the socket. */
export function refuseUpgrade(socket: Duplex, status: number, text: string, headers: Record<string, string> = {}): void {
  if (socket.destroyed) return;
  const extra = Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`).join('');
  socket.end(`HTTP/1.1 ${status} ${text}\r\nConnection: close\r\n${extra}Content-Length: 0\r\n\r\n`);
  // A client that never reads must not keep the socket half-closed.
  setTimeout(() => socket.destroy(), 1000).unref();
}
