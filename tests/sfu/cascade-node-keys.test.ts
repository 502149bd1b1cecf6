import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import WebSocket from 'ws';
import { childKeysIn } from '../../infra/secret.ts';
import { generateKeyPair, signNodeToken } from '../../infra/tokens.ts';
import { tmpDir } from '../support/browser.ts';
import { CASCADE_SECRET, startChain, type TreeNode } from '../support/cascade-harness.ts';

// Per-node keys on the cascade's control links (SFU_NODE_AUTH=key): the village signs its token to the
// town with its own private key, and the town accepts a child only with a token that the public key
// registered for the claimed node id (`<nodeId>.pub.pem` in its child-keys folder) verifies. Another
// node's key, the shared secret, or an unregistered node id get 401 before any WebSocket exists.

describe('cascade links with per-node keys: a node speaks only for itself', { timeout: 30_000 }, () => {
  const village = generateKeyPair();
  const intruder = generateKeyPair();
  let town: TreeNode;
  let child: TreeNode;

  before(async () => {
    const keysDir = tmpDir('child-keys-');
    fs.writeFileSync(path.join(keysDir, 'village.pub.pem'), village.publicKey.export({ type: 'spki', format: 'pem' }));
    [town, child] = (await startChain(['town', 'village'], {
      nodeAuthFor: (name) => (name === 'town' ? { childKey: childKeysIn(keysDir) } : { nodeKey: village.privateKey }),
    })) as [TreeNode, TreeNode];
  });

  after(async () => {
    await child?.stop();
    await town?.stop();
  });

  /** The HTTP status the town answers a child's WebSocket upgrade with. */
  const upgradeStatus = (token: string): Promise<number> =>
    new Promise((resolve, reject) => {
      const ws = new WebSocket(town.cascadeUrl, { headers: { authorization: `Bearer ${token}` } });
      ws.once('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
      ws.once('open', () => {
        ws.close();
        resolve(101);
      });
      ws.once('error', (err) => (err.message.includes('Unexpected server response') ? undefined : reject(err)));
    });

  test('the registered village connects; another key, the shared secret and unknown ids are refused', async () => {
    assert.equal(child.node.cascade!.parentConnected, true, 'the village is linked with its own key');
    assert.deepEqual(town.node.cascade!.children, ['village']);
    const claims = { nodeId: 'village', unitId: 2 };
    assert.equal(await upgradeStatus(await signNodeToken(intruder.privateKey, claims)), 401, 'another key claiming to be the village');
    assert.equal(await upgradeStatus(await signNodeToken(CASCADE_SECRET, claims)), 401, 'the shared secret is not accepted in key mode');
    assert.equal(await upgradeStatus(await signNodeToken(intruder.privateKey, { nodeId: 'intruder', unitId: 9 })), 401, 'a node with no registered key');
    assert.equal(await upgradeStatus('not-a-token'), 401);
    // A second link with the village's own key is refused while the village's link answers pings
    // (one live link per node id; a restarted village, whose old link is dead, replaces it).
    assert.equal(await upgradeStatus(await signNodeToken(village.privateKey, claims)), 409);
    assert.equal(child.node.cascade!.parentConnected, true, 'the live link is untouched');
  });
});
