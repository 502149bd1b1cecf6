import type http from 'node:http';
import { z } from 'zod';
import { CONFIG_KEYS } from '../config.ts';
import type { Pool } from '../db/pool.ts';
import { withHostConfigFile } from '../deploy/host-config.ts';
import type { ObjectStorage } from '../storage/ObjectStorage.ts';
import { databaseCheck, storageCheck } from './checks.ts';
import { startHealthServer } from './health-routes.ts';
import { Readiness, type Check } from './Readiness.ts';

const healthSettings = z.object({
  HEALTH_HOST: z.string().default('127.0.0.1'),
  HEALTH_PORT: z.coerce.number().int().min(0).max(65535).optional(),
});

/**
 * For a role without an HTTP port of its own (the recorder): /healthz and /readyz on
 * HEALTH_HOST:HEALTH_PORT (environment over CONFIG_FILE), ready while the database and the S3 store
 * answer. Without HEALTH_PORT nothing is started.
 */
export async function startRoleHealth(role: string, deps: { pool: Pool; storage?: Pick<ObjectStorage, 'list'>; checks?: Record<string, Check> }, env: NodeJS.ProcessEnv = process.env): Promise<http.Server | undefined> {
  const parsed = healthSettings.safeParse(withHostConfigFile(env, CONFIG_KEYS));
  if (!parsed.success) throw new Error(`invalid configuration: HEALTH_PORT/HEALTH_HOST: ${parsed.error.issues.map((i) => i.message).join('; ')}`);
  if (parsed.data.HEALTH_PORT === undefined) return undefined;
  const readiness = new Readiness(role).add('database', databaseCheck(deps.pool));
  if (deps.storage) readiness.add('storage', storageCheck(deps.storage));
  for (const [name, check] of Object.entries(deps.checks ?? {})) readiness.add(name, check);
  return startHealthServer(readiness, parsed.data.HEALTH_HOST, parsed.data.HEALTH_PORT);
}
