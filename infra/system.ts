// `npm start`: the whole system in one process on embedded defaults — PostgreSQL (embedded unless
// DATABASE_URL), migrations, a demo organisation on first start, the API, the web pages and an SFU
// node on one HTTP origin. Production runs the same parts with real servers configured.
import path from 'node:path';
import { loadConfig } from './config.ts';
import { createLogger } from './logger.ts';
import { installProcessPolicy } from './process-policy.ts';
import { loadSystemKeys } from './secret.ts';
import { refuseDemoPasswordsBeyondLoopback } from './auth/demo-guard.ts';
import { openDatabase } from './db/open-database.ts';
import { DEMO_PASSWORD } from './demo/generate.ts';
import { ensureDemoFilm } from './demo/demo-film.ts';
import { generateDemoHistory } from './demo/history.ts';
import { createWebServer } from '../web/server.ts';
import { SfuNodeHosts } from './sfu-node-hosts.ts';
import { SfuNode } from '../sfu/SfuNode.ts';
import { nodeOptionsFromConfig } from '../sfu/nodeOptionsFromConfig.ts';
import { withEnrolledChildren } from '../sfu/cascade/EnrolmentKeys.ts';
import { schedulerSettingsSchema, startScheduler } from '../scheduler/startScheduler.ts';
import { recorderConfigSchema } from '../recorder/config.ts';
import { Recorder } from '../recorder/Recorder.ts';
import { registerRecorderMetrics } from '../recorder/RecorderMetrics.ts';
import { RoomRecordings } from '../recorder/RoomRecordings.ts';
import { ObjectStorage } from './storage/ObjectStorage.ts';
import { startEmbeddedS3 } from './storage/embedded-s3.ts';
import { startWebFront } from './tls/web-listener.ts';
import { mountHealth } from './health/mount-health.ts';
import { systemReadiness } from './health/system-readiness.ts';
import { cameraNetworksOf } from './net/CameraNetworks.ts';
import { setCameraNetworks } from '../recorder/RtspRestreamer.ts';

const config = loadConfig();
const cameraNetworks = cameraNetworksOf(config);
setCameraNetworks(cameraNetworks);
const log = createLogger('system');
const stops: Array<() => Promise<void> | void> = [];

const db = await openDatabase(config);
stops.push(() => db.close());
const pool = db.pool;
await refuseDemoPasswordsBeyondLoopback(pool, config.HTTP_HOST, config.ALLOW_DEMO_PASSWORDS === 'true').catch(async (err: unknown) => {
  await db.close();
  throw err;
});
if (db.seeded) log.info(`demo organisation generated; sign in as e.g. wf.leader, t370702001.clerk or v37070200100101.secretary with password ${DEMO_PASSWORD}`);

// One key per purpose (see infra/secret.ts): the access-token key never leaves this process; the
// cascade secret, which village nodes hold, is a different secret. Join tokens: signed here with the
// private key; this and every other SFU node checks them with the public one.
const keys = loadSystemKeys(config);
const tokenSecret = keys.accessSecret;
const joinKeys = keys.join;
// With per-node keys it also admits children enrolled through the API (sfu/cascade/EnrolmentKeys.ts).
const sfu = new SfuNode(withEnrolledChildren(nodeOptionsFromConfig(config, { joinKey: joinKeys.publicKey, cascadeSecret: keys.cascadeSecret }, createLogger('sfu')), pool));
await sfu.start();
stops.push(() => sfu.close());

// Recordings: S3_ENDPOINT's server (MinIO in production), else an embedded S3-compatible server.
const s3 = config.S3_ENDPOINT ? undefined : await startEmbeddedS3(path.join(config.DATA_DIR, 's3'), config.S3_PORT ?? 0);
if (s3) stops.push(() => s3.close());
const storage = new ObjectStorage({
  endPoint: config.S3_ENDPOINT ?? s3!.endpoint,
  port: config.S3_PORT ?? s3?.port,
  useSSL: config.S3_USE_SSL === 'true',
  accessKey: s3?.accessKey ?? config.S3_ACCESS_KEY,
  secretKey: s3?.secretKey ?? config.S3_SECRET_KEY,
  bucket: config.S3_BUCKET,
  ...(config.S3_PUBLIC_URL ? { publicUrl: config.S3_PUBLIC_URL } : {}),
});
await storage.ensureBucket();
if (db.seeded) {
  const h = await generateDemoHistory(pool, { storage });
  log.info(h, 'demo history generated (previous quarter and this one so far)');
}
// EMBEDDED_ROLES: on a deployment across hosts the recorder and scheduler run on their own hosts (infra/deploy/).
const recorder = !config.EMBEDDED_ROLES.includes('recorder') ? undefined : await Recorder.start({
  pool,
  storage,
  config: recorderConfigSchema.parse({ bucket: config.S3_BUCKET, spoolDir: path.join(config.DATA_DIR, 'spool') }),
  log: createLogger('recorder'),
});
if (recorder) stops.push(() => recorder.close({ drain: true, drainTimeoutMs: 10_000 }));
if (recorder) registerRecorderMetrics(sfu.metrics.registry, recorder);

const scheduler = !config.EMBEDDED_ROLES.includes('scheduler') ? undefined : await startScheduler(schedulerSettingsSchema.parse(process.env), pool, db.url, createLogger('scheduler'), { storage });
if (scheduler) stops.push(() => scheduler.stop());

// Face-to-face calls with the record flag are recorded on this node: alone, or as the cascade's
// root, it holds every conference and pulls the station's streams here while they are recorded.
// Sending people to other nodes without this one in their cascade would leave it nothing to record.
const canRecordCalls = config.SFU_ROUTING === 'local' || (sfu.cascade !== undefined && !config.SFU_PARENT_URL);
if (!canRecordCalls) log.warn('SFU_ROUTING=nearest but this node is not the cascade root: face-to-face calls will not be recorded');
const recordings = canRecordCalls && recorder ? new RoomRecordings({ sfu, recorder, log: createLogger('room-recordings') }) : undefined;
if (recordings) stops.push(() => recordings.close());

const filmsDir = config.FILMS_DIR ?? path.join(config.DATA_DIR, 'films');
ensureDemoFilm(filmsDir).then(
  (made) => made && log.info({ film: made }, 'demo film made'),
  (err: Error) => log.warn({ err: err.message }, 'could not make the demo film'),
);

// Meeting attendance is recorded from this process's node when it is the cascade's root (no parent): only
// the root hears of every site of a conference.
const server = createWebServer({ pool, tokenSecret, joinKey: joinKeys.privateKey, sfu, storage, ...(recordings ? { recordings } : {}), routing: config.SFU_ROUTING, sfuNodeHosts: new SfuNodeHosts(config.SFU_NODE_HOSTS ?? SfuNodeHosts.defaultFor(config.HTTP_HOST)), cameraNetworks, filmsDir, trustProxy: config.TRUST_PROXY, ...(config.METRICS_TOKEN ? { metricsToken: config.METRICS_TOKEN } : {}), meetings: { openMaxSites: config.MEETING_OPEN_MAX_SITES, rotationSeconds: config.MEETING_ROTATION_SECONDS }, attendance: !config.SFU_PARENT_URL });
mountHealth(server, systemReadiness({ pool, storage, sfu, hasParent: config.SFU_PARENT_URL !== undefined }), { sfu, metricsToken: config.METRICS_TOKEN, log });
// Beyond loopback: HTTPS and WSS (local CA in DATA_DIR/tls or the operator's files), and coturn when TURN_ENABLED.
const front = await startWebFront(server, config, log);
stops.push(front.stop);
log.info(`ready: ${front.url}`);

let stopping = false;
installProcessPolicy(log, { shuttingDown: () => stopping });
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, async () => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'stopping');
    // Connections still open when the embedded database stops (the job queue's, mid-send) are cut by
    // our own shutdown: expected here, not a crash.
    process.on('uncaughtException', (err: Error & { code?: string }) => {
      if (err.code?.startsWith('57P') || err.code === 'ECONNRESET' || err.code === 'ECONNREFUSED' || err.message.startsWith('Connection terminated')) return void log.debug({ err: err.message }, 'connection closed by the shutdown');
      log.error({ err }, 'error while stopping');
      process.exit(1);
    });
    server.closeAllConnections();
    server.close();
    for (const stop of stops.reverse()) await Promise.resolve(stop()).catch(() => undefined);
    log.info('stopped');
    process.exit(0);
  });
}
