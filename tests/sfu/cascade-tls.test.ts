// The cascade's control link over WSS: a child checks its parent's certificate (SHA-256 pin of the
// parent's CA or leaf, or a CA file) BEFORE its node token leaves it. Real parent node (SfuNode with
// its /cascade endpoint) behind the HTTPS front `npm start` uses, with a certificate from the local CA.
import assert from 'node:assert/strict';
import http from 'node:http';
import { after, before, test } from 'node:test';
import { loadConfig } from '../../infra/config.ts';
import { createLogger } from '../../infra/logger.ts';
import { nodeOptionsFromConfig } from '../../sfu/nodeOptionsFromConfig.ts';
import { waitFor } from '../support/cascade-harness.ts';
import { signNodeToken } from '../../infra/tokens.ts';
import { localCertificates, type TlsMaterial } from '../../infra/tls/certificates.ts';
import { listenHttpsFront, type HttpsFront } from '../../infra/tls/https-front.ts';
import { ParentLink, type ParentTlsOptions } from '../../sfu/cascade/ParentLink.ts';
import { SfuNode } from '../../sfu/SfuNode.ts';
import { tmpDir } from '../support/browser.ts';
import { CASCADE_SECRET } from '../support/cascade-harness.ts';
import { TEST_JOIN_KEYS } from '../support/join-keys.ts';
import { rtcPortRange } from '../support/rtc-ports.ts';

const ports = rtcPortRange(100);
let parent: SfuNode;
let server: http.Server;
let front: HttpsFront;
let material: TlsMaterial;
let otherCa: TlsMaterial;
/** Authorization headers of the upgrade requests that reached the parent. */
const seenTokens: string[] = [];
/** TCP connections to the parent's port (a child refusing the pin still gets this far). */
let tcpConnections = 0;
const nodeIdIn = (authorization: string): string => (JSON.parse(Buffer.from(authorization.split('.')[1] ?? '', 'base64url').toString()) as { nodeId?: string }).nodeId ?? '';

before(async () => {
  material = await localCertificates(tmpDir('cascade-tls-'), ['127.0.0.1']);
  otherCa = await localCertificates(tmpDir('cascade-tls-other-'), ['127.0.0.1']);
  parent = new SfuNode({
    joinKey: TEST_JOIN_KEYS.publicKey,
    numWorkers: 1,
    listenIp: '127.0.0.1',
    webRtcBasePort: 0,
    rtcMinPort: ports.rtcMinPort,
    rtcMaxPort: ports.rtcMaxPort,
    logger: createLogger('sfu-city'),
    cascade: { nodeId: 'city', unitId: 1, secret: CASCADE_SECRET, pipeListenIp: '127.0.0.1', admission: 'open', pingIntervalMs: 1000 },
  });
  await parent.start();
  server = http.createServer((_req, res) => res.end());
  server.on('upgrade', (req) => seenTokens.push(String(req.headers.authorization)));
  parent.attach(server, '/sfu');
  front = await listenHttpsFront(server, { host: '127.0.0.1', port: 0, tls: material });
  front.server.on('connection', () => void tcpConnections++);
});

after(async () => {
  server.close();
  await parent.close();
  ports.release();
});

/** Dials the parent as node `nodeId`; resolves with the first outcome: the link up, or the certificate refused. */
async function dial(nodeId: string, tls: ParentTlsOptions | undefined): Promise<{ outcome: 'up' | 'refused'; reason?: string; link: ParentLink }> {
  const link = new ParentLink({
    url: `wss://127.0.0.1:${front.port}/cascade`,
    token: () => signNodeToken(CASCADE_SECRET, { nodeId, unitId: 2 }, 120),
    logger: createLogger(`sfu-${nodeId}`),
    pingIntervalMs: 1000,
    requestTimeoutMs: 5000,
    backoffMinMs: 100,
    backoffMaxMs: 1000,
    ...(tls ? { tls } : {}),
  });
  const outcome = new Promise<{ outcome: 'up' | 'refused'; reason?: string; link: ParentLink }>((resolve) => {
    link.once('up', () => resolve({ outcome: 'up', link }));
    link.once('tlsrefused', (reason) => resolve({ outcome: 'refused', reason, link }));
  });
  link.start();
  return outcome;
}

test('a child with the parent CA pinned links up over WSS; the parent sees it as its child', async () => {
  const r = await dial('county-pin', { fingerprint256: material.fingerprint256 });
  try {
    assert.equal(r.outcome, 'up');
    assert.ok(seenTokens.some((t) => t.startsWith('Bearer ')), 'the token reached the parent over TLS');
    assert.ok(parent.cascade!.children.includes('county-pin'), `children: ${parent.cascade!.children.join(',')}`);
  } finally {
    r.link.close();
  }
});

test('a child refuses a parent whose certificate does not match the pin, and sends it no token', async () => {
  const before = seenTokens.length;
  const r = await dial('county-wrong-pin', { fingerprint256: otherCa.fingerprint256 });
  r.link.close();
  assert.equal(r.outcome, 'refused');
  assert.match(r.reason ?? '', /pinned fingerprint/);
  assert.equal(seenTokens.length, before, 'no upgrade request (and so no node token) reached the parent');
  assert.ok(!parent.cascade!.children.includes('county-wrong-pin'));
});

test('CA-checked: the parent CA file is accepted, another CA and the system trust store are refused', async () => {
  const ok = await dial('county-ca', { ca: material.caPem! });
  ok.link.close();
  assert.equal(ok.outcome, 'up');
  const before = seenTokens.length;
  const wrong = await dial('county-other-ca', { ca: otherCa.caPem! });
  wrong.link.close();
  assert.equal(wrong.outcome, 'refused');
  assert.match(wrong.reason ?? '', /self[- ]signed|unable to verify|certificate/i);
  const none = await dial('county-no-trust', undefined);
  none.link.close();
  assert.equal(none.outcome, 'refused');
  assert.equal(seenTokens.length, before, 'no token went to a parent that failed the check');
});

test('configured as in production (SFU_PARENT_URL wss://, SFU_PARENT_FINGERPRINT): the pinned child joins, the mis-pinned one never does', async () => {
  const childPorts = rtcPortRange(200);
  const node = (nodeId: string, fingerprint: string): SfuNode => {
    const config = loadConfig({
      DATA_DIR: tmpDir(`cascade-tls-${nodeId}-`),
      SFU_NODE_ID: nodeId,
      SFU_UNIT_ID: '2',
      SFU_PARENT_URL: `wss://127.0.0.1:${front.port}/cascade`,
      SFU_PARENT_FINGERPRINT: fingerprint,
      SFU_CASCADE_SECRET: CASCADE_SECRET,
      SFU_NUM_WORKERS: '1',
      SFU_RTC_PORT: '0',
      SFU_RTC_MIN_PORT: String(nodeId === 'town-pinned' ? childPorts.rtcMinPort : childPorts.rtcMinPort + 100),
      SFU_RTC_MAX_PORT: String(nodeId === 'town-pinned' ? childPorts.rtcMinPort + 99 : childPorts.rtcMaxPort),
    });
    return new SfuNode(nodeOptionsFromConfig(config, { joinKey: TEST_JOIN_KEYS.publicKey, cascadeSecret: CASCADE_SECRET }, createLogger(`sfu-${nodeId}`)));
  };
  const wrong = node('town-mispinned', otherCa.fingerprint256.toLowerCase());
  const right = node('town-pinned', material.fingerprint256);
  const connectionsBefore = tcpConnections;
  try {
    await wrong.start();
    await right.start();
    await waitFor('the pinned child is linked', () => parent.cascade!.children.includes('town-pinned'), 20_000);
    // Both dialled (the mis-pinned one again after its backoff); only the pinned one went further.
    await waitFor('the mis-pinned child has tried', () => tcpConnections - connectionsBefore >= 3, 20_000);
    assert.ok(!parent.cascade!.children.includes('town-mispinned'));
    assert.ok(!seenTokens.map(nodeIdIn).includes('town-mispinned'), 'the mis-pinned child never sent its node token');
    assert.ok(seenTokens.map(nodeIdIn).includes('town-pinned'));
  } finally {
    await wrong.close();
    await right.close();
    childPorts.release();
  }
});
