import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { startSystemHarness, type SystemHarness } from '../support/system-harness.ts';
import type { AccessCase, AccessWorld, ApiAnswer } from './access-cases/types.ts';
import { buildWorld } from './access-cases/world.ts';

// Every route of /api/openapi.json (the full server: every router, as in `npm start`) has at least one
// access case (tests/api/access-cases/*.ts, format in types.ts): a user of the same role in another
// county is refused (404/403, or a list without the first county's objects), and a user who may
// (role + subtree) gets an answer that is not 401/403/404/5xx. Anonymous 401s: access-control.test.ts.

const dir = path.join(path.dirname(fileURLToPath(import.meta.url)), 'access-cases');
const ALLOWED_DEFAULT = new Set([200, 201, 202, 204, 206, 302, 304, 400, 409, 410, 422, 429, 503]);

let h: SystemHarness;
let w: AccessWorld;
let routes: string[] = [];
const cases: Array<AccessCase & { file: string }> = [];

before(async () => {
  h = await startSystemHarness({ storage: true, towns: 24, communities: 48, villages: 96 });
  w = await buildWorld(h);
  const doc = (await w.call('GET', '/api/openapi.json')).body as { paths: Record<string, Record<string, unknown>> };
  routes = Object.entries(doc.paths).flatMap(([p, ops]) => Object.keys(ops).map((m) => `${m.toUpperCase()} ${p}`));
  for (const f of fs.readdirSync(dir).filter((f) => f.endsWith('.ts') && f !== 'types.ts' && f !== 'world.ts').sort()) {
    const mod = (await import(pathToFileURL(path.join(dir, f)).href)) as { cases?: AccessCase[] };
    assert.ok(Array.isArray(mod.cases), `${f} exports cases: AccessCase[]`);
    for (const c of mod.cases) cases.push({ ...c, file: f });
  }
});

after(async () => {
  await h?.close();
});

test('every OpenAPI route has an access case, and every case names a route of the document', () => {
  assert.ok(routes.length > 100, `the full document (${routes.length} routes)`);
  const covered = new Set(cases.map((c) => `${c.method} ${c.route}`));
  const missing = routes.filter((r) => !covered.has(r));
  assert.deepEqual(missing, [], `OpenAPI routes without an access case (${missing.length}):\n${missing.join('\n')}`);
  const known = new Set(routes);
  const stale = cases.filter((c) => !known.has(`${c.method} ${c.route}`)).map((c) => `${c.file}: ${c.method} ${c.route}`);
  assert.deepEqual(stale, [], 'cases for routes not in the OpenAPI document');
});

test('each case: the other county is refused, the allowed user is answered', async () => {
  const failures: string[] = [];
  let run = 0;
  for (const c of cases) {
    if (c.public) continue;
    const what = `${c.file}: ${c.method} ${c.route}${c.title ? ` (${c.title})` : ''}`;
    try {
      const req = await c.build(w);
      const level = c.allowed.level ?? 'county';
      const send = async (token: string): Promise<ApiAnswer> =>
        w.call(c.method, req.path, { token, ...(req.body !== undefined ? { body: req.body } : {}), ...(req.raw !== undefined ? { raw: req.raw } : {}), ...(req.contentType ? { contentType: req.contentType } : {}) });
      const outsider = await w.actor('B', c.allowed.role, level);
      const o = await send(outsider.token);
      if (typeof c.outsider === 'function') await c.outsider(o, w);
      else assert.ok(o.status === 404 || o.status === 403, `outsider (${c.allowed.role}@${level} of county B) got ${o.status} ${o.text.slice(0, 200)}`);
      const allowed = await w.actor('A', c.allowed.role, level);
      const a = await send(allowed.token);
      const ok = c.allowedStatus ? c.allowedStatus.includes(a.status) : ALLOWED_DEFAULT.has(a.status);
      assert.ok(ok, `allowed (${c.allowed.role}@${level} of county A) got ${a.status} ${a.text.slice(0, 300)}`);
      await c.check?.(a, w);
      run++;
    } catch (e) {
      failures.push(`${what}: ${(e as Error).message}`);
    }
  }
  assert.deepEqual(failures, [], `failing access cases (${failures.length})`);
  assert.ok(run > 0, 'cases ran');
});
