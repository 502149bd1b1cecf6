import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import type { AddressInfo } from 'node:net';
import { LinkEmulator, type LinkEmulatorOptions } from '../support/link-emulator.ts';

// The user-space WAN link used by the cascade tests: delay, seeded loss, token-bucket rate with a
// bounded queue, both directions, byte counters.

interface Received {
  seq: number;
  latencyMs: number;
  bytes: number;
}

async function socket(): Promise<dgram.Socket> {
  const s = dgram.createSocket({ type: 'udp4', recvBufferSize: 8 << 20 });
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', r));
  return s;
}
const portOf = (s: dgram.Socket) => (s.address() as AddressInfo).port;

/** Sends `count` packets A -> B through a fresh emulator and collects what B gets until quiet. */
async function run(options: Omit<LinkEmulatorOptions, 'a' | 'b'>, count: number, size: number, gapMs: number) {
  const a = await socket();
  const b = await socket();
  const emu = await LinkEmulator.create({ ...options, a: { host: '127.0.0.1', port: portOf(a) }, b: { host: '127.0.0.1', port: portOf(b) } });
  const got: Received[] = [];
  let last = performance.now();
  b.on('message', (m, rinfo) => {
    assert.equal(rinfo.port, emu.portB, 'B hears from the emulator side facing it');
    got.push({ seq: m.readUInt32BE(0), latencyMs: performance.now() - m.readDoubleBE(4), bytes: m.length });
    last = performance.now();
  });
  const started = performance.now();
  for (let i = 0; i < count; i++) {
    const pkt = Buffer.alloc(size);
    pkt.writeUInt32BE(i, 0);
    pkt.writeDoubleBE(performance.now(), 4);
    a.send(pkt, emu.portA, '127.0.0.1');
    if (gapMs > 0 && i % 10 === 9) await new Promise((r) => setTimeout(r, gapMs * 10));
  }
  // Wait until nothing has arrived for a while (event-driven end, bounded).
  const deadline = performance.now() + 20_000;
  last = performance.now();
  while (performance.now() - last < 400 && performance.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  const elapsedMs = last - started;
  const counters = emu.counters;
  emu.close();
  a.close();
  b.close();
  return { got, counters, elapsedMs };
}

describe('user-space UDP link emulator', { timeout: 60_000 }, () => {
  test('delay and seeded loss: bounded latency, order kept, same seed drops the same packets', async () => {
    const opts = { link: { delayMs: 80, jitterMs: 20, loss: 0.1 }, seed: 42 };
    const first = await run(opts, 500, 200, 1);
    const second = await run(opts, 500, 200, 1);
    const other = await run({ ...opts, seed: 7 }, 500, 200, 1);
    const lossRate = 1 - first.got.length / 500;
    console.log(`# loss configured 10%: measured ${(lossRate * 100).toFixed(1)}%; latency min ${Math.min(...first.got.map((g) => g.latencyMs)).toFixed(1)} ms max ${Math.max(...first.got.map((g) => g.latencyMs)).toFixed(1)} ms`);
    assert.ok(lossRate > 0.05 && lossRate < 0.16, `loss near 10%: ${lossRate}`);
    assert.equal(first.counters.aToB.lost, 500 - first.got.length);
    assert.equal(first.counters.aToB.packetsOut, first.got.length);
    assert.equal(first.counters.aToB.bytesOut, first.got.length * 200);
    for (const g of first.got) assert.ok(g.latencyMs >= 79, `delay applied: ${g.latencyMs}`);
    assert.ok(Math.max(...first.got.map((g) => g.latencyMs)) < 80 + 20 + 150, 'delay bounded');
    const seqs = first.got.map((g) => g.seq);
    assert.deepEqual(seqs, [...seqs].sort((x, y) => x - y), 'no reordering');
    assert.deepEqual(second.got.map((g) => g.seq), seqs, 'same seed, same losses');
    assert.notDeepEqual(other.got.map((g) => g.seq), seqs, 'another seed, other losses');
  });

  test('token-bucket rate with a bounded queue: throughput near the rate, overflow tail-dropped', async () => {
    // 300 KB offered in ~0.3 s to a 1 Mbps link with a 30 KB queue.
    const { got, counters, elapsedMs } = await run({ link: { delayMs: 10, rateBps: 1_000_000, queueBytes: 30_000 }, seed: 1 }, 300, 1000, 1);
    const bytes = got.reduce((n, g) => n + g.bytes, 0);
    const firstArrival = Math.min(...got.map((g) => g.latencyMs));
    void firstArrival;
    const mbps = (bytes * 8) / (elapsedMs * 1000);
    console.log(`# 1 Mbps link: delivered ${bytes} B in ${elapsedMs.toFixed(0)} ms = ${mbps.toFixed(2)} Mbps; queue drops ${counters.aToB.queueDrops}`);
    assert.ok(counters.aToB.queueDrops > 0, 'queue overflowed');
    assert.equal(counters.aToB.packetsOut + counters.aToB.queueDrops, 300);
    assert.ok(mbps > 0.7 && mbps < 1.15, `throughput near 1 Mbps: ${mbps}`);
    // Queueing delay is bounded by the queue: 30 KB at 1 Mbps = 240 ms, plus 10 ms propagation.
    assert.ok(Math.max(...got.map((g) => g.latencyMs)) < 240 + 10 + 120, 'queueing delay bounded by the queue size');
  });

  test('relays both directions and learns endpoints it was not told', async () => {
    const a = await socket();
    const b = await socket();
    const emu = await LinkEmulator.create({ link: { delayMs: 5 }, bToA: { delayMs: 30 }, seed: 3 });
    // B's address is given once known (as a test does when both sides have their ports); A's is learnt.
    emu.setEndpoints(undefined, { host: '127.0.0.1', port: portOf(b) });
    const atB = new Promise<[Buffer, number]>((r) => b.once('message', (m, ri) => r([m, ri.port])));
    a.send(Buffer.from('ping'), emu.portA, '127.0.0.1');
    const [, fromPortAtB] = await atB;
    assert.equal(fromPortAtB, emu.portB);
    const t0 = performance.now();
    const atA = new Promise<[Buffer, number]>((r) => a.once('message', (m, ri) => r([m, ri.port])));
    b.send(Buffer.from('pong'), emu.portB, '127.0.0.1');
    const [msg, fromPortAtA] = await atA;
    assert.equal(msg.toString(), 'pong');
    assert.equal(fromPortAtA, emu.portA, 'A hears from the emulator side facing it (learnt from its first packet)');
    assert.ok(performance.now() - t0 >= 29, 'B->A has its own delay');
    // An outage drops everything until the link is restored.
    emu.setDown(true);
    let heard = 0;
    b.on('message', () => heard++);
    for (let i = 0; i < 5; i++) a.send(Buffer.from('lost'), emu.portA, '127.0.0.1');
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(heard, 0, 'nothing crosses a cut link');
    emu.setDown(false);
    const back = new Promise((r) => b.once('message', r));
    a.send(Buffer.from('back'), emu.portA, '127.0.0.1');
    await back;
    const c = emu.counters;
    assert.ok(c.aToB.lost >= 5);
    assert.equal(c.bToA.bytesOut, 4);
    assert.ok(c.aToB.bytesIn >= 4);
    emu.close();
    a.close();
    b.close();
  });
});
