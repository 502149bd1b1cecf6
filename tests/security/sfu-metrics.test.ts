import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { createWebServer } from '../../web/server.ts';
import { TEST_JOIN_KEYS } from '../support/join-keys.ts';
import { TEST_SECRET } from '../support/sfu-harness.ts';
import { startSystemHarness, type SystemHarness } from '../support/system-harness.ts';

// Attack 11 (metrics share) of issue 12: /metrics (rooms, peers, worker health) was served to anyone
// on the public listener. With a metrics token a scraper must present it; without one only this
// host's own, un-proxied requests are answered.

const TOKEN = 'metrics-token-for-the-test-0123456789';

function get(url: string, headers: Record<string, string> = {}): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    http
      .get(url, { agent: false, headers: { connection: 'close', ...headers } }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d) => (body += d));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      })
      .on('error', reject);
  });
}

describe('/metrics is not public', { timeout: 60_000 }, () => {
  let h: SystemHarness;
  let withToken: http.Server;
  let tokenUrl = '';

  before(async () => {
    h = await startSystemHarness({ towns: 1, communities: 1, villages: 2 });
    withToken = createWebServer({ pool: h.db.pool, tokenSecret: TEST_SECRET, joinKey: TEST_JOIN_KEYS.privateKey, sfu: h.sfu, metricsToken: TOKEN });
    await new Promise<void>((r) => withToken.listen(0, '127.0.0.1', r));
    tokenUrl = `http://127.0.0.1:${(withToken.address() as AddressInfo).port}/metrics`;
  });

  after(async () => {
    withToken?.closeAllConnections();
    await new Promise((r) => withToken?.close(r));
    await h?.close();
  });

  test('with a metrics token: none or a wrong one is 401, the right one gets the metrics', async () => {
    const none = await get(tokenUrl);
    assert.equal(none.status, 401);
    assert.doesNotMatch(none.body, /sfu_rooms/);
    assert.equal((await get(tokenUrl, { authorization: `Bearer ${TOKEN}x` })).status, 401);
    assert.equal((await get(tokenUrl, { authorization: `Bearer ${TOKEN.slice(0, -1)}` })).status, 401);
    assert.equal((await get(tokenUrl, { authorization: TOKEN })).status, 401, 'the bare token without Bearer');
    const ok = await get(tokenUrl, { authorization: `Bearer ${TOKEN}` });
    assert.equal(ok.status, 200);
    assert.match(ok.body, /sfu_rooms \d+/);
    assert.match(ok.body, /sfu_signalling_connections \d+/);
  });

  test('without a token: a request through a proxy is 404, this host\'s own scrape gets the metrics', async () => {
    const proxied: Array<Record<string, string>> = [{ 'x-forwarded-for': '203.0.113.7' }, { forwarded: 'for=203.0.113.7' }, { 'x-real-ip': '203.0.113.7' }];
    for (const headers of proxied) {
      const r = await get(`${h.baseUrl}/metrics`, headers);
      assert.equal(r.status, 404, JSON.stringify(headers));
      assert.doesNotMatch(r.body, /sfu_/);
    }
    const local = await get(`${h.baseUrl}/metrics`);
    assert.equal(local.status, 200);
    assert.match(local.body, /sfu_workers 1/);
  });
});
