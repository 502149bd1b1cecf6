// Shared by the tests/security/sfu-* files: an SFU node with chosen signalling limits on loopback,
// and a raw signalling client (requests, responses, every notification kept).
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import WebSocket from 'ws';
import { createLogger } from '../../infra/logger.ts';
import { signJoinToken, type JoinClaims } from '../../infra/tokens.ts';
import { SfuNode } from '../../sfu/SfuNode.ts';
import type { SignallingLimits } from '../../sfu/SignallingLimits.ts';
import { TEST_JOIN_KEYS } from '../support/join-keys.ts';
import { rtcPortRange } from '../support/rtc-ports.ts';

export interface LimitedNode {
  node: SfuNode;
  server: http.Server;
  wsUrl: string;
  close(): Promise<void>;
}

export async function startLimitedNode(signalling: Partial<SignallingLimits>): Promise<LimitedNode> {
  const ports = rtcPortRange(500);
  const node = new SfuNode({
    joinKey: TEST_JOIN_KEYS.publicKey,
    numWorkers: 1,
    listenIp: '127.0.0.1',
    webRtcBasePort: 0,
    rtcMinPort: ports.rtcMinPort,
    rtcMaxPort: ports.rtcMaxPort,
    logger: createLogger('sfu-security'),
    signalling,
  });
  await node.start();
  const server = http.createServer((_req, res) => res.writeHead(404).end());
  node.attach(server, '/sfu');
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  return {
    node,
    server,
    wsUrl: `ws://127.0.0.1:${port}/sfu`,
    async close() {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
      await node.close();
      ports.release();
    },
  };
}

export type Msg = { type: string; id?: string | null; ok?: boolean; data?: unknown; error?: { code: string; message: string }; method?: string };

export function joinToken(c: Partial<JoinClaims> & Pick<JoinClaims, 'userId' | 'room'>): Promise<string> {
  return signJoinToken(TEST_JOIN_KEYS.privateKey, { displayName: `site-${c.userId}`, unitId: 1, role: 'participant', ...c });
}

/** A signalling client without media. */
export class SignalClient {
  readonly ws: WebSocket;
  readonly notes: Array<{ method: string; data: unknown }> = [];
  readonly #waiting = new Map<string, (m: Msg) => void>();
  /** Answers that matched no waiting request (e.g. id null). */
  readonly stray: Msg[] = [];
  #n = 0;
  peerId = '';
  closedWith: number | undefined;

  constructor(url: string, opts: WebSocket.ClientOptions = {}) {
    this.ws = new WebSocket(url, opts);
    this.ws.on('message', (d) => {
      const m = JSON.parse(String(d)) as Msg;
      if (m.type === 'notification') this.notes.push({ method: m.method!, data: m.data });
      else if (typeof m.id === 'string' && this.#waiting.has(m.id)) this.#waiting.get(m.id)!(m);
      else this.stray.push(m);
    });
    this.ws.on('close', (code) => (this.closedWith = code));
    this.ws.on('error', () => undefined);
  }

  opened(): Promise<void> {
    return new Promise((res, rej) => {
      if (this.ws.readyState === WebSocket.OPEN) return res();
      this.ws.once('open', () => res());
      this.ws.once('error', rej);
      this.ws.once('unexpected-response', (_req, r) => rej(new Error(`refused: ${r.statusCode}`)));
    });
  }

  static async join(url: string, claims: Partial<JoinClaims> & Pick<JoinClaims, 'userId' | 'room'>, opts: WebSocket.ClientOptions = {}): Promise<SignalClient> {
    const c = new SignalClient(url, opts);
    await c.opened();
    const r = await c.request('join', { token: await joinToken(claims) });
    if (!r.ok) throw new Error(`join failed: ${JSON.stringify(r.error)}`);
    c.peerId = (r.data as { peerId: string }).peerId;
    return c;
  }

  request(method: string, data: unknown = {}, timeoutMs = 5000): Promise<Msg> {
    const id = `r${++this.#n}`;
    return this.send({ id, method, data }, id, timeoutMs);
  }

  /** Sends anything; resolves with the answer carrying `id`. */
  send(payload: unknown, id: string, timeoutMs = 5000): Promise<Msg> {
    return new Promise((res, rej) => {
      const t = setTimeout(() => (this.#waiting.delete(id), rej(new Error(`${id}: no response`))), timeoutMs);
      this.#waiting.set(id, (m) => (clearTimeout(t), this.#waiting.delete(id), res(m)));
      this.ws.send(typeof payload === 'string' ? payload : JSON.stringify(payload));
    });
  }

  closed(): Promise<number> {
    if (this.ws.readyState === WebSocket.CLOSED) return Promise.resolve(this.closedWith ?? 1006);
    return new Promise((r) => this.ws.once('close', (code) => r(code)));
  }

  close(): void {
    this.ws.terminate();
  }
}
