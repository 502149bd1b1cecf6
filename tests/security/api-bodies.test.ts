import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { generateDemoOrganisation } from '../../infra/demo/generate.ts';
import { startHarness, type Harness } from '../api/harness.ts';

// Attack: make the API read and parse megabytes without signing in (the org import took 20 MB
// before authentication), or more than a route needs after. Each upload declares its full size but
// sends only its first 64 kB, then waits: the answer must come while the body is still unsent (a
// server that reads the body first would never answer), and the server closes the connection
// instead of draining the rest.

const MB = 1024 * 1024;
const PREFIX = 64 * 1024;

interface Upload {
  status: number;
  body: { error?: { code: string } };
  connection: string | undefined;
}

function upload(base: string, path: string, size: number, headers: Record<string, string>): Promise<Upload> {
  const url = new URL(path, base);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => (req.destroy(), reject(new Error(`${path}: no answer within 10 s while the body was unsent`))), 10_000);
    const req = http.request({ host: url.hostname, port: url.port, path: url.pathname + url.search, method: 'POST', headers: { 'content-length': String(size), ...headers } });
    req.on('response', (res) => {
      clearTimeout(timer);
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        req.destroy();
        resolve({ status: res.statusCode ?? 0, body: JSON.parse(Buffer.concat(chunks).toString() || '{}') as Upload['body'], connection: res.headers.connection });
      });
    });
    req.on('error', () => undefined); // the server closing an unread body is the point
    req.write(Buffer.alloc(Math.min(PREFIX, size), 'a'));
  });
}

describe('bodies are read only after authentication, and bounded per route', { timeout: 120_000 }, () => {
  let h: Harness;
  let admin: string;
  let leader: string;

  before(async () => {
    h = await startHarness();
    const demo = await generateDemoOrganisation(h.db.pool, { towns: 2, communities: 2, villages: 4 });
    admin = await h.login('wf.admin', demo.password);
    leader = await h.login('wf.leader', demo.password);
  });
  after(async () => h?.close());

  test('an anonymous 20 MB org import is refused with 401 before its body is sent', async () => {
    const r = await upload(h.base, '/api/org/import', 20 * MB, { 'content-type': 'text/csv' });
    assert.equal(r.status, 401);
    assert.equal(r.body.error?.code, 'unauthenticated');
    assert.equal(r.connection, 'close', 'the rest is not drained');
  });

  test('a signed-in role that may not import is refused with 403 before its body is sent', async () => {
    const r = await upload(h.base, '/api/org/import', 20 * MB, { 'content-type': 'text/csv', authorization: `Bearer ${leader}` });
    assert.equal(r.status, 403);
    assert.equal(r.connection, 'close');
  });

  test('an admin’s import larger than the limit is refused from its declared length', async () => {
    const r = await upload(h.base, '/api/org/import', 21 * MB, { 'content-type': 'text/csv', authorization: `Bearer ${admin}` });
    assert.equal(r.status, 413);
    assert.equal(r.body.error?.code, 'too_large');
  });

  test('anonymous JSON bodies to any non-public route are not read', async () => {
    for (const path of ['/api/units', '/api/meetings', '/api/service-calls', '/api/no-such-route']) {
      const r = await upload(h.base, path, 8 * MB, { 'content-type': 'application/json' });
      assert.ok(r.status === 401 || r.status === 404, `${path}: ${r.status}`);
      assert.equal(r.connection, 'close', path);
    }
  });

  test('sign-in takes a small body; signed-in JSON is bounded too', async () => {
    const login = await upload(h.base, '/api/auth/login', 64 * 1024, { 'content-type': 'application/json' });
    assert.equal(login.status, 413, 'a sign-in body is a name and a password');
    const big = await upload(h.base, '/api/units', 2 * MB, { 'content-type': 'application/json', authorization: `Bearer ${admin}` });
    assert.equal(big.status, 413);
    // The API still answers normally afterwards.
    const ok = await fetch(`${h.base}/api/auth/me`, { headers: { authorization: `Bearer ${admin}` } });
    assert.equal(ok.status, 200);
  });

  test('list routes refuse page sizes beyond their bound', async () => {
    for (const path of ['/api/units?limit=100000', '/api/audit?limit=100000', '/api/cameras?limit=501', '/api/users?limit=10000', '/api/units?offset=99999999']) {
      const r = await fetch(h.base + path, { headers: { authorization: `Bearer ${admin}` } });
      assert.equal(r.status, 400, `${path}: ${r.status} ${await r.text()}`);
    }
  });
});
