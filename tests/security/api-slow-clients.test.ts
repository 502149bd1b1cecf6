import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { startSystemHarness, type SystemHarness } from '../support/system-harness.ts';

// Slowloris against the combined server (pages, API, /sfu on one port): clients that open a
// connection and dribble their headers must not hold sockets for long. With Node's defaults a
// half-sent request stays open for a minute or more, so 200 such clients from a village network
// would tie up the server; here each is cut at the headers deadline (1 s in this test, 10 s by
// default) while whole requests keep being answered.

let h: SystemHarness;
const HEADERS_TIMEOUT_MS = 1000;

before(async () => {
  h = await startSystemHarness({ villages: 2, headersTimeoutMs: HEADERS_TIMEOUT_MS });
});
after(async () => {
  await h?.close();
});

/** Opens a socket, sends an unfinished request, and keeps adding a header line every 300 ms; resolves with how long the server let it live. */
function dribble(port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const s = net.connect(port, '127.0.0.1', () => s.write('GET /api/health HTTP/1.1\r\nHost: x\r\n'));
    const feed = setInterval(() => s.writable && s.write(`X-Slow-${Date.now()}: 1\r\n`), 300);
    s.on('error', () => undefined); // the server's cut may reach us as a reset
    s.on('close', () => {
      clearInterval(feed);
      resolve(Date.now() - started);
    });
    setTimeout(() => {
      clearInterval(feed);
      s.destroy();
      reject(new Error('a half-sent request was still open after 8 s'));
    }, 8000).unref();
  });
}

test('half-sent requests are cut at the headers deadline while whole ones are answered', async () => {
  const port = Number(new URL(h.baseUrl).port);
  const slow = Array.from({ length: 50 }, () => dribble(port));
  // While they dribble, ordinary requests go through.
  for (let i = 0; i < 5; i++) assert.equal((await h.call(undefined, 'GET', '/api/health')).status, 200);
  const lifetimes = await Promise.all(slow);
  const longest = Math.max(...lifetimes);
  assert.ok(Math.min(...lifetimes) >= HEADERS_TIMEOUT_MS - 50, `cut before the deadline: ${Math.min(...lifetimes)} ms`);
  // Deadline + the server's checking interval (min(2 s, deadline)) + slack for a loaded machine.
  assert.ok(longest < HEADERS_TIMEOUT_MS * 2 + 2500, `a slow client lived ${longest} ms`);
  const open = await new Promise<number>((res, rej) => h.server.getConnections((e, n) => (e ? rej(e) : res(n))));
  assert.ok(open < 10, `sockets still open after the slow clients were cut: ${open}`);
  assert.equal((await h.call(undefined, 'GET', '/api/health')).status, 200);
});
