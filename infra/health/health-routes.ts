import http from 'node:http';
import type { Readiness } from './Readiness.ts';

// /healthz: the process runs and its event loop answers (a service manager restarts it otherwise).
// /readyz: every dependency answered in time: 200 with the checks, else 503 with why (for a load
// balancer, the upgrade script and the operator). Neither names hosts, keys or credentials.

/** Answers /healthz and /readyz; returns false for any other request (the caller handles it). */
export function serveHealth(req: http.IncomingMessage, res: http.ServerResponse, readiness: Readiness, live: () => boolean = () => true): boolean {
  const url = (req.url ?? '').split('?')[0];
  if (url !== '/healthz' && url !== '/readyz') return false;
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.writeHead(405, { allow: 'GET, HEAD' }).end();
    return true;
  }
  const headers = { 'content-type': 'application/json', 'cache-control': 'no-store' };
  if (url === '/healthz') {
    const ok = live();
    res.writeHead(ok ? 200 : 503, headers).end(JSON.stringify({ ok, role: readiness.role }));
    return true;
  }
  readiness.report().then(
    (r) => res.writeHead(r.ready ? 200 : 503, headers).end(JSON.stringify(r)),
    () => res.writeHead(503, headers).end(JSON.stringify({ ready: false, role: readiness.role })),
  );
  return true;
}

/** A small server of its own for roles without an HTTP port (scheduler, recorder): HEALTH_HOST:HEALTH_PORT. */
export function startHealthServer(readiness: Readiness, host: string, port: number, live?: () => boolean): Promise<http.Server> {
  const server = http.createServer({ headersTimeout: 5_000, requestTimeout: 10_000 }, (req, res) => {
    if (!serveHealth(req, res, readiness, live)) res.writeHead(404).end();
  });
  server.maxConnections = 64;
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve(server);
    });
  });
}
