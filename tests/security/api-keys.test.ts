import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import type http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import WebSocket from 'ws';
import { hashPassword } from '../../infra/auth/password.ts';
import { loadConfig, type Config } from '../../infra/config.ts';
import { createLogger } from '../../infra/logger.ts';
import { loadSystemKeys, type SystemKeys } from '../../infra/secret.ts';
import { signAccessToken, signNodeToken } from '../../infra/tokens.ts';
import { SfuNode } from '../../sfu/SfuNode.ts';
import { nodeOptionsFromConfig } from '../../sfu/nodeOptionsFromConfig.ts';
import { createWebServer } from '../../web/server.ts';
import { tmpDir } from '../support/browser.ts';
import { createTestDatabase, type TestDatabase } from '../support/database.ts';
import { rtcPortRange } from '../support/rtc-ports.ts';

const rtcRange = rtcPortRange(100); // released when the process exits

// Attack: a village SFU node holds the cascade's shared secret. With it, it signs an `api` token for
// the city administrator; and someone holding the API's key signs a node token for the cascade. The
// combined system is assembled exactly as infra/system.ts does (loadSystemKeys, nodeOptionsFromConfig,
// createWebServer) from a production-like configuration, and both forgeries must be refused.

const b64 = (n: number): string => crypto.randomBytes(n).toString('base64url');

async function upgrade(url: string, token: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { headers: { authorization: `Bearer ${token}` } });
    ws.once('open', () => (ws.close(), resolve(101)));
    ws.once('unexpected-response', (_req, res) => (res.resume(), resolve(res.statusCode ?? 0)));
    ws.once('error', reject);
  });
}

describe('one key per purpose: the cascade secret cannot sign for the API, nor the API key for the cascade', { timeout: 60_000 }, () => {
  let db: TestDatabase;
  let config: Config;
  let keys: SystemKeys;
  let sfu: SfuNode;
  let server: http.Server;
  let base: string;
  let admin: { userId: number; username: string; role: 'admin'; unitId: number };

  before(async () => {
    db = await createTestDatabase();
    const { rows } = await db.pool.query<{ id: number }>(`INSERT INTO units (level, name) VALUES ('city', '潍坊市') RETURNING id`);
    const cityId = rows[0]!.id;
    const user = await db.pool.query<{ id: number }>(
      `INSERT INTO users (username, display_name, unit_id, role, password_hash) VALUES ('wf.admin', '市管理员', $1, 'admin', $2) RETURNING id`,
      [cityId, await hashPassword(b64(12))],
    );
    admin = { userId: user.rows[0]!.id, username: 'wf.admin', role: 'admin', unitId: cityId };
    // Production: TOKEN_SECRET set for the API, the cascade secret generated into DATA_DIR and copied to the nodes.
    config = loadConfig({
      DATA_DIR: tmpDir('keys-data-'),
      TOKEN_SECRET: b64(32),
      SFU_NODE_ID: 'city',
      SFU_UNIT_ID: String(cityId),
      SFU_NUM_WORKERS: '1',
      SFU_RTC_PORT: '0',
      SFU_RTC_MIN_PORT: String(rtcRange.rtcMinPort),
      SFU_RTC_MAX_PORT: String(rtcRange.rtcMaxPort),
    });
    keys = loadSystemKeys(config);
    sfu = new SfuNode(nodeOptionsFromConfig(config, { joinKey: keys.join.publicKey, cascadeSecret: keys.cascadeSecret }, createLogger('keys-test')));
    await sfu.start();
    server = createWebServer({ pool: db.pool, tokenSecret: keys.accessSecret, joinKey: keys.join.privateKey, sfu });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    base = `127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  after(async () => {
    server?.closeAllConnections();
    await new Promise((r) => server?.close(r));
    await sfu?.close();
    await db?.drop();
  });

  const me = async (token: string) => (await fetch(`http://${base}/api/auth/me`, { headers: { authorization: `Bearer ${token}` } })).status;

  test('the secret a node holds is none of the API’s', () => {
    const onDisk = fs.readFileSync(path.join(config.DATA_DIR, 'cascade-secret'), 'utf8').trim();
    assert.equal(onDisk, keys.cascadeSecret, 'the node secret an operator copies is the generated file');
    assert.notEqual(keys.cascadeSecret, keys.accessSecret);
    assert.notEqual(keys.cascadeSecret, config.TOKEN_SECRET);
    assert.notEqual(keys.accessSecret, config.TOKEN_SECRET, 'the access key is derived, not the master itself');
  });

  test('an api token for the city admin signed with the cascade secret is refused by the API', async () => {
    assert.equal(await me(await signAccessToken(keys.accessSecret, admin)), 200, 'control: the API’s own key works');
    assert.equal(await me(await signAccessToken(keys.cascadeSecret, admin)), 401, 'signed with the cascade secret');
    assert.equal(await me(await signNodeToken(keys.cascadeSecret, { nodeId: 'village', unitId: admin.unitId })), 401, 'a node token is no session');
    assert.equal(await me(await signNodeToken(keys.accessSecret, { nodeId: 'village', unitId: admin.unitId })), 401, 'nor one signed with the API key');
  });

  test('a node token signed with the API’s key (or its master) is refused by the cascade', async () => {
    const cascade = `ws://${base}/cascade`;
    const claims = { nodeId: 'village-1', unitId: admin.unitId };
    assert.equal(await upgrade(cascade, await signNodeToken(keys.cascadeSecret, claims)), 101, 'control: a real node gets in');
    assert.equal(await upgrade(cascade, await signNodeToken(keys.accessSecret, { ...claims, nodeId: 'village-2' })), 401, 'signed with the access key');
    assert.equal(await upgrade(cascade, await signNodeToken(config.TOKEN_SECRET!, { ...claims, nodeId: 'village-3' })), 401, 'signed with the master');
    assert.equal(await upgrade(cascade, await signAccessToken(keys.cascadeSecret, admin)), 401, 'an api token is no node token');
  });

  test('a configuration giving both purposes one secret does not start', () => {
    const same = b64(32);
    assert.throws(() => loadConfig({ TOKEN_SECRET: same, SFU_CASCADE_SECRET: same }), /SFU_CASCADE_SECRET: must differ from TOKEN_SECRET/);
    // Without TOKEN_SECRET both are generated, separately, into the data folder.
    const fresh = loadSystemKeys(loadConfig({ DATA_DIR: tmpDir('keys-fresh-') }));
    assert.notEqual(fresh.accessSecret, fresh.cascadeSecret);
  });
});
