// The pieces behind HTTPS by default: the local CA and its leaf (openssl from Debian), the operator's
// own files, the one-port front (TLS for everyone, plain HTTP only for this host), the config rules, and
// TURN REST credentials. The browser-level proof is https-kiosk-turn.test.ts.
import assert from 'node:assert/strict';
import { createHmac, X509Certificate } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import path from 'node:path';
import { test } from 'node:test';
import { loadConfig } from '../../infra/config.ts';
import { createLogger } from '../../infra/logger.ts';
import { localCertificates, operatorCertificates } from '../../infra/tls/certificates.ts';
import { listenWeb, tlsWanted } from '../../infra/tls/web-listener.ts';
import { TurnCredentials } from '../../infra/turn/TurnCredentials.ts';
import { turnUrls } from '../../infra/turn/turn-from-config.ts';
import { tmpDir } from '../support/browser.ts';

test('the local CA signs a leaf for the configured hosts; a host change re-issues the leaf under the same CA', async () => {
  const dir = tmpDir('local-ca-');
  const a = await localCertificates(dir, ['192.0.2.10', 'node.county.example']);
  const ca = new X509Certificate(a.caPem!);
  const leaf = new X509Certificate(a.cert);
  assert.ok(ca.ca, 'the CA certificate is a CA');
  assert.ok(leaf.verify(ca.publicKey), 'the leaf is signed by the CA');
  assert.match(leaf.subjectAltName ?? '', /IP Address:192\.0\.2\.10/);
  assert.match(leaf.subjectAltName ?? '', /DNS:node\.county\.example/);
  assert.ok(leaf.checkIP('192.0.2.10') && !leaf.checkIP('192.0.2.11'));
  assert.equal(a.fingerprint256, ca.fingerprint256, 'what children pin: the CA');
  assert.equal(fs.statSync(path.join(dir, 'ca.key')).mode & 0o077, 0, 'the CA key is private to its owner');
  const again = await localCertificates(dir, ['node.county.example', '192.0.2.10']);
  assert.equal(new X509Certificate(again.cert).serialNumber, leaf.serialNumber, 'same hosts: the same leaf');
  const moved = await localCertificates(dir, ['192.0.2.20']);
  assert.equal(moved.fingerprint256, a.fingerprint256, 'the CA stays (kiosks keep trusting it)');
  assert.ok(new X509Certificate(moved.cert).checkIP('192.0.2.20'));
  assert.notEqual(new X509Certificate(moved.cert).serialNumber, leaf.serialNumber);
  await assert.rejects(localCertificates(dir, ['0.0.0.0']), /no host name/);
  await assert.rejects(localCertificates(dir, ['bad host;rm']), /not a host name/);
});

test("the operator's files are used as given; a key that does not belong to the certificate is refused", async () => {
  const one = await localCertificates(tmpDir('org-ca-'), ['192.0.2.30']);
  const other = await localCertificates(tmpDir('org-ca2-'), ['192.0.2.30']);
  const dir = tmpDir('org-files-');
  const w = (name: string, text: string) => (fs.writeFileSync(path.join(dir, name), text), path.join(dir, name));
  const m = operatorCertificates({ certFile: w('cert.pem', one.cert), keyFile: w('key.pem', one.key), caFile: w('ca.pem', one.caPem!) });
  assert.equal(m.source, 'operator');
  assert.equal(m.caPem, one.caPem);
  assert.throws(() => operatorCertificates({ certFile: path.join(dir, 'cert.pem'), keyFile: w('other.pem', other.key) }), /does not belong/);
});

test('TLS by default beyond loopback; certificate files come in pairs; TURN needs its secret', () => {
  const cfg = (env: Record<string, string>) => loadConfig({ DATA_DIR: tmpDir('cfg-'), ...env });
  assert.equal(tlsWanted(cfg({})), false, 'loopback: plain HTTP');
  assert.equal(tlsWanted(cfg({ HTTP_HOST: '192.0.2.2' })), true);
  assert.equal(tlsWanted(cfg({ HTTP_HOST: '0.0.0.0' })), true);
  assert.equal(tlsWanted(cfg({ HTTP_HOST: '192.0.2.2', TLS_MODE: 'off' })), false, 'behind a TLS-terminating proxy');
  assert.throws(() => cfg({ TLS_CERT_FILE: '/x.pem' }), /TLS_KEY_FILE/);
  assert.throws(() => cfg({ TURN_ENABLED: 'true' }), /TURN_SECRET/);
  assert.throws(() => cfg({ SFU_PARENT_FINGERPRINT: 'AB:CD' }), /SFU_PARENT_FINGERPRINT/);
  const c = cfg({ HTTP_HOST: '192.0.2.2', TURN_ENABLED: 'true', TURN_SECRET: 'x'.repeat(20) });
  assert.deepEqual(turnUrls(c), ['turn:192.0.2.2:3478?transport=udp', 'turn:192.0.2.2:3478?transport=tcp', 'turns:192.0.2.2:5349?transport=tcp']);
});

test('TURN REST credentials: <expiry>:<userId>, base64 HMAC-SHA1 of it with the shared secret', () => {
  const creds = new TurnCredentials({ urls: ['turns:turn.example:5349?transport=tcp'], secret: 's'.repeat(24), ttlSeconds: 600 });
  const c = creds.issue(42, Date.UTC(2026, 0, 1));
  assert.equal(c.username, `${Date.UTC(2026, 0, 1) / 1000 + 600}:42`);
  assert.equal(c.credential, createHmac('sha1', 's'.repeat(24)).update(c.username).digest('base64'));
  assert.notEqual(creds.issue(43, Date.UTC(2026, 0, 1)).credential, c.credential, 'one person cannot use another\'s');
  assert.throws(() => new TurnCredentials({ urls: ['http://x'], secret: 's'.repeat(24), ttlSeconds: 60 }), /turn: or turns:/);
});

test('one port: HTTPS and WSS for everyone, plain HTTP still for this host (loopback)', async () => {
  const dataDir = tmpDir('front-');
  const config = loadConfig({ DATA_DIR: dataDir, HTTP_HOST: '127.0.0.1', HTTP_PORT: '0', TLS_MODE: 'on' });
  const app = http.createServer((req, res) => res.end(`app ${req.url} secure=${(req.socket as { encrypted?: boolean }).encrypted === true}`));
  const url = await listenWeb(app, config, createLogger('front-test'));
  try {
    assert.match(url, /^https:\/\/127\.0\.0\.1:\d+\/$/);
    const port = Number(new URL(url).port);
    const ca = fs.readFileSync(path.join(dataDir, 'tls', 'ca.crt'), 'utf8');
    const viaTls = await new Promise<string>((resolve, reject) => {
      https.get({ host: '127.0.0.1', port, path: '/x', ca }, (res) => {
        let body = '';
        res.on('data', (d: Buffer) => (body += d.toString()));
        res.on('end', () => resolve(body));
      }).on('error', reject);
    });
    assert.equal(viaTls, 'app /x secure=true', 'checked against the local CA, served by the app');
    await assert.rejects(
      new Promise((resolve, reject) => https.get({ host: '127.0.0.1', port, path: '/' }, resolve).on('error', reject)),
      /self[- ]signed|unable to verify/,
      'without the CA a client refuses it',
    );
    const plain = await fetch(`http://127.0.0.1:${port}/y`);
    assert.equal(await plain.text(), 'app /y secure=false', 'this host\'s own tools may still speak plain HTTP');
  } finally {
    app.close();
  }
});

test('a broken client (garbage after a TLS record byte, a bare connection, a cut handshake) costs the front nothing', async () => {
  const config = loadConfig({ DATA_DIR: tmpDir('front-bad-'), HTTP_HOST: '127.0.0.1', HTTP_PORT: '0', TLS_MODE: 'on' });
  const app = http.createServer((_req, res) => res.end('ok'));
  const port = Number(new URL(await listenWeb(app, config, createLogger('front-test'))).port);
  try {
    const closed = (bytes: Buffer | undefined) =>
      new Promise<void>((resolve) => {
        const s = net.connect(port, '127.0.0.1', () => {
          // Half-closed after its bytes: the server sees the stream end mid-record.
          if (bytes) s.end(bytes);
          else s.destroy();
        });
        s.on('error', () => undefined);
        s.on('close', () => resolve());
        if (bytes) s.on('data', () => undefined);
      });
    await closed(Buffer.concat([Buffer.from([0x16, 0x03, 0x01, 0x00, 0x05]), Buffer.from('garbagegarbage')]));
    await closed(undefined);
    await closed(Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01]));
    const ca = fs.readFileSync(path.join(config.DATA_DIR, 'tls', 'ca.crt'), 'utf8');
    const status = await new Promise<number>((resolve, reject) => https.get({ host: '127.0.0.1', port, ca }, (res) => (res.resume(), resolve(res.statusCode ?? 0))).on('error', reject));
    assert.equal(status, 200, 'still serving');
  } finally {
    app.close();
  }
});
