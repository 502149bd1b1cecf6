// Password-guessing limits for sign-in, counting failures only (500 kiosks behind one NAT address may
// all sign in at 19:25). Two counters, both in memory (a restart forgets them; one API process):
// - per account, across addresses: after `accountFreeFailures` failures each further failure doubles
//   a delay (from `accountBaseDelayMs`, capped at `accountMaxDelayMs`) during which the account's
//   sign-ins are refused without checking the password;
// - per client address: `perIpFailures` failed sign-ins per `windowMs` for any accounts (spraying).
// An account signing in from an address it signed in from successfully before (30 days, 16 addresses
// per account) passes both, so a guesser cannot lock the real user out at their desk or kiosk.

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
}

export const DEFAULT_LOGIN_LIMITS: LoginLimits = {
  windowMs: 15 * 60_000,
  perIpFailures: 100,
  accountFreeFailures: 5,
  accountBaseDelayMs: 2_000,
  accountMaxDelayMs: 15 * 60_000,
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
export type Refusal = { limit: 'ip' | 'account'; retryAfterMs: number; audit: boolean };

/** Refused attempts cost no password check; the audit notes them once a minute per key, not each. */
const AUDIT_EVERY_MS = 60_000;

export class LoginThrottle {
  readonly #limits: LoginLimits;
  readonly #accounts = new Map<string, AccountState>();
  readonly #addresses = new Map<string, AddressState>();
  readonly #known = new Map<string, Map<string, number>>();
  readonly #audited = new Map<string, number>();
  readonly #now: () => number;

  constructor(limits: LoginLimits, now: () => number = Date.now) {
    this.#limits = limits;
    this.#now = now;
  }

  /** Whether a sign-in may be tried now; a refusal says which limit and for how long. */
  check(account: string, address: string): Refusal | undefined {
    const now = this.#now();
    // An account that signed in from this address before passes both limits here: a guesser behind
    // the same NAT, or elsewhere, cannot lock the county's kiosks out.
    if (this.#isKnown(account, address, now)) return undefined;
    const ip = this.#addresses.get(address);
    if (ip && ip.resetAt <= now) this.#addresses.delete(address);
    else if (ip && ip.failures >= this.#limits.perIpFailures) return { limit: 'ip', retryAfterMs: ip.resetAt - now, audit: this.#shouldAudit(`ip|${address}`, now) };
    const acc = this.#accounts.get(account);
    if (acc && acc.forgetAt <= now) this.#accounts.delete(account);
    else if (acc && acc.lockedUntil > now) return { limit: 'account', retryAfterMs: acc.lockedUntil - now, audit: this.#shouldAudit(`account|${account}`, now) };
    return undefined;
  }

  #shouldAudit(key: string, now: number): boolean {
    const last = this.#audited.get(key);
    if (last !== undefined && now - last < AUDIT_EVERY_MS) return false;
    remember(this.#audited, key, now);
    return true;
  }

  failed(account: string, address: string): void {
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

  succeeded(account: string, address: string): void {
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

/** Re-inserts (newest last) and forgets the oldest entries beyond the bound. */
function remember<V>(map: Map<string, V>, key: string, value: V): void {
  map.delete(key);
  map.set(key, value);
  while (map.size > MAX_TRACKED) map.delete(map.keys().next().value!);
}
