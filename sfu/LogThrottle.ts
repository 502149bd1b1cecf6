import type { Logger } from '../infra/logger.ts';

/**
 * At most `perWindow` lines a window for one kind of event a stranger can cause (bad tokens,
 * malformed control messages): an attacker must not fill the disk with our logs. The first line
 * after a window that dropped some says how many were dropped.
 */
export class LogThrottle {
  readonly #log: Logger;
  readonly #perWindow: number;
  readonly #windowMs: number;
  #windowStart = 0;
  #count = 0;
  #dropped = 0;

  constructor(log: Logger, perWindow = 20, windowMs = 60_000) {
    this.#log = log;
    this.#perWindow = perWindow;
    this.#windowMs = windowMs;
  }

  warn(fields: Record<string, unknown>, msg: string): void {
    const now = Date.now();
    if (now - this.#windowStart >= this.#windowMs) {
      this.#windowStart = now;
      this.#count = 0;
      if (this.#dropped) fields = { ...fields, dropped: this.#dropped };
      this.#dropped = 0;
    }
    if (this.#count >= this.#perWindow) {
      this.#dropped++;
      return;
    }
    this.#count++;
    this.#log.warn(fields, msg);
  }
}
