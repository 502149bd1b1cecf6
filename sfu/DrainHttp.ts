import type http from 'node:http';
import type { Logger } from '../infra/logger.ts';
import { metricsAccess } from './metricsAccess.ts';
import type { SfuNode } from './SfuNode.ts';

/**
 * `/drain` of a node's HTTP port: GET tells `{draining, rooms}`, POST starts the drain (upgrade-sfu.sh).
 * Who may read the metrics may drain: the operator's token (METRICS_TOKEN) or this host itself.
 * Returns false for other paths.
 */
export function serveDrain(req: http.IncomingMessage, res: http.ServerResponse, node: SfuNode, metricsToken: string | undefined, log: Logger): boolean {
  if ((req.url ?? '').split('?')[0] !== '/drain') return false;
  const access = metricsAccess(req, metricsToken);
  if (access !== 200) {
    res.writeHead(access, access === 401 ? { 'www-authenticate': 'Bearer' } : {}).end();
    return true;
  }
  if (req.method === 'POST') startDrain(node, 'POST /drain', log);
  else if (req.method !== 'GET') {
    res.writeHead(405, { allow: 'GET, POST' }).end();
    return true;
  }
  res.writeHead(req.method === 'POST' ? 202 : 200, { 'content-type': 'application/json', 'cache-control': 'no-store' }).end(JSON.stringify(node.drain.state()));
  return true;
}

export function startDrain(node: SfuNode, why: string, log: Logger): void {
  if (node.drain.draining) return;
  log.warn({ why, rooms: node.rooms.size }, 'draining: no new rooms, open ones continue');
  node.drain.once('idle', () => log.info('drained: no room open, safe to stop'));
  node.drain.start();
}

/** `systemctl reload` (SIGUSR2) starts the drain. */
export function drainOnSignal(node: SfuNode, log: Logger): void {
  process.on('SIGUSR2', () => startDrain(node, 'SIGUSR2', log));
}
