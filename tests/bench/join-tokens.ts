// Cost of admitting a page: verifying its join token. Join tokens are ES256 (the API signs, nodes hold
// only the public key); the baseline is the HS256 shared-secret scheme they replaced. Prints tokens
// verified per second on one core for each, and what a 1,000-site meeting start costs a node.
import { SignJWT, jwtVerify } from 'jose';
import { generateKeyPair, signJoinToken, verifyJoinToken } from '../../infra/tokens.ts';

const N = 5000;
const claims = { userId: 1, displayName: '大柳树村', unitId: 42, room: 'm-1', role: 'participant' } as const;
const keys = generateKeyPair();
const secret = new TextEncoder().encode('bench-secret-bench-secret-bench-secret-0123');

async function rate(label: string, make: () => Promise<string>, check: (t: string) => Promise<unknown>): Promise<number> {
  const tokens = await Promise.all(Array.from({ length: N }, make));
  for (const t of tokens.slice(0, 200)) await check(t); // warm-up
  const t0 = process.hrtime.bigint();
  for (const t of tokens) await check(t);
  const s = Number(process.hrtime.bigint() - t0) / 1e9;
  const perSecond = N / s;
  console.log(`${label.padEnd(34)} ${perSecond.toFixed(0).padStart(7)} verifications/s   1,000 joins: ${((1000 / perSecond) * 1000).toFixed(0)} ms of one core`);
  return perSecond;
}

const es = await rate('ES256 join token (public key)', () => signJoinToken(keys.privateKey, claims), (t) => verifyJoinToken(keys.publicKey, t));
const hs = await rate('HS256 shared secret (baseline)', () =>
  new SignJWT({ ...claims }).setProtectedHeader({ alg: 'HS256' }).setIssuer('grassroots-av').setAudience('sfu-join').setExpirationTime('10m').sign(secret),
  (t) => jwtVerify(t, secret, { issuer: 'grassroots-av', audience: 'sfu-join', algorithms: ['HS256'] }));
console.log(`ES256 costs ${(hs / es).toFixed(1)}x the baseline per join`);
