import { timingSafeEqual } from 'node:crypto';
import type http from 'node:http';

/**
 * Who may read a node's Prometheus metrics (room names, counts, worker health: not for the public).
 * With a metrics token (METRICS_TOKEN), a scraper presents it as `Authorization: Bearer <token>`;
 * anyone else gets 401. Without one, only this host's own loopback requests that did not come
 * through a reverse proxy (no X-Forwarded-For / Forwarded / X-Real-IP) are answered; others get 404, as if
 * there were no metrics at all.
 */
export function metricsAccess(req: http.IncomingMessage, token: string | undefined): 200 | 401 | 404 {
  if (token) {
    const auth = req.headers.authorization ?? '';
    const given = Buffer.from(auth.startsWith('Bearer ') ? auth.slice(7) : '');
    const want = Buffer.from(token);
    return given.length === want.length && timingSafeEqual(given, want) ? 200 : 401;
  }
  const remote = req.socket.remoteAddress ?? '';
  const loopback = remote === '::1' || remote.startsWith('127.') || remote.startsWith('::ffff:127.');
  const proxied = req.headers['x-forwarded-for'] !== undefined || req.headers.forwarded !== undefined || req.headers['x-real-ip'] !== undefined;
  return loopback && !proxied ? 200 : 404;
}
