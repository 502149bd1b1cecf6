/**
 * Gathers items for a short window (or until `maxItems`) and hands them over as one batch: one ffmpeg
 * for several segments' review images, one INSERT for several index rows. Each item carries its own
 * way of answering its caller; `run` settles them.
 */
export class MicroBatch<T> {
  readonly #windowMs: number;
  readonly #maxItems: number;
  readonly #run: (batch: T[]) => void;
  #waiting: T[] = [];
  #timer: NodeJS.Timeout | undefined;

  constructor(windowMs: number, maxItems: number, run: (batch: T[]) => void) {
    this.#windowMs = windowMs;
    this.#maxItems = Math.max(1, maxItems);
    this.#run = run;
  }

  add(item: T): void {
    this.#waiting.push(item);
    if (this.#waiting.length >= this.#maxItems) this.flush();
    else this.#timer ??= setTimeout(() => this.flush(), this.#windowMs);
  }

  /** Hands over what is waiting now. */
  flush(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    const batch = this.#waiting;
    this.#waiting = [];
    if (batch.length > 0) this.#run(batch);
  }
}
