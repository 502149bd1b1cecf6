/**
 * Sends the latest of a changing value at most once per interval, and only when it differs from what
 * was last sent: the first change after a quiet interval goes out at once, later ones are folded into
 * one message at the end of the interval. Used for site counts (1/s per link) and demand (4/s per producer).
 */
export class Coalescer<T> {
  readonly #intervalMs: number;
  readonly #send: (value: T) => void;
  #sent: { value: T } | undefined;
  #latest: { value: T } | undefined;
  #lastAt = -Infinity;
  #timer: NodeJS.Timeout | undefined;
  #closed = false;

  constructor(intervalMs: number, send: (value: T) => void) {
    this.#intervalMs = intervalMs;
    this.#send = send;
  }

  /** The value now; it goes out now or at the end of the current interval (if still different). */
  set(value: T): void {
    if (this.#closed) return;
    this.#latest = { value };
    if (this.#timer) return;
    const wait = this.#lastAt + this.#intervalMs - performance.now();
    if (wait <= 0) return this.#flush();
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#flush();
    }, wait);
    this.#timer.unref();
  }

  /** What was last sent (undefined: nothing yet). */
  get sent(): T | undefined {
    return this.#sent?.value;
  }

  close(): void {
    this.#closed = true;
    clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  #flush(): void {
    const latest = this.#latest;
    if (this.#closed || !latest || (this.#sent && this.#sent.value === latest.value)) return;
    this.#sent = latest;
    this.#lastAt = performance.now();
    this.#send(latest.value);
  }
}
