// Password-guessing limits for sign-in, counting failures, not sign-ins (500 kiosks behind one NAT
// address may all sign in at 19:25). Two counters, both in memory (a restart forgets them; one API process):
// - per account, across addresses: after `accountFreeFailures` failures each further failure doubles
//   a delay (from `accountBaseDelayMs`, capped at `accountMaxDelayMs`) during which the account's
//   sign-ins are refused without checking the password;
// - per client address: `perIpFailures` failed sign-ins per `windowMs` for any accounts (spraying).
// An account signing in from an address it signed in from successfully before (30 days, 16 addresses
// per account) passes both, so a guesser cannot lock the real user out at their desk or kiosk.
// Attempts whose password is still being checked (scrypt, ~100 ms) count too, or parallel guesses would
// all pass before the first failure is known: per account they count toward the free failures; per
// address at most `perIpInFlight` checks run at once (not counted as failures: kiosks signing in at the
// same time are not guessers), beyond which the answer is a short wait.

export interface LoginLimits {
  /** How long failures are remembered (after the last one, or after the delay ends). */
  windowMs: number;
  /** Failed sign-ins per client address per window, whatever the account. */
  perIpFailures: number;
  /** Failures per account (from any address) before delays begin. */
  accountFreeFailures: number;
  /** First delay; each further failure doubles it. */
  accountBaseDelayMs: number;
  /** Longest delay: a real user signing in from a new address waits at most this long. */
  accountMaxDelayMs: number;
  /** Password checks running at once for one client address, whatever the account (default 32). */
  perIpInFlight?: number;
}

export const DEFAULT_LOGIN_LIMITS: LoginLimits = {
  windowMs: 15 * 60_000,
  perIpFailures: 100,
  accountFreeFailures: 5,
  accountBaseDelayMs: 2_000,
  accountMaxDelayMs: 15 * 60_000,
  perIpInFlight: 32,
};

/** Bound on tracked addresses and accounts each; the oldest are forgotten first. */
const MAX_TRACKED = 100_000;
/** Addresses remembered per account as where it signed in successfully. */
const MAX_KNOWN_ADDRESSES = 16;
const KNOWN_ADDRESS_MS = 30 * 24 * 3600_000;

interface AccountState {
  failures: number;
  lockedUntil: number;
  forgetAt: number;
}

interface AddressState {
  failures: number;
  resetAt: number;
}

/** `audit`: whether this refusal should be written to the audit log (once a minute per account or address). */
/** `busy`: the address has as many password checks running as it may (retry in a moment). */
export type Refusal = { limit: 'ip' | 'account' | 'busy'; retryAfterMs: number; audit: boolean };

/** An admitted attempt: end it with `failed()` or `succeeded()`, and `end()` it in `finally` on every path. */
export interface LoginAttempt {
  /** Counts a failure and ends the attempt. */
  failed(): void;
  /** Clears the account's failures, remembers the address as known, and ends the attempt. */
  succeeded(): void;
  /** Ends the attempt without a verdict (idempotent). */
  end(): void;
}

export type Admission = { ok: true; attempt: LoginAttempt } | { ok: false; refusal: Refusal };

/** Refused attempts cost no password check; the audit notes them once a minute per key, not each. */
const AUDIT_EVERY_MS = 60_000;
/** How long a refusal for attempts still in flight asks to wait: about one password check. */
const IN_FLIGHT_RETRY_MS = 1_000;

export class LoginThrottle {
  readonly #limits: LoginLimits;
  readonly #accounts = new Map<string, AccountState>();
  readonly #addresses = new Map<string, AddressState>();
  readonly #known = new Map<string, Map<string, number>>();
  readonly #audited = new Map<string, number>();
  // Attempts being checked right now; an entry lives only while its count is above zero.
  readonly #accountsInFlight = new Map<string, number>();
  readonly #addressesInFlight = new Map<string, number>();
  readonly #now: () => number;

  constructor(limits: LoginLimits, now: () => number = Date.now) {
    this.#limits = limits;
    this.#now = now;
  }

  /**
   * Admits an attempt (its password may be checked now) or refuses it. Checking, admitting and counting
   * the attempt as in flight happen at once, before any await: parallel requests cannot all pass.
   */
  begin(account: string, address: string): Admission {
    const now = this.#now();
    const refusal = this.#refusal(account, address, now);
    if (refusal) return { ok: false, refusal };
    bump(this.#accountsInFlight, account, 1);
    bump(this.#addressesInFlight, address, 1);
    let open = true;
    const end = (): void => {
      if (!open) return;
      open = false;
      bump(this.#accountsInFlight, account, -1);
      bump(this.#addressesInFlight, address, -1);
    };
    return {
      ok: true,
      attempt: {
        failed: () => {
          if (!open) return;
          this.#failed(account, address);
          end();
        },
        succeeded: () => {
          if (!open) return;
          this.#succeeded(account, address);
          end();
        },
        end,
      },
    };
  }

  #refusal(account: string, address: string, now: number): Refusal | undefined {
    // Bounds the password checks one address can queue (CPU), for known addresses too; no failure.
    if ((this.#addressesInFlight.get(address) ?? 0) >= (this.#limits.perIpInFlight ?? 32)) {
      return { limit: 'busy', retryAfterMs: IN_FLIGHT_RETRY_MS, audit: this.#shouldAudit(`busy|${address}`, now) };
    }
    // An account that signed in from this address before passes both limits here: a guesser behind
    // the same NAT, or elsewhere, cannot lock the county's kiosks out.
    if (this.#isKnown(account, address, now)) return undefined;
    const ip = this.#addresses.get(address);
    if (ip && ip.resetAt <= now) this.#addresses.delete(address);
    else if (ip && ip.failures >= this.#limits.perIpFailures) return { limit: 'ip', retryAfterMs: ip.resetAt - now, audit: this.#shouldAudit(`ip|${address}`, now) };
    let acc = this.#accounts.get(account);
    if (acc && acc.forgetAt <= now) {
      this.#accounts.delete(account);
      acc = undefined;
    } else if (acc && acc.lockedUntil > now) return { limit: 'account', retryAfterMs: acc.lockedUntil - now, audit: this.#shouldAudit(`account|${account}`, now) };
    // Attempts in flight may all fail: together with the failures so far they stay within the free
    // ones plus the one that starts the delay - sequential guessing's count. Past the free failures
    // (a delay ran out) one guess at a time.
    const inFlight = this.#accountsInFlight.get(account) ?? 0;
    if (inFlight > 0 && (acc?.failures ?? 0) + inFlight > this.#limits.accountFreeFailures) {
      return { limit: 'account', retryAfterMs: IN_FLIGHT_RETRY_MS, audit: this.#shouldAudit(`account|${account}`, now) };
    }
    return undefined;
  }

  #shouldAudit(key: string, now: number): boolean {
    const last = this.#audited.get(key);
    if (last !== undefined && now - last < AUDIT_EVERY_MS) return false;
    remember(this.#audited, key, now);
    return true;
  }

  #failed(account: string, address: string): void {
    const now = this.#now();
    const l = this.#limits;
    const ip = this.#addresses.get(address) ?? { failures: 0, resetAt: now + l.windowMs };
    ip.failures++;
    remember(this.#addresses, address, ip);
    const acc = this.#accounts.get(account) ?? { failures: 0, lockedUntil: 0, forgetAt: 0 };
    acc.failures++;
    const over = acc.failures - l.accountFreeFailures;
    if (over > 0) acc.lockedUntil = now + Math.min(l.accountMaxDelayMs, l.accountBaseDelayMs * 2 ** Math.min(over - 1, 40));
    acc.forgetAt = Math.max(now, acc.lockedUntil) + l.windowMs;
    remember(this.#accounts, account, acc);
  }

  #succeeded(account: string, address: string): void {
    this.#accounts.delete(account);
    const known = this.#known.get(account) ?? new Map<string, number>();
    known.delete(address);
    known.set(address, this.#now() + KNOWN_ADDRESS_MS);
    while (known.size > MAX_KNOWN_ADDRESSES) known.delete(known.keys().next().value!);
    remember(this.#known, account, known);
  }

  #isKnown(account: string, address: string, now: number): boolean {
    const until = this.#known.get(account)?.get(address);
    return until !== undefined && until > now;
  }
}

/** Adds to a count, dropping the entry at zero. */
function bump(map: Map<string, number>, key: string, by: number): void {
  const n = (map.get(key) ?? 0) + by;
  if (n > 0) map.set(key, n);
  else map.delete(key);
}

/** Re-inserts (newest last) and forgets the oldest entries beyond the bound. */
function remember<V>(map: Map<string, V>, key: string, value: V): void {
  map.delete(key);
  map.set(key, value);
  while (map.size > MAX_TRACKED) map.delete(map.keys().next().value!);
}
