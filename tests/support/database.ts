import crypto from 'node:crypto';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { migrateUp } from '../../infra/db/migrate.ts';
import { createPool, type Pool } from '../../infra/db/pool.ts';
import { startEmbeddedPostgres } from '../../infra/db/embedded-postgres.ts';

// Tests run against a real PostgreSQL: TEST_DATABASE_ADMIN_URL if set, else the machine's server on
// 127.0.0.1:5432 (trust auth, database `test`), else an embedded PostgreSQL started for the run.
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
    if (await reachable(local)) return local;
    const dir = path.join(os.tmpdir(), 'grassroots-av-test-pg');
    const db = await startEmbeddedPostgres(dir, 'test', 54329);
    return db.url;
  })();
  return adminUrlPromise;
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
