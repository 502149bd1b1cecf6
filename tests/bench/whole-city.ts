// The whole-city meeting, measured (issue 11): ten SFU node processes in five levels (city; 2 counties;
// a town and a community under each; 3 villages, one with a 300 kbit/s uplink) and synthetic sites
// (tests/support/synthetic-site.ts: real /sfu signalling with venue join tokens, plain RTP media) joining
// in a storm. For each size: time for all to join and to see the chair, per-site downstream streams and
// kbit/s, each link's bytes/s, signalling per join at each level, CPU and memory per node and per site.
// Beside it, in the same run, today's all-to-all model (layout 'open') at 20 sites. Then a projection to
// 10,000 sites from the measured per-site costs.
//
// Run: node --import tsx tests/bench/whole-city.ts | tee /tmp/brief/bench-whole-city.txt
//   BENCH_STEPS=100,1000,2000,3000,4000,5000  sizes to try in order; stops after the first that fails or saturates
//   BENCH_STORM_S=3   every site of a storm starts at a random moment within this many seconds
//   BENCH_WINDOW_S=5  steady-state measuring window
//   BENCH_OPEN=20     sites of the all-to-all comparison (0 = skip)
//   BENCH_OUT=/tmp/brief/bench-whole-city.txt  where the printed figures are saved too
import fs from 'node:fs';
import os from 'node:os';
import { startNodeTree, wholeCityTree, type Metrics, type NodeProcess } from '../support/node-process.ts';
import { SITE_MEDIA, SyntheticSite, UdpMux, inBatches, quantile, type SiteMedia, type SyntheticSiteOptions } from '../support/synthetic-site.ts';

const STEPS = (process.env.BENCH_STEPS ?? '100,1000,2000,3000,4000,5000').split(',').map(Number);
const STORM_S = Number(process.env.BENCH_STORM_S ?? 3);
const WINDOW_S = Number(process.env.BENCH_WINDOW_S ?? 5);
const OPEN_SITES = Number(process.env.BENCH_OPEN ?? 20);
const OUT = process.env.BENCH_OUT ?? '/tmp/brief/bench-whole-city.txt';
/** A storm fails when a site has not received the chair within this long after its start. */
const FIRST_VIDEO_TIMEOUT_MS = Number(process.env.BENCH_FIRST_VIDEO_TIMEOUT_MS ?? 60_000);

// Light synthetic media so thousands of sites fit on 2 cores (the ratios, not the absolute bits, matter).
const CHAIR: SiteMedia = {
  audioPps: 17, // Opus, 60 ms frames
  audioSize: 100,
  fps: 5,
  layers: [
    { size: 400, packets: 1, maxBitrate: 120_000 },
    { size: 1000, packets: 1, maxBitrate: 400_000 },
    { size: 1100, packets: 2, maxBitrate: 1_200_000 },
  ],
  keyframeEveryMs: 4000,
};
// The test's site camera (same layers), at a lower rate.
const SITE: SiteMedia = { ...SITE_MEDIA, audioPps: 17, fps: 2, keyframeEveryMs: 5000 };

const LEVEL: Record<string, string> = {};
const SPEC = wholeCityTree(300, { 'community-a': 1000, 'community-b': 1000, 'village-a1': 4500, 'village-a2': 1400, 'village-b1': 4500 });
for (const s of SPEC) LEVEL[s.name] = s.name.replace(/-.*/, '');

/** Where N sites join: mostly at village nodes, some at community / town / county nodes. */
function plan(n: number): Record<string, number> {
  const share: Record<string, number> = { 'village-a1': 0.36, 'village-a2': 0.1, 'village-b1': 0.36, 'community-a': 0.05, 'community-b': 0.05, 'town-a': 0.03, 'town-b': 0.03, 'county-b': 0.02 };
  const out: Record<string, number> = {};
  let left = n;
  for (const [k, f] of Object.entries(share)) left -= out[k] = Math.floor(n * f);
  out['village-b1']! += left;
  return out;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const lines: string[] = [];
const say = (s = '') => {
  lines.push(s);
  console.log(s);
};
const kbit = (bytesPerS: number) => ((bytesPerS * 8) / 1000).toFixed(1);
const mib = (b: number) => (b / (1 << 20)).toFixed(1);

/** Machine-wide CPU busy fraction over an interval, from /proc/stat. */
function cpuTimes(): { busy: number; total: number } {
  const f = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
  const idle = f[3]! + (f[4] ?? 0);
  const total = f.reduce((a, b) => a + b, 0);
  return { busy: total - idle, total };
}

let nodes: Map<string, NodeProcess>;
/** Sites share a few UDP sockets (each with its own receive buffer, so a stall of this process loses less). */
let muxes: UdpMux[] = [];
let nextUser = 100;

function site(room: string, at: string, layout: 'open' | 'venue', extra: Partial<SyntheticSiteOptions> = {}): SyntheticSite {
  const userId = nextUser++;
  return new SyntheticSite({
    url: nodes.get(at)!.wsUrl,
    room,
    userId,
    displayName: `${at}-${userId}`,
    unitId: 1000 + userId,
    role: 'participant',
    layout,
    media: SITE,
    mux: muxes[userId % muxes.length]!,
    consume: layout === 'venue' ? 'stage' : 'all',
    initialMaxLayer: layout === 'venue' ? -1 : 2,
    timeoutMs: 60_000,
    ...extra,
  });
}

interface NodeSample {
  metrics: Metrics;
  node: { cpuSeconds: number; rssBytes: number; heapBytes: number; lagP99: number };
  workers: { cpuSeconds: number; rssBytes: number };
}

/**
 * Every node's metrics (/metrics: link bytes, JS heap, event-loop lag, RSS) and CPU seconds (/proc: node.js
 * process and mediasoup workers, read at one instant, `at`). A scrape costs the nodes CPU (some gauges ask
 * the worker for every transport's stats): `procAfter` reads /proc after the scrapes (a window's start),
 * otherwise before them (its end), so a window's CPU figures leave the scrapes out.
 */
async function sampleNodes(procAfter = true): Promise<Map<string, NodeSample> & { at: number }> {
  const out = new Map<string, NodeSample>() as Map<string, NodeSample> & { at: number };
  const readProc = () => new Map([...nodes].map(([name, p]) => [name, p.usage()]));
  let usage = procAfter ? undefined : readProc();
  out.at = performance.now();
  const scraped = new Map(await Promise.all([...nodes].map(async ([name, p]) => [name, await p.metrics()] as const)));
  if (procAfter) {
    usage = readProc();
    out.at = performance.now();
  }
  for (const [name, metrics] of scraped) {
    const u = usage!.get(name)!;
    const rss = metrics.get('sfu_process_process_resident_memory_bytes') ?? u.node.rssBytes;
    const heap = metrics.get('sfu_process_nodejs_heap_size_used_bytes') ?? 0;
    const lag = metrics.get('sfu_process_nodejs_eventloop_lag_p99_seconds') ?? 0;
    out.set(name, { metrics, node: { cpuSeconds: u.node.cpuSeconds, rssBytes: rss, heapBytes: heap, lagP99: lag }, workers: u.workers });
  }
  return out;
}

/** Datagrams the kernel dropped for want of room in a socket's receive buffer (the whole machine). */
function udpRcvbufErrors(): number {
  const lines = fs.readFileSync('/proc/net/snmp', 'utf8').split('\n').filter((l) => l.startsWith('Udp:'));
  const [head, vals] = [lines[0]!.split(/\s+/), lines[1]!.split(/\s+/)];
  return Number(vals[head.indexOf('RcvbufErrors')] ?? 0);
}

/** Link bytes per child node (its link to its parent, both directions), from the child's metrics. */
function linkBytes(m: Metrics): number {
  const rows = m.all('sfu_cascade_link_bytes');
  const use = rows.length ? rows : m.all('sfu_cascade_pipe_bytes');
  return use.filter((r) => r.labels.link === 'parent').reduce((n, r) => n + r.value, 0);
}

/** Control messages / bytes a node sent on all its cascade links (each message counted once, by its sender). */
const controlSent = (m: Metrics): number => m.get('sfu_cascade_control_messages', { direction: 'sent' }) ?? 0;
const controlSentBytes = (m: Metrics): number => m.get('sfu_cascade_control_bytes', { direction: 'sent' }) ?? 0;
/** Control bytes both ways on a child's link to its parent. */
const controlParentBytes = (m: Metrics): number => m.get('sfu_cascade_control_bytes', { link: 'parent' }) ?? 0;

interface NodeFigures {
  name: string;
  local: number;
  cpuPct: number;
  workerCpuPct: number;
  rss: number;
  workerRss: number;
  heap: number;
  heapPerSite: number | undefined;
  lagP99Ms: number;
  /** Above the node's idle CPU (chair only, no sites) and its memory just before the storm, per local site. */
  cpuPctPerSite: number | undefined;
  rssPerSite: number | undefined;
}

interface Steady {
  seconds: number;
  perSite: { video: number; audio: number; kbps: number; kbpsP95: number };
  links: Array<{ link: string; bytesPerS: number; controlBytesPerS: number }>;
  nodes: NodeFigures[];
  machineBusyPct: number;
  /** CPU of our own processes (node processes + this one with the synthetic sites), % of one core. */
  ownCpuPct: number;
  clientCpuPct: number;
  /** UDP datagrams dropped machine-wide for a full receive buffer during the window. */
  udpDrops: number;
}

/** Each node's CPU % (node + workers) with no sites, measured once at start. */
const idleCpuPct = new Map<string, number>();

async function measureIdle(): Promise<void> {
  const a = await sampleNodes();
  await sleep(3000);
  const b = await sampleNodes();
  for (const [name, x] of a) {
    const y = b.get(name)!;
    idleCpuPct.set(name, ((y.node.cpuSeconds + y.workers.cpuSeconds - x.node.cpuSeconds - x.workers.cpuSeconds) / 3) * 100);
  }
}

/** Steady state over a window: what sites receive, what links carry, what nodes spend (memory against `base`). */
async function steady(sites: SyntheticSite[], localCount: Map<string, number>, base: Map<string, NodeSample>): Promise<Steady> {
  const s0 = await sampleNodes(true);
  const bytes0 = sites.map((s) => [...s.consumers.values()].reduce((n, c) => n + c.bytes, 0));
  const c0 = cpuTimes();
  const u0 = process.cpuUsage();
  const d0 = udpRcvbufErrors();
  await sleep(WINDOW_S * 1000);
  const c1 = cpuTimes();
  const u1 = process.cpuUsage(u0);
  const udpDrops = udpRcvbufErrors() - d0;
  const bytes1 = sites.map((s) => [...s.consumers.values()].reduce((n, c) => n + c.bytes, 0));
  const s1 = await sampleNodes(false);
  const seconds = (s1.at - s0.at) / 1000;
  const clientCpuPct = ((u1.user + u1.system) / 1e6 / seconds) * 100;
  const rates = sites.map((_, i) => (bytes1[i]! - bytes0[i]!) / seconds);
  const avg = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length);
  const links = SPEC.filter((s) => s.parent).map((s) => ({
    link: `${s.name}→${s.parent}`,
    bytesPerS: (linkBytes(s1.get(s.name)!.metrics) - linkBytes(s0.get(s.name)!.metrics)) / seconds,
    controlBytesPerS: (controlParentBytes(s1.get(s.name)!.metrics) - controlParentBytes(s0.get(s.name)!.metrics)) / seconds,
  }));
  const nodeCpu = SPEC.reduce((n, x) => {
    const a = s0.get(x.name)!;
    const b = s1.get(x.name)!;
    return n + ((b.node.cpuSeconds + b.workers.cpuSeconds - a.node.cpuSeconds - a.workers.cpuSeconds) / seconds) * 100;
  }, 0);
  const result = {
    seconds,
    perSite: {
      video: avg(sites.map((s) => s.active('video').length)),
      audio: avg(sites.map((s) => s.active('audio').length)),
      kbps: avg(rates.map((r) => (r * 8) / 1000)),
      kbpsP95: quantile(rates.map((r) => (r * 8) / 1000), 0.95),
    },
    links,
    nodes: SPEC.map((s): NodeFigures => {
      const a = s0.get(s.name)!;
      const b = s1.get(s.name)!;
      const z = base.get(s.name)!;
      const local = localCount.get(s.name) ?? 0;
      const cpuPct = ((b.node.cpuSeconds - a.node.cpuSeconds) / seconds) * 100;
      const workerCpuPct = ((b.workers.cpuSeconds - a.workers.cpuSeconds) / seconds) * 100;
      return {
        name: s.name,
        local,
        cpuPct,
        workerCpuPct,
        rss: b.node.rssBytes,
        workerRss: b.workers.rssBytes,
        heap: b.node.heapBytes,
        heapPerSite: local ? Math.max(0, b.node.heapBytes - z.node.heapBytes) / local : undefined,
        lagP99Ms: b.node.lagP99 * 1000,
        cpuPctPerSite: local ? Math.max(0, cpuPct + workerCpuPct - (idleCpuPct.get(s.name) ?? 0)) / local : undefined,
        rssPerSite: local ? Math.max(0, b.node.rssBytes + b.workers.rssBytes - z.node.rssBytes - z.workers.rssBytes) / local : undefined,
      };
    }),
    machineBusyPct: ((c1.busy - c0.busy) / Math.max(1, c1.total - c0.total)) * 100,
    ownCpuPct: nodeCpu + clientCpuPct,
    clientCpuPct,
    udpDrops,
  };
  return result;
}

interface StormResult {
  n: number;
  sites: SyntheticSite[];
  failed: number;
  failures: string[];
  allJoinedMs: number;
  allVideoMs: number;
  joinP50: number;
  joinP95: number;
  videoP50: number;
  videoP95: number;
  missingVideo: number;
  /** Phases of a join (p50 / p95 ms): token signed, WebSocket open, join answered, transports + producers ready. */
  phases: string;
  /** CPU seconds spent during the storm: per node (node.js + worker) and by this process (the synthetic sites). */
  cpu: Array<{ name: string; seconds: number }>;
  clientCpuSeconds: number;
}

/** N sites start within STORM_S seconds; resolves when all have joined and received the chair (or timed out). */
async function storm(room: string, layout: 'open' | 'venue', where: Record<string, number>, chairVideo: string): Promise<StormResult> {
  const sites = Object.entries(where).flatMap(([at, n]) => Array.from({ length: n }, () => site(room, at, layout)));
  const s0 = await sampleNodes();
  const u0 = process.cpuUsage();
  const t0 = performance.now();
  const results = await Promise.allSettled(sites.map((s) => sleep(Math.random() * STORM_S * 1000).then(() => s.start())));
  const allJoinedMs = performance.now() - t0;
  const failures = results.flatMap((r, i) => (r.status === 'rejected' ? [`${sites[i]!.options.displayName}: ${String(r.reason).slice(0, 160)}`] : []));
  const ok = sites.filter((_, i) => results[i]!.status === 'fulfilled');
  const deadline = performance.now() + FIRST_VIDEO_TIMEOUT_MS;
  while (performance.now() < deadline && ok.some((s) => !s.receiving(chairVideo))) await sleep(100);
  const allVideoMs = performance.now() - t0;
  const receiving = ok.filter((s) => s.receiving(chairVideo));
  const join = ok.map((s) => s.joinedAt - s.startedAt);
  const video = receiving.map((s) => s.consumerOf(chairVideo)!.firstAt - s.startedAt);
  const s1 = await sampleNodes();
  const u1 = process.cpuUsage(u0);
  const q = (xs: number[]) => `${quantile(xs, 0.5).toFixed(0)}/${quantile(xs, 0.95).toFixed(0)}`;
  const phases =
    `sign ${q(ok.map((s) => s.signedAt - s.startedAt))}, ws open ${q(ok.map((s) => s.openAt - s.signedAt))}, ` +
    `join answer ${q(ok.map((s) => s.joinedAt - s.openAt))}, transports+produce ${q(ok.map((s) => s.readyAt - s.joinedAt))}`;
  const cpu = SPEC.map((x) => {
    const a = s0.get(x.name)!;
    const b = s1.get(x.name)!;
    return { name: x.name, seconds: b.node.cpuSeconds + b.workers.cpuSeconds - a.node.cpuSeconds - a.workers.cpuSeconds };
  });
  return {
    phases,
    cpu,
    clientCpuSeconds: (u1.user + u1.system) / 1e6,
    n: sites.length,
    sites,
    failed: failures.length,
    failures,
    allJoinedMs,
    allVideoMs,
    joinP50: quantile(join, 0.5),
    joinP95: quantile(join, 0.95),
    videoP50: quantile(video, 0.5),
    videoP95: quantile(video, 0.95),
    missingVideo: ok.length - receiving.length,
  };
}

interface JoinCost {
  level: string;
  joinerMessages: number;
  joinerBytes: number;
  othersMessages: number;
  othersBytes: number;
  othersMaxAtOne: number;
  nodeNotifications: number;
  controlMessages: number;
  controlBytes: number;
}

/** One extra site joins at a node of each level; what it and everyone else receive because of it. */
async function joinCosts(room: string, layout: 'open' | 'venue', everyone: SyntheticSite[], chairVideo: string, at: Record<string, string>): Promise<JoinCost[]> {
  const out: JoinCost[] = [];
  const extras: SyntheticSite[] = [];
  for (const [level, nodeName] of Object.entries(at)) {
    await sleep(2000); // let coalesced counts from the previous join go out first
    const before = everyone.map((s) => s.signalling());
    const m0 = await sampleNodes();
    const s = site(room, nodeName, layout);
    await s.start();
    const t0 = performance.now();
    while (performance.now() - t0 < 20_000 && !s.receiving(chairVideo)) await sleep(50);
    await sleep(2500);
    const m1 = await sampleNodes();
    const deltas = everyone.map((x, i) => ({ n: x.signalling().notifications - before[i]!.notifications, b: x.signalling().bytes - before[i]!.bytes }));
    const sum = (f: (m: Metrics) => number) => [...nodes.keys()].reduce((n, k) => n + f(m1.get(k)!.metrics) - f(m0.get(k)!.metrics), 0);
    const j = s.signalling();
    out.push({
      level: `${level} (${nodeName})`,
      joinerMessages: j.messages,
      joinerBytes: j.bytes,
      othersMessages: deltas.reduce((n, d) => n + d.n, 0),
      othersBytes: deltas.reduce((n, d) => n + d.b, 0),
      othersMaxAtOne: Math.max(0, ...deltas.map((d) => d.n)),
      nodeNotifications: sum((m) => m.get('sfu_notifications_total') ?? 0),
      controlMessages: sum(controlSent),
      controlBytes: sum(controlSentBytes),
    });
    everyone.push(s);
    extras.push(s);
  }
  for (const s of extras) s.close();
  return out;
}

function report(title: string, r: StormResult, st: Steady, costs: JoinCost[]): void {
  say(`## ${title}`);
  say(`storm: ${r.n} sites started within ${STORM_S} s; ${r.failed} failed to join${r.failed ? ` (e.g. ${r.failures.slice(0, 2).join(' | ')})` : ''}; ${r.missingVideo} joined but never got the chair's video`);
  say(`  all joined after ${(r.allJoinedMs / 1000).toFixed(1)} s; all receiving the chair after ${(r.allVideoMs / 1000).toFixed(1)} s`);
  say(`  per site: join answered p50 ${r.joinP50.toFixed(0)} ms / p95 ${r.joinP95.toFixed(0)} ms; first chair video p50 ${r.videoP50.toFixed(0)} ms / p95 ${r.videoP95.toFixed(0)} ms (from the site's own start)`);
  say(`  join phases p50/p95 ms: ${r.phases}`);
  const storm = r.cpu.reduce((n, c) => n + c.seconds, 0);
  say(
    `  CPU during the storm (${(r.allVideoMs / 1000).toFixed(1)} s): nodes ${storm.toFixed(1)} s (${r.cpu.filter((c) => c.seconds >= 0.05).map((c) => `${c.name} ${c.seconds.toFixed(1)}`).join(', ')}), ` +
      `synthetic sites ${r.clientCpuSeconds.toFixed(1)} s; ${((storm * 1000) / Math.max(1, r.n)).toFixed(1)} ms of node CPU per join`,
  );
  say(`steady (${st.seconds.toFixed(1)} s window): per site ${st.perSite.video.toFixed(2)} video + ${st.perSite.audio.toFixed(2)} audio streams down, ${st.perSite.kbps.toFixed(1)} kbit/s (p95 ${st.perSite.kbpsP95.toFixed(1)})`);
  say(`  UDP datagrams dropped for full receive buffers during the window (machine-wide): ${st.udpDrops}`);
  say(`  CPU: our processes ${st.ownCpuPct.toFixed(0)} % of one core (nodes ${(st.ownCpuPct - st.clientCpuPct).toFixed(0)} %, synthetic sites ${st.clientCpuPct.toFixed(0)} %); machine busy ${st.machineBusyPct.toFixed(0)} % of ${os.availableParallelism()} cores (incl. others' tests)`);
  say(`  links (both directions): media (pipe + plain RTP), control (WebSocket)`);
  for (const l of st.links) say(`    ${l.link.padEnd(26)} ${kbit(l.bytesPerS).padStart(8)} kbit/s media  ${kbit(l.controlBytesPerS).padStart(6)} kbit/s control`);
  say(`  nodes: name, local sites, node.js CPU %, worker CPU %, node RSS MiB, worker RSS MiB, JS heap MiB, event-loop lag p99 ms | per local site: CPU % above idle, RSS KiB and JS heap KiB above pre-storm`);
  for (const n of st.nodes) {
    const per = n.local ? `${n.cpuPctPerSite!.toFixed(3)} %  ${(n.rssPerSite! / 1024).toFixed(0)} KiB  ${(n.heapPerSite! / 1024).toFixed(1)} KiB` : '-';
    say(
      `    ${n.name.padEnd(12)} ${String(n.local).padStart(5)} ${n.cpuPct.toFixed(1).padStart(6)} ${n.workerCpuPct.toFixed(1).padStart(6)} ${mib(n.rss).padStart(7)} ${mib(n.workerRss).padStart(7)} ${mib(n.heap).padStart(6)} ${n.lagP99Ms.toFixed(0).padStart(5)}   | ${per}`,
    );
  }
  say(`  signalling per join (one extra site at each level, counted for 2.5 s after it sees the chair):`);
  say(`    level                    joiner msgs/bytes   all other sites msgs/bytes (max at one)   node notifications   cascade control msgs / bytes (all links)`);
  for (const c of costs) {
    say(
      `    ${c.level.padEnd(24)} ${`${c.joinerMessages} / ${c.joinerBytes}`.padStart(16)}   ${`${c.othersMessages} / ${c.othersBytes} (${c.othersMaxAtOne})`.padStart(28)}   ${String(c.nodeNotifications).padStart(18)}   ${c.controlMessages} / ${c.controlBytes}`,
    );
  }
  say();
}

async function waitPeersGone(): Promise<void> {
  const t0 = Date.now();
  while (Date.now() - t0 < 60_000) {
    const s = await sampleNodes();
    if ([...s.values()].every((x) => (x.metrics.get('sfu_peers') ?? 0) <= 1)) return;
    await sleep(500);
  }
}

async function main(): Promise<void> {
  say(`# whole-city meeting benchmark — ${new Date().toISOString()} — ${os.cpus()[0]?.model ?? 'cpu'} × ${os.availableParallelism()}, ${mib(os.totalmem())} MiB`);
  say(`# tree: ${SPEC.map((s) => (s.parent ? `${s.name}<${s.parent}` : s.name)).join(', ')} (village-a2 uplink 300 kbit/s); one node process (1 mediasoup worker) each`);
  say(`# synthetic media: chair audio ${CHAIR.audioPps} pps, video ${CHAIR.fps} fps, layers ${CHAIR.layers.map((l) => `${l.packets}×${l.size} B`).join(' / ')}; sites video ${SITE.fps} fps (layer 0 only until asked), audio only when not muted`);
  say();
  const t0 = Date.now();
  nodes = await startNodeTree(SPEC, {
    rtcBase: 15000,
    rtcPorts: 300,
    env: { SFU_PLAIN_RTP: '1', SFU_ADMISSION: 'open', SFU_MAX_CONNECTIONS: '20000', SFU_MAX_CONNECTIONS_PER_ADDRESS: '20000', SFU_JOIN_DEADLINE_MS: '30000', LOG_LEVEL: 'error' },
  });
  muxes = await Promise.all(Array.from({ length: 16 }, () => UdpMux.create()));
  say(`# ${nodes.size} node processes up in ${Date.now() - t0} ms`);
  await measureIdle();
  say(`# idle CPU per node (no conference): ${[...idleCpuPct].map(([k, v]) => `${k} ${v.toFixed(1)} %`).join(', ')}`);
  const levelsAt = { county: 'county-b', town: 'town-a', community: 'community-b', village: 'village-b1' };
  const summary: string[] = [];

  try {
    // Today's model: everyone sees everyone, in the same tree, same media.
    if (OPEN_SITES > 0) {
      const room = 'm-bench-open';
      const chair = site(room, 'city', 'open', { role: 'chair', media: CHAIR, displayName: 'chair', initialMaxLayer: 2 });
      await chair.start();
      const where: Record<string, number> = { 'village-a1': 0, 'village-b1': 0, 'village-a2': 0, 'town-a': 0, 'community-b': 0, 'county-b': 0 };
      const order = Object.keys(where);
      for (let i = 0; i < OPEN_SITES - 1; i++) where[order[i % order.length]!]!++;
      const base = await sampleNodes();
      const r = await storm(room, 'open', where, chair.videoProducerId!);
      const local = countLocal(r.sites);
      local.set('city', (local.get('city') ?? 0) + 1);
      const st = await steady([chair, ...r.sites], local, base);
      const costs = await joinCosts(room, 'open', [chair, ...r.sites], chair.videoProducerId!, levelsAt);
      report(`today's all-to-all model (layout 'open'): ${OPEN_SITES} sites incl. the chair`, r, st, costs);
      summary.push(row(`open ${OPEN_SITES}`, r, st, costs));
      for (const s of [chair, ...r.sites]) s.close();
      await waitPeersGone();
    }

    const room = 'm-bench-venue';
    const chair = site(room, 'city', 'venue', { role: 'chair', rotate: true, media: CHAIR, displayName: 'chair', initialMaxLayer: 2 });
    await chair.start();
    for (const n of STEPS) {
      const base = await sampleNodes();
      const r = await storm(room, 'venue', plan(n - 1), chair.videoProducerId!);
      const local = countLocal(r.sites);
      local.set('city', (local.get('city') ?? 0) + 1);
      const st = await steady([chair, ...r.sites], local, base);
      const costs = await joinCosts(room, 'venue', [chair, ...r.sites.filter((s) => !s.closed)], chair.videoProducerId!, levelsAt);
      report(`venue (主会场/分会场): ${n} sites incl. the chair`, r, st, costs);
      summary.push(row(`venue ${n}`, r, st, costs));
      firstKbps ??= st.perSite.kbps;
      // Why stop: joins failed, sites never saw the chair, first video too slow, or the CPU is saturated.
      const why =
        r.failed > 0.01 * n
          ? `${r.failed} of ${n} joins failed`
          : r.missingVideo > 0
            ? `${r.missingVideo} sites never got the chair's video`
            : firstKbps !== undefined && st.perSite.kbps < 0.85 * firstKbps
              ? `sites receive ${st.perSite.kbps.toFixed(0)} kbit/s on average, < 85 % of the ${firstKbps.toFixed(0)} kbit/s at the first size (${st.udpDrops} UDP datagrams dropped for full receive buffers: the synthetic sites' process no longer keeps up)`
              : r.videoP95 > 30_000
              ? `first-video p95 ${r.videoP95.toFixed(0)} ms > 30 s (the storm outran the CPU)`
              : st.ownCpuPct > 0.85 * 100 * os.availableParallelism()
                ? `CPU saturated in steady state (our processes ${st.ownCpuPct.toFixed(0)} % of one core, machine ${st.machineBusyPct.toFixed(0)} % busy)`
                : '';
      if (!why) {
        lastGood = { n, r, st, costs, base };
        const v = st.nodes.find((x) => x.name === 'village-a1')!;
        const c = st.nodes.find((x) => x.name === 'city')!;
        history.push({ n, local: v.local, edgeMem: v.rss + v.workerRss, cityMem: c.rss + c.workerRss, cityHeap: c.heap });
      }
      for (const s of r.sites) s.close();
      await waitPeersGone();
      if (why) {
        say(`# stopping at ${n}: ${why}; the projection uses ${lastGood ? `${lastGood.n} sites, the largest size that held` : 'nothing'}`);
        stopReason = `${n} sites: ${why}`;
        break;
      }
    }
    chair.close();
  } finally {
    say('## summary');
    say('model / sites | joins failed | all joined s | first video p50/p95 ms | video+audio streams per site | kbit/s per site | busiest link kbit/s | city links kbit/s | msgs to other sites per join (max at one) | CPU % per local site (village-a1) | KiB per local site (village-a1)');
    for (const s of summary) say(s);
    say();
    projection();
    fs.writeFileSync(OUT, lines.join('\n') + '\n');
    for (const m of muxes) m.close();
    for (const p of [...nodes.values()].reverse()) await p.kill();
  }
}

let lastGood: { n: number; r: StormResult; st: Steady; costs: JoinCost[]; base: Map<string, NodeSample> } | undefined;
let stopReason = '';
/** Per size that held: an edge node's (village-a1) local sites and memory, and the root's memory. */
const history: Array<{ n: number; local: number; edgeMem: number; cityMem: number; cityHeap: number }> = [];
/** Per-site downstream at the first venue size: later sizes must deliver the same. */
let firstKbps: number | undefined;

function countLocal(sites: SyntheticSite[]): Map<string, number> {
  const m = new Map<string, number>();
  for (const s of sites) {
    if (s.closed || !s.peerId) continue;
    const at = [...nodes].find(([, p]) => s.options.url === p.wsUrl)?.[0] ?? '?';
    m.set(at, (m.get(at) ?? 0) + 1);
  }
  return m;
}

function row(label: string, r: StormResult, st: Steady, costs: JoinCost[]): string {
  const busiest = Math.max(...st.links.map((l) => l.bytesPerS));
  const city = st.links.filter((l) => l.link.endsWith('→city')).reduce((n, l) => n + l.bytesPerS, 0);
  const v = st.nodes.find((n) => n.name === 'village-a1')!;
  const msgs = costs.map((c) => `${c.othersMessages}(${c.othersMaxAtOne})`).join(' ');
  return `${label} | ${r.failed} | ${(r.allJoinedMs / 1000).toFixed(1)} | ${r.videoP50.toFixed(0)}/${r.videoP95.toFixed(0)} | ${st.perSite.video.toFixed(2)}+${st.perSite.audio.toFixed(2)} | ${st.perSite.kbps.toFixed(0)} | ${kbit(busiest)} | ${kbit(city)} | ${msgs} | ${v.local ? v.cpuPctPerSite!.toFixed(3) : '-'} | ${v.local ? (v.rssPerSite! / 1024).toFixed(0) : '-'}`;
}

/** What one site receives from a real chair (layer 2 at 1.2 Mbit/s + Opus), for the projection. */
const REAL_SITE_KBPS = 1232;

/** 10,000 sites from the per-site costs of the largest run that held — a projection, not a measurement. */
function projection(): void {
  say('## PROJECTION to 10,000 sites (computed from the measured per-site costs above; NOT measured)');
  if (!lastGood) return say('no venue run completed; nothing to project from');
  const { n, st, costs } = lastGood;
  const v = st.nodes.find((x) => x.name === 'village-a1')!;
  const city = st.nodes.find((x) => x.name === 'city')!;
  const cpuPerSite = v.cpuPctPerSite ?? 0;
  // Memory per site: the slope of the edge node's memory over the sizes that held (memory a step's sites
  // leave behind when they go is not returned, so a single step's growth understates it).
  const [h0, h1] = [history[0], history[history.length - 1]];
  const memPerSite =
    h0 && h1 && h1.local > h0.local ? Math.max(0, (h1.edgeMem - h0.edgeMem) / (h1.local - h0.local)) : Math.max(v.rssPerSite ?? 0, v.heapPerSite ?? 0);
  const fixedMem = Math.max(0, v.rss + v.workerRss - memPerSite * v.local);
  if (h0 && h1 && h1.n > h0.n) {
    say(
      `memory slopes between ${h0.n} and ${h1.n} sites: edge node (village-a1) ${((memPerSite) / 1024).toFixed(0)} KiB per local site (RSS, node + worker); ` +
        `root (city) ${(((h1.cityMem - h0.cityMem) / (h1.n - h0.n)) / 1024).toFixed(1)} KiB RSS and ${(((h1.cityHeap - h0.cityHeap) / (h1.n - h0.n)) / 1024).toFixed(1)} KiB JS heap per conference site`,
    );
  }
  const cityLinks = st.links.filter((l) => l.link.endsWith('→city'));
  const perLink = cityLinks.reduce((a, l) => a + l.bytesPerS, 0) / Math.max(1, cityLinks.length);
  const venueCost = costs.find((c) => c.level.startsWith('village'));
  say(`basis: venue run at ${n} sites, the largest that held${stopReason ? ` (the run stopped at ${stopReason})` : ''}; an edge node's cost per local site (village-a1): ${cpuPerSite.toFixed(3)} % of a core above idle, ${(memPerSite / 1024).toFixed(0)} KiB (node + worker), plus a fixed ~${mib(fixedMem)} MiB per node`);
  for (const perNode of [100, 250, 500]) {
    const nodesNeeded = Math.ceil(10_000 / perNode);
    say(
      `- ${perNode} sites per edge node (${nodesNeeded} edge nodes, e.g. one per town): each ~${(cpuPerSite * perNode).toFixed(0)} % of a core and ~${mib(memPerSite * perNode)} MiB for its sites, ` +
        `+ ${mib(fixedMem)} MiB fixed, downstream ~${((st.perSite.kbps * perNode) / 1000).toFixed(1)} Mbit/s to them at these synthetic rates, ~${((REAL_SITE_KBPS * perNode) / 1000).toFixed(0)} Mbit/s at browser rates (chair 1.2 Mbit/s layer 2 + 32 kbit/s Opus per site)`,
    );
  }
  say(`- each cascade link: ~${kbit(perLink)} kbit/s measured on each city link, independent of the number of sites (chair + floor streams, once per link); a city with 10 counties sends ~${kbit(perLink * 10)} kbit/s out`);
  const cityBase = lastGood.base.get('city')!;
  const cityGrowth =
    h0 && h1 && h1.n > h0.n
      ? (Math.max(0, h1.cityMem - h0.cityMem, h1.cityHeap - h0.cityHeap) / (h1.n - h0.n)) * n
      : Math.max(0, city.rss + city.workerRss - (cityBase.node.rssBytes + cityBase.workers.rssBytes), city.heap - cityBase.node.heapBytes);
  const cityCpu = Math.max(0, city.cpuPct + city.workerCpuPct - (idleCpuPct.get('city') ?? 0));
  say(
    `- the city node (root) learns every site (catalogue for the roster and attendance): at ${n} sites it holds ~${mib(cityGrowth)} MiB for them (slope of RSS or JS heap over the sizes, whichever is steeper) and spent ${cityCpu.toFixed(1)} % CPU above idle in steady state; ` +
      `linear to 10,000 sites → ~${mib((cityGrowth / n) * 10_000)} MiB more and ~${((cityCpu / n) * 10_000).toFixed(0)} % of a core (steady; the storm itself costs more, see the join rates)`,
  );
  if (venueCost) say(`- signalling per join: the joiner ${venueCost.joinerMessages} messages / ${venueCost.joinerBytes} B; all other sites together ${venueCost.othersMessages} messages (max ${venueCost.othersMaxAtOne} at one) — counts are coalesced, so 10,000 sites joining in one minute cost each site ≤ ~60 'counts' messages, not 10,000 peerJoined`);
  say(`- start storm: measured ${n} sites joined in ${(lastGood.r.allJoinedMs / 1000).toFixed(1)} s on this one machine (all nodes + clients on 2 cores); with edge nodes on their own machines the storm is per node: ${Math.ceil(10_000 / 250)} nodes × 250 sites each, in parallel`);
}

await main();
