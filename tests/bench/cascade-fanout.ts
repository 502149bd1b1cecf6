// Link bandwidth of a broadcast, cascade vs flat star, measured at small scale and extrapolated.
//
// The chair's synthetic stream (30 fps x 1000 B) goes to SITES consumers (taps):
//   star:    all SITES consumers on the city node;
//   cascade: the city node has COUNTIES children (county nodes), each with SITES / COUNTIES consumers.
// Measured: bytes/s leaving the city node towards the sites (tap transports or pipe links).
// Extrapolated: the same per-copy rates for 1,000 sites under city -> 10 -> 10 -> 10.
//
// Run: node --import tsx tests/bench/cascade-fanout.ts   (BENCH_SITES, BENCH_COUNTIES, BENCH_SECONDS)
import type { Tap } from '../../sfu/Tap.ts';
import { RtpSink, type RtpSource, startTree, waitFor, type TreeNode } from '../support/cascade-harness.ts';

const SITES = Number(process.env.BENCH_SITES ?? 40);
const COUNTIES = Number(process.env.BENCH_COUNTIES ?? 4);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 4);
const ROOM = 'bench-fanout';

async function egress(measure: () => Promise<number>): Promise<number> {
  const b0 = await measure();
  const t0 = performance.now();
  await new Promise((r) => setTimeout(r, SECONDS * 1000));
  return ((await measure()) - b0) / ((performance.now() - t0) / 1000);
}

async function run(counties: number): Promise<{ cityEgress: number; perCopy: number }> {
  const spec: Array<readonly [string, string?]> = [['city']];
  for (let i = 0; i < counties; i++) spec.push([`county${i}`, 'city']);
  const tree = await startTree(spec, { admission: 'open', lingerMs: 1000 });
  const city = tree.get('city')!;
  const sink = await RtpSink.create();
  const { ingest, source: src } = await city.camera(ROOM, { ssrc: 0x7000, fps: 30, size: 1000, displayName: 'chair' });
  const chair = ingest.producer.id;
  const sites: TreeNode[] = counties === 0 ? [city] : [...tree.values()].filter((n) => n !== city);
  const quiet: RtpSource[] = [];
  for (const n of sites.filter((x) => x !== city)) {
    // A county site camera keeps the county's room open and attached.
    quiet.push((await n.camera(ROOM, { ssrc: 0x7100 + n.unitId, fps: 1, size: 200 })).source);
    await waitFor(`chair at ${n.name}`, () => n.cascadeRoom(ROOM)?.producer(chair) !== undefined);
  }
  const taps: Tap[] = [];
  for (let k = 0; k < SITES; k++) taps.push(await sites[k % sites.length]!.node.tap(ROOM, chair, { ip: '127.0.0.1', port: sink.port }));
  await waitFor('every site receiving', () => taps.every((t) => sink.count(t.transport.tuple.localPort).packets > 3), 15_000);
  const cityTaps = taps.filter((_, k) => sites[k % sites.length] === city);
  const cityLinks = counties === 0 ? [] : [...city.cascadeRoom(ROOM)!.links.values()];
  const cityEgress = await egress(async () => {
    let n = 0;
    for (const t of cityTaps) n += (await t.transport.getStats())[0]?.bytesSent ?? 0;
    for (const l of cityLinks) n += (await l.bytes()).sent;
    return n;
  });
  const perCopy = cityEgress / (counties === 0 ? SITES : counties);
  src.close();
  for (const s of quiet) s.close();
  sink.close();
  for (const n of [...tree.values()].reverse()) await n.stop();
  return { cityEgress, perCopy };
}

const kbps = (bytesPerS: number) => `${((bytesPerS * 8) / 1000).toFixed(0)} kbit/s`;
const star = await run(0);
const cascade = await run(COUNTIES);
console.log(`# ${SITES} sites, one 30 fps x 1000 B stream, ${SECONDS} s windows, loopback`);
console.log(`flat star: city node sends ${kbps(star.cityEgress)} (${SITES} copies, ${kbps(star.perCopy)} each)`);
console.log(`cascade:   city node sends ${kbps(cascade.cityEgress)} (${COUNTIES} copies over pipes, ${kbps(cascade.perCopy)} each, SRTP + RTCP included)`);
console.log(`measured ratio star / cascade at the city: ${(star.cityEgress / cascade.cityEgress).toFixed(1)}x (ideal ${SITES / COUNTIES}x)`);
const S = 1000;
console.log(
  `extrapolated to 1,000 sites (city -> 10 -> 10 -> 10): star ${((S * star.perCopy * 8) / 1e6).toFixed(1)} Mbit/s out of the city, ` +
    `cascade ${((10 * cascade.perCopy * 8) / 1e6).toFixed(2)} Mbit/s (ratio ${((S * star.perCopy) / (10 * cascade.perCopy)).toFixed(0)}x); ` +
    `busiest link: star ${((S * star.perCopy * 8) / 1e6).toFixed(1)} Mbit/s vs cascade ${((cascade.perCopy * 8) / 1e6).toFixed(2)} Mbit/s`,
);
