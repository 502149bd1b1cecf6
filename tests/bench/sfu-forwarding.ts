// Forwarding capacity of one mediasoup Worker (one core) against a naive Node.js UDP relay.
//
// One ~1 Mbps H.264 video stream (synthetic RTP: 1,100-byte single-NAL packets at ~110 pps, an IDR
// every second) enters through a PlainTransport; N consumers leave through N PlainTransports towards
// a UDP sink. N is raised until the sink sees loss (> 1 %) or the worker saturates. The baseline
// relays the same packets with a Node.js dgram socket that sends each one to N destinations.
//
// Janus (Debian's package, VideoRoom plugin) runs the same sweep in the same run when installed: the
// stream enters a VideoRoom remote publisher as plain RTP and leaves through one `rtp_forward` per
// consumer towards the same sink (tests/bench/support/janus.ts). Without Janus the bench says why
// and runs without it.
//
// Run: npm run bench:sfu   (BENCH_SECONDS, BENCH_STEPS="100,200,..." to change the sweep)
import dgram from 'node:dgram';
import { Worker as Thread } from 'node:worker_threads';
import * as mediasoup from 'mediasoup';
import type { types } from 'mediasoup';
import { mediaCodecs } from '../../sfu/mediaCodecs.ts';
import { findJanus, Janus, JANUS_REMOTE_SSRC, statCpuSeconds } from './support/janus.ts';

const PACKET_BYTES = 1100;
const PPS = 110; // 1100 B * 8 * 110 ≈ 0.97 Mbps
const SECONDS = Number(process.env.BENCH_SECONDS ?? 5);
const STEPS = (process.env.BENCH_STEPS ?? '100,250,500,750,1000,1250,1500,2000,2500').split(',').map(Number);
const LOSS_LIMIT = 0.01;
const STREAM_SSRC = 0x1111;

type ThreadMsg = { kind: 'port'; port: number } | { kind: 'count'; packets: number; bytes: number; other: number; stat: string };

// A counting UDP sink, or the naive relay (each packet sent on to every destination), on its own
// thread so it has a core of its own like the mediasoup worker. Plain JS: it runs in a bare thread.
const THREAD_CODE = `
const dgram = require('node:dgram');
const { parentPort, workerData } = require('node:worker_threads');
const sock = dgram.createSocket({ type: 'udp4', recvBufferSize: 64 << 20, sendBufferSize: 16 << 20 });
let packets = 0, bytes = 0, other = 0, dests = [], ssrcs = null;
sock.on('message', (msg) => {
  if (msg[1] >= 192 && msg[1] <= 223) return; // RTCP (RFC 5761 range): count RTP only
  // Count the stream's own SSRCs only: mediasoup also sends bandwidth-probation packets
  // (SSRC 1234, PT 127) that carry no media.
  if (ssrcs && (msg.length < 12 || !ssrcs.has(msg.readUInt32BE(8)))) { other++; return; }
  packets++; bytes += msg.length;
  if (workerData.role === 'relay') for (const port of dests) sock.send(msg, port, '127.0.0.1');
});
parentPort.on('message', (m) => {
  // stat: this thread's own /proc entry (its utime/stime: the relay's CPU, sockets included).
  if (m.cmd === 'count') parentPort.postMessage({ kind: 'count', packets, bytes, other, stat: require('node:fs').readFileSync('/proc/thread-self/stat', 'utf8') });
  if (m.cmd === 'reset') packets = bytes = other = 0;
  if (m.cmd === 'ssrcs') ssrcs = m.ssrcs ? new Set(m.ssrcs) : null;
  if (m.cmd === 'dests') dests = m.dests;
});
sock.bind(0, '127.0.0.1', () => parentPort.postMessage({ kind: 'port', port: sock.address().port }));
`;

class ThreadHandle {
  readonly thread: Thread;
  port = 0;
  constructor(role: 'sink' | 'relay') {
    this.thread = new Thread(THREAD_CODE, { eval: true, workerData: { role } });
  }
  async ready(): Promise<this> {
    this.port = await new Promise<number>((r) => this.thread.on('message', (m: ThreadMsg) => m.kind === 'port' && r(m.port)));
    return this;
  }
  count(): Promise<{ packets: number; bytes: number; other: number; stat: string }> {
    return new Promise((r) => {
      const h = (m: ThreadMsg) => {
        if (m.kind === 'count') {
          this.thread.off('message', h);
          r(m);
        }
      };
      this.thread.on('message', h);
      this.thread.postMessage({ cmd: 'count' });
    });
  }
  reset() {
    this.thread.postMessage({ cmd: 'reset' });
  }
  /** Count only these SSRCs (null: all RTP). */
  onlySsrcs(ssrcs: number[] | null) {
    this.thread.postMessage({ cmd: 'ssrcs', ssrcs });
  }
}

/** Sends the synthetic stream to port for SECONDS; returns packets sent. */
async function sendStream(port: number, ssrc = STREAM_SSRC): Promise<number> {
  const sock = dgram.createSocket('udp4');
  const pkt = Buffer.alloc(PACKET_BYTES);
  let seq = 0;
  let sent = 0;
  const start = performance.now();
  await new Promise<void>((resolve) => {
    const tick = () => {
      const elapsed = (performance.now() - start) / 1000;
      if (elapsed >= SECONDS) return resolve();
      const due = Math.floor(elapsed * PPS);
      while (sent < due) {
        const idr = sent % PPS === 0;
        pkt[0] = 0x80;
        pkt[1] = 0x80 | 102; // marker + payload type
        pkt.writeUInt16BE(seq++ & 0xffff, 2);
        pkt.writeUInt32BE(Math.floor(sent * (90000 / PPS)) >>> 0, 4);
        pkt.writeUInt32BE(ssrc, 8);
        pkt[12] = idr ? 0x67 : 0x41; // NAL header: SPS (mediasoup's H.264 keyframe mark) / non-IDR slice
        sock.send(pkt, port, '127.0.0.1');
        sent++;
      }
      setTimeout(tick, 2);
    };
    tick();
  });
  sock.close();
  return sent;
}

interface Row {
  n: number;
  sent: number;
  expected: number;
  received: number;
  loss: number;
  pps: number;
  cpu: number;
  other: number;
}

/** Signed loss: negative means more media arrived than was sent x consumers, which is a counting bug. */
function mkRow(n: number, sent: number, received: number, other: number, cpu: number): Row {
  const expected = sent * n;
  const loss = 1 - received / expected;
  if (received > expected) throw new Error(`counting error: received ${received} > sent ${sent} x ${n} consumers`);
  return { n, sent, expected, received, loss, pps: received / SECONDS, cpu, other };
}

async function mediasoupRun(worker: types.Worker, router: types.Router, sink: ThreadHandle, n: number): Promise<Row> {
  const input = await router.createPlainTransport({ listenInfo: { protocol: 'udp', ip: '127.0.0.1' }, rtcpMux: true, comedia: true });
  const producer = await input.produce({
    kind: 'video',
    rtpParameters: {
      codecs: [{ mimeType: 'video/H264', payloadType: 102, clockRate: 90000, parameters: { 'packetization-mode': 1, 'profile-level-id': '42e01f' } }],
      encodings: [{ ssrc: 0x1111 }],
    },
  });
  const outs: types.PlainTransport[] = [];
  const ssrcs: number[] = [];
  for (let i = 0; i < n; i++) {
    const t = await router.createPlainTransport({ listenInfo: { protocol: 'udp', ip: '127.0.0.1' }, rtcpMux: true, comedia: false });
    await t.connect({ ip: '127.0.0.1', port: sink.port });
    const c = await t.consume({ producerId: producer.id, rtpCapabilities: router.rtpCapabilities });
    ssrcs.push(c.rtpParameters.encodings![0]!.ssrc!);
    outs.push(t);
  }
  sink.onlySsrcs(ssrcs);
  await new Promise((r) => setTimeout(r, 300));
  sink.reset();
  const ru0 = await worker.getResourceUsage();
  const t0 = performance.now();
  const sent = await sendStream(input.tuple.localPort);
  await new Promise((r) => setTimeout(r, 300)); // drain
  const wall = (performance.now() - t0) / 1000;
  const ru1 = await worker.getResourceUsage();
  const { packets, other } = await sink.count();
  const cpu = (ru1.ru_utime + ru1.ru_stime - ru0.ru_utime - ru0.ru_stime) / 1000 / wall;
  for (const t of outs) t.close();
  input.close();
  return mkRow(n, sent, packets, other, cpu);
}

async function janusRun(janus: Janus, sink: ThreadHandle, n: number): Promise<Row> {
  const fan = await janus.fanOut(n, sink.port, 0x20000);
  sink.onlySsrcs(fan.ssrcs);
  await new Promise((r) => setTimeout(r, 300));
  sink.reset();
  const cpu0 = janus.cpuSeconds();
  const t0 = performance.now();
  // Janus demultiplexes a remote publisher's input by SSRC: stream 0 must arrive as SSRC 1000.
  const sent = await sendStream(fan.rtpPort, JANUS_REMOTE_SSRC);
  await new Promise((r) => setTimeout(r, 300)); // drain
  const wall = (performance.now() - t0) / 1000;
  const cpu = (janus.cpuSeconds() - cpu0) / wall;
  const { packets, other } = await sink.count();
  await fan.close();
  return mkRow(n, sent, packets, other, cpu);
}

async function relayRun(relay: ThreadHandle, sink: ThreadHandle, n: number): Promise<Row> {
  relay.thread.postMessage({ cmd: 'dests', dests: Array(n).fill(sink.port) });
  sink.onlySsrcs([STREAM_SSRC]);
  await new Promise((r) => setTimeout(r, 100));
  sink.reset();
  const cpu0 = statCpuSeconds((await relay.count()).stat);
  const t0 = performance.now();
  const sent = await sendStream(relay.port);
  await new Promise((r) => setTimeout(r, 300)); // drain
  const wall = (performance.now() - t0) / 1000;
  const cpu = (statCpuSeconds((await relay.count()).stat) - cpu0) / wall;
  const { packets, other } = await sink.count();
  return mkRow(n, sent, packets, other, cpu);
}

function print(label: string, r: Row) {
  const cpu = Number.isNaN(r.cpu) ? '' : ` CPU ${(r.cpu * 100).toFixed(0)}%`;
  console.log(`${label.padEnd(10)} consumers=${String(r.n).padStart(5)} forwarded=${Math.round(r.pps).toString().padStart(7)} pkt/s loss=${(r.loss * 100).toFixed(2).padStart(6)}%${cpu} (non-media RTP ignored: ${r.other})`);
}

async function main() {
  console.log(`# one ~${((PACKET_BYTES * 8 * PPS) / 1e6).toFixed(2)} Mbps stream (${PPS} pkt/s), ${SECONDS} s per step, loss limit ${LOSS_LIMIT * 100}%`);
  const sink = await new ThreadHandle('sink').ready();
  const worker = await mediasoup.createWorker({ logLevel: 'error', rtcMinPort: 20000, rtcMaxPort: 29999 });
  const router = await worker.createRouter({ mediaCodecs });
  const rows: [string, Row][] = [];
  let bestMs: Row | undefined;
  for (const n of STEPS) {
    const r = await mediasoupRun(worker, router, sink, n);
    rows.push(['mediasoup', r]);
    print('mediasoup', r);
    if (r.loss > LOSS_LIMIT) break;
    bestMs = r;
  }
  worker.close();

  let janusNote = '';
  let bestJanus: Row | undefined;
  const found = findJanus();
  if ('missing' in found) {
    janusNote = `janus not run: ${found.missing}`;
    console.log(`# ${janusNote}`);
  } else {
    let janus: Janus | undefined;
    try {
      janus = await Janus.start(found);
      for (const n of STEPS) {
        const r = await janusRun(janus, sink, n);
        rows.push(['janus', r]);
        print('janus', r);
        if (r.loss > LOSS_LIMIT) break;
        bestJanus = r;
      }
    } catch (e) {
      console.log(`# janus: failed: ${(e as Error).message}`);
      if (janus) console.log(janus.tail());
      throw e;
    } finally {
      janus?.stop();
      await janus?.exited();
    }
  }

  const relay = await new ThreadHandle('relay').ready();
  let bestRelay: Row | undefined;
  for (const n of STEPS) {
    const r = await relayRun(relay, sink, n);
    rows.push(['node-relay', r]);
    print('node-relay', r);
    if (r.loss > LOSS_LIMIT) break;
    bestRelay = r;
  }
  await relay.thread.terminate();
  await sink.thread.terminate();

  console.log('## table (same sender, same sink, same counting: only the forwarded stream\'s own SSRCs)');
  console.log('| forwarder | consumers | sent | expected | received | loss | forwarded pkt/s | CPU (one core = 100%) | non-media RTP ignored |');
  console.log('|---|---:|---:|---:|---:|---:|---:|---:|---:|');
  for (const [label, r] of rows) {
    const cpu = Number.isNaN(r.cpu) ? '' : `${(r.cpu * 100).toFixed(0)}%`;
    console.log(`| ${label} | ${r.n} | ${r.sent} | ${r.expected} | ${r.received} | ${(r.loss * 100).toFixed(2)}% | ${Math.round(r.pps)} | ${cpu} | ${r.other} |`);
  }
  console.log('CPU: mediasoup = its worker process (getResourceUsage); janus = the whole janus process (/proc/<pid>/stat, all threads);');
  console.log('node-relay = the relay thread only (/proc/thread-self/stat). All over the step plus a 300 ms drain.');
  console.log('Caveats: mediasoup consumers are full per-consumer RTP streams (own SSRC/sequence numbers, NACK/RTX buffer,');
  console.log('RTCP per consumer). Janus rtp_forward only stamps the SSRC/PT given per forward on the packet as received:');
  console.log('no per-consumer sequence rewriting or keyframe gating, no NACK/RTCP per forward (no rtcp_port), no SRTP.');
  console.log('The node relay sends each packet unchanged to every destination.');
  if (janusNote) console.log(janusNote);

  console.log('## summary');
  if (bestMs) {
    // Extrapolating pkt/s per core from a lightly loaded worker says little: only above half a core.
    const perCore = bestMs.cpu >= 0.5 ? ` (≈ ${Math.round(bestMs.pps / Math.min(1, bestMs.cpu))} pkt/s per core)` : '';
    console.log(`mediasoup worker: ${bestMs.n} consumers without loss, ${Math.round(bestMs.pps)} pkt/s forwarded at ${(bestMs.cpu * 100).toFixed(0)}% of one core${perCore}`);
  }
  if (bestJanus) console.log(`janus rtp_forward: ${bestJanus.n} consumers without loss, ${Math.round(bestJanus.pps)} pkt/s forwarded at ${(bestJanus.cpu * 100).toFixed(0)}% CPU`);
  if (bestRelay) console.log(`naive Node.js relay: ${bestRelay.n} consumers without loss, ${Math.round(bestRelay.pps)} pkt/s forwarded at ${(bestRelay.cpu * 100).toFixed(0)}% CPU`);
  if (bestMs && bestRelay) console.log(`ratio mediasoup / node relay (consumers without loss): ${(bestMs.n / bestRelay.n).toFixed(2)}`);
  if (bestMs && bestJanus) console.log(`ratio mediasoup / janus (consumers without loss): ${(bestMs.n / bestJanus.n).toFixed(2)}`);
  console.log(`(each sweep stops at its first step above ${LOSS_LIMIT * 100}% loss; "without loss" = the last step at or under it; steps: ${STEPS.join(',')})`);
}

await main();
