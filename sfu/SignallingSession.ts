import type { IceServer } from '../infra/turn/TurnCredentials.ts';
import type { KeyObject } from 'node:crypto';
import type { WebSocket, RawData } from 'ws';
import type { types } from 'mediasoup';
import type { Logger } from '../infra/logger.ts';
import { TokenError, verifyJoinToken, type JoinClaims } from '../infra/tokens.ts';
import type { Peer, Notify } from './Peer.ts';
import { DEFAULT_SIGNALLING_LIMITS, type SignallingLimits } from './SignallingLimits.ts';
import {
  MAX_REQUEST_BYTES,
  SignallingError,
  requestSchema,
  type ConferenceStateView,
  type ErrorCode,
  type Layout,
  type Request,
  type ServerMessage,
} from './protocol.ts';

/** What a session needs from its node. */
export interface SessionHost {
  readonly joinKey: KeyObject;
  /** `token`: the join token the peer was admitted with (the room's grant towards the cascade parent). */
  joinRoom(claims: JoinClaims, rtpCapabilities: types.RtpCapabilities | undefined, notify: Notify, token?: string): Promise<Peer>;
  leaveRoom(peer: Peer): void;
  roomState(peer: Peer): {
    peers: Peer['info'][];
    producers: ReturnType<Peer['producerInfos']>;
    routerRtpCapabilities: types.RtpCapabilities;
    conference: ConferenceStateView;
    layout: Layout;
    counts: { joined: number };
  };
  countError(code: ErrorCode): void;
  countTimeout(reason: 'join' | 'ping'): void;
  /** TURN servers with short-lived credentials for this person, handed out with the join (infra/turn/). */
  iceServers?(claims: JoinClaims): IceServer[] | undefined;
}

// Bounds on one client: requests are handled one at a time in arrival order, at most MAX_PENDING
// waiting; a token bucket caps the rate (SignallingLimits); a client that stops reading is cut off
// rather than letting its send buffer grow without end; one that does not join in time, or stops
// answering pings, is closed (and so leaves its room).
const MAX_PENDING = 32;
const MAX_BUFFERED_BYTES = 4 * 1024 * 1024;

/** One WebSocket connection: validates, rate-limits and serialises requests, then dispatches them. */
export class SignallingSession {
  readonly #ws: WebSocket;
  readonly #host: SessionHost;
  readonly #logger: Logger;
  #peer: Peer | undefined;
  readonly #limits: SignallingLimits;
  #pending = 0;
  #chain: Promise<void> = Promise.resolve();
  #tokens: number;
  #lastRefill = Date.now();
  #joinTimer: NodeJS.Timeout | undefined;
  readonly #pinger: NodeJS.Timeout;
  #alive = true;

  constructor(ws: WebSocket, host: SessionHost, logger: Logger, limits: SignallingLimits = DEFAULT_SIGNALLING_LIMITS) {
    this.#ws = ws;
    this.#host = host;
    this.#logger = logger;
    this.#limits = limits;
    this.#tokens = limits.requestBurst;
    ws.on('message', (data, isBinary) => this.#onMessage(data, isBinary));
    ws.on('close', () => this.#onClose());
    ws.on('error', (err) => this.#logger.debug({ err: err.message }, 'socket error'));
    ws.on('pong', () => (this.#alive = true));
    this.#armJoinDeadline();
    this.#pinger = setInterval(() => {
      if (!this.#alive) {
        this.#host.countTimeout('ping');
        this.#logger.info('signalling peer stopped answering pings; closing');
        this.#ws.terminate(); // 'close' follows: the peer leaves its room
        return;
      }
      this.#alive = false;
      try {
        this.#ws.ping();
      } catch {
        // closing anyway
      }
    }, limits.pingIntervalMs);
    this.#pinger.unref();
  }

  /** A connection outside a room (new, or after `leave`) must join within the deadline. */
  #armJoinDeadline(): void {
    clearTimeout(this.#joinTimer);
    this.#joinTimer = setTimeout(() => {
      if (this.#peer) return;
      this.#host.countTimeout('join');
      this.#logger.debug('no join in time; closing');
      this.#ws.close(4008, 'join deadline');
      // A client that does not complete the close handshake is cut.
      setTimeout(() => this.#ws.terminate(), 2000).unref();
    }, this.#limits.joinDeadlineMs);
    this.#joinTimer.unref();
  }

  #onClose(): void {
    clearTimeout(this.#joinTimer);
    clearInterval(this.#pinger);
    this.#leave();
  }

  #onMessage(data: RawData, isBinary: boolean): void {
    const size = Array.isArray(data) ? data.reduce((n, b) => n + b.length, 0) : data instanceof ArrayBuffer ? data.byteLength : data.length;
    if (!this.#takeToken()) return this.#fail(null, 'rate_limited', 'too many requests; slow down');
    if (isBinary) return this.#fail(null, 'bad_request', 'binary frames are not part of the protocol');
    if (size > MAX_REQUEST_BYTES) return this.#fail(null, 'too_large', `request exceeds ${MAX_REQUEST_BYTES} bytes`);
    const text = Array.isArray(data) ? Buffer.concat(data).toString('utf8') : Buffer.from(data as Buffer).toString('utf8');
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      return this.#fail(null, 'bad_json', 'request is not valid JSON');
    }
    const id = typeof json === 'object' && json !== null && typeof (json as { id?: unknown }).id === 'string' ? (json as { id: string }).id.slice(0, 64) : null;
    const parsed = requestSchema.safeParse(json);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      const where = issue && issue.path.length ? ` at ${issue.path.join('.')}` : '';
      return this.#fail(id, 'bad_request', `${issue?.message ?? 'invalid request'}${where}`);
    }
    if (this.#pending >= MAX_PENDING) return this.#fail(id, 'busy', 'too many requests in flight');
    this.#pending++;
    const request = parsed.data;
    this.#chain = this.#chain.then(async () => {
      try {
        const result = await this.#dispatch(request);
        this.#send({ type: 'response', id: request.id, ok: true, data: result });
      } catch (err) {
        if (err instanceof SignallingError) {
          this.#fail(request.id, err.code, err.message);
        } else {
          // mediasoup rejects semantically wrong RTP/DTLS parameters with TypeError/Error.
          const message = err instanceof Error ? err.message : String(err);
          this.#logger.debug({ method: request.method, err: message }, 'request failed');
          this.#fail(request.id, err instanceof TypeError ? 'bad_request' : 'media_error', message.slice(0, 300));
        }
      } finally {
        this.#pending--;
      }
    });
  }

  async #dispatch(request: Request): Promise<unknown> {
    if (this.#peer?.closed) {
      // Removed from its room (worker died, meeting ended, replaced): it must join again in time.
      this.#peer = undefined;
      this.#armJoinDeadline();
    }
    if (request.method === 'join') return this.#join(request.data);
    const peer = this.#peer;
    if (!peer) throw new SignallingError('not_joined', 'join a room first');
    switch (request.method) {
      case 'setRtpCapabilities':
        return peer.setRtpCapabilities(request.data);
      case 'createTransport':
        return peer.createTransport(request.data);
      case 'connectTransport':
        return peer.connectTransport(request.data);
      case 'restartIce':
        return peer.restartIce(request.data);
      case 'produce':
        return peer.produce(request.data);
      case 'closeProducer':
        return peer.closeProducer(request.data);
      case 'pauseProducer':
        return peer.pauseProducer(request.data);
      case 'resumeProducer':
        return peer.resumeProducer(request.data);
      case 'consume':
        return peer.consume(request.data);
      case 'setConsumerLayer':
        return peer.setConsumerLayer(request.data);
      case 'closeConsumer':
        return peer.closeConsumer(request.data);
      case 'siteProducers':
        return peer.siteProducers(request.data);
      case 'warm':
        return peer.warm(request.data);
      case 'createPlainTransport':
        return peer.createPlainTransport(request.data);
      case 'connectPlainTransport':
        return peer.connectPlainTransport(request.data);
      case 'pauseConsumer':
        return peer.pauseConsumer(request.data);
      case 'resumeConsumer':
        return peer.resumeConsumer(request.data);
      case 'chairCommand':
        return peer.chairCommand(request.data);
      case 'raiseHand':
        return peer.raiseHand(request.data);
      case 'leave':
        this.#leave();
        this.#armJoinDeadline();
        return {};
    }
  }

  async #join(data: Extract<Request, { method: 'join' }>['data']) {
    if (this.#peer) throw new SignallingError('already_joined', 'already in a room; leave first');
    let claims: JoinClaims;
    try {
      claims = await verifyJoinToken(this.#host.joinKey, data.token);
    } catch (err) {
      if (err instanceof TokenError && err.code === 'expired') throw new SignallingError('token_expired', 'join token expired');
      throw new SignallingError('unauthorized', 'join token invalid');
    }
    const peer = await this.#host.joinRoom(
      claims,
      data.rtpCapabilities as types.RtpCapabilities | undefined,
      (method, payload) => this.#send({ type: 'notification', method, data: payload }),
      data.token,
    );
    if (this.#ws.readyState !== this.#ws.OPEN) {
      this.#host.leaveRoom(peer);
      throw new SignallingError('internal', 'connection closed while joining');
    }
    this.#peer = peer;
    clearTimeout(this.#joinTimer);
    const iceServers = this.#host.iceServers?.(claims);
    return { peerId: peer.id, roomId: claims.room, role: claims.role, ...this.#host.roomState(peer), ...(iceServers ? { iceServers } : {}) };
  }

  #leave(): void {
    const peer = this.#peer;
    this.#peer = undefined;
    if (peer && !peer.closed) this.#host.leaveRoom(peer);
  }

  #takeToken(): boolean {
    const now = Date.now();
    this.#tokens = Math.min(this.#limits.requestBurst, this.#tokens + ((now - this.#lastRefill) / 1000) * this.#limits.requestsPerSecond);
    this.#lastRefill = now;
    if (this.#tokens < 1) return false;
    this.#tokens -= 1;
    return true;
  }

  #fail(id: string | null, code: ErrorCode, message: string): void {
    this.#host.countError(code);
    this.#send({ type: 'response', id, ok: false, error: { code, message } });
  }

  #send(message: ServerMessage): void {
    if (this.#ws.readyState !== this.#ws.OPEN) return;
    if (this.#ws.bufferedAmount > MAX_BUFFERED_BYTES) {
      this.#logger.warn('client not reading; closing its connection');
      this.#ws.terminate();
      return;
    }
    this.#ws.send(JSON.stringify(message));
  }
}
