import type { RawData, WebSocket } from 'ws';
import type { Logger } from '../../infra/logger.ts';
import { LogThrottle } from '../LogThrottle.ts';
import { TypedEmitter } from '../TypedEmitter.ts';
import {
  CascadeError,
  MAX_CONTROL_MESSAGE_BYTES,
  incomingSchema,
  responseSchemas,
  type CascadeErrorCode,
  type IncomingNotification,
  type IncomingRequest,
  type NotificationData,
  type NotificationMethod,
  type RequestData,
  type RequestMethod,
  type ResponseData,
} from './protocol.ts';

/** What the owner of a channel does with what arrives on it. */
export interface ChannelHandler {
  onRequest(request: IncomingRequest): Promise<unknown>;
  onNotification(notification: IncomingNotification): Promise<void> | void;
}

export interface ControlChannelOptions {
  logger: Logger;
  /** Ping interval; a neighbour that misses two pongs is considered gone. */
  pingIntervalMs: number;
  requestTimeoutMs: number;
  /** Bytes of ordered messages waiting to be applied before the neighbour is cut off (default 64 MiB). */
  maxBacklogBytes?: number;
}

export type ControlChannelEvents = {
  close: [reason: string];
};

// Bounds on one neighbour: ordered messages waiting to be applied, concurrent subscribe handlers,
// our own requests awaiting an answer, and bytes queued towards a neighbour that stopped reading.
const MAX_ORDERED_BACKLOG = 20_000;
/** 20,000 messages of up to 4 MiB each would be 80 GB: the backlog is bounded in bytes too. */
export const MAX_ORDERED_BACKLOG_BYTES = 64 * 1024 * 1024;
const MAX_CONCURRENT_REQUESTS = 512;
const MAX_OUTSTANDING = 1024;
const MAX_BUFFERED_BYTES = 16 * 1024 * 1024;

interface Outstanding {
  method: RequestMethod;
  resolve: (data: unknown) => void;
  reject: (err: Error) => void;
  timer: NodeJS.Timeout;
}

/**
 * One validated request/response + notification channel over a WebSocket, the same at both ends of
 * a cascade link. Ordered messages (catalog updates, openRoom) are applied one at a time in arrival
 * order; subscribe requests run concurrently (bounded). Liveness is checked with ws pings.
 */
export class ControlChannel extends TypedEmitter<ControlChannelEvents> {
  readonly #ws: WebSocket;
  readonly #logger: Logger;
  /** Malformed input from the neighbour: logged, but not without bound. */
  readonly #badInput: LogThrottle;
  readonly #options: ControlChannelOptions;
  #handler: ChannelHandler | undefined;
  #handlerSet: () => void = () => undefined;
  readonly #ready: Promise<void>;
  readonly #outstanding = new Map<number, Outstanding>();
  #nextId = 1;
  #chain: Promise<void> = Promise.resolve();
  #backlog = 0;
  #backlogBytes = 0;
  #concurrent = 0;
  #alive = true;
  readonly #pinger: NodeJS.Timeout;
  /** Messages and bytes each way (metrics; tests count what one join costs per link). */
  readonly counters = { sent: 0, sentBytes: 0, received: 0, receivedBytes: 0, sentByMethod: new Map<string, number>() };
  #closed = false;

  constructor(ws: WebSocket, options: ControlChannelOptions) {
    super();
    this.#ws = ws;
    this.#logger = options.logger;
    this.#badInput = new LogThrottle(options.logger);
    this.#options = options;
    this.#ready = new Promise<void>((r) => (this.#handlerSet = r));
    ws.on('message', (data, isBinary) => this.#onMessage(data, isBinary));
    ws.on('pong', () => (this.#alive = true));
    ws.on('close', (code, reason) => this.#onClose(`socket closed (${code} ${reason.toString().slice(0, 100)})`));
    ws.on('error', (err) => this.#logger.debug({ err: err.message }, 'control socket error'));
    this.#pinger = setInterval(() => {
      if (!this.#alive) {
        this.#logger.warn('neighbour stopped answering pings');
        this.#ws.terminate();
        this.#onClose('ping timeout');
        return;
      }
      this.#alive = false;
      try {
        this.#ws.ping();
      } catch {
        // closing anyway
      }
    }, options.pingIntervalMs);
    this.#pinger.unref();
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Whether the neighbour answers a ping within `timeoutMs` (never rejects). */
  probe(timeoutMs: number): Promise<boolean> {
    if (this.#closed) return Promise.resolve(false);
    return new Promise<boolean>((resolve) => {
      const done = (ok: boolean) => {
        clearTimeout(timer);
        this.#ws.off('pong', onPong);
        this.off('close', onClose);
        resolve(ok);
      };
      const onPong = () => done(true);
      const onClose = () => done(false);
      const timer = setTimeout(() => done(false), timeoutMs);
      this.#ws.on('pong', onPong);
      this.once('close', onClose);
      try {
        this.#ws.ping();
      } catch {
        done(false);
      }
    });
  }

  /** Messages are held (not dropped) until a handler is set, so nothing is lost during setup. */
  setHandler(handler: ChannelHandler): void {
    this.#handler = handler;
    this.#handlerSet();
  }

  request<M extends RequestMethod>(method: M, data: RequestData<M>, timeoutMs = this.#options.requestTimeoutMs): Promise<ResponseData<M>> {
    if (this.#closed) return Promise.reject(new CascadeError('closed', 'link is down'));
    if (this.#outstanding.size >= MAX_OUTSTANDING) return Promise.reject(new CascadeError('busy', 'too many requests in flight on this link'));
    const id = this.#nextId++;
    return new Promise<ResponseData<M>>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#outstanding.delete(id);
        reject(new CascadeError('timeout', `${method}: no answer in ${timeoutMs} ms`));
      }, timeoutMs);
      this.#outstanding.set(id, {
        method,
        resolve: (d) => {
          const parsed = responseSchemas[method].safeParse(d);
          if (parsed.success) resolve(parsed.data as ResponseData<M>);
          else reject(new CascadeError('bad_request', `${method}: malformed answer from neighbour`));
        },
        reject,
        timer,
      });
      this.#send({ t: 'req', id, m: method, d: data });
    });
  }

  notify<M extends NotificationMethod>(method: M, data: NotificationData<M>): void {
    this.#send({ t: 'ntf', m: method, d: data });
  }

  close(reason = 'closed'): void {
    if (this.#closed) return;
    try {
      this.#ws.close(1000, reason.slice(0, 100));
    } catch {
      this.#ws.terminate();
    }
    this.#onClose(reason);
  }

  #onMessage(data: RawData, isBinary: boolean): void {
    if (this.#closed) return;
    if (isBinary) return this.#protocolError('binary frame');
    const buf = Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data as Buffer);
    this.counters.received++;
    this.counters.receivedBytes += buf.length;
    if (buf.length > MAX_CONTROL_MESSAGE_BYTES) return this.#protocolError('message too large');
    let json: unknown;
    try {
      json = JSON.parse(buf.toString('utf8'));
    } catch {
      return this.#protocolError('invalid JSON');
    }
    const parsed = incomingSchema.safeParse(json);
    if (!parsed.success) {
      const id = (json as { t?: unknown; id?: unknown } | null)?.t === 'req' ? (json as { id?: unknown }).id : undefined;
      const issue = parsed.error.issues[0];
      const message = `${issue?.message ?? 'invalid message'}${issue?.path.length ? ` at ${issue.path.join('.')}` : ''}`;
      if (typeof id === 'number' && Number.isInteger(id) && id >= 0) this.#answerError(id, 'bad_request', message);
      this.#badInput.warn({ err: message }, 'invalid control message dropped');
      return;
    }
    const msg = parsed.data;
    if (msg.t === 'res') {
      const pending = this.#outstanding.get(msg.id);
      if (!pending) return;
      this.#outstanding.delete(msg.id);
      clearTimeout(pending.timer);
      if (msg.ok) pending.resolve(msg.d);
      else pending.reject(new CascadeError((msg.e?.code as CascadeErrorCode | undefined) ?? 'media_error', msg.e?.message ?? 'request failed'));
      return;
    }
    if (msg.t === 'req' && msg.m === 'subscribe') {
      if (this.#concurrent >= MAX_CONCURRENT_REQUESTS) return this.#answerError(msg.id, 'busy', 'too many subscribe requests in flight');
      this.#concurrent++;
      void this.#whenReady()
        .then(() => this.#runRequest(msg))
        .finally(() => this.#concurrent--);
      return;
    }
    if (this.#backlog >= MAX_ORDERED_BACKLOG || this.#backlogBytes + buf.length > (this.#options.maxBacklogBytes ?? MAX_ORDERED_BACKLOG_BYTES)) {
      // A neighbour that floods faster than we can apply is cut off; it reconnects and resyncs.
      this.#logger.error('neighbour flooded the control link; closing it');
      this.close('backlog overflow');
      return;
    }
    this.#backlog++;
    this.#backlogBytes += buf.length;
    const bytes = buf.length;
    this.#chain = this.#chain
      .then(() => this.#whenReady())
      .then(async () => {
        if (this.#closed) return;
        if (msg.t === 'req') await this.#runRequest(msg);
        else await this.#handler!.onNotification(msg);
      })
      .catch((err: unknown) => this.#logger.error({ err: (err as Error).message }, 'control notification failed'))
      .finally(() => {
        this.#backlog--;
        this.#backlogBytes -= bytes;
      });
  }

  #whenReady(): Promise<void> {
    return this.#ready;
  }

  async #runRequest(msg: IncomingRequest): Promise<void> {
    if (this.#closed) return;
    try {
      const d = await this.#handler!.onRequest(msg);
      this.#send({ t: 'res', id: msg.id, ok: true, d });
    } catch (err) {
      const code: CascadeErrorCode = err instanceof CascadeError ? err.code : 'media_error';
      const message = err instanceof Error ? err.message : String(err);
      this.#logger.debug({ method: msg.m, err: message }, 'control request failed');
      this.#answerError(msg.id, code, message);
    }
  }

  #answerError(id: number, code: CascadeErrorCode, message: string): void {
    this.#send({ t: 'res', id, ok: false, e: { code, message: message.slice(0, 300) } });
  }

  #protocolError(what: string): void {
    this.#badInput.warn({ what }, 'control protocol violation dropped');
  }

  #send(message: unknown): void {
    if (this.#closed || this.#ws.readyState !== this.#ws.OPEN) return;
    if (this.#ws.bufferedAmount > MAX_BUFFERED_BYTES) {
      this.#logger.error('neighbour not reading the control link; closing it');
      this.#ws.terminate();
      this.#onClose('send buffer overflow');
      return;
    }
    const text = JSON.stringify(message);
    const c = this.counters;
    c.sent++;
    c.sentBytes += Buffer.byteLength(text);
    const m = (message as { t: string; m?: string }).m ?? 'res';
    c.sentByMethod.set(m, (c.sentByMethod.get(m) ?? 0) + 1);
    this.#ws.send(text);
  }

  #onClose(reason: string): void {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#pinger);
    for (const p of this.#outstanding.values()) {
      clearTimeout(p.timer);
      p.reject(new CascadeError('closed', 'link is down'));
    }
    this.#outstanding.clear();
    this.#handlerSet(); // let anything waiting for a handler run (and see the channel closed)
    this.emit('close', reason);
  }
}
