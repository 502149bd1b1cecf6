import { loadConfig } from '../infra/config.ts';
import { createPool } from '../infra/db/pool.ts';
import { createLogger } from '../infra/logger.ts';
import { installProcessPolicy } from '../infra/process-policy.ts';
import { ObjectStorage } from '../infra/storage/ObjectStorage.ts';
import { recorderConfigSchema } from './config.ts';
import { Recorder } from './Recorder.ts';
import { startRoleHealth } from '../infra/health/role-health.ts';
import { roleEnv } from '../infra/deploy/role-env.ts';
import { setCameraNetworks } from './RtspRestreamer.ts';
import { cameraNetworksOf } from '../infra/net/CameraNetworks.ts';

// Standalone recorder process. RECORDER_CONFIG is optional JSON for RecorderConfig (durations, spool).
const log = createLogger('recorder-main');
const env = loadConfig();
setCameraNetworks(cameraNetworksOf(env));
if (!env.DATABASE_URL) throw new Error('DATABASE_URL is required for the standalone recorder');
// RECORDER_CONFIG from the environment or the host's CONFIG_FILE (environment wins).
const recorderJson = roleEnv().RECORDER_CONFIG;
const config = recorderConfigSchema.parse({ bucket: env.S3_BUCKET, ...(recorderJson ? (JSON.parse(recorderJson) as object) : {}) });
const pool = createPool(env.DATABASE_URL);
const storage = new ObjectStorage({
  endPoint: env.S3_ENDPOINT ?? '127.0.0.1',
  port: env.S3_PORT,
  useSSL: env.S3_USE_SSL === 'true',
  accessKey: env.S3_ACCESS_KEY,
  secretKey: env.S3_SECRET_KEY,
  bucket: config.bucket,
});
const recorder = await Recorder.start({ pool, storage, config, log });
recorder.on('indexed', (s) => log.debug({ key: s.objectKey, latencyMs: s.closeToIndexedMs }, 'segment indexed'));
process.stdout.write('recorder ready\n');
// Not ready while fenced: this host's job leases could not be renewed, another host may take them.
const health = await startRoleHealth('recorder', {
  pool,
  storage,
  checks: {
    leases: () => {
      if (recorder.leaseFenced) throw new Error('captures fenced: job leases could not be renewed');
      return `${recorder.runningJobs} jobs`;
    },
  },
});

let stopping = false;
installProcessPolicy(log, { shuttingDown: () => stopping });
for (const sig of ['SIGTERM', 'SIGINT'] as const) {
  process.on(sig, () => {
    if (stopping) return;
    stopping = true;
    health?.close();
    void recorder
      .close({ drain: true, drainTimeoutMs: 10_000 })
      .then(() => pool.end())
      .finally(() => process.exit(0));
  });
}
