import http from 'node:http';
import { loadConfig } from '../../infra/config.ts';
import { createLogger } from '../../infra/logger.ts';
import { installProcessPolicy } from '../../infra/process-policy.ts';
import { createApiApp } from './app.ts';
import { SfuNodeHosts } from '../../infra/sfu-node-hosts.ts';
import { cameraNetworksOf } from '../../infra/net/CameraNetworks.ts';
import { loadAccessSecret } from '../../infra/secret.ts';
import { openDatabase } from '../../infra/db/open-database.ts';
import { refuseDemoPasswordsBeyondLoopback } from '../../infra/auth/demo-guard.ts';
import { Readiness } from '../../infra/health/Readiness.ts';
import { databaseCheck } from '../../infra/health/checks.ts';
import { serveHealth } from '../../infra/health/health-routes.ts';
import { startWebFront } from '../../infra/tls/web-listener.ts';
import { setCameraNetworks } from '../../recorder/RtspRestreamer.ts';

// Runs the API alone, without SFU or pages: `node --import tsx web/api/main.ts` (npm start runs infra/system.ts).
// Settings: the environment over CONFIG_FILE (infra/deploy/). /healthz and /readyz (the database answers).
const log = createLogger('api-main');
installProcessPolicy(log);
const config = loadConfig();
const cameraNetworks = cameraNetworksOf(config);
setCameraNetworks(cameraNetworks);
const db = await openDatabase(config);
await refuseDemoPasswordsBeyondLoopback(db.pool, config.HTTP_HOST, config.ALLOW_DEMO_PASSWORDS === 'true').catch(async (err: unknown) => {
  await db.close();
  throw err;
});
const app = createApiApp({
  pool: db.pool,
  tokenSecret: loadAccessSecret(config.DATA_DIR, config.TOKEN_SECRET),
  trustProxy: config.TRUST_PROXY,
  sfuNodeHosts: new SfuNodeHosts(config.SFU_NODE_HOSTS ?? SfuNodeHosts.defaultFor(config.HTTP_HOST)),
  cameraNetworks,
});
// Headers within 10 s, as on the combined server (web/server.ts): slow clients do not hold sockets.
const readiness = new Readiness('api').add('database', databaseCheck(db.pool));
const server = http.createServer({ headersTimeout: 10_000, connectionsCheckingInterval: 2_000 }, (req, res) => {
  if (!serveHealth(req, res, readiness)) app(req, res);
});
// Beyond loopback HTTPS (infra/tls); TURN belongs to the SFU nodes.
const front = await startWebFront(server, config, log, { turn: false });
log.info({ url: front.url, embedded: db.embedded }, 'API listening');
const stop = (): void => {
  server.close(() => void db.close().then(() => process.exit(0)));
};
process.once('SIGINT', stop);
process.once('SIGTERM', stop);
