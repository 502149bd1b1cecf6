import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import WebSocket from 'ws';
import { signNodeToken } from '../../infra/tokens.ts';
import { incomingSchema } from '../../sfu/cascade/protocol.ts';
import { requestSchema } from '../../sfu/protocol.ts';
import { CASCADE_SECRET, TreeNode, waitFor } from '../support/cascade-harness.ts';
import { frames, type Frame } from './sfu-fuzz-arbitraries.ts';
import { joinToken, startLimitedNode, type LimitedNode, type Msg } from './sfu-support.ts';

// The fuzz pass of issue 12 over the browsers' signalling protocol (sfu/protocol.ts) and the
// cascade control protocol (sfu/cascade/protocol.ts): thousands of seeded messages generated from
// the zod schemas — valid-shaped, mutated, garbage — sent over real WebSockets to a running node
// after a valid join / an authenticated link. Asserted: every signalling message is answered, every
// malformed one with an error; every cascade request (however malformed, if it carries an id) is
// answered; the node keeps serving; no mediasoup worker dies; rooms and connections return to zero.
// Replay a failure with FUZZ_SEED=<seed printed below>.

const SEED = Number(process.env.FUZZ_SEED ?? Date.now() % 2 ** 31);
const SIGNALLING_CASES = Number(process.env.FUZZ_SIGNALLING_CASES ?? 50000);
const CASCADE_CASES = Number(process.env.FUZZ_CASCADE_CASES ?? 30000);
const BUDGET_MS = 25_000;
const SRTP_KEY = Buffer.alloc(44, 7).toString('base64');
const MALFORMED_CODES = new Set(['bad_json', 'bad_request', 'too_large']);

console.log(`# fuzz seed ${SEED} (replay: FUZZ_SEED=${SEED})`);

/** One joined signalling connection, used strictly one message at a time. */
class FuzzSession {
  ws!: WebSocket;
  #next: ((m: Msg) => void) | undefined;
  #rejoins = 0;
  constructor(
    readonly url: string,
    readonly n: number,
    readonly role: 'chair' | 'participant',
  ) {}

  async open(): Promise<void> {
    this.ws = new WebSocket(this.url);
    this.ws.on('message', (d) => {
      const m = JSON.parse(String(d)) as Msg;
      if (m.type === 'response') this.#next?.(m);
    });
    this.ws.on('error', () => undefined);
    await new Promise((res, rej) => (this.ws.once('open', res), this.ws.once('error', rej)));
    await this.join();
  }

  /** (Re)joins a fresh room (a generated endMeeting ends the old one for hours). */
  async join(): Promise<void> {
    const room = `fuzz-${this.n}-${this.#rejoins++}`;
    const r = await this.exchange(JSON.stringify({ id: 'join', method: 'join', data: { token: await joinToken({ userId: 100 + this.n, room, role: this.role }) } }));
    assert.equal(r.ok, true, `rejoin: ${JSON.stringify(r.error)}`);
  }

  exchange(frame: string | Uint8Array): Promise<Msg> {
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`no answer (silence) to ${String(frame).slice(0, 200)}`)), 5000);
      this.#next = (m) => {
        clearTimeout(t);
        this.#next = undefined;
        resolve(m);
      };
      this.ws.send(frame, { binary: typeof frame !== 'string' });
    });
  }
}

describe('fuzz: browser signalling', { timeout: 120_000 }, () => {
  let n: LimitedNode;

  before(async () => {
    // The rate limit is not what is fuzzed here: lifted so every message reaches validation.
    n = await startLimitedNode({ requestsPerSecond: 1e6, requestBurst: 1e6 });
  });

  after(async () => {
    await n?.close();
  });

  test(`${SIGNALLING_CASES} generated messages: each answered, each malformed one with an error`, async () => {
    const sessions = [0, 1, 2, 3].map((i) => new FuzzSession(n.wsUrl, i, i === 0 ? 'chair' : 'participant'));
    for (const s of sessions) await s.open();
    const cases = fc.sample(frames(requestSchema), { seed: SEED, numRuns: SIGNALLING_CASES });
    const tally = { valid: 0, mutated: 0, garbage: 0, malformed: 0, ok: 0, errors: new Map<string, number>() };
    const t0 = performance.now();
    let sent = 0;
    // Four connections, each strictly request -> answer, in parallel.
    await Promise.all(
      sessions.map(async (s, k) => {
        for (let i = k; i < cases.length && performance.now() - t0 < BUDGET_MS; i += sessions.length) {
          const f = cases[i]!;
          const payload = f.kind === 'text' ? f.text : f.bytes;
          let malformed = f.kind === 'binary';
          if (f.kind === 'text') {
            try {
              malformed = !requestSchema.safeParse(JSON.parse(f.text)).success;
            } catch {
              malformed = true;
            }
          }
          if (f.kind === 'text' && Buffer.byteLength(f.text) > 64 * 1024) malformed = true;
          const r = await s.exchange(payload);
          sent++;
          tally[f.family]++;
          if (r.ok) tally.ok++;
          else tally.errors.set(r.error!.code, (tally.errors.get(r.error!.code) ?? 0) + 1);
          if (malformed) {
            tally.malformed++;
            assert.equal(r.ok, false, `malformed accepted (case ${i}): ${String(payload).slice(0, 300)}`);
            assert.ok(MALFORMED_CODES.has(r.error!.code), `malformed answered ${r.error!.code} (case ${i}): ${String(payload).slice(0, 300)}`);
          } else if (!r.ok) {
            assert.notEqual(r.error!.code, 'internal', `internal error on a valid-shaped request (case ${i}): ${String(payload).slice(0, 300)}`);
          }
          // A generated leave or endMeeting (or a worker-died room) leaves the session outside a room.
          if (!r.ok && r.error!.code === 'not_joined') await s.join();
        }
      }),
    );
    const tookMs = performance.now() - t0;
    console.log(
      `# signalling fuzz: ${sent} messages in ${(tookMs / 1000).toFixed(1)} s (valid-shaped ${tally.valid}, mutated ${tally.mutated}, garbage ${tally.garbage}; malformed ${tally.malformed}); ` +
        `answers: ok ${tally.ok}, ${[...tally.errors].map(([c, k]) => `${c} ${k}`).join(', ')}`,
    );
    assert.ok(sent >= Math.min(SIGNALLING_CASES, 2000), `only ${sent} messages went through in the budget`);
    assert.equal(n.node.pool.restarts, 0, 'no mediasoup worker died');
    assert.ok(n.node.pool.slots.every((slot) => !slot.worker.closed));
    // Still serving: a fresh site joins.
    const fresh = new FuzzSession(n.wsUrl, 9, 'participant');
    await fresh.open();
    for (const s of [...sessions, fresh]) s.ws.close();
    await waitFor('rooms and connections back to zero', () => n.node.rooms.size === 0 && n.node.connections === 0, 10_000);
  });
});

describe('fuzz: cascade control link', { timeout: 120_000 }, () => {
  let root: TreeNode;

  before(async () => {
    root = new TreeNode('fuzz-root', 1, undefined, { pingIntervalMs: 2000 });
    await root.start();
  });

  after(async () => {
    await root?.stop();
  });

  test(`${CASCADE_CASES} generated control messages from an authenticated child: every request answered, the node keeps serving`, async () => {
    const token = await signNodeToken(CASCADE_SECRET, { nodeId: 'fuzz-child', unitId: 2 }, 300);
    const ws = new WebSocket(root.cascadeUrl, { headers: { authorization: `Bearer ${token}` } });
    ws.on('error', () => undefined);
    await new Promise((res, rej) => (ws.once('open', res), ws.once('error', rej)));
    const waiting = new Map<number, (m: { ok: boolean; e?: { code: string } }) => void>();
    ws.on('message', (d) => {
      const m = JSON.parse(String(d)) as { t: string; id?: number; ok: boolean; e?: { code: string } };
      if (m.t === 'res' && typeof m.id === 'number') waiting.get(m.id)?.(m);
    });
    const answer = (id: number, frame: string) =>
      new Promise<{ ok: boolean; e?: { code: string } }>((resolve, reject) => {
        const t = setTimeout(() => reject(new Error(`no answer to request ${id}: ${frame.slice(0, 300)}`)), 10_000);
        waiting.set(id, (m) => (clearTimeout(t), waiting.delete(id), resolve(m)));
      });
    // Valid-shaped messages go to a few rooms and send media nowhere but loopback's discard port.
    const rooms = ['fz-a', 'fz-b', 'fz-c'];
    const rewrite = (v: unknown) => {
      const m = v as { d?: { room?: string; pipe?: unknown } };
      if (m.d?.room !== undefined) m.d.room = rooms[m.d.room.length % rooms.length]!;
      // A usable SRTP key, so that attaching succeeds and later messages reach an attached conference.
      if (m.d?.pipe) m.d.pipe = { ip: '127.0.0.1', port: 9, srtp: { cryptoSuite: 'AEAD_AES_256_GCM', keyBase64: SRTP_KEY } };
      return m;
    };
    const cases = fc.sample(frames(incomingSchema, rewrite), { seed: SEED + 1, numRuns: CASCADE_CASES });
    const tally = { sent: 0, requests: 0, ok: 0, errors: new Map<string, number>(), probes: 0 };
    const t0 = performance.now();
    let probeId = 1e12;
    for (const [i, f] of cases.entries()) {
      if (performance.now() - t0 > BUDGET_MS || ws.readyState !== WebSocket.OPEN) break;
      let id: number | undefined;
      if (f.kind === 'text') {
        try {
          const m = JSON.parse(f.text) as { t?: unknown; id?: unknown };
          // The node answers whatever says it is a request and carries a usable id, valid or not.
          if (m && m.t === 'req' && typeof m.id === 'number' && Number.isInteger(m.id) && m.id >= 0 && !waiting.has(m.id) && m.id < 1e12) id = m.id;
        } catch {
          id = undefined;
        }
      }
      const pending = id !== undefined ? answer(id, (f as Extract<Frame, { kind: 'text' }>).text) : undefined;
      ws.send(f.kind === 'text' ? f.text : f.bytes, { binary: f.kind === 'binary' });
      tally.sent++;
      if (pending) {
        tally.requests++;
        const r = await pending;
        if (r.ok) tally.ok++;
        else tally.errors.set(r.e?.code ?? '?', (tally.errors.get(r.e?.code ?? '?') ?? 0) + 1);
      }
      // Every 100 messages: the link still answers (nothing above stalled or killed it).
      if (i % 100 === 99) {
        const pid = probeId++;
        const frame = JSON.stringify({ t: 'req', id: pid, m: 'subscribe', d: { room: 'nowhere', producerId: 'none' } });
        const p = answer(pid, frame);
        ws.send(frame);
        assert.equal((await p).e?.code, 'not_found');
        tally.probes++;
      }
    }
    const tookMs = performance.now() - t0;
    console.log(
      `# cascade fuzz: ${tally.sent} messages in ${(tookMs / 1000).toFixed(1)} s, ${tally.requests} requests answered (ok ${tally.ok}, ${[...tally.errors].map(([c, k]) => `${c} ${k}`).join(', ')}), ${tally.probes} liveness probes; rooms open: ${root.node.rooms.size}`,
    );
    assert.equal(ws.readyState, WebSocket.OPEN, 'the link was not cut by malformed input');
    assert.ok(tally.sent >= Math.min(CASCADE_CASES, 2000), `only ${tally.sent} messages went through in the budget`);
    assert.equal(root.node.pool.restarts, 0, 'no mediasoup worker died');
    ws.close();
    await waitFor('child gone and its rooms closed', () => root.node.cascade!.children.length === 0 && root.node.rooms.size === 0, 10_000);
    // Still serving children: a fresh link attaches.
    const again = new WebSocket(root.cascadeUrl, { headers: { authorization: `Bearer ${token}` } });
    await new Promise((res, rej) => (again.once('open', res), again.once('error', rej)));
    again.close();
  });
});
