import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { startSystemHarness, type SystemHarness } from '../support/system-harness.ts';

// A session someone else has taken over (a kiosk left signed in, a copied token) must not be able to
// guess the owner's password through the password-change route without limit, and the owner's
// password change must end it. Before: wrong current passwords were unlimited, and a token stayed
// good for its full 2 hours after the change.

let h: SystemHarness;
let username: string;

before(async () => {
  h = await startSystemHarness({ villages: 2 });
  username = h.demo.users.find((u) => u.role === 'supervisor' && u.level === 'county')!.username;
});
after(async () => {
  await h?.close();
});

type Err = { error?: { code: string } };

test('guessing the current password on the change route is throttled like sign-in', async () => {
  const thief = await h.login(username);
  const codes: number[] = [];
  for (let i = 0; i < 7; i++) {
    codes.push((await h.call<Err>(thief, 'POST', '/api/auth/password', { current_password: `guess-${i}`, new_password: 'Taken@Over2026x' })).status);
  }
  // 5 free failures per account (DEFAULT_LOGIN_LIMITS); the sixth starts a delay in which attempts are refused unread.
  assert.deepEqual(codes.slice(0, 6), [403, 403, 403, 403, 403, 403], codes.join(','));
  assert.equal(codes[6], 429, `after six wrong passwords: ${codes.join(',')}`);
  // Even with the right password the change waits out the delay (the limit is the account's, not the guess's).
  const right = await h.call<Err>(thief, 'POST', '/api/auth/password', { current_password: h.demo.password, new_password: 'Taken@Over2026x' });
  assert.equal(right.status, 429);
  const { rows } = await h.db.pool.query<{ n: string }>(`SELECT count(*) AS n FROM audit_log WHERE action = 'user.password_change_fail'`);
  assert.equal(Number(rows[0]!.n), 6, 'each checked guess is audited; refused ones are not checked');
});

test("the owner's password change ends every other session and hands the owner a fresh one", async () => {
  // The throttle above is per account; a second account keeps this test independent of it.
  const owner = h.demo.users.find((u) => u.role === 'leader' && u.level === 'county')!.username;
  const stolen = await h.login(owner);
  const mine = await h.login(owner);
  assert.equal((await h.call(stolen, 'GET', '/api/auth/me')).status, 200);
  // Tokens carry whole seconds: a token issued in the same second as the change survives it, so
  // the change happens in a later second than the stolen token's.
  await new Promise((r) => setTimeout(r, 1000 - (Date.now() % 1000) + 5));
  const changed = await h.call<{ token: string }>(mine, 'POST', '/api/auth/password', { current_password: h.demo.password, new_password: 'Owner@Changed2026' });
  assert.equal(changed.status, 200);
  const revoked = await h.call<Err>(stolen, 'GET', '/api/auth/me');
  assert.deepEqual([revoked.status, revoked.body.error?.code], [401, 'session_revoked']);
  assert.equal((await h.call<Err>(mine, 'GET', '/api/auth/me')).status, 401, "the caller's old token ends too");
  assert.equal((await h.call(changed.body.token, 'GET', '/api/auth/me')).status, 200, 'the fresh token works');
  assert.equal((await h.call(undefined, 'POST', '/api/auth/login', { username: owner, password: h.demo.password })).status, 401);
  assert.equal((await h.call(undefined, 'POST', '/api/auth/login', { username: owner, password: 'Owner@Changed2026' })).status, 200);
});
