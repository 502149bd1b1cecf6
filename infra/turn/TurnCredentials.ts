import { createHmac } from 'node:crypto';

/** An RTCIceServer as the browser takes it. */
export interface IceServer {
  urls: string[];
  username: string;
  credential: string;
}

/**
 * TURN REST credentials (draft-uberti-behave-turn-rest, coturn's use-auth-secret): username
 * `<unix expiry>:<userId>`, password base64(HMAC-SHA1(secret, username)). Nothing is stored: the TURN
 * server recomputes the password from the shared secret and refuses it after the expiry.
 */
export class TurnCredentials {
  readonly #urls: string[];
  readonly #secret: string;
  readonly #ttlSeconds: number;

  constructor(opts: { urls: readonly string[]; secret: string; ttlSeconds: number }) {
    if (opts.urls.length === 0) throw new Error('TURN needs at least one turn:/turns: URL');
    for (const u of opts.urls) if (!/^turns?:[^\s]+$/.test(u)) throw new Error(`"${u}" is not a turn: or turns: URL`);
    if (opts.secret.length < 16) throw new Error('TURN secret: at least 16 characters');
    this.#urls = [...opts.urls];
    this.#secret = opts.secret;
    this.#ttlSeconds = opts.ttlSeconds;
  }

  static password(secret: string, username: string): string {
    return createHmac('sha1', secret).update(username).digest('base64');
  }

  /** Credentials for one person, valid for the configured lifetime from `nowMs`. */
  issue(userId: number | string, nowMs = Date.now()): IceServer {
    const username = `${Math.floor(nowMs / 1000) + this.#ttlSeconds}:${userId}`;
    return { urls: [...this.#urls], username, credential: TurnCredentials.password(this.#secret, username) };
  }
}
