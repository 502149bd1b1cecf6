import http from 'node:http';
import path from 'node:path';
import type { AddressInfo } from 'node:net';
import express from 'express';
import { createLogger } from '../../infra/logger.ts';
import { signJoinToken, type JoinClaims } from '../../infra/tokens.ts';
import { SfuNode } from '../../sfu/SfuNode.ts';
import { TEST_JOIN_KEYS } from './join-keys.ts';
import { rtcPortRange } from './rtc-ports.ts';

export const TEST_SECRET = 'test-secret-test-secret-test-secret-0123';

export interface SfuHarness {
  node: SfuNode;
  baseUrl: string;
  wsUrl: string;
  token(claims: Partial<JoinClaims> & Pick<JoinClaims, 'userId' | 'room'>, ttlSeconds?: number): Promise<string>;
  close(): Promise<void>;
}

/** An SFU node on loopback plus the built web front end, served from one HTTP origin. */
export async function startSfuHarness(numWorkers = 2): Promise<SfuHarness> {
  const ports = rtcPortRange(1000);
  const node = new SfuNode({
    joinKey: TEST_JOIN_KEYS.publicKey,
    numWorkers,
    listenIp: '127.0.0.1',
    webRtcBasePort: 0,
    rtcMinPort: ports.rtcMinPort,
    rtcMaxPort: ports.rtcMaxPort,
    logger: createLogger('sfu-test'),
  });
  await node.start();
  const app = express();
  app.get('/metrics', async (_req, res) => {
    res.type(node.metrics.registry.contentType).send(await node.metrics.registry.metrics());
  });
  app.use(express.static(path.resolve('web/dist')));
  const server = http.createServer(app);
  node.attach(server, '/sfu');
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  return {
    node,
    baseUrl: `http://127.0.0.1:${port}`,
    wsUrl: `ws://127.0.0.1:${port}/sfu`,
    token: (c, ttl) =>
      signJoinToken(TEST_JOIN_KEYS.privateKey, { displayName: `site-${c.userId}`, unitId: 1, role: 'participant', ...c }, ttl),
    async close() {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
      await node.close();
      ports.release();
    },
  };
}
