// Forwarding capacity of one mediasoup Worker (one core) against a naive Node.js UDP relay.
//
// One ~1 Mbps H.264 video stream (synthetic RTP: 1,100-byte single-NAL packets at ~110 pps, an IDR
// every second) enters through a PlainTransport; N consumers leave through N PlainTransports towards
// a UDP sink. N is raised until the sink sees loss (> 1 %) or the worker saturates. The baseline
// relays the same packets with a Node.js dgram socket that sends each one to N destinations.
//
// Run: npm run bench:sfu   (BENCH_SECONDS, BENCH_STEPS="100,200,..." to change the sweep)
import dgram from 'node:dgram';
import { Worker as Thread } from 'node:worker_threads';
import * as mediasoup from 'mediasoup';
import type { types } from 'mediasoup';
import { mediaCodecs } from '../../sfu/mediaCodecs.ts';

const PACKET_BYTES = 1100;
const PPS = 110; // 1100 B * 8 * 110 ≈ 0.97 Mbps
const SECONDS = Number(process.env.BENCH_SECONDS ?? 5);
const STEPS = (process.env.BENCH_STEPS ?? '100,250,500,750,1000,1250,1500,2000,2500').split(',').map(Number);
const LOSS_LIMIT = 0.01;

type ThreadMsg = { kind: 'port'; port: number } | { kind: 'count'; packets: number; bytes: number };

// A counting UDP sink, or the naive relay (each packet sent on to every destination), on its own
// thread so it has a core of its own like the mediasoup worker. Plain JS: it runs in a bare thread.
const THREAD_CODE = `
const dgram = require('node:dgram');
const { parentPort, workerData } = require('node:worker_threads');
const sock = dgram.createSocket({ type: 'udp4', recvBufferSize: 64 << 20, sendBufferSize: 16 << 20 });
let packets = 0, bytes = 0, dests = [];
sock.on('message', (msg) => {
  if (msg[1] >= 192 && msg[1] <= 223) return; // RTCP (RFC 5761 range): count RTP only
  packets++; bytes += msg.length;
  if (workerData.role === 'relay') for (const port of dests) sock.send(msg, port, '127.0.0.1');
});
parentPort.on('message', (m) => {
  if (m.cmd === 'count') parentPort.postMessage({ kind: 'count', packets, bytes });
  if (m.cmd === 'reset') packets = bytes = 0;
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
  count(): Promise<{ packets: number; bytes: number }> {
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
}

/** Sends the synthetic stream to port for SECONDS; returns packets sent. */
async function sendStream(port: number): Promise<number> {
  const sock = dgram.createSocket('udp4');
  const pkt = Buffer.alloc(PACKET_BYTES);
  let seq = 0;
  let sent = 0;
  const start = performance.now();
  const ssrc = 0x1111;
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
  for (let i = 0; i < n; i++) {
    const t = await router.createPlainTransport({ listenInfo: { protocol: 'udp', ip: '127.0.0.1' }, rtcpMux: true, comedia: false });
    await t.connect({ ip: '127.0.0.1', port: sink.port });
    await t.consume({ producerId: producer.id, rtpCapabilities: router.rtpCapabilities });
    outs.push(t);
  }
  await new Promise((r) => setTimeout(r, 300));
  sink.reset();
  const ru0 = await worker.getResourceUsage();
  const t0 = performance.now();
  const sent = await sendStream(input.tuple.localPort);
  await new Promise((r) => setTimeout(r, 300)); // drain
  const wall = (performance.now() - t0) / 1000;
  const ru1 = await worker.getResourceUsage();
  const { packets } = await sink.count();
  const cpu = (ru1.ru_utime + ru1.ru_stime - ru0.ru_utime - ru0.ru_stime) / 1000 / wall;
  // The first packets before the first IDR are held back by design (consumers wait for a keyframe).
  const expected = sent * n;
  for (const t of outs) t.close();
  input.close();
  return { n, sent, expected, received: packets, loss: Math.max(0, 1 - packets / expected), pps: packets / SECONDS, cpu };
}

async function relayRun(relay: ThreadHandle, sink: ThreadHandle, n: number): Promise<Row> {
  relay.thread.postMessage({ cmd: 'dests', dests: Array(n).fill(sink.port) });
  await new Promise((r) => setTimeout(r, 100));
  sink.reset();
  const t0 = process.cpuUsage();
  const sent = await sendStream(relay.port);
  await new Promise((r) => setTimeout(r, 300));
  const { packets } = await sink.count();
  void t0;
  const expected = sent * n;
  return { n, sent, expected, received: packets, loss: Math.max(0, 1 - packets / expected), pps: packets / SECONDS, cpu: NaN };
}

function print(label: string, r: Row) {
  const cpu = Number.isNaN(r.cpu) ? '' : ` worker CPU ${(r.cpu * 100).toFixed(0)}%`;
  console.log(`${label} consumers=${String(r.n).padStart(5)} forwarded=${Math.round(r.pps).toString().padStart(7)} pkt/s loss=${(r.loss * 100).toFixed(2).padStart(6)}%${cpu}`);
}

async function main() {
  console.log(`# one ~${((PACKET_BYTES * 8 * PPS) / 1e6).toFixed(2)} Mbps stream (${PPS} pkt/s), ${SECONDS} s per step, loss limit ${LOSS_LIMIT * 100}%`);
  const sink = await new ThreadHandle('sink').ready();
  const worker = await mediasoup.createWorker({ logLevel: 'error', rtcMinPort: 20000, rtcMaxPort: 29999 });
  const router = await worker.createRouter({ mediaCodecs });
  let bestMs: Row | undefined;
  let first: Row | undefined;
  for (const n of STEPS) {
    const r = await mediasoupRun(worker, router, sink, n);
    first ??= r;
    print('mediasoup', r);
    if (r.loss > LOSS_LIMIT) break;
    bestMs = r;
  }
  worker.close();

  const relay = await new ThreadHandle('relay').ready();
  let bestRelay: Row | undefined;
  for (const n of STEPS) {
    const r = await relayRun(relay, sink, n);
    print('node-relay', r);
    if (r.loss > LOSS_LIMIT) break;
    bestRelay = r;
  }
  await relay.thread.terminate();
  await sink.thread.terminate();

  console.log('## summary');
  if (bestMs) {
    const perCore = bestMs.cpu > 0 ? bestMs.pps / Math.min(1, bestMs.cpu) : NaN;
    console.log(`mediasoup worker: ${bestMs.n} consumers without loss, ${Math.round(bestMs.pps)} pkt/s forwarded at ${(bestMs.cpu * 100).toFixed(0)}% of one core (≈ ${Math.round(perCore)} pkt/s per core)`);
  }
  if (bestRelay) console.log(`naive Node.js relay: ${bestRelay.n} consumers without loss, ${Math.round(bestRelay.pps)} pkt/s forwarded`);
  if (bestMs && bestRelay) console.log(`ratio mediasoup / node relay (consumers without loss): ${(bestMs.n / bestRelay.n).toFixed(2)}`);
  void first;
}

await main();
