/** Where the scheduler gets "now" from: the wall clock in production, a controlled one in tests. */
export interface Clock {
  now(): Date;
}

export const systemClock: Clock = { now: () => new Date() };

/** A clock the test moves by hand. */
export class ManualClock implements Clock {
  private t: number;
  constructor(start: Date) {
    this.t = start.getTime();
  }
  now(): Date {
    return new Date(this.t);
  }
  set(at: Date): void {
    this.t = at.getTime();
  }
  advance(ms: number): void {
    this.t += ms;
  }
}

/**
 * Simulated time that runs `scale` times faster than real time from a fixed real epoch. Several
 * processes given the same parameters agree on the time, so a restarted scheduler continues where
 * the killed one was.
 */
export class ScaledClock implements Clock {
  constructor(
    private readonly simStart: Date,
    private readonly realEpochMs: number,
    private readonly scale: number,
  ) {}
  now(): Date {
    return new Date(this.simStart.getTime() + (Date.now() - this.realEpochMs) * this.scale);
  }
}
