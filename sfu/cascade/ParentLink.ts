import net from 'node:net';
import tls from 'node:tls';
import WebSocket from 'ws';
import type { Logger } from '../../infra/logger.ts';
import { TypedEmitter } from '../TypedEmitter.ts';
import { ControlChannel } from './ControlChannel.ts';
import { MAX_CONTROL_MESSAGE_BYTES } from './protocol.ts';

export interface ParentLinkOptions {
  /** ws(s)://parent/cascade */
  url: string;
  /** A fresh node token for each attempt (tokens expire; a long outage must not lock us out). */
  token: () => Promise<string>;
  logger: Logger;
  pingIntervalMs: number;
  requestTimeoutMs: number;
  backoffMinMs: number;
  backoffMaxMs: number;
  /** How a wss:// parent is checked; without it, against the system's trusted CAs. */
  tls?: ParentTlsOptions;
}

/**
 * The parent's certificate: pinned (SHA-256 fingerprint, AB:CD:…, of its leaf or of any CA in the chain
 * it presents: pinning the local CA survives leaf renewals), or checked against a CA (PEM) with the host name.
 */
export interface ParentTlsOptions {
  fingerprint256?: string;
  ca?: string;
}

export type ParentLinkEvents = {
  /** Connected and authenticated; the channel is the link until 'down'. */
  up: [channel: ControlChannel];
  down: [reason: string];
  /** A wss:// parent's certificate was refused (no token was sent to it). */
  tlsrefused: [reason: string];
};

/** The child's side of the control link: one WebSocket to the parent, re-dialled with backoff. */
export class ParentLink extends TypedEmitter<ParentLinkEvents> {
  readonly #options: ParentLinkOptions;
  #channel: ControlChannel | undefined;
  #attempt = 0;
  #timer: NodeJS.Timeout | undefined;
  #socket: WebSocket | undefined;
  #closed = false;
  /** Connections made since start (1 = the first). */
  connects = 0;

  constructor(options: ParentLinkOptions) {
    super();
    this.#options = options;
  }

  get channel(): ControlChannel | undefined {
    return this.#channel && !this.#channel.closed ? this.#channel : undefined;
  }

  start(): void {
    void this.#dial();
  }

  close(): void {
    this.#closed = true;
    clearTimeout(this.#timer);
    this.#channel?.close('node shutdown');
    this.#socket?.terminate();
  }

  async #dial(): Promise<void> {
    if (this.#closed) return;
    const log = this.#options.logger;
    let token: string;
    try {
      token = await this.#options.token();
    } catch (err) {
      log.error({ err: (err as Error).message }, 'cannot sign node token');
      return this.#retry();
    }
    // A wss:// parent is verified before the request (and so the token) leaves this node.
    let secured: tls.TLSSocket | undefined;
    if (new URL(this.#options.url).protocol === 'wss:') {
      try {
        secured = await this.#secureSocket();
      } catch (err) {
        const reason = (err as Error).message;
        log.error({ url: this.#options.url, reason }, 'parent certificate refused');
        this.emit('tlsrefused', reason);
        return this.#retry();
      }
      if (this.#closed) return void secured.destroy();
    }
    const socket = secured;
    const ws = new WebSocket(this.#options.url, {
      headers: { authorization: `Bearer ${token}` },
      maxPayload: MAX_CONTROL_MESSAGE_BYTES,
      handshakeTimeout: 5000,
      ...(socket ? { createConnection: () => socket } : {}),
    });
    this.#socket = ws;
    let opened = false;
    ws.once('open', () => {
      opened = true;
      if (this.#closed) return ws.terminate();
      this.#attempt = 0;
      this.connects++;
      const channel = new ControlChannel(ws, {
        logger: log,
        pingIntervalMs: this.#options.pingIntervalMs,
        requestTimeoutMs: this.#options.requestTimeoutMs,
      });
      this.#channel = channel;
      channel.once('close', (reason) => {
        if (this.#channel === channel) this.#channel = undefined;
        log.warn({ reason }, 'parent link down');
        this.emit('down', reason);
        this.#retry();
      });
      log.info({ url: this.#options.url }, 'parent link up');
      this.emit('up', channel);
    });
    ws.once('unexpected-response', (_req, res) => {
      log.warn({ status: res.statusCode }, 'parent refused the link');
      ws.terminate();
    });
    ws.on('error', (err) => log.debug({ err: err.message }, 'parent link error'));
    ws.once('close', () => {
      if (!opened) this.#retry();
    });
  }

  /** A TLS connection to the parent whose certificate passed the pin or the CA check. */
  #secureSocket(): Promise<tls.TLSSocket> {
    const u = new URL(this.#options.url);
    const pin = this.#options.tls?.fingerprint256?.toUpperCase();
    const ca = this.#options.tls?.ca;
    const host = u.hostname.replace(/^\[|\]$/g, '');
    return new Promise((resolve, reject) => {
      const socket = tls.connect({
        host,
        port: Number(u.port || 443),
        ...(net.isIP(host) ? {} : { servername: host }),
        ALPNProtocols: ['http/1.1'],
        // With a pin the fingerprint is the check (the chain may be a local CA nobody else trusts).
        ...(pin ? { rejectUnauthorized: false } : ca ? { ca } : {}),
      });
      const timer = setTimeout(() => fail(new Error('TLS handshake timed out')), 5000);
      const fail = (err: Error): void => {
        clearTimeout(timer);
        socket.destroy();
        reject(err);
      };
      socket.once('error', fail);
      socket.once('secureConnect', () => {
        clearTimeout(timer);
        if (pin) {
          const seen: string[] = [];
          let cert: tls.DetailedPeerCertificate | undefined = socket.getPeerCertificate(true);
          while (cert && cert.fingerprint256 && !seen.includes(cert.fingerprint256)) {
            seen.push(cert.fingerprint256);
            cert = cert.issuerCertificate;
          }
          if (!seen.includes(pin)) return fail(new Error(`certificate does not match the pinned fingerprint (got ${seen[0] ?? 'none'})`));
        }
        socket.off('error', fail);
        resolve(socket);
      });
    });
  }

  #retry(): void {
    if (this.#closed) return;
    clearTimeout(this.#timer);
    const { backoffMinMs, backoffMaxMs } = this.#options;
    const base = Math.min(backoffMaxMs, backoffMinMs * 2 ** this.#attempt);
    this.#attempt = Math.min(this.#attempt + 1, 30);
    // Jitter so that the children of a restarted node do not all dial in the same instant.
    const delay = base * (0.8 + Math.random() * 0.4);
    this.#timer = setTimeout(() => void this.#dial(), delay);
  }
}
