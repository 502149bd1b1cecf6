import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import type { SfuNode } from './SfuNode.ts';

/** Prometheus metrics of one node, computed at scrape time from the node's live state. */
export class SfuMetrics {
  readonly registry = new Registry();
  readonly signallingErrors: Counter<'code'>;

  constructor(node: SfuNode) {
    const r = this.registry;
    collectDefaultMetrics({ register: r, prefix: 'sfu_process_' });
    const peers = () => [...node.rooms.values()].flatMap((room) => [...room.peers.values()]);
    new Gauge({
      name: 'sfu_workers',
      help: 'Live mediasoup workers',
      registers: [r],
      collect() {
        this.set(node.pool.slots.filter((s) => !s.restarting && !s.worker.closed).length);
      },
    });
    new Gauge({
      name: 'sfu_worker_restarts',
      help: 'Workers replaced after dying, since start',
      registers: [r],
      collect() {
        this.set(node.pool.restarts);
      },
    });
    new Gauge({ name: 'sfu_rooms', help: 'Open rooms', registers: [r], collect() { this.set(node.rooms.size); } });
    new Gauge({ name: 'sfu_peers', help: 'Joined peers', registers: [r], collect() { this.set(peers().length); } });
    new Gauge({
      name: 'sfu_transports',
      help: 'WebRTC transports',
      registers: [r],
      collect() {
        this.set(peers().reduce((n, p) => n + p.transports.size, 0));
      },
    });
    new Gauge({
      name: 'sfu_producers',
      help: 'Producers',
      labelNames: ['kind'],
      registers: [r],
      collect() {
        this.reset();
        for (const p of peers()) for (const pr of p.producers.values()) this.inc({ kind: pr.kind });
      },
    });
    new Gauge({
      name: 'sfu_consumers',
      help: 'Consumers',
      registers: [r],
      collect() {
        this.set(peers().reduce((n, p) => n + p.consumers.size, 0));
      },
    });
    new Gauge({
      name: 'sfu_transport_bitrate_bps',
      help: 'Sum of transport bitrates as measured by mediasoup',
      labelNames: ['direction'],
      registers: [r],
      async collect() {
        let recv = 0;
        let send = 0;
        const transports = peers().flatMap((p) => [...p.transports.values()]);
        const stats = await Promise.all(transports.map((t) => t.getStats().catch(() => [])));
        for (const list of stats) for (const s of list) {
          recv += s.recvBitrate;
          send += s.sendBitrate;
        }
        this.set({ direction: 'recv' }, recv);
        this.set({ direction: 'send' }, send);
      },
    });
    this.signallingErrors = new Counter({
      name: 'sfu_signalling_errors_total',
      help: 'Signalling requests answered with an error, by code',
      labelNames: ['code'],
      registers: [r],
    });
  }
}
