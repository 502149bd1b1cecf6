import { z } from 'zod';
import { CONFIG_KEYS, loadConfig } from '../infra/config.ts';
import { createPool } from '../infra/db/pool.ts';
import { migrateUp } from '../infra/db/migrate.ts';
import { HostConfigError, withHostConfigFile } from '../infra/deploy/host-config.ts';
import { databaseCheck, storageCheck } from '../infra/health/checks.ts';
import { startHealthServer } from '../infra/health/health-routes.ts';
import { Readiness } from '../infra/health/Readiness.ts';
import { createLogger } from '../infra/logger.ts';
import { installProcessPolicy } from '../infra/process-policy.ts';
import { ObjectStorage } from '../infra/storage/ObjectStorage.ts';
import { schedulerSettingsSchema, startScheduler } from './startScheduler.ts';

// Scheduler process entry: `node --import tsx scheduler/main.ts`. Settings come from the environment
// over CONFIG_FILE (infra/deploy/). With S3_ENDPOINT the sessions are judged from their recordings;
// with HEALTH_PORT it answers /healthz and /readyz (database, and the S3 store when given).
const log = createLogger('scheduler.main');

const roleSchema = schedulerSettingsSchema.extend({
  DATABASE_URL: z.string().url(),
  HEALTH_HOST: z.string().default('127.0.0.1'),
  HEALTH_PORT: z.coerce.number().int().min(0).max(65535).optional(),
});

function settings() {
  const merged = withHostConfigFile(process.env, [...Object.keys(roleSchema.shape), ...CONFIG_KEYS]);
  const parsed = roleSchema.safeParse(merged);
  if (!parsed.success) {
    const from = process.env.CONFIG_FILE ? ` (${process.env.CONFIG_FILE} or the environment)` : '';
    throw new HostConfigError(`invalid configuration${from}:\n${parsed.error.issues.map((i) => `  ${i.path.join('.')}: ${i.message}`).join('\n')}`);
  }
  // The platform keys (S3_*) of the same file, validated by the common schema.
  const { CONFIG_FILE: _file, ...rest } = merged;
  const common = loadConfig(Object.fromEntries(Object.entries(rest).filter(([k]) => CONFIG_KEYS.includes(k))));
  return { env: parsed.data, common };
}

async function main(): Promise<void> {
  const { env, common } = settings();
  await migrateUp(env.DATABASE_URL);
  const pool = createPool(env.DATABASE_URL);
  const storage = common.S3_ENDPOINT
    ? new ObjectStorage({ endPoint: common.S3_ENDPOINT, port: common.S3_PORT, useSSL: common.S3_USE_SSL === 'true', accessKey: common.S3_ACCESS_KEY, secretKey: common.S3_SECRET_KEY, bucket: common.S3_BUCKET })
    : undefined;
  const scheduler = await startScheduler(env, pool, env.DATABASE_URL, log, storage ? { storage } : {});
  const readiness = new Readiness('scheduler').add('database', databaseCheck(pool));
  if (storage) readiness.add('storage', storageCheck(storage));
  const health = env.HEALTH_PORT !== undefined ? await startHealthServer(readiness, env.HEALTH_HOST, env.HEALTH_PORT) : undefined;
  process.send?.({ type: 'ready' });

  let stopping = false;
  installProcessPolicy(log, { shuttingDown: () => stopping });
  const stop = async () => {
    if (stopping) return;
    stopping = true;
    health?.close();
    await scheduler.stop();
    await pool.end();
    process.exit(0);
  };
  process.on('SIGTERM', () => void stop());
  process.on('SIGINT', () => void stop());
}

main().catch((err: unknown) => {
  log.fatal({ err: err instanceof Error ? err.message : String(err) }, 'scheduler failed to start');
  process.exit(1);
});
