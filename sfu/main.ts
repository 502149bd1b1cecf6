// A standalone SFU node process: signalling on ws://host:SFU_HTTP_PORT/sfu, Prometheus metrics on
// /metrics, liveness on /healthz. `npm start` runs a node inside the combined system instead.
import http from 'node:http';
import { loadConfig } from '../infra/config.ts';
import { createLogger } from '../infra/logger.ts';
import { installProcessPolicy } from '../infra/process-policy.ts';
import { loadCascadeSecret, loadJoinPublicKey } from '../infra/secret.ts';
import { SfuNode } from './SfuNode.ts';
import { metricsAccess } from './metricsAccess.ts';
import { nodeOptionsFromConfig } from './nodeOptionsFromConfig.ts';

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
server.listen(config.SFU_HTTP_PORT, config.HTTP_HOST, () => logger.info({ port: config.SFU_HTTP_PORT }, 'SFU node listening'));

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    stopping = true;
    logger.info({ signal }, 'shutting down');
    server.close();
    void node.close().then(() => process.exit(0));
  });
}
