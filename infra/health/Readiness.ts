// Liveness and readiness of one role process, as a load balancer or systemd watchdog script asks:
// /healthz (the process answers at all) and /readyz (each dependency it needs answered in time).
// Checks run on request with a deadline each, at most one run at a time per process (a probe storm
// shares the run in flight), so a dead dependency costs a probe its timeout and never a pile-up.

export interface CheckResult {
  ok: boolean;
  /** Why not ready, or a short state ("draining", "3 workers"). */
  detail?: string;
  ms: number;
}

export type Check = () => Promise<string | undefined> | string | undefined;

export interface ReadinessReport {
  ready: boolean;
  role: string;
  checks: Record<string, CheckResult>;
}

/** A named dependency check: resolves (optionally with a detail) when ready, throws when not. */
export class Readiness {
  readonly role: string;
  readonly #checks = new Map<string, Check>();
  readonly #timeoutMs: number;
  #inFlight: Promise<ReadinessReport> | undefined;

  constructor(role: string, timeoutMs = 2_000) {
    this.role = role;
    this.#timeoutMs = timeoutMs;
  }

  add(name: string, check: Check): this {
    this.#checks.set(name, check);
    return this;
  }

  report(): Promise<ReadinessReport> {
    this.#inFlight ??= this.#run().finally(() => (this.#inFlight = undefined));
    return this.#inFlight;
  }

  async #run(): Promise<ReadinessReport> {
    const entries = await Promise.all([...this.#checks].map(async ([name, check]) => [name, await this.#one(check)] as const));
    const checks = Object.fromEntries(entries);
    return { ready: entries.every(([, r]) => r.ok), role: this.role, checks };
  }

  async #one(check: Check): Promise<CheckResult> {
    const started = Date.now();
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer within ${this.#timeoutMs} ms`)), this.#timeoutMs);
    });
    try {
      const detail = await Promise.race([Promise.resolve().then(check), deadline]);
      return { ok: true, ...(detail ? { detail } : {}), ms: Date.now() - started };
    } catch (err) {
      return { ok: false, detail: err instanceof Error ? err.message : String(err), ms: Date.now() - started };
    } finally {
      clearTimeout(timer);
    }
  }
}
