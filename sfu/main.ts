// A standalone SFU node process: signalling on ws://host:SFU_HTTP_PORT/sfu, Prometheus metrics on
// /metrics, liveness on /healthz, readiness on /readyz (workers, parent link, not draining) and the
// drain for upgrades (POST /drain with the metrics token or from this host, or SIGUSR2). Settings:
// the environment over CONFIG_FILE (infra/deploy/). `npm start` runs a node inside the combined system instead.
import http from 'node:http';
import { loadConfig } from '../infra/config.ts';
import { createLogger } from '../infra/logger.ts';
import { installProcessPolicy } from '../infra/process-policy.ts';
import { loadCascadeSecret, loadJoinPublicKey } from '../infra/secret.ts';
import { SfuNode } from './SfuNode.ts';
import { metricsAccess } from './metricsAccess.ts';
import { nodeOptionsFromConfig } from './nodeOptionsFromConfig.ts';
import { Readiness } from '../infra/health/Readiness.ts';
import { serveHealth } from '../infra/health/health-routes.ts';
import { startWebFront } from '../infra/tls/web-listener.ts';
import { drainOnSignal, serveDrain } from './DrainHttp.ts';
import { EnrolmentReporter } from './cascade/EnrolmentReporter.ts';

const config = loadConfig();
const logger = createLogger('sfu');
let stopping = false;
installProcessPolicy(logger, { shuttingDown: () => stopping });
// Join tokens are checked with the API's public key; the cascade secret (SFU_CASCADE_SECRET, else
// this node's generated DATA_DIR/cascade-secret) authenticates the link to the parent. A node never
// holds the API's TOKEN_SECRET.
const keys = { joinKey: loadJoinPublicKey(config.DATA_DIR, config.JOIN_PUBLIC_KEY), cascadeSecret: loadCascadeSecret(config.DATA_DIR, config.SFU_CASCADE_SECRET) };
const node = new SfuNode(nodeOptionsFromConfig(config, keys, logger));
await node.start();
// An enrolled node (sfu/bin/enrol.ts) reports its state and load to the API every 15 s for the console.
const reporter = EnrolmentReporter.startIfEnrolled(node, config.DATA_DIR, logger);

const readiness = new Readiness('sfu')
  .add('workers', () => {
    const up = node.pool.slots.filter((w) => !w.restarting).length;
    if (up === 0) throw new Error('no mediasoup worker running');
    return `${up}/${node.pool.slots.length}`;
  })
  .add('drain', () => {
    if (node.drain.draining) throw new Error(`draining: ${node.rooms.size} rooms left`);
    return undefined;
  });
if (config.SFU_PARENT_URL) {
  readiness.add('parent', () => {
    if (!node.cascade?.parentConnected) throw new Error('no control link to the parent node');
    return undefined;
  });
}
drainOnSignal(node, logger);

// This port serves only upgrades, /healthz and /metrics: a request's headers must arrive within 10 s
// (checked every 2 s), and the sockets a slow-headers attacker could hold are capped with the node.
const server = http.createServer({ headersTimeout: 10_000, requestTimeout: 15_000, connectionsCheckingInterval: 2_000 }, (req, res) => {
  if (req.url === '/metrics') {
    const access = metricsAccess(req, config.METRICS_TOKEN);
    if (access !== 200) return void res.writeHead(access, access === 401 ? { 'www-authenticate': 'Bearer' } : {}).end();
    node.metrics.registry.metrics().then(
      (body) => res.writeHead(200, { 'content-type': node.metrics.registry.contentType }).end(body),
      () => res.writeHead(500).end(),
    );
  } else if (serveDrain(req, res, node, config.METRICS_TOKEN, logger)) {
    // /drain answered
  } else if (req.url === '/readyz') {
    serveHealth(req, res, readiness);
  } else if (req.url === '/healthz') {
    const live = node.pool.slots.some((s) => !s.restarting);
    const tree = node.cascade ? { nodeId: node.cascade.nodeId, parentConnected: node.cascade.parentConnected, children: node.cascade.children } : undefined;
    res.writeHead(live ? 200 : 503, { 'content-type': 'application/json' }).end(JSON.stringify({ ok: live, rooms: node.rooms.size, cascade: tree }));
  } else {
    res.writeHead(404).end();
  }
});
node.attach(server, '/sfu');
server.maxConnections = node.limits.maxConnections + 200;
// Beyond loopback HTTPS/WSS (infra/tls), and coturn where TURN_ENABLED.
const front = await startWebFront(server, config, logger, { port: config.SFU_HTTP_PORT });
logger.info({ url: front.url }, 'SFU node listening');

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    stopping = true;
    logger.info({ signal }, 'shutting down');
    server.close();
    front.stop();
    reporter?.stop();
    void node.close().then(() => process.exit(0));
  });
}
