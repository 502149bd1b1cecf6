import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { EmulatedLink, FREEZE_MS, RtpSink, playoutFreezes, rtpPayloadOffset, type RtpSource, startChain, waitFor, type TreeNode } from '../support/cascade-harness.ts';

// A village behind a satellite-like link: the media between the town node and the village node
// crosses a user-space link emulator (300 ms each way = 600 ms RTT, 3 % loss each way, 1 Mbps,
// seeded). The control link stays direct. NACK/RTX on the PipeTransports must repair the loss.

const ROOM = 'conf-satellite';
const SAT = { delayMs: 300, loss: 0.03, rateBps: 1_000_000, queueBytes: 64 * 1024 };

describe('cascade over a satellite-like link', { timeout: 120_000 }, () => {
  let nodes: TreeNode[];
  let city: TreeNode, town: TreeNode, village: TreeNode;
  let sink: RtpSink;
  let source: RtpSource;
  let chairId: string;
  let clearBytes = 0;
  let inspected = 0;
  const satellite = new EmulatedLink('village', 'town', {
    link: SAT,
    seed: 2026,
    inspect: (dir, data) => {
      // RTP from town to village: with SRTP the payload is ciphertext, so our synthetic
      // H.264 NAL header byte (0x41 / 0x67) shows up only by chance (~2/256).
      if (dir !== 'bToA' || data.length < 200 || (data[1]! >= 192 && data[1]! <= 223)) return;
      inspected++;
      const off = rtpPayloadOffset(data);
      if (data[off] === 0x41 || data[off] === 0x67) clearBytes++;
    },
  });

  before(async () => {
    nodes = await startChain(['city', 'town', 'village'], { admission: 'open', pipeRouteFor: satellite.routeFor, pingIntervalMs: 1000 });
    [city, town, village] = nodes as [TreeNode, TreeNode, TreeNode];
    sink = await RtpSink.create();
    const chair = await city.camera(ROOM, { ssrc: 0x3000, fps: 30, size: 900, displayName: 'chair' });
    source = chair.source;
    chairId = chair.ingest.producer.id;
    // The village site is in the meeting (its own camera keeps its room open).
    const vcam = await village.camera(ROOM, { ssrc: 0x3001, fps: 10, size: 600 });
    after(() => vcam.source.close());
  });

  after(async () => {
    source?.close();
    sink?.close();
    for (const n of [...(nodes ?? [])].reverse()) await n.stop().catch(() => undefined);
    await satellite.close();
  });

  test('the village decodes the chair through 600 ms RTT, 3 % loss, 1 Mbps: NACK/RTX repair, freezes reported', async () => {
    await waitFor('chair announced at the village', () => village.cascadeRoom(ROOM)?.producer(chairId) !== undefined, 10_000);
    const t0 = performance.now();
    const tap = await village.node.tap(ROOM, chairId, { ip: '127.0.0.1', port: sink.port });
    const port = tap.transport.tuple.localPort;
    await waitFor('first chair RTP at the village', () => sink.count(port).packets > 0, 15_000);
    const firstMs = performance.now() - t0;
    // Measure over a steady window of frames.
    const f0 = source.sent;
    const c0 = { ...sink.count(port), frames: undefined };
    const [emu] = await satellite.emulators();
    assert.ok(emu, 'the media went through the emulator');
    const e0 = emu.counters.bToA;
    await new Promise((r) => setTimeout(r, 8000));
    const f1 = source.sent;
    await new Promise((r) => setTimeout(r, 1500)); // let the last repairs (a few RTTs) land
    const c1 = sink.count(port);
    const e1 = emu.counters.bToA;
    let got = 0;
    for (let f = f0; f < f1; f++) if (c1.frames.has(f)) got++;
    const frames = f1 - f0;
    const stalls = playoutFreezes(c1.frames, f0, f1);
    const wireLoss = (e1.lost - e0.lost) / (e1.packetsIn - e0.packetsIn);
    const lat = [...c1.latencies].sort((a, b) => a - b);
    const median = lat[Math.floor(lat.length / 2)] ?? NaN;
    const [linkStats] = await town.link(ROOM, 'child:village')!.transport.getStats();
    const vProducer = village.cascadeRoom(ROOM)!.subscriptions.get(chairId)!.producer!;
    const [pstats] = await vProducer.getStats();
    console.log(
      `# satellite link: first RTP ${firstMs.toFixed(0)} ms after subscribing; wire loss town->village ${(wireLoss * 100).toFixed(1)} %; ` +
        `frames delivered ${got}/${frames} (${((got / frames) * 100).toFixed(2)} %); arrival gaps > ${FREEZE_MS} ms ${c1.freezes - c0.freezes}; ` +
        `in-order playout freezes (> ${FREEZE_MS} ms) ${stalls.count}, total ${stalls.totalMs.toFixed(0)} ms, longest ${stalls.longestMs.toFixed(0)} ms over 8 s; median capture->village ${median.toFixed(0)} ms; ` +
        `RTX bytes sent by town ${linkStats?.rtxBytesSent}; village pipe producer NACKs ${pstats?.nackCount}, lost ${pstats?.packetsLost}, retransmitted ${pstats?.packetsRetransmitted}; ` +
        `SRTP check: ${clearBytes}/${inspected} RTP payloads looked like clear H.264`,
    );
    assert.ok(wireLoss > 0.015 && wireLoss < 0.05, `the emulator did drop about 3 %: ${wireLoss}`);
    assert.ok(got / frames > 0.99, `NACK/RTX recovered nearly every lost frame: ${got}/${frames}`);
    assert.ok((linkStats?.rtxBytesSent ?? 0) > 0, 'retransmissions went over the link');
    assert.ok(median >= 300 && median < 1000, `one-way delay shows: ${median}`);
    assert.ok(inspected > 100 && clearBytes / inspected < 0.05, `media on the link is encrypted (SRTP): ${clearBytes}/${inspected}`);
    tap.close();
  });

  test('offered more than the 1 Mbit/s link: the village receives at most the link rate, the bottleneck drops the rest', async (t) => {
    // Two more cameras at ~0.8 Mbit/s each (80 frames/s of 1,250 bytes) beside the chair: ~1.8 Mbit/s
    // offered to a 1 Mbit/s link (two sources, so a loaded machine's timers still offer enough).
    const bigs = [await city.camera(ROOM, { ssrc: 0x3002, fps: 80, size: 1250, displayName: 'big-1' }), await city.camera(ROOM, { ssrc: 0x3003, fps: 80, size: 1250, displayName: 'big-2' })];
    t.after(() => bigs.forEach((b) => b.source.close()));
    const ids = bigs.map((b) => b.ingest.producer.id);
    await waitFor('big cameras announced at the village', () => ids.every((id) => village.cascadeRoom(ROOM)?.producer(id) !== undefined), 10_000);
    const taps = [];
    for (const id of ids) taps.push(await village.node.tap(ROOM, id, { ip: '127.0.0.1', port: sink.port }));
    const ports = taps.map((tp) => tp.transport.tuple.localPort);
    await waitFor('first big-camera RTP at the village', () => ports.every((p) => sink.count(p).packets > 0), 15_000);
    const [emu] = await satellite.emulators();
    assert.ok(emu, 'the media went through the emulator');
    const bytes = () => ports.reduce((n, p) => n + sink.count(p).bytes, 0);
    const b0 = bytes();
    const e0 = { ...emu.counters.bToA };
    const t0 = performance.now();
    await waitFor('a 6 s window', () => performance.now() - t0 >= 6000, 10_000, 100);
    const secs = (performance.now() - t0) / 1000;
    const receivedBps = ((bytes() - b0) * 8) / secs;
    const e1 = emu.counters.bToA;
    const inBps = ((e1.bytesIn - e0.bytesIn) * 8) / secs;
    const queueDrops = e1.queueDrops - e0.queueDrops;
    console.log(
      `# over the limit: entering the ${SAT.rateBps / 1e6} Mbit/s link town->village ${(inBps / 1e6).toFixed(2)} Mbit/s; the two big cameras received at the village ` +
        `${(receivedBps / 1e6).toFixed(2)} Mbit/s over ${secs.toFixed(1)} s; bottleneck queue drops ${queueDrops}, wire losses ${e1.lost - e0.lost}`,
    );
    assert.ok(inBps > SAT.rateBps * 1.2, `more than the limit was offered to the link: ${inBps}`);
    assert.ok(queueDrops > 20, `the rate limit dropped packets at the bottleneck: ${queueDrops}`);
    assert.ok(receivedBps <= SAT.rateBps * 1.1, `the village receives no more than the link rate: ${receivedBps}`);
    assert.ok(receivedBps > SAT.rateBps * 0.3, `the capped link still carries the cameras: ${receivedBps}`);
    assert.ok(receivedBps < inBps * 0.9, `the village got clearly less than entered the link: ${receivedBps} of ${inBps}`);
    for (const tp of taps) tp.close();
  });
});
