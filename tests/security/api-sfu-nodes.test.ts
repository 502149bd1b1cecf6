import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { startSystemHarness, type SystemHarness } from '../support/system-harness.ts';

// Attack: an operator registers (or re-points) an SFU node at a server of their own. Its URL would be
// published at /api/sfu-endpoints, so a meeting link naming it passes the page's check and a kiosk's
// camera and microphone go there; under nearest routing every join token of the subtree (chairs' too)
// would be handed to it. Nodes may only be on the deployment's SFU hosts (SFU_NODE_HOSTS), and a row
// stored before that rule is neither published nor routed to.

const HOSTS = 'loopback,*.wf.example';
const EVIL = 'wss://evil.test/sfu';

describe('an operator cannot point an SFU node at a server of their own', { timeout: 60_000 }, () => {
  let h: SystemHarness;
  let operator: string;
  let leader: string;
  let county: number;
  let countyNode: { id: number; signalling_url: string };
  let cityUrl: string;

  before(async () => {
    // cascadeRoot: browsers are sent to their nearest registered node (SFU_ROUTING=nearest).
    h = await startSystemHarness({ towns: 1, communities: 1, villages: 2, cascadeRoot: 'city', sfuNodeHosts: HOSTS });
    county = h.demo.unitIds.county[0]!;
    operator = await h.login(h.demo.users.find((u) => u.role === 'operator' && u.unitId === county)!.username);
    leader = await h.login(h.demo.users.find((u) => u.role === 'leader' && u.unitId === county)!.username);
    const q = async (unitId: number) =>
      (await h.db.pool.query<{ id: number; signalling_url: string }>('SELECT id, signalling_url FROM sfu_nodes WHERE unit_id = $1', [unitId])).rows[0]!;
    countyNode = await q(county);
    cityUrl = (await q(h.demo.unitIds.city[0]!)).signalling_url;
  });

  after(async () => {
    await h?.close();
  });

  const refused = (r: { status: number; body: unknown }, what: string): void => {
    assert.equal(r.status, 422, `${what}: ${JSON.stringify(r.body)}`);
    const e = (r.body as { error: { code: string; message: string; details: Array<{ path: string; message: string }> } }).error;
    assert.equal(e.code, 'sfu_host_not_allowed');
    assert.match(e.message, /SFU主机.* \/ .*SFU hosts/);
    assert.equal(e.details[0]!.path, 'body.signalling_url', 'the answer names the field');
  };

  test('registering a node outside SFU_NODE_HOSTS is refused (422, by the field), nothing stored', async () => {
    const community = h.demo.unitIds.community[0]!;
    for (const url of [EVIL, 'wss://sfu-x.wf.example.evil.test/ws', 'wss://sfu-x.wf.example@evil.test/ws', 'ws://10.0.0.1:4443/sfu', 'wss://wf.example/ws']) {
      refused(await h.call(operator, 'POST', '/api/sfu-nodes', { unit_id: community, name: '恶意节点', signalling_url: url }), url);
    }
    const { rows } = await h.db.pool.query('SELECT id FROM sfu_nodes WHERE unit_id = $1', [community]);
    assert.equal(rows.length, 0, 'no node was registered');
    // Control: the same request at one of the deployment's hosts goes through.
    const ok = await h.call<{ id: number }>(operator, 'POST', '/api/sfu-nodes', { unit_id: community, name: '社区节点', signalling_url: 'wss://sfu-c1.wf.example/ws' });
    assert.equal(ok.status, 201, JSON.stringify(ok.body));
    assert.equal((await h.call(operator, 'DELETE', `/api/sfu-nodes/${ok.body.id}`)).status, 204);
  });

  test('re-pointing the county node outside SFU_NODE_HOSTS is refused; the stored URL stays', async () => {
    refused(await h.call(operator, 'PATCH', `/api/sfu-nodes/${countyNode.id}`, { signalling_url: EVIL }), 'patch');
    refused(await h.call(operator, 'PATCH', `/api/sfu-nodes/${countyNode.id}`, { name: '改名', signalling_url: 'wss://[::2]/sfu' }), 'patch ipv6');
    const { rows } = await h.db.pool.query<{ signalling_url: string; name: string }>('SELECT signalling_url, name FROM sfu_nodes WHERE id = $1', [countyNode.id]);
    assert.equal(rows[0]!.signalling_url, countyNode.signalling_url);
    assert.notEqual(rows[0]!.name, '改名', 'nothing of the refused change was kept');
  });

  test('a row stored at a foreign host (before the rule) is neither published nor handed out with join tokens', async () => {
    const m = await h.call<{ id: number }>(leader, 'POST', '/api/meetings', { title: '节点白名单', levels: ['village'] });
    assert.equal(m.status, 201, JSON.stringify(m.body));
    // Control: nearest routing sends the county leader to the county node while its URL is allowed.
    const before = await h.call<{ sfu: string }>(leader, 'POST', `/api/meetings/${m.body.id}/join-token`);
    assert.equal(before.status, 201, JSON.stringify(before.body));
    assert.equal(before.body.sfu, countyNode.signalling_url);

    await h.db.pool.query('UPDATE sfu_nodes SET signalling_url = $2 WHERE id = $1', [countyNode.id, EVIL]);
    const ep = await h.call<{ endpoints: string[] }>(undefined, 'GET', '/api/sfu-endpoints');
    assert.equal(ep.status, 200);
    assert.ok(!ep.body.endpoints.includes(EVIL), `not published: ${JSON.stringify(ep.body.endpoints)}`);
    assert.ok(ep.body.endpoints.includes(cityUrl), 'the allowed nodes still are');

    const afterward = await h.call<{ sfu: string }>(leader, 'POST', `/api/meetings/${m.body.id}/join-token`);
    assert.equal(afterward.status, 201, JSON.stringify(afterward.body));
    assert.equal(afterward.body.sfu, cityUrl, 'the foreign node is passed over for the nearest allowed one');
    await h.call(leader, 'POST', `/api/meetings/${m.body.id}/end`);
  });
});
