import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { hashPassword } from '../../infra/auth/password.ts';
import { generateDemoOrganisation } from '../../infra/demo/generate.ts';
import type { Role } from '../../infra/tokens.ts';
import { startHarness, TEST_SECRET, type ApiResponse, type Harness } from './harness.ts';

// Walks every API route as users at each level of the tree and checks allowed and denied cases:
// own unit, below, above (upward), a sibling (sideways) and another branch of the tree
// (cross-subtree). Outside the subtree the answer is always 404, never 403. Every response body is
// also checked for camera credentials.

const PASSWORD = 'access-test-pw-2026';

interface Unit {
  id: number;
  path: string;
  level: string;
  code: string;
}
interface Actor {
  name: string;
  role: Role;
  unit: Unit;
  token: string;
  userId: number;
}
interface Fixture {
  branch: number;
  member: number;
  servicePoint: number;
  camera: number;
  sfuNode: number | null;
  user: number;
}

let h: Harness;
const units: Record<string, Unit> = {};
const actors: Actor[] = [];
const fixtures = new Map<number, Fixture>();
const secrets: string[] = [];
const exercised = new Set<string>();
const responses: Array<{ where: string; text: string }> = [];
let templates: Array<{ method: string; template: string; re: RegExp }> = [];

const relation = (actor: Actor, target: Unit): string => {
  if (actor.unit.id === target.id) return 'self';
  if (target.path.startsWith(actor.unit.path)) return 'below';
  if (actor.unit.path.startsWith(target.path)) return 'above';
  const parentOf = (p: string): string => p.slice(0, p.slice(0, -1).lastIndexOf('.') + 1);
  if (parentOf(actor.unit.path) === parentOf(target.path)) return 'sideways';
  return 'cross';
};
const visible = (actor: Actor, target: Unit): boolean => target.path.startsWith(actor.unit.path);
const deniedKinds = new Set<string>();

async function call(method: string, path: string, actor: Actor | null, body?: unknown, raw?: string): Promise<ApiResponse> {
  const r = await h.call(method, path, { token: actor?.token, body, raw });
  const bare = path.split('?')[0]!;
  const t = templates.find((x) => x.method === method.toLowerCase() && x.re.test(bare));
  if (t) exercised.add(`${t.method} ${t.template}`);
  responses.push({ where: `${method} ${path} as ${actor?.name ?? 'anonymous'}`, text: r.text });
  return r;
}

function expectStatus(r: ApiResponse, status: number, what: string): void {
  assert.equal(r.status, status, `${what}: expected ${status}, got ${r.status} ${r.text.slice(0, 200)}`);
  if (status === 404) assert.equal((r.body as { error: { code: string } }).error.code, 'not_found', what);
}

before(async () => {
  h = await startHarness();
  const pool = h.db.pool;
  await generateDemoOrganisation(pool, { towns: 24, communities: 48, villages: 96 });
  const { rows: all } = await pool.query<Unit>('SELECT id, path, level, code FROM units ORDER BY id');
  const byCode = new Map(all.map((u) => [u.code, u]));
  // Two counties, two towns in the first, one in the second, a community and village below each town.
  const pick = (code: string): Unit => byCode.get(code) ?? assert.fail(`no unit ${code}`);
  Object.assign(units, {
    city: pick('370700'),
    countyA: pick('370702'),
    countyB: pick('370703'),
    townA1: pick('370702001'),
    townA2: pick('370702002'),
    townB1: pick('370703001'),
    commA1: pick('370702001001'),
    commA2: pick('370702002001'),
    villA1: pick('37070200100101'),
    villB1: pick('37070300100101'),
  });

  // Fixture objects in every target unit, with recognisable camera credentials.
  for (const [key, u] of Object.entries(units)) {
    const q = async (sql: string, params: unknown[]): Promise<number> => (await pool.query<{ id: number }>(sql, params)).rows[0]!.id;
    const branch = await q(`INSERT INTO branches (unit_id, name) VALUES ($1, $2) RETURNING id`, [u.id, `${key}测试支部`]);
    const member = await q(`INSERT INTO members (branch_id, name, mobile) VALUES ($1, '测试党员', '13800000000') RETURNING id`, [branch]);
    const servicePoint = await q(`INSERT INTO service_points (unit_id, kind, name) VALUES ($1, 'station', $2) RETURNING id`, [u.id, `${key}服务站`]);
    const camUser = `camuser-${key}-7Qx`;
    const camPass = `campass-${key}-Zr4`;
    secrets.push(camUser, camPass);
    const camera = await q(
      `INSERT INTO cameras (unit_id, service_point_id, name, rtsp_url, username, password) VALUES ($1, $2, $3, 'rtsp://10.9.9.9:554/ch1', $4, $5) RETURNING id`,
      [u.id, servicePoint, `${key}摄像机`, camUser, camPass],
    );
    const node = await pool.query<{ id: number }>('SELECT id FROM sfu_nodes WHERE unit_id = $1', [u.id]);
    const user = await q(`INSERT INTO users (username, display_name, unit_id, role, password_hash) VALUES ($1, '目标用户', $2, 'clerk', 'scrypt$x') RETURNING id`, [`target.${key}`, u.id]);
    fixtures.set(u.id, { branch, member, servicePoint, camera, sfuNode: node.rows[0]?.id ?? null, user });
  }
  const { rows: creds } = await pool.query<{ username: string | null; password: string | null }>('SELECT username, password FROM cameras');
  for (const c of creds) if (c.password) secrets.push(c.password);

  const hash = await hashPassword(PASSWORD);
  const cast: Array<[string, Role, Unit]> = [
    ['city admin', 'admin', units.city!],
    ['county A admin', 'admin', units.countyA!],
    ['town A1 admin', 'admin', units.townA1!],
    ['town A1 leader', 'leader', units.townA1!],
    ['town A1 supervisor', 'supervisor', units.townA1!],
    ['community A1 secretary', 'secretary', units.commA1!],
    ['village A1 operator', 'operator', units.villA1!],
    ['county B clerk', 'clerk', units.countyB!],
  ];
  for (const [name, role, unit] of cast) {
    const username = `act.${name.replace(/ /g, '_')}`;
    const { rows } = await pool.query<{ id: number }>(
      `INSERT INTO users (username, display_name, unit_id, role, password_hash) VALUES ($1, $2, $3, $4, $5) RETURNING id`,
      [username, name, unit.id, role, hash],
    );
    actors.push({ name, role, unit, userId: rows[0]!.id, token: await h.login(username, PASSWORD) });
  }

  const openapi = (await h.call('GET', '/api/openapi.json')).body as { paths: Record<string, Record<string, unknown>> };
  templates = Object.entries(openapi.paths).flatMap(([template, ops]) =>
    Object.keys(ops).map((method) => ({
      method,
      template,
      re: new RegExp('^' + template.replace(/\{[^}]+\}/g, '[^/]+') + '$'),
    })),
  );
});

after(async () => {
  await h?.close();
});

interface Resource {
  path: string;
  fixture: keyof Fixture;
  readRoles?: Role[];
  writeRoles: Role[];
  patch: Record<string, unknown>;
  create?: (u: Unit, f: Fixture, n: number) => Record<string, unknown> | undefined;
  table: string;
}

const resources: Resource[] = [
  { path: '/api/branches', fixture: 'branch', table: 'branches', writeRoles: ['admin', 'secretary'], patch: { name: '改名支部' }, create: (u) => ({ unit_id: u.id, name: '新支部' }) },
  { path: '/api/members', fixture: 'member', table: 'members', writeRoles: ['admin', 'secretary'], patch: { name: '改名党员' }, create: (_u, f) => ({ branch_id: f.branch, name: '新党员', mobile: '13900000000' }) },
  {
    path: '/api/service-points',
    fixture: 'servicePoint',
    table: 'service_points',
    writeRoles: ['admin', 'operator'],
    patch: { name: '改名服务站' },
    create: (u) => ({ unit_id: u.id, kind: 'station', name: '新服务站', services: ['legal_aid'] }),
  },
  {
    path: '/api/cameras',
    fixture: 'camera',
    table: 'cameras',
    writeRoles: ['admin', 'operator'],
    patch: { name: '改名摄像机', password: 'new-secret-pw-Kk8' },
    create: (u, f) => ({ unit_id: u.id, service_point_id: f.servicePoint, name: '新摄像机', rtsp_url: 'rtsp://10.1.1.1/x', username: 'u', password: 'new-cam-secret-Qq1' }),
  },
  {
    path: '/api/sfu-nodes',
    fixture: 'sfuNode',
    table: 'sfu_nodes',
    writeRoles: ['admin', 'operator'],
    patch: { name: '改名节点' },
    // One node per unit: only units without one can get a new node.
    create: (u, f) => (f.sfuNode === null ? { unit_id: u.id, name: '新节点', signalling_url: 'wss://new.example/ws' } : undefined),
  },
  {
    path: '/api/users',
    fixture: 'user',
    table: 'users',
    readRoles: ['admin', 'leader', 'supervisor'],
    writeRoles: ['admin'],
    patch: { display_name: '改名用户' },
    create: (u, _f, n) => ({ username: `new.user.${n}`, display_name: '新用户', unit_id: u.id, role: 'clerk', password: 'new-user-pw-2026' }),
  },
];
secrets.push('new-secret-pw-Kk8', 'new-cam-secret-Qq1');

test('signed-out callers get 401 on every non-public route', async () => {
  for (const t of templates) {
    if (t.template === '/api/auth/login' || t.template === '/api/openapi.json') continue;
    if (t.template.startsWith('/api/node-enrolment/')) {
      // public: a node's credential is in the body (a one-time code, or a signature by its enrolled key)
      const r = await call('POST', t.template, null, {});
      assert.equal(r.status, 400, `${t.template}: ${r.text}`);
      continue;
    }
    if (t.template === '/api/sfu-endpoints') {
      // public: a meeting link's page checks its node against it before signing in is possible
      const r = await call('GET', t.template, null);
      assert.equal(r.status, 200, r.text);
      assert.ok((r.body as { endpoints: string[] }).endpoints.includes('/sfu'));
      continue;
    }
    const path = t.template.replace('{id}', '1').replace('{room}', 'room1');
    const r = await call(t.method.toUpperCase(), path, null, t.method === 'get' || t.method === 'delete' ? undefined : {});
    assert.equal(r.status, 401, `${t.method} ${path} without a token`);
  }
  const forged = await h.call('GET', '/api/units', { token: 'eyJhbGciOiJIUzI1NiJ9.eyJ1c2VySWQiOjF9.bad' });
  assert.equal(forged.status, 401);
});

test('object routes: read, change, create and delete follow the subtree and the role', async () => {
  let n = 0;
  for (const res of resources) {
    for (const actor of actors) {
      const canRead = !res.readRoles || res.readRoles.includes(actor.role);
      const canWrite = res.writeRoles.includes(actor.role);
      for (const target of Object.values(units)) {
        const f = fixtures.get(target.id)!;
        const id = f[res.fixture];
        const rel = relation(actor, target);
        const seen = visible(actor, target);
        const what = `${res.path} of ${rel} unit ${target.code} as ${actor.name}`;
        if (!seen) deniedKinds.add(rel);

        if (id !== null) {
          // read one
          const r = await call('GET', `${res.path}/${id}`, actor);
          expectStatus(r, !canRead ? 403 : seen ? 200 : 404, `GET ${what}`);
          if (r.status === 200) assert.equal((r.body as { id: number }).id, id);
          // filtered list: the object is listed exactly when it is visible
          const l = await call('GET', `${res.path}?unit_id=${target.id}&limit=500`, actor);
          if (!canRead) expectStatus(l, 403, `list ${what}`);
          else {
            expectStatus(l, 200, `list ${what}`);
            const ids = (l.body as { items: Array<{ id: number }> }).items.map((x) => x.id);
            assert.equal(ids.includes(id), seen, `list ${what} includes fixture: ${ids.includes(id)}`);
            if (!seen) assert.deepEqual(ids, [], `list ${what} is empty`);
          }
          // change
          const before = (await h.db.pool.query(`SELECT * FROM ${res.table} WHERE id = $1`, [id])).rows[0];
          const p = await call('PATCH', `${res.path}/${id}`, actor, res.patch);
          expectStatus(p, !canWrite ? 403 : seen ? 200 : 404, `PATCH ${what}`);
          if (p.status !== 200) {
            const afterRow = (await h.db.pool.query(`SELECT * FROM ${res.table} WHERE id = $1`, [id])).rows[0];
            assert.deepEqual(afterRow, before, `refused PATCH ${what} changed nothing`);
          }
          // delete, only where it must be refused (allowed deletes are tested on new objects below)
          if (!canWrite || !seen) {
            const d = await call('DELETE', `${res.path}/${id}`, actor);
            expectStatus(d, !canWrite ? 403 : 404, `DELETE ${what}`);
            const still = await h.db.pool.query(`SELECT 1 FROM ${res.table} WHERE id = $1`, [id]);
            assert.equal(still.rowCount, 1, `refused DELETE ${what} kept the row`);
          }
        }
        // create in the target unit, then delete what was created
        const body = res.create?.(target, f, n++);
        if (body) {
          const c = await call('POST', res.path, actor, body);
          expectStatus(c, !canWrite ? 403 : seen ? 201 : 404, `POST ${what}`);
          if (c.status === 201) {
            const newId = (c.body as { id: number }).id;
            const d = await call('DELETE', `${res.path}/${newId}`, actor);
            expectStatus(d, 204, `DELETE new ${what}`);
          }
        }
      }
    }
  }
  for (const kind of ['above', 'sideways', 'cross']) assert.ok(deniedKinds.has(kind), `denied case "${kind}" was exercised`);
});

const countSql: Record<string, string> = {
  '/api/units': 'SELECT count(*)::int AS n FROM units u WHERE u.path LIKE $1',
  '/api/branches': 'SELECT count(*)::int AS n FROM branches x JOIN units u ON u.id = x.unit_id WHERE u.path LIKE $1',
  '/api/members': 'SELECT count(*)::int AS n FROM members m JOIN branches x ON x.id = m.branch_id JOIN units u ON u.id = x.unit_id WHERE u.path LIKE $1',
  '/api/service-points': 'SELECT count(*)::int AS n FROM service_points x JOIN units u ON u.id = x.unit_id WHERE u.path LIKE $1',
  '/api/cameras': 'SELECT count(*)::int AS n FROM cameras x JOIN units u ON u.id = x.unit_id WHERE u.path LIKE $1',
  '/api/sfu-nodes': 'SELECT count(*)::int AS n FROM sfu_nodes x JOIN units u ON u.id = x.unit_id WHERE u.path LIKE $1',
  '/api/users': 'SELECT count(*)::int AS n FROM users x JOIN units u ON u.id = x.unit_id WHERE u.path LIKE $1',
};

test('full lists hold the whole subtree and nothing from outside it', async () => {
  const { rows } = await h.db.pool.query<{ id: number; path: string }>('SELECT id, path FROM units');
  const pathOf = new Map(rows.map((r) => [r.id, r.path]));
  for (const actor of actors) {
    for (const path of ['/api/units', ...resources.map((r) => r.path)]) {
      const res = resources.find((r) => r.path === path);
      if (res?.readRoles && !res.readRoles.includes(actor.role)) continue;
      // walk by offset for units, by keyset (after_id) for the rest
      const byOffset = path === '/api/units';
      let cursor: number | null = 0;
      let count = 0;
      while (cursor !== null) {
        const r = await call('GET', `${path}?limit=200&${byOffset ? 'offset' : 'after_id'}=${cursor}`, actor);
        expectStatus(r, 200, `${path} as ${actor.name}`);
        const body = r.body as { items: Array<{ id: number; unit_id?: number }>; next_offset: number | null; next_after_id: number | null };
        for (const item of body.items) {
          const unitId = item.unit_id ?? item.id;
          assert.ok(pathOf.get(unitId)!.startsWith(actor.unit.path), `${path} as ${actor.name} lists an item of unit ${unitId}`);
        }
        count += body.items.length;
        cursor = byOffset ? body.next_offset : body.next_after_id;
      }
      const { rows: expected } = await h.db.pool.query<{ n: number }>(countSql[path]!, [`${actor.unit.path}%`]);
      assert.equal(count, expected[0]!.n, `${path} as ${actor.name} lists the whole subtree`);
    }
  }
});

test('unit routes: read, stats, subtree listing, create, rename and delete follow the subtree', async () => {
  for (const actor of actors) {
    const canWrite = actor.role === 'admin';
    for (const target of Object.values(units)) {
      const rel = relation(actor, target);
      const seen = visible(actor, target);
      const what = `${rel} unit ${target.code} as ${actor.name}`;
      const r = await call('GET', `/api/units/${target.id}`, actor);
      expectStatus(r, seen ? 200 : 404, `GET ${what}`);
      if (seen) {
        const parent = (r.body as { parent_id: number | null }).parent_id;
        // the caller's own unit does not reveal what is above it
        if (rel === 'self') assert.equal(parent, null, `own unit hides its parent (${actor.name})`);
      }
      expectStatus(await call('GET', `/api/units/${target.id}/stats`, actor), seen ? 200 : 404, `stats ${what}`);
      expectStatus(await call('GET', `/api/units?under=${target.id}`, actor), seen ? 200 : 404, `list under ${what}`);
      const kids = await call('GET', `/api/units?parent_id=${target.id}`, actor);
      expectStatus(kids, seen ? 200 : 404, `children ${what}`);
      const p = await call('PATCH', `/api/units/${target.id}`, actor, { name: `${target.code}号` });
      expectStatus(p, !canWrite ? 403 : seen ? 200 : 404, `PATCH ${what}`);
      const d = await call('DELETE', `/api/units/${target.id}`, actor);
      // own unit: refused; others here are in use (children, users) so allowed deletes answer 409
      const expectedDelete = !canWrite ? 403 : !seen ? 404 : rel === 'self' ? 403 : 409;
      expectStatus(d, expectedDelete, `DELETE ${what}`);
      if (target.level !== 'village') {
        const level = { city: 'county', county: 'town', town: 'community', community: 'village' }[target.level]!;
        const c = await call('POST', '/api/units', actor, { parent_id: target.id, level, name: '新单位' });
        expectStatus(c, !canWrite ? 403 : seen ? 201 : 404, `POST under ${what}`);
        if (c.status === 201) expectStatus(await call('DELETE', `/api/units/${(c.body as { id: number }).id}`, actor), 204, `DELETE new unit under ${what}`);
      }
      // import a one-row file under the target, referenced by its code
      const csv = `code,parent_code,level,name\nIMP${actor.userId}x${target.id},${target.code},village,导入村\n`;
      const imp = await call('POST', '/api/org/import', actor, undefined, csv);
      if (!canWrite) expectStatus(imp, 403, `import under ${what}`);
      else if (!seen) {
        assert.equal(imp.status, 422, `import under ${what}: ${imp.text}`);
        assert.match(imp.text, /parent .* not found/, `import under ${what} reports the parent as not found`);
      } else {
        assert.equal(imp.status, target.level === 'village' ? 422 : 201, `import under ${what}: ${imp.text}`);
        if (imp.status === 201) {
          const created = await h.db.pool.query<{ id: number }>('SELECT id FROM units WHERE code = $1', [`IMP${actor.userId}x${target.id}`]);
          expectStatus(await call('DELETE', `/api/units/${created.rows[0]!.id}`, actor), 204, `DELETE imported unit under ${what}`);
        }
      }
    }
  }
});

test('no generic join tokens, own profile and the audit log', async () => {
  const { rows } = await h.db.pool.query<{ id: number; path: string }>('SELECT id, path FROM units');
  const pathOf = new Map(rows.map((r) => [r.id, r.path]));
  for (const actor of actors) {
    const me = await call('GET', '/api/auth/me', actor);
    expectStatus(me, 200, `me as ${actor.name}`);
    assert.equal((me.body as { unit: { id: number } }).unit.id, actor.unit.id);

    // No route signs a token for a room the caller names: tokens come only from the meeting, call and camera routes.
    const j = await call('POST', `/api/rooms/meeting-${actor.unit.id}/join-token`, actor, {});
    assert.equal(j.status, 404, `generic join token as ${actor.name}: ${j.text}`);
    assert.equal((j.body as { error: { code: string } }).error.code, 'no_route');

    const a = await call('GET', '/api/audit?limit=500', actor);
    if (actor.role !== 'admin' && actor.role !== 'supervisor') {
      expectStatus(a, 403, `audit as ${actor.name}`);
      continue;
    }
    expectStatus(a, 200, `audit as ${actor.name}`);
    const items = (a.body as { items: Array<{ unit_id: number | null }> }).items;
    assert.ok(items.length > 0);
    for (const it of items) {
      if (it.unit_id === null) assert.equal(actor.unit.id, units.city!.id, 'unit-less audit rows only for the root');
      else {
        const p = pathOf.get(it.unit_id);
        // rows of deleted units have no path left; all others must be in the subtree
        if (p) assert.ok(p.startsWith(actor.unit.path), `audit row of unit ${it.unit_id} shown to ${actor.name}`);
      }
    }
  }
});

test('every route was exercised and no response carried camera credentials', () => {
  const all = templates.filter((t) => t.template !== '/api/auth/login').map((t) => `${t.method} ${t.template}`);
  const missing = all.filter((k) => !exercised.has(k));
  assert.deepEqual(missing, [], 'routes not exercised');
  assert.ok(responses.length > 1000, `a substantial walk (${responses.length} responses)`);
  for (const r of responses) {
    for (const s of secrets) assert.ok(!r.text.includes(s), `${r.where} leaked a camera credential`);
    if (!r.where.includes('openapi')) {
      assert.ok(!/"password(_hash)?"\s*:/.test(r.text), `${r.where} carries a password field`);
      assert.ok(!/"username"\s*:\s*"camuser-/.test(r.text), `${r.where} carries a camera username`);
    }
  }
});
