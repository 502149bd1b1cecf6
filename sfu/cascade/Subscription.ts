import type { types } from 'mediasoup';
import type { Logger } from '../../infra/logger.ts';
import { Coalescer } from './Coalescer.ts';
import type { RoomLink } from './RoomLink.ts';

export interface SubscriptionOptions {
  roomId: string;
  producerId: string;
  /** The link towards the producer's origin. */
  via: RoomLink;
  lingerMs: number;
  keyFrameRequestDelayMs: number;
  /** Current paused state as last announced (the pipe producer follows it). */
  paused: () => boolean;
  /** Video: the highest layer anyone here (or beyond another link) wants; told towards the origin. */
  demand?: () => number;
  /** Least time between two `demand` messages for this producer. */
  demandIntervalMs: number;
  logger: Logger;
  onClosed: (sub: Subscription) => void;
  /** The time a loss on the way here takes to repair changed (see `repairRttMs`). */
  onRepairRtt?: (rttMs: number) => void;
  /** How often the pipe producer's round trip is read. */
  rttIntervalMs?: number;
}

/**
 * A remote producer piped into this node's router under its own id, held while anything here
 * (a browser consumer, a tap, a pipe consumer towards another link) uses it. The last release
 * starts a short linger (so a quick re-subscribe does not tear down and rebuild the pipe); when it
 * ends unused, the pipe producer is closed and the next node is told to stop sending.
 *
 * Keyframe requests from every consumer here reach the pipe producer, which forwards at most one
 * per keyFrameRequestDelay over the link: that is the per-link aggregation.
 */
export class Subscription {
  readonly producerId: string;
  readonly via: RoomLink;
  readonly ready: Promise<void>;
  readonly #options: SubscriptionOptions;
  #producer: types.Producer | undefined;
  #refs = 0;
  #linger: NodeJS.Timeout | undefined;
  #closed = false;
  #demand: Coalescer<number> | undefined;
  /** Came as one layer over the link's PlainTransport (a capped link). */
  single = false;
  #rttTimer: NodeJS.Timeout | undefined;
  #hopRttMs: number | undefined;
  /** What the node beyond said its own repair round trip for this producer was. */
  #upstreamRepairMs = 0;

  constructor(options: SubscriptionOptions) {
    this.#options = options;
    this.producerId = options.producerId;
    this.via = options.via;
    this.ready = this.#start();
    this.ready.catch((err: unknown) => {
      options.logger.debug({ producer: this.producerId, err: (err as Error).message }, 'subscription failed');
      this.close(true);
    });
  }

  get closed(): boolean {
    return this.#closed;
  }

  get refs(): number {
    return this.#refs;
  }

  get producer(): types.Producer | undefined {
    return this.#producer;
  }

  /**
   * The longest round trip a lost packet of this stream may need to be repaired on its way here
   * (NACK/RTX is hop by hop, so the worst hop counts, not the sum): this link's, measured by the pipe
   * producer (RTCP XR), or any hop beyond as the node beyond said. Undefined until measured.
   */
  get repairRttMs(): number | undefined {
    if (this.#hopRttMs === undefined) return this.#upstreamRepairMs > 0 ? this.#upstreamRepairMs : undefined;
    return Math.max(this.#hopRttMs, this.#upstreamRepairMs);
  }

  /** Takes a reference; resolves with its (idempotent) release once the producer is here. */
  async acquire(): Promise<() => void> {
    this.#refs++;
    clearTimeout(this.#linger);
    this.#linger = undefined;
    let released = false;
    const release = () => {
      if (released) return;
      released = true;
      this.#refs--;
      if (this.#refs === 0 && !this.#closed) {
        this.#linger = setTimeout(() => {
          if (this.#refs === 0) this.close(true);
        }, this.#options.lingerMs);
      }
    };
    try {
      await this.ready;
      if (this.#closed) throw new Error('subscription closed');
    } catch (err) {
      release();
      throw err;
    }
    return release;
  }

  /**
   * The demand here changed: tell the node towards the origin (coalesced, only on change). `initial`
   * (the pipe just came up): nothing is said while nobody here has a layer yet — the node beyond
   * assumes the top layer until told (a server-side consumer such as a recorder never says).
   */
  pushDemand(initial = false): void {
    const d = this.#options.demand;
    if (!d || !this.#producer || this.#closed) return;
    if (initial && d() < 0) return;
    this.#demand ??= new Coalescer<number>(this.#options.demandIntervalMs, (layer) => {
      const channel = this.via.link.channel;
      if (!this.#closed && !channel.closed && !this.via.closed) channel.notify('demand', { room: this.#options.roomId, producerId: this.producerId, layer });
    });
    this.#demand.set(d());
  }

  async setPaused(paused: boolean): Promise<void> {
    const p = this.#producer;
    if (!p || p.closed || p.paused === paused) return;
    await (paused ? p.pause() : p.resume()).catch(() => undefined);
  }

  /** Closes the pipe producer; `notify` tells the next node to stop sending (unless the link is gone). */
  close(notify: boolean): void {
    if (this.#closed) return;
    this.#closed = true;
    clearTimeout(this.#linger);
    clearInterval(this.#rttTimer);
    this.#demand?.close();
    this.#producer?.close();
    const channel = this.via.link.channel;
    if (notify && !channel.closed && !this.via.closed) {
      channel.notify('unsubscribe', { room: this.#options.roomId, producerId: this.producerId });
    }
    this.#options.onClosed(this);
  }

  async #start(): Promise<void> {
    const o = this.#options;
    const answer = await this.via.link.channel.request('subscribe', { room: o.roomId, producerId: o.producerId });
    if (this.#closed || this.via.closed) throw new Error('subscription closed while subscribing');
    // A capped link sends video as one layer over its PlainTransport; everything else comes through the pipe.
    const transport = answer.single ? this.via.plain : this.via.transport;
    if (!transport) throw new Error('single-layer stream offered on a link without a plain transport');
    this.single = answer.single === true;
    this.#upstreamRepairMs = answer.repairMs ?? 0;
    // Until this stream's own RTCP says, the link's last measurement stands (its page's first frames
    // then play with the delay they need instead of growing it later, which shows as a freeze).
    this.#hopRttMs = this.via.rttMs;
    const producer = await transport.produce({
      id: o.producerId,
      kind: answer.kind,
      rtpParameters: answer.rtpParameters as types.RtpParameters,
      paused: answer.paused,
      ...(answer.kind === 'video' ? { keyFrameRequestDelay: o.keyFrameRequestDelayMs } : {}),
    });
    if (this.#closed) {
      producer.close();
      throw new Error('subscription closed while subscribing');
    }
    this.#producer = producer;
    // The link or the transport went away under us: nothing to tell upstream.
    producer.observer.once('close', () => this.close(false));
    if (producer.paused !== o.paused()) await this.setPaused(o.paused());
    if (answer.kind === 'video') this.pushDemand(true);
    if (o.onRepairRtt) this.#watchRtt(producer, o.onRepairRtt);
  }

  #watchRtt(producer: types.Producer, onRepairRtt: (rttMs: number) => void): void {
    let told: number | undefined;
    this.#rttTimer = setInterval(() => {
      void producer.getStats().then(
        (stats) => {
          const rtts = stats.map((s) => s.roundTripTime ?? 0).filter((r) => r > 0);
          if (rtts.length === 0 || this.#closed) return;
          this.#hopRttMs = Math.round(Math.max(...rtts));
          this.via.rttMs = this.#hopRttMs;
          const now = this.repairRttMs!;
          // Told on a real change only (RTCP jitter moves it by a few ms every report).
          if (told === undefined || Math.abs(now - told) >= Math.max(50, told / 5)) {
            told = now;
            onRepairRtt(now);
          }
        },
        () => undefined,
      );
    }, this.#options.rttIntervalMs ?? 2_000);
    this.#rttTimer.unref();
  }
}
