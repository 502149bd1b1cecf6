import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import WebSocket from 'ws';
import { hashPassword } from '../../infra/auth/password.ts';
import { createLogger } from '../../infra/logger.ts';
import { generateKeyPair, signNodeToken } from '../../infra/tokens.ts';
import { EnrolmentClient } from '../../sfu/cascade/EnrolmentClient.ts';
import { EnrolmentError } from '../../sfu/cascade/EnrolmentError.ts';
import { EnrolledKeys, verifyEnrolledNodeToken } from '../../sfu/cascade/EnrolmentKeys.ts';
import { ApiChildKeys } from '../../sfu/cascade/EnrolmentChildKeys.ts';
import { EnrolmentReporter } from '../../sfu/cascade/EnrolmentReporter.ts';
import { signNodeProof } from '../../sfu/cascade/EnrolmentProof.ts';
import { tmpDir } from '../support/browser.ts';
import { TreeNode, waitFor } from '../support/cascade-harness.ts';
import { rtcPortRange } from '../support/rtc-ports.ts';
import { startHarness, type Harness } from './harness.ts';
import { SfuDirectory } from '../../web/api/sfu-directory.ts';

// Node enrolment end to end (issue 14 item 3) with a real API over PostgreSQL and real cascade nodes:
// the county operator registers a town node and gets a one-time code; the town makes its key pair and
// enrols with the code; the county node (which reads enrolled keys from the database at every
// connection attempt) then accepts its link. A reused, unknown or expired code is refused; the key
// rotates without the link ever lacking a valid key; a revoked town is dropped and refused on its next
// attempts; another county's operator gets 404 for all of it.

const PASSWORD = 'enrol-test-pw-2026';

/** Enrolment answers refused: the API's status and code. */
async function refusal(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (err) {
    if (err instanceof EnrolmentError) return `${err.status} ${err.code}`;
    throw err;
  }
  return 'accepted';
}

describe('node enrolment: one-time code, parent admission, rotation, revocation', { timeout: 60_000 }, () => {
  let h: Harness;
  let county: TreeNode;
  let town: TreeNode | undefined;
  let opA: string;
  let opB: string;
  let townNodeId = 0;
  let townUnit = 0;
  let client: EnrolmentClient;
  let code = '';
  let countyClient: EnrolmentClient;
  let remoteKeys: ApiChildKeys | undefined;
  const keysDir = tmpDir('enrolled-child-keys-');
  /** Connection attempts the county checked for the town's node id (each one reads the database). */
  const lookups = new Map<string, number>();

  before(async () => {
    h = await startHarness({
      nodeEnrolment: { childKeysDir: keysDir, onRevoke: (id) => county.node.cascade!.dropChild(id, 'revoked') },
    });
    const pool = h.db.pool;
    const city = (await pool.query<{ id: number }>(`INSERT INTO units (level, name) VALUES ('city', '潍坊市') RETURNING id`)).rows[0]!.id;
    const countyA = (await pool.query<{ id: number }>(`INSERT INTO units (parent_id, level, name) VALUES ($1, 'county', '寿光市') RETURNING id`, [city])).rows[0]!.id;
    const countyB = (await pool.query<{ id: number }>(`INSERT INTO units (parent_id, level, name) VALUES ($1, 'county', '青州市') RETURNING id`, [city])).rows[0]!.id;
    townUnit = (await pool.query<{ id: number }>(`INSERT INTO units (parent_id, level, name) VALUES ($1, 'town', '洛城街道') RETURNING id`, [countyA])).rows[0]!.id;
    const hash = await hashPassword(PASSWORD);
    for (const [u, unit] of [['op.a', countyA], ['op.b', countyB]] as const) {
      await pool.query(`INSERT INTO users (username, display_name, unit_id, role, password_hash) VALUES ($1, '运维', $2, 'operator', $3)`, [u, unit, hash]);
    }
    opA = await h.login('op.a', PASSWORD);
    opB = await h.login('op.b', PASSWORD);

    // The county's node: its children's keys come from the database, only for nodes linked below it.
    const enrolled = new EnrolledKeys(pool, 'county-a');
    county = new TreeNode('county-a', countyA, undefined, {
      ...rtcPortRange(200),
      nodeAuthFor: () => ({
        childKeys: async (nodeId) => {
          lookups.set(nodeId, (lookups.get(nodeId) ?? 0) + 1);
          return enrolled.lookup(nodeId);
        },
      }),
    });
    await county.start();
    const c = await h.call('POST', '/api/sfu-nodes', { token: opA, body: { unit_id: countyA, name: '寿光市节点', signalling_url: county.wsUrl } });
    assert.equal(c.status, 201, c.text);
    await pool.query(`UPDATE sfu_nodes SET cascade_id = 'county-a' WHERE id = $1`, [(c.body as { id: number }).id]);
    const t = await h.call('POST', '/api/sfu-nodes', { token: opA, body: { unit_id: townUnit, name: '洛城街道节点', signalling_url: 'ws://127.0.0.1:9/sfu' } });
    assert.equal(t.status, 201, t.text);
    townNodeId = (t.body as { id: number }).id;
    client = new EnrolmentClient(h.base, tmpDir('town-node-data-'));
  });

  after(async () => {
    await town?.stop();
    await county?.stop();
    await h?.close();
  });

  /** The status the county answers a control-link upgrade with: 401 bad key, 409 a good key while the link is live, 101 accepted. */
  const upgradeStatus = (token: string): Promise<number> =>
    new Promise((resolve, reject) => {
      const ws = new WebSocket(county.cascadeUrl, { headers: { authorization: `Bearer ${token}` } });
      ws.once('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
      ws.once('open', () => {
        ws.close();
        resolve(101);
      });
      ws.once('error', (err) => (err.message.includes('Unexpected server response') ? undefined : reject(err)));
    });
  const tokenBy = (key: crypto.KeyObject, nodeId: string) => signNodeToken(key, { nodeId, unitId: townUnit });

  test("another county's operator gets 404 for the node, its code, its enrolment and its revocation", async () => {
    for (const [method, p] of [
      ['POST', `/api/sfu-nodes/${townNodeId}/enrolment-code`],
      ['GET', `/api/sfu-nodes/${townNodeId}/enrolment`],
      ['POST', `/api/sfu-nodes/${townNodeId}/revoke`],
      ['GET', `/api/sfu-nodes/${townNodeId}`],
    ] as const) {
      const r = await h.call(method, p, { token: opB });
      assert.equal(r.status, 404, `${method} ${p}: ${r.text}`);
    }
    const list = await h.call('GET', '/api/sfu-nodes', { token: opB });
    assert.deepEqual((list.body as { items: unknown[] }).items, []);
    const codes = await h.db.pool.query('SELECT 1 FROM sfu_node_enrolment_codes');
    assert.equal(codes.rowCount, 0, 'no code was made by the outsider');
  });

  test('the operator gets a one-time code, stored only hashed, and the town enrols with it and joins its parent', async () => {
    const r = await h.call('POST', `/api/sfu-nodes/${townNodeId}/enrolment-code`, { token: opA });
    assert.equal(r.status, 201, r.text);
    const answer = r.body as { code: string; cascade_id: string; expires_at: string };
    code = answer.code;
    assert.match(code, /^[A-Z2-9]{5}(-[A-Z2-9]{5}){4}$/);
    assert.ok(Date.parse(answer.expires_at) > Date.now() + 3600_000, 'valid for hours, not forever');
    const stored = await h.db.pool.query<{ code_hash: string }>('SELECT code_hash FROM sfu_node_enrolment_codes WHERE node_id = $1', [townNodeId]);
    assert.equal(stored.rows[0]!.code_hash, crypto.createHash('sha256').update(code.replace(/-/g, '')).digest('hex'));
    const state = await h.call('GET', `/api/sfu-nodes/${townNodeId}/enrolment`, { token: opA });
    assert.ok(!state.text.includes(code) && !state.text.includes(code.replace(/-/g, '')), 'the code is shown once, never again');
    assert.equal((state.body as { enrolled: boolean }).enrolled, false);

    // Before enrolment the town's id has no key at its parent.
    const stranger = generateKeyPair();
    assert.equal(await upgradeStatus(await tokenBy(stranger.privateKey, answer.cascade_id)), 401);

    const record = await client.enrol(code.toLowerCase());
    assert.equal(record.node_id, answer.cascade_id);
    assert.equal(record.unit_id, townUnit);
    assert.equal(record.parent?.cascade_url, county.cascadeUrl);
    assert.equal(fs.statSync(client.keyFile).mode & 0o777, 0o600, 'the private key is readable by the node only');
    assert.ok(fs.existsSync(path.join(keysDir, `${record.node_id}.pub.pem`)), "mirrored into the API node's child-keys folder");

    town = new TreeNode(record.node_id, record.unit_id, record.parent!.cascade_url, {
      ...rtcPortRange(200),
      nodeAuthFor: () => ({ nodeKey: () => client.currentKey() }),
    });
    await town.start();
    await waitFor('the enrolled town linked to the county', () => town!.node.cascade!.parentConnected && county.node.cascade!.children.includes(record.node_id));

    // The console's state: connected, with the town's load, from the town's signed report.
    await new EnrolmentReporter(town.node, client, createLogger('enrol-test')).reportNow();
    const nodes = await h.call('GET', `/api/sfu-nodes?unit_id=${townUnit}`, { token: opA });
    const row = (nodes.body as { items: Array<Record<string, unknown>> }).items[0]!;
    assert.equal(row.connected, true, nodes.text);
    assert.equal(row.enrolled, true);
    assert.equal((row.last_report as { parent_connected: boolean; rooms: number }).parent_connected, true);
    assert.equal(typeof (row.last_report as { cpu_percent: number }).cpu_percent, 'number');
  });

  test('a reused, unknown or expired code is refused and changes nothing', async () => {
    const otherDir = tmpDir('thief-node-data-');
    const other = new EnrolmentClient(h.base, otherDir);
    assert.equal(await refusal(other.enrol(code)), '409 enrolment_code_used');
    // The node-side command says the same and exits non-zero.
    // (asynchronously: the API answering it runs in this process)
    const cli = await new Promise<{ status: number | null; stderr: string }>((resolve) => {
      execFile(process.execPath, ['--import', 'tsx', 'sfu/bin/enrol.ts', 'enrol', '--api', h.base, '--data-dir', otherDir, '--code', code], { encoding: 'utf8', timeout: 60_000 }, (err, _out, stderr) =>
        resolve({ status: err ? ((err as { code?: number }).code ?? null) : 0, stderr }),
      );
    });
    assert.equal(cli.status, 1, cli.stderr);
    assert.match(cli.stderr, /409 enrolment_code_used: 注册码已使用过/);
    assert.equal(await refusal(other.enrol('AAAAA-BBBBB-CCCCC-DDDDD-EEEEE')), '401 enrolment_code_invalid');
    const r = await h.call('POST', `/api/sfu-nodes/${townNodeId}/enrolment-code`, { token: opA });
    await h.db.pool.query(`UPDATE sfu_node_enrolment_codes SET expires_at = now() - interval '1 second' WHERE node_id = $1 AND used_at IS NULL`, [townNodeId]);
    assert.equal(await refusal(other.enrol((r.body as { code: string }).code)), '410 enrolment_code_expired');
    assert.equal(fs.existsSync(path.join(otherDir, 'node-key.pem')), false, 'a refused node keeps no key');
    const keys = await h.db.pool.query<{ state: string }>('SELECT state FROM sfu_node_keys WHERE node_id = $1', [townNodeId]);
    assert.deepEqual(keys.rows.map((k) => k.state), ['active'], "the town's key is untouched");
    assert.equal(town!.node.cascade!.parentConnected, true);
  });

  test('rotation: both keys work until the new one is activated; the link re-attaches with the new key', async () => {
    const nodeId = client.record().node_id;
    const oldKey = client.currentKey();
    await client.rotate();
    const newKey = client.currentKey();
    assert.ok(fs.existsSync(path.join(keysDir, `${nodeId}.next.pub.pem`)));
    // 409 = the key is good (refused only because the town's live link answers).
    assert.equal(await upgradeStatus(await tokenBy(oldKey, nodeId)), 409, 'old key still accepted');
    assert.equal(await upgradeStatus(await tokenBy(newKey, nodeId)), 409, 'pending key accepted');
    // The link drops (a restart, a network cut): the town dials again, now with its new key.
    const connects = town!.node.cascade!.parentConnects;
    county.node.cascade!.dropChild(nodeId, 'test: cut');
    await waitFor('re-attached with the new key', () => town!.node.cascade!.parentConnects > connects && town!.node.cascade!.parentConnected);
    await client.activate();
    assert.equal(await upgradeStatus(await tokenBy(oldKey, nodeId)), 401, 'the old key is retired');
    assert.equal(await upgradeStatus(await tokenBy(newKey, nodeId)), 409);
    assert.ok(!fs.existsSync(path.join(keysDir, `${nodeId}.next.pub.pem`)));
    const keys = await h.db.pool.query<{ state: string }>('SELECT state FROM sfu_node_keys WHERE node_id = $1 ORDER BY id', [townNodeId]);
    assert.deepEqual(keys.rows.map((k) => k.state), ['retired', 'active']);
  });

  test('a parent on another host (no database) reads its enrolled children\'s keys from the API with its own key', async () => {
    // The county node enrols too (it keeps its id), then asks the API for its children's keys.
    const { rows } = await h.db.pool.query<{ id: number }>(`SELECT id FROM sfu_nodes WHERE cascade_id = 'county-a'`);
    const code = await h.call('POST', `/api/sfu-nodes/${rows[0]!.id}/enrolment-code`, { token: opA });
    countyClient = new EnrolmentClient(h.base, tmpDir('county-node-data-'));
    assert.equal((await countyClient.enrol((code.body as { code: string }).code)).node_id, 'county-a');
    remoteKeys = new ApiChildKeys(countyClient, createLogger('enrol-test'), { ttlMs: 0 });
    const nodeId = client.record().node_id;
    assert.equal((await verifyEnrolledNodeToken(remoteKeys.lookup, await tokenBy(client.currentKey(), nodeId))).nodeId, nodeId);
    await assert.rejects(verifyEnrolledNodeToken(remoteKeys.lookup, await tokenBy(generateKeyPair().privateKey, nodeId)));
    // Another key cannot pass itself off as the county; the town reads only its own children (none).
    const forged = await h.call('POST', '/api/node-enrolment/child-keys', { body: { proof: signNodeProof(generateKeyPair().privateKey, 'county-a', 'child-keys', null) } });
    assert.equal(forged.status, 401, forged.text);
    assert.deepEqual(await client.childKeys(), []);
  });

  test('nearest routing passes over a draining town (it says so at once) and takes it back after the upgrade', async () => {
    const { rows } = await h.db.pool.query<{ path: string; signalling_url: string }>(
      'SELECT u.path, n.signalling_url FROM units u JOIN sfu_nodes n ON n.unit_id = u.id WHERE u.id = $1',
      [townUnit],
    );
    const directory = new SfuDirectory(h.db.pool, 'nearest');
    assert.equal(await directory.urlFor(rows[0]!.path), rows[0]!.signalling_url, 'control: the town\'s people go to the town node');
    const reporter = new EnrolmentReporter(town!.node, client, createLogger('enrol-test'));
    reporter.start(3_600_000);
    try {
      town!.node.drain.start();
      await waitFor('the draining town is passed over for the county', async () => (await directory.urlFor(rows[0]!.path)) === county.wsUrl);
    } finally {
      reporter.stop();
    }
    // Restarted after its upgrade, the town's first report (signed with its key) says it is not draining.
    await client.report({ parent_connected: true, children: [], rooms: 0, peers: 0, cpu_percent: 0, draining: false });
    assert.equal(await directory.urlFor(rows[0]!.path), rows[0]!.signalling_url);
  });

  test('a revoked town is dropped and refused at every next attempt; its reports are refused', async () => {
    const nodeId = client.record().node_id;
    const down = new Promise<void>((resolve) => town!.node.cascade!.once('parentdown', () => resolve()));
    const r = await h.call('POST', `/api/sfu-nodes/${townNodeId}/revoke`, { token: opA });
    assert.equal(r.status, 200, r.text);
    assert.equal((r.body as { link_dropped: boolean }).link_dropped, true);
    await down;
    const seen = lookups.get(nodeId) ?? 0;
    await waitFor('the town dialled twice more', () => (lookups.get(nodeId) ?? 0) >= seen + 2, 15_000);
    assert.equal(town!.node.cascade!.parentConnected, false, 'refused on its next attempts');
    assert.ok(!county.node.cascade!.children.includes(nodeId));
    assert.equal(await upgradeStatus(await tokenBy(client.currentKey(), nodeId)), 401);
    assert.ok(!fs.existsSync(path.join(keysDir, `${nodeId}.pub.pem`)), 'removed from the child-keys folder');
    assert.equal(await refusal(client.report({ parent_connected: true, children: [], rooms: 0, peers: 0, cpu_percent: 0 })), '401 node_proof_invalid');
    assert.deepEqual(await remoteKeys!.lookup(nodeId), [], 'a parent on another host no longer gets its key');
    const unit = await h.db.pool.query<{ path: string }>('SELECT path FROM units WHERE id = $1', [townUnit]);
    assert.equal(await new SfuDirectory(h.db.pool, 'nearest').urlFor(unit.rows[0]!.path), county.wsUrl, 'nobody is routed to a revoked node');
    const state = await h.call('GET', `/api/sfu-nodes/${townNodeId}/enrolment`, { token: opA });
    const s = state.body as { revoked_at: string | null; connected: boolean };
    assert.ok(s.revoked_at);
    assert.equal(s.connected, false);
    const audit = await h.db.pool.query<{ action: string }>(`SELECT action FROM audit_log WHERE object_type = 'sfu_node' AND object_id = $1 ORDER BY id`, [String(townNodeId)]);
    assert.deepEqual(
      audit.rows.map((a) => a.action).filter((a) => a !== 'sfu_node.create'),
      ['sfu_node.enrolment_code', 'sfu_node.enrol', 'sfu_node.enrolment_code', 'sfu_node.key_pending', 'sfu_node.key_active', 'sfu_node.revoke'],
    );
  });
});
