import path from 'node:path';
import type { Config } from '../config.ts';
import { startEmbeddedPostgres } from './embedded-postgres.ts';
import { migrateUp } from './migrate.ts';
import { createPool, type Pool } from './pool.ts';
import { DEMO_PASSWORD, generateDemoOrganisation } from '../demo/generate.ts';
import { createLogger } from '../logger.ts';

// Opens the one database: DATABASE_URL if set, else a real PostgreSQL started in DATA_DIR. Migrates
// it, and on an embedded first run fills it with the Weifang demo organisation so the system is
// usable at once (demo users sign in with the published demo password).

const log = createLogger('bootstrap');

export interface OpenDatabase {
  url: string;
  pool: Pool;
  embedded: boolean;
  /** True when the demo organisation was generated on this start. */
  seeded: boolean;
  close(): Promise<void>;
}

export async function openDatabase(config: Pick<Config, 'DATABASE_URL' | 'DATA_DIR'>, opts: { demo?: boolean; embeddedPort?: number } = {}): Promise<OpenDatabase> {
  const embedded = config.DATABASE_URL ? undefined : await startEmbeddedPostgres(path.join(config.DATA_DIR, 'postgres'), 'grassroots', opts.embeddedPort);
  const url = config.DATABASE_URL ?? embedded!.url;
  try {
    await migrateUp(url);
    const pool = createPool(url);
    let seeded = false;
    if (opts.demo ?? embedded !== undefined) {
      const { rows } = await pool.query<{ empty: boolean }>('SELECT NOT EXISTS (SELECT 1 FROM units) AS empty');
      if (rows[0]?.empty) {
        const s = await generateDemoOrganisation(pool);
        seeded = true;
        log.info({ units: s.units, cameras: s.cameras, users: s.users.length, example: 'wf.admin', password: DEMO_PASSWORD }, 'demo organisation generated');
      }
    }
    return {
      url,
      pool,
      embedded: embedded !== undefined,
      seeded,
      async close() {
        await pool.end();
        await embedded?.stop();
      },
    };
  } catch (err) {
    await embedded?.stop().catch(() => undefined);
    throw err;
  }
}
