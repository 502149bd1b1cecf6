import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import type { SfuNode } from './SfuNode.ts';

/** Prometheus metrics of one node, computed at scrape time from the node's live state. */
export class SfuMetrics {
  readonly registry = new Registry();
  readonly signallingErrors: Counter<'code'>;
  /** Signalling connections refused by the node-wide or per-address cap. */
  readonly connectionsRefused: Counter<'reason'>;
  /** Signalling connections closed for want of a join in time, or of pongs. */
  readonly sessionsTimedOut: Counter<'reason'>;

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
    this.connectionsRefused = new Counter({ name: 'sfu_connections_refused_total', help: 'Signalling connections refused by a connection cap', labelNames: ['reason'], registers: [r] });
    this.sessionsTimedOut = new Counter({ name: 'sfu_sessions_timed_out_total', help: 'Signalling connections closed: no join in time, or no pong', labelNames: ['reason'], registers: [r] });
    new Gauge({ name: 'sfu_signalling_connections', help: 'Open signalling connections', registers: [r], collect() { this.set(node.connections); } });
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
    // Cascade: is the parent link up, how many children, and what the pipes carry.
    new Gauge({
      name: 'sfu_cascade_parent_connected',
      help: '1 when the control link to the parent node is up (absent at the root)',
      registers: [r],
      collect() {
        this.set(node.cascade?.parentConnected ? 1 : 0);
      },
    });
    new Gauge({ name: 'sfu_cascade_children', help: 'Child nodes connected', registers: [r], collect() { this.set(node.cascade?.children.length ?? 0); } });
    new Gauge({
      name: 'sfu_cascade_subscriptions',
      help: 'Remote producers piped into this node (one per producer, however many consume it)',
      registers: [r],
      collect() {
        let n = 0;
        for (const cr of node.cascade?.rooms.values() ?? []) n += cr.subscriptions.size;
        this.set(n);
      },
    });
    new Gauge({
      name: 'sfu_cascade_pipe_bytes',
      help: 'Bytes sent / received on the PipeTransports of open conferences, by link',
      labelNames: ['link', 'direction'],
      registers: [r],
      async collect() {
        this.reset();
        const rls = [...(node.cascade?.rooms.values() ?? [])].flatMap((cr) => [...cr.links.values()]);
        const bytes = await Promise.all(rls.map((rl) => rl.bytes().catch(() => ({ sent: 0, received: 0 }))));
        rls.forEach((rl, i) => {
          this.inc({ link: rl.link.id, direction: 'sent' }, bytes[i]!.sent);
          this.inc({ link: rl.link.id, direction: 'received' }, bytes[i]!.received);
        });
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
