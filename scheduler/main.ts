import { z } from 'zod';
import { createPool } from '../infra/db/pool.ts';
import { migrateUp } from '../infra/db/migrate.ts';
import { createLogger } from '../infra/logger.ts';
import { installProcessPolicy } from '../infra/process-policy.ts';
import { schedulerSettingsSchema, startScheduler } from './startScheduler.ts';

// Scheduler process entry: `node --import tsx scheduler/main.ts`. Settings come from the environment.
const log = createLogger('scheduler.main');

async function main(): Promise<void> {
  const env = schedulerSettingsSchema.extend({ DATABASE_URL: z.string().url() }).parse(process.env);
  await migrateUp(env.DATABASE_URL);
  const pool = createPool(env.DATABASE_URL);
  const scheduler = await startScheduler(env, pool, env.DATABASE_URL, log);
  process.send?.({ type: 'ready' });

  let stopping = false;
  installProcessPolicy(log, { shuttingDown: () => stopping });
  const stop = async () => {
    if (stopping) return;
    stopping = true;
    await scheduler.stop();
    await pool.end();
    process.exit(0);
  };
  process.on('SIGTERM', () => void stop());
  process.on('SIGINT', () => void stop());
}

main().catch((err: unknown) => {
  log.fatal({ err: String(err) }, 'scheduler failed to start');
  process.exit(1);
});
