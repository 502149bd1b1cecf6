import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import type { PoolClient } from '../../infra/db/pool.ts';
import { MAX_IMPORT_PASSWORDS } from '../../web/api/routes/bulk-import.ts';
import { waitUntil } from '../support/pages.ts';
import { startSystemHarness, type SystemHarness } from '../support/system-harness.ts';

// The account import hashed one scrypt (~100 ms, 32 MiB) per distinct password in the file, inside
// one transaction, dry runs included: a 2,000-line file with 2,000 passwords was ~200 s of CPU, and
// four at once held every libuv thread, so every sign-in waited. Now a file with more than
// MAX_IMPORT_PASSWORDS distinct passwords is refused before any line is checked, a dry run hashes
// nothing, hashing happens only once the whole file is accepted, and one account import runs at a
// time per API process (429 import_busy).

let h: SystemHarness;
let admin: string;
let unitCode: string;

before(async () => {
  h = await startSystemHarness({ villages: 2 });
  const a = h.demo.users.find((u) => u.role === 'admin' && u.level === 'county')!;
  admin = await h.login(a.username);
  const { rows } = await h.db.pool.query<{ code: string }>(
    `SELECT code FROM units WHERE path LIKE (SELECT path FROM units WHERE id = $1) || '%' AND code IS NOT NULL ORDER BY id LIMIT 1`,
    [a.unitId],
  );
  unitCode = rows[0]!.code;
});

after(async () => {
  await h?.close();
});

type Answer = { created?: number; dry_run?: boolean; error?: { code: string; message: string; details?: unknown } };

/** A CSV of `n` clerk accounts named `<prefix>-<i>`, whose password is chosen by `pass(i)`. */
function accounts(prefix: string, n: number, pass: (i: number) => string): string {
  const lines = ['unit_code,username,display_name,role,password'];
  for (let i = 0; i < n; i++) lines.push(`${unitCode},${prefix}-${i},村文书${i},clerk,${pass(i)}`);
  return `${lines.join('\n')}\n`;
}

async function importUsers(csv: string, dryRun = false): Promise<{ status: number; body: Answer }> {
  const res = await fetch(`${h.baseUrl}/api/users/import${dryRun ? '?dry_run=true' : ''}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${admin}`, 'content-type': 'text/csv' },
    body: csv,
  });
  return { status: res.status, body: (await res.json()) as Answer };
}

async function countUsers(prefix: string): Promise<number> {
  const { rows } = await h.db.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM users WHERE username LIKE $1', [`${prefix}-%`]);
  return rows[0]!.n;
}

test('a 2,000-line file with 2,000 distinct passwords is refused before any work, and writes nothing', async () => {
  const csv = accounts('flood', 2000, (i) => `Flood-Pass-${i}`);
  for (const dryRun of [false, true]) {
    const r = await importUsers(csv, dryRun);
    assert.equal(r.status, 400, JSON.stringify(r.body).slice(0, 300));
    assert.equal(r.body.error?.code, 'too_many_passwords');
    assert.match(r.body.error!.message, new RegExp(`最多${MAX_IMPORT_PASSWORDS}个.* / at most ${MAX_IMPORT_PASSWORDS} distinct initial passwords`));
    assert.deepEqual(r.body.error?.details, { max_distinct_passwords: MAX_IMPORT_PASSWORDS, distinct_passwords: 2000 });
  }
  assert.equal(await countUsers('flood'), 0);
  const { rows } = await h.db.pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM audit_log WHERE action IN ('user.import', 'user.create')`);
  assert.equal(rows[0]!.n, 0, 'nothing was imported, not even as a dry run');
});

test('a dry run is held to the same cap: 30 accounts with 30 passwords are refused', async () => {
  const r = await importUsers(accounts('dry', 30, (i) => `Dry-Pass-${i}`), true);
  assert.equal(r.status, 400, JSON.stringify(r.body));
  assert.equal(r.body.error?.code, 'too_many_passwords');
  assert.equal(await countUsers('dry'), 0);
});

test('a second account import while one runs gets 429 import_busy; the first completes', { timeout: 60_000 }, async () => {
  // Hold the first import inside its transaction: its INSERT waits for this lock.
  const locker: PoolClient = await h.db.pool.connect();
  let released = false;
  const release = async (): Promise<void> => {
    if (released) return;
    released = true;
    await locker.query('COMMIT');
    locker.release();
  };
  try {
    await locker.query('BEGIN');
    await locker.query('LOCK TABLE users IN SHARE MODE');
    const waitingInserts = async (): Promise<number> => {
      const { rows } = await h.db.pool.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE 'INSERT INTO users%'`,
      );
      return rows[0]!.n;
    };
    const first = importUsers(accounts('first', 5, (i) => `First-Pass-${i % 2}`));
    await waitUntil('the first import to wait on the users table', waitingInserts, (n) => n === 1, 20_000, 20);

    // The second must be turned away at once; were it let in, it would queue on the same lock.
    const second = importUsers(accounts('second', 3, () => 'Second-Pass-0'), true);
    const outcome = await Promise.race([
      second,
      waitUntil('a second waiting import', waitingInserts, (n) => n >= 2, 20_000, 20).then(() => 'second import admitted' as const),
    ]);
    assert.notEqual(outcome, 'second import admitted', 'two account imports ran at once');
    const busy = outcome as Awaited<typeof second>;
    assert.equal(busy.status, 429, JSON.stringify(busy.body));
    assert.equal(busy.body.error?.code, 'import_busy');
    assert.match(busy.body.error!.message, /正在进行.* \/ another user import is running/);

    await release();
    const done = await first;
    assert.deepEqual([done.status, done.body.created], [201, 5], JSON.stringify(done.body));
    // Once it is over, the next import is welcome.
    const again = await importUsers(accounts('second', 3, () => 'Second-Pass-0'), true);
    assert.deepEqual([again.status, again.body.created, again.body.dry_run], [201, 3, true], JSON.stringify(again.body));
  } finally {
    await release();
  }
});

test('a valid import with at most the cap of distinct passwords previews, then writes accounts that can sign in', { timeout: 60_000 }, async () => {
  const pass = (i: number): string => `Village-Start-${i % MAX_IMPORT_PASSWORDS}`;
  const csv = accounts('ok', 45, pass); // 45 accounts, exactly MAX_IMPORT_PASSWORDS passwords
  const preview = await importUsers(csv, true);
  assert.deepEqual([preview.status, preview.body.created, preview.body.dry_run], [201, 45, true], JSON.stringify(preview.body));
  assert.equal(await countUsers('ok'), 0, 'a dry run writes nothing');

  const done = await importUsers(csv);
  assert.deepEqual([done.status, done.body.created, done.body.dry_run], [201, 45, false], JSON.stringify(done.body));
  const { rows } = await h.db.pool.query<{ username: string; password_hash: string; must_change_password: boolean }>(
    `SELECT username, password_hash, must_change_password FROM users WHERE username LIKE 'ok-%'`,
  );
  assert.equal(rows.length, 45);
  assert.ok(rows.every((r) => r.password_hash.startsWith('scrypt$') && r.must_change_password));
  // One hash per distinct password: accounts sharing a password share its hash.
  assert.equal(new Set(rows.map((r) => r.password_hash)).size, MAX_IMPORT_PASSWORDS);
  for (const i of [0, 21, 44]) {
    const login = await h.call<{ token?: string; user?: { must_change_password?: boolean } }>(undefined, 'POST', '/api/auth/login', { username: `ok-${i}`, password: pass(i) });
    assert.equal(login.status, 200, `ok-${i}: ${JSON.stringify(login.body)}`);
    assert.equal(login.body.user?.must_change_password, true);
  }
  const wrong = await h.call(undefined, 'POST', '/api/auth/login', { username: 'ok-1', password: pass(0) });
  assert.notEqual(wrong.status, 200, "another account's password does not open it");
  const pending = await h.db.pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM users WHERE password_hash NOT LIKE 'scrypt$%'`);
  assert.equal(pending.rows[0]!.n, 0, 'no account is left without its hash');
});
