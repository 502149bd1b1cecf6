import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import WebSocket from 'ws';
import { tmpDir } from '../support/browser.ts';
import { waitFor } from '../support/cascade-harness.ts';
import { NodeProcess, freePort } from '../support/node-process.ts';
import { joinToken } from './sfu-support.ts';

// Attack 1 of issue 12 against a real process: a standalone SFU node (sfu/main.ts, configured by its
// environment as in production) is sent hostile upgrades and resets; it must still be running and
// serving. And the process-wide policy itself: an error nobody handled, outside shutdown, is logged
// at fatal and ends the process with a non-zero code (70) for the service manager to restart it;
// during shutdown the entry point's own handling decides.

function resetUpgrade(port: number, pathName: string): Promise<void> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1', () => {
      s.write(`GET ${pathName} HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n`);
      setTimeout(() => s.resetAndDestroy(), pathName.length % 3);
    });
    s.on('error', () => undefined);
    s.on('close', () => resolve());
  });
}

describe('a standalone SFU node process survives hostile upgrades', { timeout: 90_000 }, () => {
  let node: NodeProcess;

  before(async () => {
    node = new NodeProcess('attacked', { unitId: 1, port: await freePort(), rtcBase: 49000 });
    node.start();
    await waitFor('node up', async () => (await node.health().catch(() => ({ ok: false }))).ok, 30_000, 100);
  });

  after(async () => {
    await node?.kill();
  });

  test('resets on unknown paths, /sfu and /cascade leave it running and serving', async () => {
    const attacks: Promise<void>[] = [];
    for (let i = 0; i < 100; i++) attacks.push(resetUpgrade(node.port, ['/x', '/sfu', '/cascade', '//[', `/r${i}`][i % 5]!));
    await Promise.all(attacks);
    await new Promise((r) => setTimeout(r, 300)); // an uncaught ECONNRESET would have ended it by now
    assert.equal(node.proc!.exitCode, null, 'the process is still running');
    assert.equal((await node.health()).ok, true);
    const ws = new WebSocket(node.wsUrl);
    await new Promise((res, rej) => (ws.once('open', res), ws.once('error', rej)));
    const answer = new Promise<{ ok: boolean }>((res) => ws.once('message', (d) => res(JSON.parse(String(d)) as { ok: boolean })));
    ws.send(JSON.stringify({ id: 'j', method: 'join', data: { token: await joinToken({ userId: 1, room: 'proc' }) } }));
    assert.equal((await answer).ok, true, 'a site still joins');
    ws.close();
  });

  test('a request whose headers never finish (slowloris, a half-sent upgrade) is closed by the node', async () => {
    const t0 = performance.now();
    const got = await new Promise<string>((resolve) => {
      let text = '';
      const s = net.connect(node.port, '127.0.0.1', () => s.write('GET /sfu HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n'));
      s.setEncoding('latin1');
      s.on('data', (d) => (text += d));
      s.on('error', () => undefined);
      s.on('close', () => resolve(text));
    });
    const tookS = (performance.now() - t0) / 1000;
    console.log(`# half-sent request closed by the node after ${tookS.toFixed(1)} s (headers deadline 10 s, checked every 2 s)`);
    assert.ok(tookS < 14, `closed after ${tookS} s`);
    assert.match(got, /^(HTTP\/1\.1 408|$)/);
    assert.equal(node.proc!.exitCode, null);
  });
});

describe('the process policy for unhandled errors', { timeout: 60_000 }, () => {
  const policy = path.resolve('infra/process-policy.ts');
  const logger = path.resolve('infra/logger.ts');

  function run(body: string): Promise<{ code: number | null; out: string }> {
    const file = path.join(tmpDir('policy-'), 'entry.ts');
    fs.writeFileSync(file, `import { installProcessPolicy } from ${JSON.stringify(policy)};\nimport { createLogger } from ${JSON.stringify(logger)};\nconst log = createLogger('policy-test');\n${body}\n`);
    return new Promise((resolve) => {
      const p = spawn(process.execPath, ['--import', 'tsx', file], { cwd: process.cwd(), env: { ...process.env, LOG_LEVEL: 'info' }, stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      p.stdout.on('data', (d) => (out += d));
      p.stderr.on('data', (d) => (out += d));
      p.on('exit', (code) => resolve({ code, out }));
    });
  }

  test('an uncaught exception outside shutdown: fatal log with context, exit 70', async () => {
    const r = await run(`installProcessPolicy(log);\nsetTimeout(() => { const e = new Error('boom'); (e as Error & { code: string }).code = 'ECONNRESET'; throw e; }, 10);\nsetTimeout(() => console.log('still running'), 2000);`);
    assert.equal(r.code, 70, r.out);
    assert.match(r.out, /"level":60/);
    assert.match(r.out, /"kind":"uncaughtException"/);
    assert.match(r.out, /"code":"ECONNRESET"/);
    assert.doesNotMatch(r.out, /still running/);
  });

  test('an unhandled rejection: the same', async () => {
    const r = await run(`installProcessPolicy(log);\nvoid Promise.reject(new Error('lost promise'));\nsetTimeout(() => console.log('still running'), 2000);`);
    assert.equal(r.code, 70, r.out);
    assert.match(r.out, /"kind":"unhandledRejection"/);
    assert.match(r.out, /lost promise/);
  });

  test('during shutdown the entry point decides: the policy stands aside', async () => {
    const r = await run(`let stopping = false;\ninstallProcessPolicy(log, { shuttingDown: () => stopping });\nprocess.on('uncaughtException', () => { if (stopping) console.log('handled by shutdown'); });\nstopping = true;\nsetTimeout(() => { throw new Error('cut by our own shutdown'); }, 10);\nsetTimeout(() => process.exit(0), 200);`);
    assert.equal(r.code, 0, r.out);
    assert.match(r.out, /handled by shutdown/);
    assert.doesNotMatch(r.out, /"level":60/);
  });
});
