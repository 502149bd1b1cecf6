import type { AccessCase, AccessWorld } from './types.ts';

// Node enrolment (web/api/routes/node-enrolment.ts): the operator's routes follow the tree like the
// node itself; the node's own routes are public (a one-time code, or a signature by an enrolled key).
// Also the members' bulk import (web/api/routes/bulk-import.ts) and retiring a unit (unit-retire.ts).

/** A fresh village of county A's community with its own node, made through the API as county A's admin. */
async function freshNode(w: AccessWorld): Promise<number> {
  const admin = await w.actor('A', 'admin');
  const unit = await w.call('POST', '/api/units', { token: admin.token, body: { parent_id: w.A.units.community, level: 'village', name: `注册村${w.unique()}` } });
  if (unit.status !== 201) throw new Error(`unit: ${unit.status} ${unit.text}`);
  const node = await w.call('POST', '/api/sfu-nodes', { token: admin.token, body: { unit_id: (unit.body as { id: number }).id, name: '注册节点', signalling_url: 'wss://enrol.example/sfu' } });
  if (node.status !== 201) throw new Error(`node: ${node.status} ${node.text}`);
  return (node.body as { id: number }).id;
}

export const cases: AccessCase[] = [
  {
    method: 'POST',
    route: '/api/sfu-nodes/{id}/enrolment-code',
    allowed: { role: 'operator' },
    build: async (w) => ({ path: `/api/sfu-nodes/${await freshNode(w)}/enrolment-code` }),
    check: (r) => {
      if (r.status !== 201 || typeof (r.body as { code?: unknown }).code !== 'string') throw new Error(`expected a code: ${r.status} ${r.text}`);
    },
  },
  {
    method: 'POST',
    route: '/api/sfu-nodes/{id}/revoke',
    allowed: { role: 'operator' },
    build: async (w) => ({ path: `/api/sfu-nodes/${await freshNode(w)}/revoke` }),
  },
  {
    method: 'GET',
    route: '/api/sfu-nodes/{id}/enrolment',
    allowed: { role: 'operator', level: 'county' },
    build: (w) => ({ path: `/api/sfu-nodes/${w.A.sfuNode}/enrolment` }),
  },
  {
    method: 'POST',
    route: '/api/members/import',
    allowed: { role: 'admin' },
    build: async (w) => {
      const { rows } = await w.pool.query<{ code: string; name: string }>('SELECT u.code, b.name FROM branches b JOIN units u ON u.id = b.unit_id WHERE b.id = $1', [w.A.branch]);
      return { path: '/api/members/import', raw: `unit_code,branch,name,mobile\n${rows[0]!.code},${rows[0]!.name},导入党员${w.unique()},13800000000\n` };
    },
    // County B's admin: county A's unit code reads as unknown (422, nothing written).
    outsider: (r) => {
      if (![403, 404, 422].includes(r.status)) throw new Error(`${r.status} ${r.text}`);
    },
    allowedStatus: [201],
  },
  {
    method: 'GET',
    route: '/api/units/{id}/dependants',
    allowed: { role: 'admin' },
    build: (w) => ({ path: `/api/units/${w.A.units.village}/dependants` }),
    allowedStatus: [200],
  },
  {
    method: 'POST',
    route: '/api/units/{id}/retire',
    allowed: { role: 'admin' },
    build: async (w) => {
      const admin = await w.actor('A', 'admin');
      const unit = await w.call('POST', '/api/units', { token: admin.token, body: { parent_id: w.A.units.community, level: 'village', name: `撤销村${w.unique()}` } });
      return { path: `/api/units/${(unit.body as { id: number }).id}/retire`, body: {} };
    },
    allowedStatus: [200],
  },
  ...(['enrol', 'rotate', 'activate', 'report', 'child-keys'] as const).map(
    (what): AccessCase => ({
      method: 'POST',
      route: `/api/node-enrolment/${what}`,
      public: 'a node calls it with its one-time code or a signature by its enrolled key (tests/api/node-enrolment.test.ts)',
      allowed: { role: 'operator' },
      build: () => ({ path: `/api/node-enrolment/${what}`, body: {} }),
    }),
  ),
];
