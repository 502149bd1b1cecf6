import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { hashPassword } from '../../infra/auth/password.ts';
import { loadConfig } from '../../infra/config.ts';
import { DEFAULT_LOGIN_LIMITS, type LoginLimits } from '../../web/api/login-throttle.ts';
import { startHarness, type Harness } from '../api/harness.ts';
import { createTestDatabase, type TestDatabase } from '../support/database.ts';

// Attack: guessing passwords at the sign-in route, from one address or from many (a botnet behind
// forged or real X-Forwarded-For), and locking real users out. Limits count failures, per account
// across addresses and per client address; the proxy is trusted only when TRUST_PROXY names it; a
// county's 500 kiosks signing in from one NAT address all get in.

const PW = 'Kiosk-pass-2026';
const KIOSKS = 500;

interface Answer {
  status: number;
  body: { error?: { code: string; details?: { retry_after_ms: number } }; token?: string };
  retryAfter: string | null;
}

async function login(h: Harness, username: string, password: string, forwardedFor?: string): Promise<Answer> {
  const res = await fetch(`${h.base}/api/auth/login`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(forwardedFor ? { 'x-forwarded-for': forwardedFor } : {}) },
    body: JSON.stringify({ username, password }),
  });
  return { status: res.status, body: (await res.json()) as Answer['body'], retryAfter: res.headers.get('retry-after') };
}

async function seed(db: TestDatabase, names: string[]): Promise<void> {
  const { rows } = await db.pool.query<{ id: number }>(`INSERT INTO units (level, name) VALUES ('city', '潍坊市') RETURNING id`);
  const hash = await hashPassword(PW);
  await db.pool.query(
    `INSERT INTO users (username, display_name, unit_id, role, password_hash) SELECT n, n, $1, 'secretary', $2 FROM unnest($3::text[]) n`,
    [rows[0]!.id, hash, names],
  );
}

describe('sign-in limits', { timeout: 180_000 }, () => {
  let db: TestDatabase;
  const open: Harness[] = [];
  const harness = async (limits: LoginLimits, trustProxy?: false | string): Promise<Harness> => {
    const h = await startHarness({ loginLimits: limits, ...(trustProxy !== undefined ? { trustProxy } : {}) }, db);
    open.push(h);
    return h;
  };

  before(async () => {
    db = await createTestDatabase();
    await seed(db, [...Array.from({ length: KIOSKS }, (_, i) => `v${i}.kiosk`), 'victim', 'victim2']);
  });
  after(async () => {
    // The harnesses share one database: close the servers, then drop it once.
    for (const h of open) await h.close().catch(() => undefined);
    await db.drop().catch(() => undefined);
  });

  test(`${KIOSKS} kiosks signing in from one NAT address at 19:25 all get in (a few typos among them)`, async () => {
    const h = await harness(DEFAULT_LOGIN_LIMITS);
    const started = Date.now();
    const statuses: number[] = [];
    let next = 0;
    await Promise.all(
      Array.from({ length: 8 }, async () => {
        while (next < KIOSKS) {
          const i = next++;
          if (i % 50 === 0) assert.equal((await login(h, `v${i}.kiosk`, 'typo')).status, 401);
          statuses.push((await login(h, `v${i}.kiosk`, PW)).status);
        }
      }),
    );
    const ms = Date.now() - started;
    console.log(`# ${KIOSKS} sign-ins (+${KIOSKS / 50} typos) from one address: ${ms} ms`);
    assert.equal(statuses.filter((s) => s === 200).length, KIOSKS, `all signed in: ${JSON.stringify(statuses.filter((s) => s !== 200))}`);
  });

  test('guessing one account from many addresses is slowed down exponentially; the real user at a known address is not', async () => {
    const limits: LoginLimits = { windowMs: 60_000, perIpFailures: 1000, accountFreeFailures: 5, accountBaseDelayMs: 1_000, accountMaxDelayMs: 8_000 };
    const h = await harness(limits, 'loopback');
    // The real user signed in before from their office.
    assert.equal((await login(h, 'victim', PW, '198.51.100.10')).status, 200);
    let addr = 0;
    const botnet = () => `203.0.113.${++addr}`;
    for (let i = 0; i < limits.accountFreeFailures; i++) assert.equal((await login(h, 'victim', `guess${i}`, botnet())).status, 401);
    // The 6th failure starts the delay; the next guess, from yet another address, is refused unchecked.
    assert.equal((await login(h, 'victim', 'guess5', botnet())).status, 401);
    const refused = await login(h, 'victim', PW, botnet());
    assert.equal(refused.status, 429, 'even the right password from a new address waits');
    assert.equal(refused.body.error?.code, 'too_many_attempts');
    assert.ok(Number(refused.retryAfter) >= 1, 'Retry-After says how long');
    const firstDelay = refused.body.error!.details!.retry_after_ms;
    assert.ok(firstDelay > 0 && firstDelay <= limits.accountBaseDelayMs);

    // Refused guesses cost no password check; the audit log notes them once a minute, not each.
    let refusedGuesses = 0;
    for (let i = 0; i < 30; i++) if ((await login(h, 'victim', `flood${i}`, botnet())).status === 429) refusedGuesses++;
    assert.ok(refusedGuesses >= 20, `most of the flood is refused unchecked: ${refusedGuesses}/30`);
    const { rows } = await db.pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM audit_log WHERE action = 'login.throttled' AND username = 'victim'`);
    assert.equal(rows[0]!.n, 1, 'one audit row for a flood of refused guesses');
    assert.equal((await login(h, 'victim', PW, '198.51.100.10')).status, 200, 'the real user at their usual address gets in meanwhile');
    // That success clears the account's count: guessing starts over with its free failures…
    for (let i = 0; i <= limits.accountFreeFailures; i++) await login(h, 'victim', `again${i}`, botnet());
    const d1 = (await login(h, 'victim', 'x', botnet())).body.error!.details!.retry_after_ms;
    await new Promise((r) => setTimeout(r, d1 + 20)); // as long as the server said
    assert.equal((await login(h, 'victim', 'wrong', botnet())).status, 401, 'after the delay one guess is checked again');
    const d2 = (await login(h, 'victim', 'x', botnet())).body.error!.details!.retry_after_ms;
    assert.ok(d2 > d1 * 1.5, `each further failure doubles the delay: ${d1} ms then ${d2} ms`);
    await new Promise((r) => setTimeout(r, d2 + 20));
    assert.equal((await login(h, 'victim', PW, botnet())).status, 200, 'a real user from a new address gets in once the delay is over');
  });

  test('spraying many accounts from one address is limited per address; behind the trusted proxy each client has its own count', async () => {
    const limits: LoginLimits = { windowMs: 60_000, perIpFailures: 5, accountFreeFailures: 1000, accountBaseDelayMs: 1, accountMaxDelayMs: 1 };
    const h = await harness(limits, 'loopback');
    for (let i = 0; i < 5; i++) assert.equal((await login(h, `v${i}.kiosk`, 'spray', '192.0.2.66')).status, 401);
    const limited = await login(h, 'v9.kiosk', 'spray', '192.0.2.66');
    assert.equal(limited.status, 429);
    assert.equal((await login(h, 'v9.kiosk', PW, '192.0.2.66')).status, 429, 'the address waits, whatever it tries');
    assert.equal((await login(h, 'v9.kiosk', PW, '192.0.2.77')).status, 200, 'another client behind the proxy is not affected');
    // A kiosk that signed in from the sprayed address before is not locked out by the sprayer next to it.
    assert.equal((await login(h, 'v9.kiosk', PW, '192.0.2.66')).status, 429, 'v9 never signed in from .66');
    assert.equal((await login(h, 'v8.kiosk', PW, '192.0.2.88')).status, 200);
    for (let i = 0; i < 5; i++) await login(h, `v${20 + i}.kiosk`, 'spray', '192.0.2.88');
    assert.equal((await login(h, 'v30.kiosk', PW, '192.0.2.88')).status, 429, 'the address is limited');
    assert.equal((await login(h, 'v8.kiosk', PW, '192.0.2.88')).status, 200, 'but a kiosk that signed in from it before still gets in');
    const { rows } = await db.pool.query<{ ip: string }>(`SELECT DISTINCT ip FROM audit_log WHERE action = 'login.throttled' AND username LIKE 'v%.kiosk' ORDER BY ip`);
    assert.deepEqual(rows.map((r) => r.ip), ['192.0.2.66', '192.0.2.88'], 'the audit names the clients the proxy named');
  });

  test('without a trusted proxy a forged X-Forwarded-For changes nothing', async () => {
    const limits: LoginLimits = { windowMs: 60_000, perIpFailures: 5, accountFreeFailures: 1000, accountBaseDelayMs: 1, accountMaxDelayMs: 1 };
    const h = await harness(limits);
    for (let i = 0; i < 5; i++) assert.equal((await login(h, `v${i}.kiosk`, 'spray', `10.9.8.${i}`)).status, 401);
    const forged = await login(h, 'v7.kiosk', 'spray', '10.9.8.200');
    assert.equal(forged.status, 429, 'one bucket for the real address, whatever the header says');
    const { rows } = await db.pool.query<{ ip: string }>(`SELECT ip FROM audit_log WHERE action = 'login.throttled' ORDER BY id DESC LIMIT 1`);
    assert.equal(rows[0]!.ip, '127.0.0.1');
  });

  test('TRUST_PROXY takes false, a hop count or proxy addresses, never a blanket true', () => {
    assert.equal(loadConfig({}).TRUST_PROXY, false, 'default: no proxy');
    assert.equal(loadConfig({ TRUST_PROXY: '1' }).TRUST_PROXY, 1);
    assert.equal(loadConfig({ TRUST_PROXY: 'loopback, 10.0.0.0/8, fd00::/8' }).TRUST_PROXY, 'loopback,10.0.0.0/8,fd00::/8');
    for (const bad of ['true', '10.0.0.0/99', 'proxy.example', '*']) assert.throws(() => loadConfig({ TRUST_PROXY: bad }), /TRUST_PROXY/, bad);
  });
});
