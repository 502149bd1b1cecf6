import type http from 'node:http';
import type { Logger } from '../logger.ts';
import type { SfuNode } from '../../sfu/SfuNode.ts';
import { drainOnSignal, serveDrain } from '../../sfu/DrainHttp.ts';
import { serveHealth } from './health-routes.ts';
import type { Readiness } from './Readiness.ts';

/**
 * Puts /healthz and /readyz (and, given this process's SFU node, /drain with SIGUSR2) in front of an
 * existing server's request handler (the combined web server of infra/system.ts), so these answers
 * never go through the API's middleware, limits or sign-in.
 */
export function mountHealth(server: http.Server, readiness: Readiness, drain?: { sfu: SfuNode; metricsToken?: string | undefined; log: Logger }): void {
  const handlers = server.listeners('request') as Array<(req: http.IncomingMessage, res: http.ServerResponse) => void>;
  server.removeAllListeners('request');
  server.on('request', (req: http.IncomingMessage, res: http.ServerResponse) => {
    if (serveHealth(req, res, readiness)) return;
    if (drain && serveDrain(req, res, drain.sfu, drain.metricsToken, drain.log)) return;
    for (const h of handlers) h(req, res);
  });
  if (drain) drainOnSignal(drain.sfu, drain.log);
}
