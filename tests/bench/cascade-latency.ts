// Cascade benchmark, on loopback in one process (one mediasoup worker per node):
//  1. Added latency per hop: a chain of BENCH_NODES nodes (default 6: 0..5 hops). The chair's
//     synthetic H.264 stream carries its capture time in the payload; a tap at each level reports
//     capture-to-receive; per-hop cost = slope over hops.
//  2. Link bandwidth of a 1,000-site broadcast, cascade vs flat star: the bytes/s of one copy of the
//     stream over a pipe (SRTP + RTCP included) and to one consumer are measured here; a flat star
//     sends one copy per site from the city node, the cascade one copy per child link at every level.
//
// Run: node --import tsx tests/bench/cascade-latency.ts   (BENCH_SECONDS, BENCH_NODES, BENCH_FPS)
import { RtpSink, type RtpSource, startChain, waitFor, type TreeNode } from '../support/cascade-harness.ts';
import type { Tap } from '../../sfu/Tap.ts';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 6);
const NODES = Number(process.env.BENCH_NODES ?? 6);
const FPS = Number(process.env.BENCH_FPS ?? 30);
const ROOM = 'bench-cascade';

const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((s.length - 1) * p))] ?? NaN;
};

async function main() {
  const names = ['city', 'county', 'town', 'community', 'village', 'kiosk', 'kiosk2', 'kiosk3'].slice(0, NODES);
  const nodes = await startChain(names, { admission: 'open', lingerMs: 1000 });
  const sink = await RtpSink.create();
  const { ingest, source: src } = await nodes[0]!.camera(ROOM, { ssrc: 0x5000, fps: FPS, size: 1000, displayName: 'chair' });
  const chair = ingest.producer.id;
  // Every other level is in the meeting with a (quiet) camera of its own, which keeps its room open.
  const extra: RtpSource[] = [];
  for (const n of nodes.slice(1)) {
    extra.push((await n.camera(ROOM, { ssrc: 0x6000 + n.unitId, fps: 1, size: 200 })).source);
  }
  const taps: Tap[] = [];
  for (const n of nodes) {
    await waitFor(`chair at ${n.name}`, () => n.name === 'city' || n.cascadeRoom(ROOM)?.producer(chair) !== undefined);
    const t = await n.node.tap(ROOM, chair, { ip: '127.0.0.1', port: sink.port });
    await waitFor(`media at ${n.name}`, () => sink.count(t.transport.tuple.localPort).packets > 5, 10_000);
    taps.push(t);
  }
  // Forget start-up samples, then collect.
  for (const t of taps) sink.count(t.transport.tuple.localPort).latencies.length = 0;
  const linkBytes0 = await nodes[0]!.link(ROOM, `child:${names[1]}`)!.bytes();
  const tapBytes0 = sink.count(taps[0]!.transport.tuple.localPort).bytes;
  const t0 = performance.now();
  await new Promise((r) => setTimeout(r, SECONDS * 1000));
  const secs = (performance.now() - t0) / 1000;
  const linkBytes1 = await nodes[0]!.link(ROOM, `child:${names[1]}`)!.bytes();
  const tapBytes1 = sink.count(taps[0]!.transport.tuple.localPort).bytes;

  console.log(`# ${NODES} nodes in a chain, ${FPS} fps x 1000 B synthetic H.264, ${SECONDS} s, loopback, 1 worker per node`);
  const medians: number[] = [];
  for (const [hops, t] of taps.entries()) {
    const l = sink.count(t.transport.tuple.localPort).latencies;
    const m = pct(l, 0.5);
    medians.push(m);
    console.log(`hops=${hops} (${names[hops]}) capture->receive median ${m.toFixed(2)} ms p95 ${pct(l, 0.95).toFixed(2)} ms (n=${l.length})`);
  }
  const n = medians.length;
  const mx = (n - 1) / 2;
  const my = medians.reduce((a, b) => a + b, 0) / n;
  let num = 0;
  let den = 0;
  medians.forEach((m, i) => ((num += (i - mx) * (m - my)), (den += (i - mx) ** 2)));
  console.log(`added latency per hop (least-squares slope over 0..${n - 1} hops): ${(num / den).toFixed(3)} ms`);
  for (let h = 1; h < n; h++) console.log(`  hop ${h}: +${(medians[h]! - medians[h - 1]!).toFixed(3)} ms`);

  const pipeRate = (linkBytes1.sent - linkBytes0.sent) / secs; // one copy over one link, SRTP + RTCP
  const consumerRate = (tapBytes1 - tapBytes0) / secs; // one copy to one consumer (RTP)
  console.log(`one copy: pipe link ${(pipeRate * 8 / 1000).toFixed(0)} kbit/s, consumer ${(consumerRate * 8 / 1000).toFixed(0)} kbit/s`);
  const SITES = 1000;
  // Flat star: every site connects to the city node. Cascade: city -> 10 counties -> 10 towns each ->
  // 10 villages each (1,000 sites), each link carrying one copy.
  const star = SITES * consumerRate;
  const fanout = [10, 10, 10];
  const cityCascade = fanout[0]! * pipeRate;
  console.log(`1,000-site broadcast, bytes/s leaving the city node: flat star ${(star * 8 / 1e6).toFixed(1)} Mbit/s, cascade ${(cityCascade * 8 / 1e6).toFixed(2)} Mbit/s, ratio ${(star / cityCascade).toFixed(0)}x`);
  console.log(`busiest single link: flat star ${(star * 8 / 1e6).toFixed(1)} Mbit/s (the city's uplink), cascade ${(pipeRate * 8 / 1e6).toFixed(2)} Mbit/s (any link: one copy), ratio ${(star / pipeRate).toFixed(0)}x`);

  src.close();
  for (const s of extra) s.close();
  sink.close();
  for (const node of [...nodes].reverse()) await node.stop();
}

await main();
