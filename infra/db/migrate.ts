import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { runner } from 'node-pg-migrate';
import { createLogger } from '../logger.ts';

const log = createLogger('migrate');
export const migrationsDir = path.join(path.dirname(fileURLToPath(import.meta.url)), 'migrations');

/** Applies every pending migration; running it again is a no-op. Returns the names applied. */
export async function migrateUp(databaseUrl: string): Promise<string[]> {
  const applied = await runner({
    databaseUrl,
    dir: migrationsDir,
    direction: 'up',
    migrationsTable: 'pgmigrations',
    count: Infinity,
    checkOrder: true,
    singleTransaction: true,
    // Serialises concurrent starters (several node processes on one database).
    noLock: false,
    advisoryLockMode: 'wait',
    log: (msg: string) => log.debug(msg),
    verbose: false,
  });
  const names = applied.map((m) => m.name);
  if (names.length > 0) log.info({ applied: names }, 'migrations applied');
  return names;
}
