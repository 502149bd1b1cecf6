import crypto from 'node:crypto';
import { promisify } from 'node:util';

// scrypt (a memory-hard KDF) with a per-password random salt, stored as scrypt$N$r$p$salt$hash
// (salt and hash base64) so the cost can be raised later without breaking stored hashes.

const scrypt = promisify(crypto.scrypt) as (
  password: string | Buffer,
  salt: Buffer,
  keylen: number,
  options: crypto.ScryptOptions,
) => Promise<Buffer>;

export interface ScryptCost {
  N: number;
  r: number;
  p: number;
}

/** 2^15 x 8 x 1: 32 MiB and ~50-100 ms per hash on this class of machine. */
export const DEFAULT_COST: ScryptCost = { N: 1 << 15, r: 8, p: 1 };
const KEY_LEN = 32;

function maxmem(c: ScryptCost): number {
  return 128 * c.N * c.r * c.p * 2 + 1024 * 1024;
}

export async function hashPassword(password: string, cost: ScryptCost = DEFAULT_COST): Promise<string> {
  const salt = crypto.randomBytes(16);
  const hash = await scrypt(password.normalize('NFC'), salt, KEY_LEN, { ...cost, maxmem: maxmem(cost) });
  return `scrypt$${cost.N}$${cost.r}$${cost.p}$${salt.toString('base64')}$${hash.toString('base64')}`;
}

/** Constant-time comparison; a malformed stored hash verifies as false rather than throwing. */
export async function verifyPassword(password: string, stored: string): Promise<boolean> {
  const parts = stored.split('$');
  if (parts.length !== 6 || parts[0] !== 'scrypt') return false;
  const [N, r, p] = parts.slice(1, 4).map((x) => Number(x));
  if (!N || !r || !p || N > 1 << 20 || r > 32 || p > 16) return false;
  const salt = Buffer.from(parts[4]!, 'base64');
  const expected = Buffer.from(parts[5]!, 'base64');
  if (expected.length === 0) return false;
  const cost = { N, r, p };
  const actual = await scrypt(password.normalize('NFC'), salt, expected.length, { ...cost, maxmem: maxmem(cost) });
  return crypto.timingSafeEqual(actual, expected);
}

let dummy: Promise<string> | undefined;
/**
 * A hash to verify against when the username does not exist, so a failed login takes the same time
 * whether or not the account exists (no user enumeration by timing).
 */
export function dummyHash(): Promise<string> {
  dummy ??= hashPassword(crypto.randomBytes(16).toString('hex'));
  return dummy;
}
