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
  /** Every notification sent to pages, by method (what one join costs the others). */
  readonly notifications: Counter<'method'>;
  /** Peers admitted (join answered). */
  readonly joins: Counter;

  readonly #registry: Registry;

  /**
   * A gauge computed at scrape time by someone else (the cascade's sfu_cascade_link_bytes{link,direction}):
   * `collect` returns the labelled values; the gauge is reset before each scrape.
   */
  addGauge<L extends string>(
    name: string,
    help: string,
    labelNames: readonly L[],
    collect: () => Iterable<[labels: Partial<Record<L, string>>, value: number]> | Promise<Iterable<[labels: Partial<Record<L, string>>, value: number]>>,
  ): void {
    if (this.#registry.getSingleMetric(name)) return;
    new Gauge<L>({
      name,
      help,
      labelNames: [...labelNames],
      registers: [this.#registry],
      async collect() {
        const values = await collect();
        this.reset();
        for (const [labels, value] of values) this.set(labels as Partial<Record<L, string | number>>, value);
      },
    });
  }

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
      help: 'Transports of peers (WebRTC and plain RTP)',
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
      help: 'Consumers of browser/terminal peers, by kind',
      labelNames: ['kind'],
      registers: [r],
      collect() {
        let audio = 0;
        let video = 0;
        for (const p of peers()) for (const c of p.consumers.values()) c.kind === 'audio' ? audio++ : video++;
        this.set({ kind: 'audio' }, audio);
        this.set({ kind: 'video' }, video);
      },
    });
    this.notifications = new Counter({ name: 'sfu_notifications_total', help: 'Notifications sent to pages, by method', labelNames: ['method'], registers: [r] });
    this.joins = new Counter({ name: 'sfu_joins_total', help: 'Peers admitted to a room', registers: [r] });
    new Gauge({
      name: 'sfu_pipe_subscriptions',
      help: 'Remote producers piped into this node (one per producer, however many consume it)',
      registers: [r],
      collect() {
        let n = 0;
        for (const room of node.rooms.values()) {
          const counted = room.remote?.subscriptionCount?.();
          if (counted !== undefined) n += counted;
          else n += node.cascade?.rooms.get(room.id)?.subscriptions.size ?? 0;
        }
        this.set(n);
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
    this.#registry = r;
    this.signallingErrors = new Counter({
      name: 'sfu_signalling_errors_total',
      help: 'Signalling requests answered with an error, by code',
      labelNames: ['code'],
      registers: [r],
    });
  }
}
