import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import WebSocket from 'ws';
import type { Browser, Page } from 'playwright-core';
import { launchChromium } from '../support/browser.ts';
import { openMeetingLink, checkedScreenshot, mediaStats, waitUntil, type MediaStats } from '../support/pages.ts';
import { startSfuHarness, type SfuHarness } from '../support/sfu-harness.ts';
import { SignJWT } from 'jose';
import { generateKeyPair, signJoinToken } from '../../infra/tokens.ts';
import { TEST_SECRET } from '../support/sfu-harness.ts';
import { TEST_JOIN_KEYS } from '../support/join-keys.ts';

// Two real Chromium pages (fake camera + microphone) in one room through one SFU node, a third,
// misbehaving signalling client beside them, and a mediasoup worker killed mid-call.

const ROOM = 'room-e2e';
const stats = mediaStats;
const waitFor = waitUntil;
type Stats = MediaStats;


/** Each page decodes the other's video (frames rising) and receives its audio. */
async function assertBothDecode(a: Page, b: Page, minFrames = 30): Promise<void> {
  await waitFor('both pages joined', async () => [await stats(a), await stats(b)], (s) => s.every((x) => x.state === 'joined' && x.peerId !== ''));
  for (const [page, other] of [
    [a, b],
    [b, a],
  ] as const) {
    const otherId = (await stats(other)).peerId;
    const first = await waitFor(
      'video from the other page',
      () => stats(page),
      (s) => (s.videoFramesDecoded[otherId] ?? 0) >= minFrames && s.audioPacketsReceived > 20,
    );
    const base = first.videoFramesDecoded[otherId] ?? 0;
    await waitFor('frames still rising', () => stats(page), (s) => (s.videoFramesDecoded[otherId] ?? 0) >= base + 15);
  }
}

class RawClient {
  readonly ws: WebSocket;
  readonly #inbox: Array<Record<string, unknown>> = [];
  #waiter: (() => void) | undefined;
  constructor(url: string) {
    this.ws = new WebSocket(url);
    this.ws.on('message', (d) => {
      this.#inbox.push(JSON.parse(String(d)) as Record<string, unknown>);
      this.#waiter?.();
    });
  }
  open(): Promise<void> {
    return new Promise((res, rej) => (this.ws.once('open', () => res()), this.ws.once('error', rej)));
  }
  /** Sends raw data and returns the next response (notifications are skipped). */
  async send(data: string | Buffer, binary = false): Promise<Record<string, unknown>> {
    this.ws.send(data, { binary });
    return this.nextResponse();
  }
  async nextResponse(timeoutMs = 5000): Promise<Record<string, unknown>> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const i = this.#inbox.findIndex((m) => m.type === 'response');
      if (i >= 0) return this.#inbox.splice(i, 1)[0]!;
      if (Date.now() > deadline) throw new Error('no response');
      await new Promise<void>((r) => {
        this.#waiter = r;
        setTimeout(r, 100);
      });
    }
  }
  request(id: string, method: string, data: unknown) {
    return this.send(JSON.stringify({ id, method, data }));
  }
}

const errorCode = (m: Record<string, unknown>) => (m.error as { code?: string } | undefined)?.code;

describe('SFU node with real browsers', { timeout: 240_000 }, () => {
  let harness: SfuHarness;
  let browser: Browser;
  let pageA: Page;
  let pageB: Page;

  before(async () => {
    harness = await startSfuHarness(2);
    browser = await launchChromium();
    const open = async (userId: number, name: string) =>
      openMeetingLink(browser, harness.baseUrl, await harness.token({ userId, room: ROOM, displayName: name }), name);
    pageA = await open(1, '寒亭区指挥中心');
    pageB = await open(2, '大柳树村服务站');
  });

  after(async () => {
    await browser?.close();
    await harness?.close();
  });

  test('two Chromium pages join one room and each decodes the other (video and audio)', async () => {
    await assertBothDecode(pageA, pageB);
    assert.equal((await stats(pageA)).peers, 1);
    const size = await pageA.evaluate(() => {
      const v = document.querySelector<HTMLVideoElement>('figure[data-peer] video');
      return v ? { w: v.videoWidth, h: v.videoHeight } : null;
    });
    assert.ok(size && size.w > 0 && size.h > 0, `remote video element shows a picture: ${JSON.stringify(size)}`);
    await checkedScreenshot(pageA, 'sfu-room-two-sites');
  });

  test('a third client sending malformed, oversized and out-of-order messages gets clear errors', async () => {
    const bad = new RawClient(harness.wsUrl);
    await bad.open();
    const cases: Array<[string, () => Promise<Record<string, unknown>>, string]> = [
      ['invalid JSON', () => bad.send('{"id": "1", "method": '), 'bad_json'],
      ['a JSON array', () => bad.send('[1,2,3]'), 'bad_request'],
      ['unknown method', () => bad.request('u1', 'launchMissiles', {}), 'bad_request'],
      ['missing fields', () => bad.request('u2', 'produce', { transportId: 'x' }), 'bad_request'],
      ['oversized (100 KB)', () => bad.request('u3', 'join', { token: 'a'.repeat(100_000) }), 'too_large'],
      ['binary frame', () => bad.send(Buffer.from([1, 2, 3]), true), 'bad_request'],
      ['createTransport before join', () => bad.request('o1', 'createTransport', { direction: 'send' }), 'not_joined'],
      ['forged token', () => bad.request('o2', 'join', { token: 'eyJhbGciOiJIUzI1NiJ9.e30.forged' }), 'unauthorized'],
    ];
    for (const [what, run, code] of cases) {
      const res = await run();
      assert.equal(res.ok, false, what);
      assert.equal(errorCode(res), code, `${what}: ${JSON.stringify(res)}`);
      assert.ok(typeof (res.error as { message?: string }).message === 'string', `${what} has a message`);
    }
    // The id of a request that failed validation is echoed so the client can match it.
    assert.equal((await bad.request('echo-me', 'consume', { producerId: 'not-a-uuid' })).id, 'echo-me');

    const expired = await signJoinToken(TEST_JOIN_KEYS.privateKey, { userId: 9, displayName: 'x', unitId: 1, room: ROOM, role: 'viewer' }, -10);
    assert.equal(errorCode(await bad.request('e1', 'join', { token: expired })), 'token_expired');
    // Only the API's private key admits: not another key pair, and not the shared HS256 secret that
    // every node of a deployment knows (a node cannot mint itself a way into a room).
    const claims = { userId: 9, displayName: 'x', unitId: 1, room: ROOM, role: 'chair' } as const;
    const otherKey = await signJoinToken(generateKeyPair().privateKey, claims);
    assert.equal(errorCode(await bad.request('e2', 'join', { token: otherKey })), 'unauthorized');
    const minted = await new SignJWT({ ...claims }).setProtectedHeader({ alg: 'HS256' }).setIssuer('grassroots-av').setAudience('sfu-join').setExpirationTime('5m').sign(new TextEncoder().encode(TEST_SECRET));
    assert.equal(errorCode(await bad.request('e3', 'join', { token: minted })), 'unauthorized');

    const viewer = await signJoinToken(TEST_JOIN_KEYS.privateKey, { userId: 3, displayName: '监督员', unitId: 1, room: ROOM, role: 'viewer' });
    const joined = await bad.request('j1', 'join', { token: viewer });
    assert.equal(joined.ok, true, JSON.stringify(joined));
    const producers = (joined.data as { producers: Array<{ producerId: string }> }).producers;
    assert.equal(producers.length, 4, 'sees both pages\' audio and video producers');
    assert.equal(errorCode(await bad.request('j2', 'join', { token: viewer })), 'already_joined');
    assert.equal(errorCode(await bad.request('j3', 'connectTransport', { transportId: crypto.randomUUID(), dtlsParameters: { fingerprints: [{ algorithm: 'sha-256', value: 'AA' }] } })), 'not_found');
    assert.equal(errorCode(await bad.request('j4', 'createTransport', { direction: 'send' })), 'forbidden');
    assert.equal(errorCode(await bad.request('j5', 'consume', { producerId: producers[0]!.producerId })), 'bad_request', 'consume before capabilities');
    assert.equal(errorCode(await bad.request('j6', 'consume', { producerId: crypto.randomUUID() })), 'not_found');
    assert.equal(errorCode(await bad.request('j7', 'setRtpCapabilities', { rtpCapabilities: { codecs: 'all' } })), 'bad_request');

    // A flood is cut by the rate limit, the connection survives it.
    for (let i = 0; i < 150; i++) bad.ws.send(JSON.stringify({ id: `f${i}`, method: 'leave-not', data: {} }));
    const codes = new Set<string | undefined>();
    for (let i = 0; i < 150; i++) codes.add(errorCode(await bad.nextResponse()));
    assert.ok(codes.has('rate_limited'), `flood is rate limited: ${[...codes].join(',')}`);
    await new Promise((r) => setTimeout(r, 2500)); // let the bucket refill
    const recv = await bad.request('r1', 'createTransport', { direction: 'recv' });
    assert.equal(recv.ok, true, `still served after the flood: ${JSON.stringify(recv)}`);
    bad.ws.close();

    // The two pages kept talking throughout.
    await assertBothDecode(pageA, pageB, 1);
    const metrics = await (await fetch(`${harness.baseUrl}/metrics`)).text();
    assert.match(metrics, /sfu_signalling_errors_total\{code="bad_json"\} 1/);
    assert.match(metrics, /sfu_peers 2/);
  });

  test('a worker killed with SIGKILL mid-call is replaced and the pages reconnect with media', async () => {
    const room = harness.node.rooms.get(ROOM);
    assert.ok(room, 'room exists');
    const pid = room.slot.worker.pid!;
    const replaced = new Promise<number>((r) => harness.node.once('workerreplaced', r));
    const killedAt = Date.now();
    process.kill(pid, 'SIGKILL');
    const newPid = await replaced;
    assert.notEqual(newPid, pid);
    await waitFor('both pages rejoined', async () => [await stats(pageA), await stats(pageB)], (s) => s.every((x) => x.reconnects >= 1 && x.state === 'joined'));
    await assertBothDecode(pageA, pageB);
    console.log(`# worker SIGKILL -> both pages decoding again: ${Date.now() - killedAt} ms`);
    const metrics = await (await fetch(`${harness.baseUrl}/metrics`)).text();
    assert.match(metrics, /sfu_workers 2/);
    assert.match(metrics, /sfu_worker_restarts 1/);
  });

  test('one page leaves and the other is told', async () => {
    const bId = (await stats(pageB)).peerId;
    assert.ok(bId);
    await pageB.getByRole('button', { name: '离开会议' }).click();
    await waitFor('page A sees B leave', () => stats(pageA), (s) => s.peers === 0 && Object.keys(s.videoFramesDecoded).length === 0);
    await pageA.getByText('暂无其他参会方').waitFor({ timeout: 5000 });
  });
});
