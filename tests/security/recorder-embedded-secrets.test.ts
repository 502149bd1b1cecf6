import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { startEmbeddedPostgres } from '../../infra/db/embedded-postgres.ts';

// Issue 12, item 11: the embedded PostgreSQL's superuser password is no longer the fixed 'embedded'
// of the source code but generated per installation into the data folder (0600); an installation
// made with the fixed one is moved to a generated one on its next start. A real PostgreSQL.

const signIn = async (port: number, password: string): Promise<boolean> => {
  const c = new pg.Client({ host: '127.0.0.1', port, user: 'postgres', password, database: 'postgres', connectionTimeoutMillis: 5_000 });
  try {
    await c.connect();
    return true;
  } catch {
    return false;
  } finally {
    await c.end().catch(() => undefined);
  }
};

test('the embedded PostgreSQL password is generated per installation, kept 0600, and a fixed legacy one is replaced', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'grassroots-pgpw-'));
  fs.chmodSync(dir, 0o755); // PostgreSQL runs as its own OS user and must reach the folder
  const dataDir = path.join(dir, 'postgres');
  const pwFile = path.join(dataDir, 'password');
  try {
    const first = await startEmbeddedPostgres(dataDir, 'grassroots');
    let port: number;
    let generated: string;
    try {
      port = Number(new URL(first.url).port);
      generated = fs.readFileSync(pwFile, 'utf8').trim();
      assert.ok(generated.length >= 32, 'a long random password');
      assert.equal(fs.statSync(pwFile).mode & 0o777, 0o600, 'readable by the owner only');
      assert.equal(decodeURIComponent(new URL(first.url).password), generated);
      assert.equal(await signIn(port, 'embedded'), false, 'the old fixed password does not open it');
      assert.equal(await signIn(port, generated), true);
      // Simulate an installation made before: the server knows only the fixed password, no file.
      const c = new pg.Client({ host: '127.0.0.1', port, user: 'postgres', password: generated, database: 'postgres' });
      await c.connect();
      await c.query(`ALTER ROLE postgres PASSWORD 'embedded'`);
      await c.end();
      fs.rmSync(pwFile);
    } finally {
      await first.stop();
    }
    const second = await startEmbeddedPostgres(dataDir, 'grassroots', port);
    try {
      const rotated = fs.readFileSync(pwFile, 'utf8').trim();
      assert.notEqual(rotated, 'embedded');
      assert.notEqual(rotated, generated);
      assert.equal(await signIn(port, 'embedded'), false, 'the legacy password was replaced');
      assert.equal(await signIn(port, rotated), true);
      const db = new pg.Client({ connectionString: second.url });
      await db.connect();
      assert.equal((await db.query('SELECT current_database() AS d')).rows[0].d, 'grassroots');
      await db.end();
    } finally {
      await second.stop();
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
