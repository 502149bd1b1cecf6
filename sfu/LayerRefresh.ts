import type { types } from 'mediasoup';

/** How often, and for how long after a producer's demand rose, consumers below their preferred layer are nudged. */
const SWEEP_MS = 2500;
const WINDOW_MS = 12_000;

/**
 * Moves simulcast consumers up once the layers they prefer start flowing. When a producer's demand
 * rises, its publisher starts encoding higher layers; mediasoup's SimulcastConsumer ignores a stream
 * active for less than 2 s and only recalculates on a score change, which a steady stream never has,
 * so the first consumers would stay on the lowest layer for good. Changing the preferred layers (one
 * down and back: the same value is a no-op in the worker) re-runs that choice (through the transport's
 * bandwidth estimate where there is one).
 */
export class LayerRefresh {
  readonly #consumersOf: (producerId: string) => Iterable<types.Consumer>;
  /** Producer id -> until when its consumers are nudged. */
  readonly #rising = new Map<string, number>();
  #timer: NodeJS.Timeout | undefined;

  constructor(consumersOf: (producerId: string) => Iterable<types.Consumer>) {
    this.#consumersOf = consumersOf;
  }

  /** The producer's demand went up: its higher layers should appear within the window. */
  rose(producerId: string): void {
    this.#rising.set(producerId, Date.now() + WINDOW_MS);
    if (this.#timer) return;
    this.#timer = setInterval(() => this.#sweep(), SWEEP_MS);
    this.#timer.unref();
  }

  forget(producerId: string): void {
    this.#rising.delete(producerId);
  }

  close(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
    this.#rising.clear();
  }

  #sweep(): void {
    const now = Date.now();
    for (const [producerId, until] of this.#rising) {
      if (until < now) {
        this.#rising.delete(producerId);
        continue;
      }
      for (const c of this.#consumersOf(producerId)) {
        if (c.closed || c.type !== 'simulcast' || c.paused || c.producerPaused) continue;
        const preferred = c.preferredLayers;
        if (!preferred) continue;
        const current = c.currentLayers?.spatialLayer ?? -1;
        if (current >= preferred.spatialLayer) continue;
        // The worker recalculates only when the preference changes: one layer down, then back.
        void c
          .setPreferredLayers({ spatialLayer: preferred.spatialLayer - 1 })
          .then(() => c.setPreferredLayers(preferred))
          .catch(() => undefined);
      }
    }
    if (this.#rising.size === 0) {
      clearInterval(this.#timer);
      this.#timer = undefined;
    }
  }
}
