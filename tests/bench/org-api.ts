import { fork } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { generateDemoOrganisation, DEMO_PASSWORD } from '../../infra/demo/generate.ts';
import { createTestDatabase } from '../support/database.ts';

// Benchmark on the full demo tree (10,133 units, 9,133 cameras, 40k members):
//  1. subtree queries in PostgreSQL: materialised path prefix (what the API uses) against the naive
//     baseline, a recursive CTE that rebuilds the caller's subtree on every request;
//  2. the API's list/read endpoints over HTTP (API in its own process, keep-alive clients), p50/p99
//     and requests/s.
// Run: node --import tsx tests/bench/org-api.ts   (BENCH_SECONDS=3 per endpoint by default)

const SECONDS = Number(process.env.BENCH_SECONDS ?? 3);
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 16);
const SECRET = 'bench-secret-bench-secret-bench-secret-00';

function pct(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}
const fmt = (ms: number): string => (ms < 10 ? ms.toFixed(2) : ms.toFixed(1));

const db = await createTestDatabase();
try {
  console.log(`cores: ${os.availableParallelism()}  node ${process.version}  load average at start: ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}`);
  const t0 = performance.now();
  const demo = await generateDemoOrganisation(db.pool);
  console.log(`demo tree generated in ${Math.round(performance.now() - t0)} ms: ${JSON.stringify(demo.units)}, cameras ${demo.cameras}, members ${demo.members}`);
  await db.pool.query('ANALYZE');

  // ---- 1. subtree queries --------------------------------------------------------------------
  const roots = {
    city: demo.unitIds.city[0]!,
    county: demo.unitIds.county[3]!,
    town: demo.unitIds.town[40]!,
    community: demo.unitIds.community[500]!,
  };
  const cte = `WITH RECURSIVE sub AS (SELECT id FROM units WHERE id = $1 UNION ALL SELECT u.id FROM units u JOIN sub ON u.parent_id = sub.id)`;
  const queries: Record<string, { path: string; cte: string; extra?: (root: number) => Promise<unknown[]> }> = {
    'count units in subtree': {
      path: `SELECT count(*) FROM units u WHERE u.path LIKE $1`,
      cte: `${cte} SELECT count(*) FROM sub`,
    },
    'first page of cameras (100)': {
      path: `SELECT c.id, c.name FROM cameras c JOIN units u ON u.id = c.unit_id WHERE u.path LIKE $1 ORDER BY c.id LIMIT 100`,
      cte: `${cte} SELECT c.id, c.name FROM cameras c WHERE c.unit_id IN (SELECT id FROM sub) ORDER BY c.id LIMIT 100`,
    },
    'count members in subtree': {
      path: `SELECT count(*) FROM members m JOIN branches b ON b.id = m.branch_id JOIN units u ON u.id = b.unit_id WHERE u.path LIKE $1`,
      cte: `${cte} SELECT count(*) FROM members m JOIN branches b ON b.id = m.branch_id WHERE b.unit_id IN (SELECT id FROM sub)`,
    },
    'scoped read of one camera': {
      path: `SELECT c.id, c.name FROM cameras c JOIN units u ON u.id = c.unit_id WHERE u.path LIKE $1 AND c.id = $2`,
      cte: `${cte} SELECT c.id, c.name FROM cameras c WHERE c.id = $2 AND c.unit_id IN (SELECT id FROM sub)`,
    },
  };
  const { rows: pathRows } = await db.pool.query<{ id: number; path: string }>('SELECT id, path FROM units WHERE id = ANY($1)', [Object.values(roots)]);
  const pathOf = new Map(pathRows.map((r) => [r.id, r.path]));
  // a camera inside each root's subtree, for the single-object read
  const camOf = new Map<number, number>();
  for (const id of Object.values(roots)) {
    const { rows } = await db.pool.query<{ id: number }>(`SELECT c.id FROM cameras c JOIN units u ON u.id = c.unit_id WHERE u.path LIKE $1 ORDER BY c.id DESC LIMIT 1`, [`${pathOf.get(id)}%`]);
    camOf.set(id, rows[0]!.id);
  }
  const ITER = Number(process.env.BENCH_DB_ITER ?? 200);
  console.log(`\n1. subtree queries, one connection, ${ITER} runs each (ms)`);
  console.log('query                          root       | path p50  p99   | recursive CTE p50  p99 | speed-up p50');
  for (const [name, q] of Object.entries(queries)) {
    for (const [level, root] of Object.entries(roots)) {
      const run = async (sql: string, first: unknown): Promise<number[]> => {
        const params = sql.includes('$2') ? [first, camOf.get(root)] : [first];
        for (let i = 0; i < 10; i++) await db.pool.query(sql, params); // warm-up
        const t: number[] = [];
        for (let i = 0; i < ITER; i++) {
          const s = performance.now();
          await db.pool.query(sql, params);
          t.push(performance.now() - s);
        }
        return t.sort((a, b) => a - b);
      };
      const p = await run(q.path, `${pathOf.get(root)}%`);
      const c = await run(q.cte, root);
      console.log(
        `${name.padEnd(30)} ${level.padEnd(10)} | ${fmt(pct(p, 50)).padStart(6)} ${fmt(pct(p, 99)).padStart(6)} | ${fmt(pct(c, 50)).padStart(10)} ${fmt(pct(c, 99)).padStart(6)}      | ${(pct(c, 50) / pct(p, 50)).toFixed(1)}x`,
      );
    }
  }

  // ---- 2. the API over HTTP ----------------------------------------------------------------
  const startApi = async (env: Record<string, string>) => {
    const child = fork(path.join(path.dirname(fileURLToPath(import.meta.url)), 'org-api-server.ts'), [], {
      execArgv: ['--import', 'tsx'],
      env: { ...process.env, BENCH_DATABASE_URL: db.url, BENCH_TOKEN_SECRET: SECRET, LOG_LEVEL: 'warn', ...env },
    });
    const port = await new Promise<number>((resolve, reject) => {
      child.once('message', (m) => resolve((m as { port: number }).port));
      child.once('exit', (code) => reject(new Error(`server exited ${code}`)));
    });
    return { child, base: `http://127.0.0.1:${port}` };
  };
  const { child, base } = await startApi({});
  // The same API with the dashboard counts computed on every request: the baseline for the stats rows.
  const { child: naiveChild, base: naiveBase } = await startApi({ BENCH_STATS_CACHE_MS: '0' });
  try {
    const login = async (username: string): Promise<string> => {
      const r = await fetch(`${base}/api/auth/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username, password: DEMO_PASSWORD }) });
      if (r.status !== 200) throw new Error(`login ${username}: ${r.status}`);
      return ((await r.json()) as { token: string }).token;
    };
    const cityUser = 'wf.admin';
    const countyUser = demo.users.find((u) => u.level === 'county' && u.role === 'admin')!;
    const townUser = demo.users.find((u) => u.level === 'town' && u.role === 'admin' && u.unitId === roots.town) ?? demo.users.find((u) => u.level === 'town')!;
    const tokens = { city: await login(cityUser), county: await login(countyUser.username), town: await login(townUser.username) };
    const { rows: someCams } = await db.pool.query<{ id: number }>(`SELECT c.id FROM cameras c JOIN units u ON u.id = c.unit_id WHERE u.path LIKE (SELECT path FROM units WHERE id = $1) || '%' LIMIT 50`, [countyUser.unitId]);
    const { rows: someUnits } = await db.pool.query<{ id: number }>(`SELECT id FROM units WHERE path LIKE (SELECT path FROM units WHERE id = $1) || '%' LIMIT 200`, [countyUser.unitId]);

    const { rows: v5000 } = await db.pool.query<{ id: number }>(`SELECT id FROM units WHERE level = 'village' ORDER BY id OFFSET 5000 LIMIT 1`);
    const village5000 = v5000[0]!.id;
    const endpoints: Array<{ name: string; token: string; url: (i: number) => string; expect?: number; base?: string }> = [
      { name: 'GET /api/units?limit=100 (city)', token: tokens.city, url: () => '/api/units?limit=100' },
      { name: 'GET /api/units?level=village&limit=100&offset=5000 (city)', token: tokens.city, url: () => '/api/units?level=village&limit=100&offset=5000' },
      { name: 'GET /api/units?level=village&limit=100&after_id=<5000th> (city)', token: tokens.city, url: () => `/api/units?level=village&limit=100&after_id=${village5000}` },
      { name: 'GET /api/units/:id (county)', token: tokens.county, url: (i) => `/api/units/${someUnits[i % someUnits.length]!.id}` },
      { name: 'GET /api/cameras?limit=100 (city)', token: tokens.city, url: () => '/api/cameras?limit=100' },
      { name: 'GET /api/cameras?limit=100 (town)', token: tokens.town, url: () => '/api/cameras?limit=100' },
      { name: 'GET /api/cameras/:id (county, audited)', token: tokens.county, url: (i) => `/api/cameras/${someCams[i % someCams.length]!.id}` },
      { name: 'GET /api/members?limit=100 (county)', token: tokens.county, url: () => '/api/members?limit=100' },
      { name: 'GET /api/units/:id/stats (county), computed per request', token: tokens.county, url: () => `/api/units/${countyUser.unitId}/stats`, base: naiveBase },
      { name: 'GET /api/units/:id/stats (county), shared and kept 30 s', token: tokens.county, url: () => `/api/units/${countyUser.unitId}/stats` },
      { name: 'GET /api/units/:id/stats (city), computed per request', token: tokens.city, url: () => `/api/units/${roots.city}/stats`, base: naiveBase },
      { name: 'GET /api/units/:id/stats (city), shared and kept 30 s', token: tokens.city, url: () => `/api/units/${roots.city}/stats` },
      { name: 'GET /api/cameras/:id outside subtree (town, 404)', token: tokens.town, url: (i) => `/api/cameras/${someCams[i % someCams.length]!.id}`, expect: 404 },
    ];
    console.log(`\n2. API over HTTP: ${CONCURRENCY} concurrent keep-alive clients, ${SECONDS} s per endpoint (API and PostgreSQL and this client share the machine)`);
    console.log('endpoint                                                          ok req/s  p50 ms  p99 ms  other statuses (counted apart)');
    for (const ep of endpoints) {
      const lat: number[] = []; // latencies of the expected answers (2xx, or the 404 this endpoint is meant to give)
      const statuses = new Map<number, number>();
      let i = 0;
      const until = performance.now() + SECONDS * 1000;
      const worker = async (): Promise<void> => {
        while (performance.now() < until) {
          const s = performance.now();
          const r = await fetch((ep.base ?? base) + ep.url(i++), { headers: { authorization: `Bearer ${ep.token}` } });
          await r.arrayBuffer();
          const ok = ep.expect === undefined ? r.status >= 200 && r.status < 300 : r.status === ep.expect;
          if (ok) lat.push(performance.now() - s);
          else statuses.set(r.status, (statuses.get(r.status) ?? 0) + 1);
        }
      };
      const start = performance.now();
      await Promise.all(Array.from({ length: CONCURRENCY }, worker));
      const secs = (performance.now() - start) / 1000;
      lat.sort((a, b) => a - b);
      console.log(
        `${ep.name.padEnd(66)} ${(lat.length / secs).toFixed(0).padStart(6)} ${fmt(pct(lat, 50)).padStart(8)} ${fmt(pct(lat, 99)).padStart(7)}  ${statuses.size ? [...statuses].map(([k, v]) => `${k}x${v} (${(v / secs).toFixed(0)}/s)`).join(' ') : 'none'}`,
      );
    }
    console.log(`load average at end: ${os.loadavg().map((l) => l.toFixed(2)).join(' ')} (other work on the machine skews the HTTP figures)`);
  } finally {
    for (const c of [child, naiveChild]) {
      c.disconnect();
      await new Promise((r) => c.once('exit', r));
    }
  }
} finally {
  await db.drop();
}
