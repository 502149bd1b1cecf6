/**
 * The submit answers a channel is still writing to the database. A gateway sends a part's receipt
 * right after its submit answer; applied before that answer's id is stored, the receipt would find no
 * part and wait out a retry, while a later DELIVRD of the same part matched: states noted out of order.
 * Receipts wait for the answers read before them, so they apply in the order the gateway sent them.
 * Bounded by the channel's window: one write per submit in flight.
 */
export class AnswerWrites {
  readonly #writing = new Set<Promise<void>>();

  /** Registers an answer's write; returns it unchanged (its failure stays the caller's to handle). */
  track<T>(write: Promise<T>): Promise<T> {
    const done: Promise<void> = write.then(() => undefined, () => undefined);
    this.#writing.add(done);
    void done.then(() => this.#writing.delete(done));
    return write;
  }

  /** Resolves once every answer registered so far is written (or failed). */
  async settled(): Promise<void> {
    if (this.#writing.size > 0) await Promise.all([...this.#writing]);
  }
}
