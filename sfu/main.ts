// A standalone SFU node process: signalling on ws://host:SFU_HTTP_PORT/sfu, Prometheus metrics on
// /metrics, liveness on /healthz. `npm start` runs a node inside the combined system instead.
import http from 'node:http';
import { z } from 'zod';
import { loadConfig } from '../infra/config.ts';
import { createLogger } from '../infra/logger.ts';
import { loadTokenSecret } from '../infra/secret.ts';
import { nodeIdSchema } from '../infra/tokens.ts';
import { SfuNode } from './SfuNode.ts';
import { nodeOptionsFromConfig } from './nodeOptionsFromConfig.ts';

const config = loadConfig();
const logger = createLogger('sfu');
// The node's place in the five-level tree (kept here until infra/config.ts carries it):
// SFU_NODE_ID + SFU_UNIT_ID make it a cascade node; SFU_PARENT_URL (ws://parent:port/cascade) gives
// it a parent; SFU_CASCADE_SECRET is shared by the deployment's nodes (defaults to the token secret).
const cascadeEnv = z
  .object({
    SFU_NODE_ID: nodeIdSchema.optional(),
    SFU_UNIT_ID: z.coerce.number().int().positive().optional(),
    SFU_PARENT_URL: z.string().url().optional(),
    SFU_CASCADE_SECRET: z.string().min(32).optional(),
    SFU_PIPE_ANNOUNCED_IP: z.string().optional(),
  })
  .parse(process.env);
const tokenSecret = loadTokenSecret(config.DATA_DIR, config.TOKEN_SECRET);
const cascade =
  cascadeEnv.SFU_NODE_ID && cascadeEnv.SFU_UNIT_ID
    ? {
        nodeId: cascadeEnv.SFU_NODE_ID,
        unitId: cascadeEnv.SFU_UNIT_ID,
        secret: cascadeEnv.SFU_CASCADE_SECRET ?? tokenSecret,
        ...(cascadeEnv.SFU_PARENT_URL ? { parentUrl: cascadeEnv.SFU_PARENT_URL } : {}),
        pipeListenIp: config.SFU_LISTEN_IP,
        ...(cascadeEnv.SFU_PIPE_ANNOUNCED_IP ?? config.SFU_ANNOUNCED_IP ? { pipeAnnouncedAddress: cascadeEnv.SFU_PIPE_ANNOUNCED_IP ?? config.SFU_ANNOUNCED_IP } : {}),
      }
    : undefined;
const node = new SfuNode(nodeOptionsFromConfig(config, tokenSecret, logger, cascade));
await node.start();

const server = http.createServer((req, res) => {
  if (req.url === '/metrics') {
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
server.listen(config.SFU_HTTP_PORT, config.HTTP_HOST, () => logger.info({ port: config.SFU_HTTP_PORT }, 'SFU node listening'));

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    logger.info({ signal }, 'shutting down');
    server.close();
    void node.close().then(() => process.exit(0));
  });
}
