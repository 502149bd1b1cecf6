import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { hashPassword, verifyPassword } from '../../infra/auth/password.ts';
import { signAccessToken, signJoinToken } from '../../infra/tokens.ts';
import { startHarness, TEST_SECRET, type Harness } from './harness.ts';
import { TEST_JOIN_KEYS } from '../support/join-keys.ts';

// Sign-in: scrypt hashes, audited successes and failures, rate limits, token expiry and revocation.

let h: Harness;
let cityId: number;
const PW = 'correct horse 2026';

async function auditRows(action: string): Promise<Array<{ user_id: number | null; username: string | null; unit_id: number | null; ip: string | null; detail: Record<string, unknown> }>> {
  const { rows } = await h.db.pool.query('SELECT user_id, username, unit_id, ip, detail FROM audit_log WHERE action = $1 ORDER BY id', [action]);
  return rows;
}

before(async () => {
  h = await startHarness({ loginLimits: { windowMs: 60_000, perIpFailures: 40, accountFreeFailures: 2, accountBaseDelayMs: 60_000, accountMaxDelayMs: 60_000 } });
  const { rows } = await h.db.pool.query<{ id: number }>(`INSERT INTO units (level, name) VALUES ('city', '潍坊市') RETURNING id`);
  cityId = rows[0]!.id;
  const hash = await hashPassword(PW);
  for (const [u, role] of [['alice', 'admin'], ['bob', 'clerk'], ['carol', 'leader'], ['dave', 'clerk']] as const) {
    await h.db.pool.query(`INSERT INTO users (username, display_name, unit_id, role, password_hash) VALUES ($1, $1, $2, $3, $4)`, [u, cityId, role, hash]);
  }
});

after(async () => {
  await h?.close();
});

test('passwords are stored as salted scrypt and verified in constant time', async () => {
  const a = await hashPassword('秘密-secret');
  const b = await hashPassword('秘密-secret');
  assert.match(a, /^scrypt\$32768\$8\$1\$[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+$/);
  assert.notEqual(a, b, 'each hash has its own salt');
  assert.equal(await verifyPassword('秘密-secret', a), true);
  assert.equal(await verifyPassword('秘密-secreT', a), false);
  assert.equal(await verifyPassword('x', 'plaintext'), false);
  assert.equal(await verifyPassword('x', 'scrypt$999999999$8$1$AA==$AA=='), false, 'absurd cost is refused, not attempted');
  const { rows } = await h.db.pool.query<{ password_hash: string }>(`SELECT password_hash FROM users WHERE username = 'alice'`);
  assert.ok(!rows[0]!.password_hash.includes(PW));
});

test('a good login returns a working token and is audited', async () => {
  const r = await h.call('POST', '/api/auth/login', { body: { username: 'alice', password: PW } });
  assert.equal(r.status, 200, r.text);
  const body = r.body as { token: string; expires_in: number; user: { username: string; role: string } };
  assert.equal(body.user.role, 'admin');
  assert.equal(body.expires_in, 7200);
  assert.ok(!r.text.includes('password'), r.text);
  const me = await h.call('GET', '/api/auth/me', { token: body.token });
  assert.equal(me.status, 200);
  assert.equal((me.body as { username: string }).username, 'alice');
  const ok = await auditRows('login.ok');
  assert.equal(ok.length, 1);
  assert.equal(ok[0]!.username, 'alice');
  assert.equal(ok[0]!.unit_id, cityId);
  assert.equal(ok[0]!.ip, '127.0.0.1');
});

test('failed logins are refused alike and audited with the reason', async () => {
  const wrong = await h.call('POST', '/api/auth/login', { body: { username: 'bob', password: 'nope' } });
  const unknown = await h.call('POST', '/api/auth/login', { body: { username: 'nobody', password: 'nope' } });
  assert.equal(wrong.status, 401);
  assert.equal(unknown.status, 401);
  assert.deepEqual(wrong.body, unknown.body, 'unknown user and wrong password look the same');
  const bad = await h.call('POST', '/api/auth/login', { body: { username: 'bob' } });
  assert.equal(bad.status, 400);
  const fails = await auditRows('login.fail');
  assert.deepEqual(
    fails.map((f) => [f.username, f.detail.reason, f.user_id !== null]),
    [
      ['bob', 'bad_password', true],
      ['nobody', 'unknown_user', false],
    ],
  );
});

test('repeated failures for one account are rate-limited, other accounts are not', async () => {
  for (let i = 0; i < 3; i++) {
    const r = await h.call('POST', '/api/auth/login', { body: { username: 'dave', password: `guess${i}` } });
    assert.equal(r.status, 401);
  }
  const blocked = await h.call('POST', '/api/auth/login', { body: { username: 'dave', password: PW } });
  assert.equal(blocked.status, 429, 'even the right password is refused while throttled');
  assert.equal((blocked.body as { error: { code: string } }).error.code, 'too_many_attempts');
  const other = await h.call('POST', '/api/auth/login', { body: { username: 'carol', password: PW } });
  assert.equal(other.status, 200);
  // the throttled audit row is written after the answer; give it a moment
  for (let i = 0; i < 20 && (await auditRows('login.throttled')).length === 0; i++) await new Promise((r) => setTimeout(r, 25));
  const throttled = await auditRows('login.throttled');
  assert.equal(throttled.length, 1);
  assert.equal(throttled[0]!.username, 'dave');
});

test('too many failed attempts from one address are limited', async () => {
  const local = await startHarness({ loginLimits: { windowMs: 60_000, perIpFailures: 5, accountFreeFailures: 100, accountBaseDelayMs: 1, accountMaxDelayMs: 1 } });
  try {
    const codes: number[] = [];
    for (let i = 0; i < 7; i++) codes.push((await local.call('POST', '/api/auth/login', { body: { username: `u${i}`, password: 'x' } })).status);
    assert.deepEqual(codes, [401, 401, 401, 401, 401, 429, 429]);
  } finally {
    await local.close();
  }
});

test('expired, forged, wrong-audience and revoked tokens are refused', async () => {
  const { rows } = await h.db.pool.query<{ id: number }>(`SELECT id FROM users WHERE username = 'bob'`);
  const bobId = rows[0]!.id;
  const claims = { userId: bobId, username: 'bob', role: 'clerk' as const, unitId: cityId };
  const expired = await signAccessToken(TEST_SECRET, claims, -10);
  const r1 = await h.call('GET', '/api/auth/me', { token: expired });
  assert.equal(r1.status, 401);
  assert.equal((r1.body as { error: { code: string } }).error.code, 'token_expired');
  const forged = await signAccessToken('another-secret-another-secret-another', claims);
  assert.equal((await h.call('GET', '/api/auth/me', { token: forged })).status, 401);
  const join = await signJoinToken(TEST_JOIN_KEYS.privateKey, { userId: bobId, displayName: 'bob', unitId: cityId, room: 'r', role: 'chair' });
  assert.equal((await h.call('GET', '/api/auth/me', { token: join })).status, 401, 'a join token is not a session');

  const good = await signAccessToken(TEST_SECRET, claims);
  assert.equal((await h.call('GET', '/api/units', { token: good })).status, 200);
  await h.db.pool.query(`UPDATE users SET disabled = true WHERE id = $1`, [bobId]);
  assert.equal((await h.call('GET', '/api/units', { token: good })).status, 401, 'disabling an account ends its sessions');
  const login = await h.call('POST', '/api/auth/login', { body: { username: 'bob', password: PW } });
  assert.equal(login.status, 401);
  assert.equal((await auditRows('login.fail')).at(-1)!.detail.reason, 'disabled');
});

test('role changes take effect on the next request', async () => {
  const token = await h.login('carol', PW);
  const make = () => h.call('POST', '/api/units', { token, body: { parent_id: cityId, level: 'county', name: '测试区' } });
  assert.equal((await make()).status, 403, 'a leader may not create units');
  await h.db.pool.query(`UPDATE users SET role = 'admin' WHERE username = 'carol'`);
  assert.equal((await make()).status, 201, 'promoted to admin, the same token now may');
});
