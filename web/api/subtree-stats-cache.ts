/**
 * Subtree counts for dashboards. A city's counts scan every member of ~170,000 (about a second); many
 * leaders open the dashboard at once at the start of a meeting. So requests for the same unit share
 * one computation while it runs, and an answer that took at least `slowMs` is kept `ttlMs` (the figure
 * says when it was computed). Small subtrees (a village before its deletion is confirmed) are cheap and
 * always fresh.
 */
export interface SubtreeStatsCacheOptions {
  ttlMs: number;
  slowMs: number;
  /** Entries kept (the oldest go first); a city has ~10,000 units. */
  maxEntries?: number;
}

export interface CachedStats<T> {
  value: T;
  computedAt: Date;
  /** Served from an earlier computation (not only shared with a concurrent request). */
  cached: boolean;
}

export class SubtreeStatsCache<T> {
  readonly #o: Required<SubtreeStatsCacheOptions>;
  readonly #kept = new Map<number, { value: T; computedAt: Date; until: number }>();
  readonly #running = new Map<number, Promise<CachedStats<T>>>();

  constructor(options: SubtreeStatsCacheOptions) {
    this.#o = { maxEntries: 20_000, ...options };
  }

  async get(unitId: number, compute: () => Promise<T>): Promise<CachedStats<T>> {
    const kept = this.#kept.get(unitId);
    if (kept && kept.until > Date.now()) return { value: kept.value, computedAt: kept.computedAt, cached: true };
    let running = this.#running.get(unitId);
    if (!running) {
      running = this.#compute(unitId, compute).finally(() => this.#running.delete(unitId));
      this.#running.set(unitId, running);
    }
    return running;
  }

  async #compute(unitId: number, compute: () => Promise<T>): Promise<CachedStats<T>> {
    const started = Date.now();
    const value = await compute();
    const computedAt = new Date();
    if (this.#o.ttlMs > 0 && computedAt.getTime() - started >= this.#o.slowMs) {
      this.#kept.delete(unitId);
      this.#kept.set(unitId, { value, computedAt, until: computedAt.getTime() + this.#o.ttlMs });
      while (this.#kept.size > this.#o.maxEntries) this.#kept.delete(this.#kept.keys().next().value!);
    } else this.#kept.delete(unitId);
    return { value, computedAt, cached: false };
  }
}
