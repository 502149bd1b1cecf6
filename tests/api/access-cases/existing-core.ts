import assert from 'node:assert/strict';
import type { AccessCase, AccessWorld, ApiAnswer } from './types.ts';
import { listWithout } from './types.ts';

// H7: cases for the organisation routes that existed before issue 16 (units, branches, members,
// service points, cameras, SFU nodes, users, audit, imports, password, auth).

const idOf = (r: ApiAnswer): number => (r.body as { id: number }).id;
const created = (path: string) => async (r: ApiAnswer, w: AccessWorld): Promise<void> => {
  assert.equal(r.status, 201, r.text);
  const g = await w.call('GET', `${path}/${idOf(r)}`, { token: (await w.actor('A', 'admin')).token });
  assert.equal(g.status, 200, `created object readable: ${g.text}`);
  // leave the shared fixture as it was (other cases count the branch's members)
  const d = await w.call('DELETE', `${path}/${idOf(r)}`, { token: (await w.actor('A', 'admin')).token });
  assert.equal(d.status, 204, `cleanup: ${d.text}`);
};
const gone = (path: string, id: () => number) => async (r: ApiAnswer, w: AccessWorld): Promise<void> => {
  assert.equal(r.status, 204, r.text);
  const g = await w.call('GET', `${path}/${id()}`, { token: (await w.actor('A', 'admin')).token });
  assert.equal(g.status, 404, 'deleted object is gone');
};
const readsId = (id: (w: AccessWorld) => number) => (r: ApiAnswer, w: AccessWorld): void => {
  assert.equal(r.status, 200, r.text);
  assert.equal((r.body as { id: number }).id, id(w));
};
const listHas = (id: (w: AccessWorld) => number, key = 'id') => (r: ApiAnswer, w: AccessWorld): void => {
  assert.equal(r.status, 200, r.text);
  const items = (r.body as { items: Array<Record<string, unknown>> }).items;
  assert.ok(items.some((x) => Number(x[key]) === id(w)), `list holds county A's object ${id(w)}`);
};

/** A new object of `path` created by county A's admin, for DELETE cases. */
async function fresh(w: AccessWorld, path: string, body: unknown): Promise<number> {
  const r = await w.call('POST', path, { token: (await w.actor('A', 'admin')).token, body });
  assert.equal(r.status, 201, `${path}: ${r.text}`);
  return idOf(r);
}

function crud(
  path: string,
  opts: {
    id: (w: AccessWorld) => number;
    write: AccessCase['allowed'];
    read?: AccessCase['allowed'];
    patch: Record<string, unknown>;
    create: (w: AccessWorld) => Record<string, unknown>;
    listQuery: (w: AccessWorld) => string;
  },
): AccessCase[] {
  const read = opts.read ?? { role: 'clerk' as const };
  let deleted = 0;
  return [
    { method: 'GET', route: `/api${path}`, allowed: read, build: (w) => ({ path: `/api${path}?${opts.listQuery(w)}&limit=500` }), outsider: listWithout((w) => [opts.id(w)]), check: listHas(opts.id) },
    { method: 'GET', route: `/api${path}/{id}`, allowed: read, build: (w) => ({ path: `/api${path}/${opts.id(w)}` }), check: readsId(opts.id) },
    {
      method: 'PATCH',
      route: `/api${path}/{id}`,
      allowed: opts.write,
      build: (w) => ({ path: `/api${path}/${opts.id(w)}`, body: opts.patch }),
      check: (r) => {
        assert.equal(r.status, 200, r.text);
        const [k, v] = Object.entries(opts.patch)[0]!;
        if (k !== 'password') assert.equal((r.body as Record<string, unknown>)[k], v);
      },
    },
    { method: 'POST', route: `/api${path}`, allowed: opts.write, build: (w) => ({ path: `/api${path}`, body: opts.create(w) }), check: created(`/api${path}`) },
    {
      method: 'DELETE',
      route: `/api${path}/{id}`,
      allowed: opts.write,
      build: async (w) => {
        deleted = await fresh(w, `/api${path}`, opts.create(w));
        return { path: `/api${path}/${deleted}` };
      },
      check: gone(`/api${path}`, () => deleted),
    },
  ];
}

export const cases: AccessCase[] = [
  { method: 'POST', route: '/api/auth/login', public: 'sign-in', allowed: { role: 'clerk' }, build: () => ({ path: '/api/auth/login' }) },
  { method: 'GET', route: '/api/sfu-endpoints', public: "a meeting link's page checks its node before sign-in", allowed: { role: 'clerk' }, build: () => ({ path: '/api/sfu-endpoints' }) },
  // Own-account routes: nothing of another county is named; the outsider gets its own answer, never county A's.
  {
    method: 'GET',
    route: '/api/auth/me',
    allowed: { role: 'clerk' },
    build: () => ({ path: '/api/auth/me' }),
    outsider: (r, w) => assert.equal((r.body as { unit: { id: number } }).unit.id, w.B.units.county, 'outsider sees its own unit'),
    check: (r, w) => assert.equal((r.body as { unit: { id: number } }).unit.id, w.A.units.county),
  },
  {
    method: 'POST',
    route: '/api/auth/password',
    allowed: { role: 'clerk', level: 'town' },
    // a wrong current password: both answered on their own account (400/401-free), nothing of A is touched
    build: () => ({ path: '/api/auth/password', body: { current_password: 'wrong-password-0', new_password: 'another-long-pw-2026' } }),
    outsider: (r) => assert.notEqual(r.status, 200, 'a wrong current password is refused'),
    allowedStatus: [400, 403, 422],
  },
  // units
  { method: 'GET', route: '/api/units', allowed: { role: 'clerk' }, build: (w) => ({ path: `/api/units?under=${w.A.units.town}` }), check: listHas((w) => w.A.units.community) },
  { method: 'GET', route: '/api/units/{id}', allowed: { role: 'clerk' }, build: (w) => ({ path: `/api/units/${w.A.units.village}` }), check: readsId((w) => w.A.units.village) },
  { method: 'GET', route: '/api/units/{id}/stats', allowed: { role: 'clerk' }, build: (w) => ({ path: `/api/units/${w.A.units.town}/stats` }), allowedStatus: [200] },
  {
    method: 'PATCH',
    route: '/api/units/{id}',
    allowed: { role: 'admin' },
    build: (w) => ({ path: `/api/units/${w.A.units.community}`, body: { name: '改名社区' } }),
    check: (r) => assert.equal((r.body as { name: string }).name, '改名社区'),
  },
  { method: 'POST', route: '/api/units', allowed: { role: 'admin' }, build: (w) => ({ path: '/api/units', body: { parent_id: w.A.units.community, level: 'village', name: '新村' } }), check: created('/api/units') },
  {
    method: 'DELETE',
    route: '/api/units/{id}',
    allowed: { role: 'admin' },
    build: async (w) => ({ path: `/api/units/${await fresh(w, '/api/units', { parent_id: w.A.units.community, level: 'village', name: '待删村' })}` }),
    allowedStatus: [204],
  },
  {
    method: 'POST',
    route: '/api/units/{id}/move',
    allowed: { role: 'admin' },
    build: async (w) => ({ path: `/api/units/${await fresh(w, '/api/units', { parent_id: w.A.units.community, level: 'village', name: '待迁村' })}/move`, body: { parent_id: w.A.units.community } }),
  },
  {
    method: 'POST',
    route: '/api/org/import',
    allowed: { role: 'admin' },
    build: (w) => ({ path: '/api/org/import', raw: `code,parent_code,level,name\nRA${w.unique()}X,370702001001,village,导入村\n` }),
    // the outsider names a parent outside its subtree: refused as not found (422 listing the row)
    outsider: (r) => {
      assert.ok(r.status === 422 || r.status === 404, `${r.status} ${r.text}`);
      assert.match(r.text, /not found/);
    },
    allowedStatus: [201],
  },
  ...crud('/branches', {
    id: (w) => w.A.branch,
    write: { role: 'secretary', level: 'village' },
    patch: { name: '改名支部' },
    create: (w) => ({ unit_id: w.A.units.village, name: `新支部${w.unique()}` }),
    listQuery: (w) => `unit_id=${w.A.units.village}`,
  }),
  ...crud('/members', {
    id: (w) => w.A.members[2]!,
    write: { role: 'secretary', level: 'village' },
    patch: { name: '改名党员' },
    create: (w) => ({ branch_id: w.A.branch, name: '新党员', mobile: '13900000000' }),
    listQuery: (w) => `unit_id=${w.A.units.village}`,
  }),
  ...crud('/service-points', {
    id: (w) => w.A.servicePoint,
    write: { role: 'operator', level: 'town' },
    patch: { name: '改名服务站' },
    create: (w) => ({ unit_id: w.A.units.village, kind: 'station', name: `新服务站${w.unique()}`, services: ['legal_aid'] }),
    listQuery: (w) => `unit_id=${w.A.units.village}`,
  }),
  ...crud('/cameras', {
    id: (w) => w.A.camera,
    write: { role: 'operator', level: 'town' },
    patch: { name: '改名摄像机' },
    create: (w) => ({ unit_id: w.A.units.village, service_point_id: w.A.servicePoint, name: `新摄像机${w.unique()}`, rtsp_url: 'rtsp://127.0.0.1:9/x', username: 'u', password: 'p-Qq1' }),
    listQuery: (w) => `unit_id=${w.A.units.village}`,
  }),
  ...crud('/sfu-nodes', {
    id: (w) => w.A.sfuNode,
    write: { role: 'admin' },
    patch: { name: '改名节点' },
    // one node per unit: new nodes go to the community (it has none)
    create: (w) => ({ unit_id: w.A.units.community, name: '新节点', signalling_url: `wss://n${w.unique()}.example/ws` }),
    listQuery: (w) => `unit_id=${w.A.units.county}`,
  }).map((c) => (c.method === 'POST' ? { ...c, build: (w: AccessWorld) => ({ path: '/api/sfu-nodes', body: { unit_id: w.A.units.village, name: '新节点', signalling_url: 'wss://v.example/ws' } }) } : c)),
  ...crud('/users', {
    id: (w) => w.A.user,
    write: { role: 'admin' },
    read: { role: 'supervisor' },
    patch: { display_name: '改名用户' },
    create: (w) => ({ username: `ra.new.${w.unique()}`, display_name: '新用户', unit_id: w.A.units.village, role: 'clerk', password: 'new-user-pw-2026' }),
    listQuery: (w) => `unit_id=${w.A.units.village}`,
  }),
  { method: 'GET', route: '/api/audit', allowed: { role: 'supervisor' }, build: () => ({ path: '/api/audit?limit=500' }), outsider: (r, w) => {
      assert.equal(r.status, 200, r.text);
      const bad = (r.body as { items: Array<{ unit_id: number | null }> }).items.filter((x) => Object.values(w.A.units).includes(x.unit_id ?? -1));
      assert.deepEqual(bad, [], 'outsider audit shows no county A rows');
    } },
  {
    method: 'POST',
    route: '/api/cameras/import',
    allowed: { role: 'operator', level: 'town' },
    build: (w) => ({ path: '/api/cameras/import', raw: `unit_code,service_point,name,rtsp_url,username,password\n370702001001,,导入摄像机${w.unique()},rtsp://127.0.0.1:9/i,u,p\n` }),
    outsider: (r) => assert.ok([403, 404, 422].includes(r.status) && r.status !== 201, `${r.status} ${r.text}`),
  },
  {
    method: 'POST',
    route: '/api/users/import',
    allowed: { role: 'admin' },
    build: (w) => ({ path: '/api/users/import', raw: `username,display_name,unit_code,role,password\nra.imp.${w.unique()},导入用户,370702001001,clerk,import-user-pw-2026\n` }),
    outsider: (r) => assert.ok([403, 404, 422].includes(r.status), `${r.status} ${r.text}`),
  },
  { method: 'POST', route: '/api/cameras/{id}/test', allowed: { role: 'operator', level: 'town' }, build: (w) => ({ path: `/api/cameras/${w.A.camera}/test`, body: {} }) },
  { method: 'GET', route: '/api/cameras/{id}/state', allowed: { role: 'clerk' }, build: (w) => ({ path: `/api/cameras/${w.A.camera}/state` }), allowedStatus: [200] },
  {
    method: 'GET',
    route: '/api/camera-statuses',
    allowed: { role: 'clerk' },
    build: (w) => ({ path: `/api/camera-statuses?ids=${w.A.camera}` }),
    outsider: (r, w) => assert.ok(r.status === 404 || !r.text.includes(`"id":${w.A.camera}`), `outsider: ${r.status} ${r.text.slice(0, 200)}`),
    check: (r, w) => assert.ok(r.text.includes(String(w.A.camera)), r.text),
  },
];
