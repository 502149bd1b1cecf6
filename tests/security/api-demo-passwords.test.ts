import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { hashPassword } from '../../infra/auth/password.ts';
import { refuseDemoPasswordsBeyondLoopback } from '../../infra/auth/demo-guard.ts';
import { DEMO_PASSWORD, generateDemoOrganisation } from '../../infra/demo/generate.ts';
import { tmpDir } from '../support/browser.ts';
import { createTestDatabase, type TestDatabase } from '../support/database.ts';

// Attack: the embedded database starts with the demo organisation, whose password is published. An
// operator sets HTTP_HOST=0.0.0.0 and anyone on the network signs in as wf.admin. Beyond loopback
// the API refuses to start while accounts still accept the demo password.

let db: TestDatabase;
before(async () => {
  db = await createTestDatabase();
  await generateDemoOrganisation(db.pool, { towns: 1, communities: 1, villages: 9 });
});
after(async () => db?.drop());

test('beyond loopback, demo passwords stop the start; on loopback, or once changed, they do not', async () => {
  await assert.rejects(refuseDemoPasswordsBeyondLoopback(db.pool, '0.0.0.0', false), /published demo password/);
  await assert.rejects(refuseDemoPasswordsBeyondLoopback(db.pool, '10.1.2.3', false), /ALLOW_DEMO_PASSWORDS/);
  for (const host of ['127.0.0.1', 'localhost', '::1']) await refuseDemoPasswordsBeyondLoopback(db.pool, host, false);
  await refuseDemoPasswordsBeyondLoopback(db.pool, '0.0.0.0', true);
  await db.pool.query('UPDATE users SET password_hash = $1', [await hashPassword('a-real-password-2026')]);
  await refuseDemoPasswordsBeyondLoopback(db.pool, '0.0.0.0', false);
});

test('the standalone API process refuses to listen on 0.0.0.0 with demo passwords', async () => {
  await db.pool.query('UPDATE users SET password_hash = $1', [await hashPassword(DEMO_PASSWORD)]);
  const child = spawn(process.execPath, ['--import', 'tsx', 'web/api/main.ts'], {
    env: { ...process.env, DATA_DIR: tmpDir('demo-guard-'), DATABASE_URL: db.url, HTTP_HOST: '0.0.0.0', HTTP_PORT: '0', LOG_LEVEL: 'warn' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d));
  child.stderr.on('data', (d: Buffer) => (out += d));
  const code = await new Promise<number | null>((r) => child.once('exit', r));
  assert.notEqual(code, 0, out);
  assert.match(out, /published demo password/);
  assert.doesNotMatch(out, /API listening/);
});
