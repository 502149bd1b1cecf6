import type { AddressInfo } from 'node:net';
import { createPool } from '../../infra/db/pool.ts';
import { createApiApp } from '../../web/api/app.ts';

// Child process of tests/bench/org-api.ts: the API alone in its own process, as in production.
const url = process.env.BENCH_DATABASE_URL;
const secret = process.env.BENCH_TOKEN_SECRET;
if (!url || !secret) throw new Error('BENCH_DATABASE_URL and BENCH_TOKEN_SECRET are required');
const pool = createPool(url, 10);
// BENCH_STATS_CACHE_MS=0: subtree counts computed on every request (the naive baseline).
const statsTtl = process.env.BENCH_STATS_CACHE_MS === undefined ? undefined : Number(process.env.BENCH_STATS_CACHE_MS);
const app = createApiApp({ pool, tokenSecret: secret, ...(statsTtl !== undefined ? { subtreeStats: { ttlMs: statsTtl, slowMs: 100 } } : {}), loginLimits: { windowMs: 60_000, perIpFailures: 100_000, accountFreeFailures: 100_000, accountBaseDelayMs: 1, accountMaxDelayMs: 1 } });
const server = app.listen(0, '127.0.0.1', () => {
  process.send?.({ port: (server.address() as AddressInfo).port });
});
process.on('disconnect', () => {
  server.closeAllConnections();
  server.close(() => void pool.end().then(() => process.exit(0)));
});
