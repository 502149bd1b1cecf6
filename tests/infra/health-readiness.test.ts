import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { after, before, test } from 'node:test';
import pg from 'pg';
import { withTransaction } from '../../infra/db/pool.ts';
import { createTestDatabase, type TestDatabase } from '../support/database.ts';
import { freePorts, NodeProcess } from '../support/node-process.ts';
import { startS3Fixture, tempDir, waitFor, type S3Fixture } from '../support/recorder-fixture.ts';
import { SITE_MEDIA, SignallingError, SyntheticSite, UdpMux } from '../support/synthetic-site.ts';
import { TcpRelay } from '../support/tcp-relay.ts';

// /healthz and /readyz of each role as separate processes, with each dependency taken away for real:
// the database behind a TCP relay that is cut, the S3 server stopped, the parent node's link cut; and
// an SFU node that drains for an upgrade: it refuses a new room while the old one carries on.

interface Ready {
  ready: boolean;
  role: string;
  checks: Record<string, { ok: boolean; detail?: string }>;
}

async function readyz(base: string): Promise<{ status: number; body: Ready }> {
  const res = await fetch(`${base}/readyz`, { headers: { connection: 'close' } });
  return { status: res.status, body: (await res.json()) as Ready };
}

/** Waits until /readyz answers `ready` (true or false) and returns that answer. */
function readyzBecomes(base: string, ready: boolean, timeoutMs = 30_000): Promise<{ status: number; body: Ready }> {
  let last: unknown;
  return waitFor(`${base}/readyz ready=${ready}`, async () => {
    const r = await readyz(base).catch((err: Error) => void (last = err.message));
    if (r) last = r.body;
    return r && r.body.ready === ready ? r : undefined;
  }, timeoutMs, 250).catch((err: Error) => {
    throw new Error(`${err.message}; last answer ${JSON.stringify(last)}`);
  });
}

let db: TestDatabase;
let s3: S3Fixture;
let dbRelay: TcpRelay;
const procs: ChildProcess[] = [];
const nodes: NodeProcess[] = [];

function startProcess(name: string, entry: string, env: Record<string, string>): ChildProcess {
  const p = spawn(process.execPath, ['--import', 'tsx', entry], { env: { ...process.env, NODE_ENV: 'test', LOG_LEVEL: 'warn', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  // The logger writes to stdout: warnings and fatal errors show in the test's output.
  p.stdout?.on('data', (d: Buffer) => process.stderr.write(`[${name}] ${d}`));
  p.stderr?.on('data', (d: Buffer) => process.stderr.write(`[${name}] ${d}`));
  p.once('exit', (code, signal) => signal !== 'SIGKILL' && process.stderr.write(`[${name}] exited: code ${code} signal ${signal}\n`));
  procs.push(p);
  return p;
}

before(async () => {
  db = await createTestDatabase();
  s3 = await startS3Fixture();
  dbRelay = await TcpRelay.create({ whileDown: 'refuse' });
  const u = new URL(db.url);
  dbRelay.target = { host: u.hostname, port: Number(u.port || 5432) };
});

after(async () => {
  for (const p of procs) if (p.exitCode === null) p.kill('SIGKILL');
  for (const n of nodes) await n.kill();
  dbRelay?.close();
  await s3?.close();
  await db?.drop();
});

function relayedDatabaseUrl(): string {
  const u = new URL(db.url);
  u.host = `127.0.0.1:${dbRelay.port}`;
  return u.toString();
}

test('api and scheduler: ready while the database (and S3) answer, not ready while one is gone, ready again after', { timeout: 180_000 }, async () => {
  const [apiPort, schedPort] = (await freePorts(2)) as [number, number];
  startProcess('api', 'web/api/main.ts', { DATA_DIR: tempDir('api-'), HTTP_HOST: '127.0.0.1', HTTP_PORT: String(apiPort), DATABASE_URL: relayedDatabaseUrl() });
  startProcess('scheduler', 'scheduler/main.ts', {
    DATABASE_URL: relayedDatabaseUrl(), HEALTH_PORT: String(schedPort), TICK_MS: '60000',
    S3_ENDPOINT: '127.0.0.1', S3_PORT: String(s3.port), S3_ACCESS_KEY: s3.server!.accessKey, S3_SECRET_KEY: s3.server!.secretKey, S3_BUCKET: s3.storage.bucket,
  });
  const api = `http://127.0.0.1:${apiPort}`;
  const sched = `http://127.0.0.1:${schedPort}`;
  const a = await readyzBecomes(api, true, 60_000);
  assert.equal(a.status, 200);
  assert.equal(a.body.checks.database?.ok, true);
  const s = await readyzBecomes(sched, true, 60_000);
  assert.deepEqual(Object.keys(s.body.checks).sort(), ['database', 'storage']);

  // The database goes away (connections cut and refused): both say not ready, and why; both still live.
  dbRelay.cut();
  const a2 = await readyzBecomes(api, false);
  assert.equal(a2.status, 503);
  assert.equal(a2.body.checks.database?.ok, false);
  assert.ok(a2.body.checks.database?.detail, 'the reason is given');
  const s2 = await readyzBecomes(sched, false);
  assert.equal(s2.body.checks.database?.ok, false);
  assert.equal(s2.body.checks.storage?.ok, true, 'only the missing dependency is blamed');
  assert.equal((await fetch(`${api}/healthz`)).status, 200, 'liveness does not depend on the database');
  assert.equal((await fetch(`${sched}/healthz`)).status, 200);
  dbRelay.down = false;
  await readyzBecomes(api, true);
  await readyzBecomes(sched, true);

  // The S3 server goes away: the scheduler (which judges sessions from recordings) is not ready.
  await s3.stop();
  const s3gone = await readyzBecomes(sched, false);
  assert.equal(s3gone.body.checks.storage?.ok, false);
  assert.equal(s3gone.body.checks.database?.ok, true);
  await s3.start();
  await readyzBecomes(sched, true);
});

test('sfu nodes: a child is not ready without its parent link; a draining node refuses a new room while the old one continues', { timeout: 180_000 }, async () => {
  const env = { SFU_PLAIN_RTP: '1', SFU_ADMISSION: 'open' };
  const [rootPort, childPort] = (await freePorts(2)) as [number, number];
  const root = new NodeProcess('city', { unitId: 1, port: rootPort, env });
  nodes.push(root);
  root.start();
  const link = await TcpRelay.create({ whileDown: 'refuse' });
  link.target = { host: '127.0.0.1', port: root.port };
  const child = new NodeProcess('county', { unitId: 2, port: childPort, parentUrl: `ws://127.0.0.1:${link.port}/cascade`, env });
  nodes.push(child);
  child.start();
  const rootBase = `http://127.0.0.1:${root.port}`;
  const childBase = `http://127.0.0.1:${child.port}`;
  try {
    await readyzBecomes(rootBase, true, 60_000);
    const c = await readyzBecomes(childBase, true, 60_000);
    assert.equal(c.body.checks.parent?.ok, true);
    assert.equal(c.body.checks.workers?.ok, true);
    link.cut();
    const c2 = await readyzBecomes(childBase, false);
    assert.equal(c2.status, 503);
    assert.equal(c2.body.checks.parent?.ok, false);
    link.down = false;
    await readyzBecomes(childBase, true);
  } finally {
    link.close();
  }

  // A meeting runs on the root: a site sends, a viewer receives.
  const mux = await UdpMux.create();
  const site = (room: string, userId: number, role: 'participant' | 'viewer') =>
    new SyntheticSite({ url: root.wsUrl, room, userId, displayName: `site-${userId}`, unitId: 100 + userId, role, layout: 'open', media: role === 'viewer' ? null : SITE_MEDIA, mux, consume: role === 'viewer' ? 'all' : 'none' });
  const sender = site('old-meeting', 1, 'participant');
  const viewer = site('old-meeting', 2, 'viewer');
  const sites = [sender, viewer];
  try {
    await sender.start();
    await viewer.start();
    await waitFor('viewer receives the sender', () => viewer.receiving(sender.videoProducerId!, 10), 20_000);

    // Drain (as upgrade-sfu.sh does: POST /drain from the node's host).
    const res = await fetch(`${rootBase}/drain`, { method: 'POST' });
    assert.equal(res.status, 202);
    assert.deepEqual(await res.json().then((b: { draining: boolean; rooms: number }) => [b.draining, b.rooms]), [true, 1]);
    const r = await readyzBecomes(rootBase, false);
    assert.equal(r.body.checks.drain?.ok, false);
    assert.equal(r.body.checks.workers?.ok, true);

    // A new room is refused with `busy`...
    const newcomer = site('new-meeting', 3, 'participant');
    sites.push(newcomer);
    await assert.rejects(newcomer.start(), (err: unknown) => err instanceof SignallingError && err.code === 'busy' && /draining/.test(err.message));
    // ...while the old meeting carries on: its media still flows, and a late site still joins it.
    const before = viewer.consumers.get([...viewer.consumers.keys()][0]!)?.packets ?? 0;
    await waitFor('the old meeting keeps flowing', () => [...viewer.consumers.values()].some((c) => c.packets > before + 20), 20_000);
    const late = site('old-meeting', 4, 'viewer');
    sites.push(late);
    await late.start();
    await waitFor('a late site of the old meeting receives', () => late.receiving(sender.videoProducerId!, 5), 20_000);

    // The meeting ends (its sites leave): the node is drained, nothing is open any more.
    for (const s of sites) s.close();
    await waitFor('no room left on the draining node', async () => {
      const st = (await (await fetch(`${rootBase}/drain`)).json()) as { draining: boolean; rooms: number };
      return st.draining && st.rooms === 0;
    }, 20_000);
  } finally {
    for (const s of sites) s.close();
    mux.close();
  }
});

test('a transaction whose database connection is lost between two statements fails; the process carries on', async () => {
  // What stopped the scheduler when its database went away (an uncaught 'error' of a checked-out client).
  const admin = new pg.Client({ connectionString: db.url });
  await admin.connect();
  try {
    await assert.rejects(withTransaction(db.pool, async (c) => {
      const pid = (await c.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
      const ended = new Promise((r) => c.once('end', r));
      await admin.query('SELECT pg_terminate_backend($1)', [pid]);
      await ended;
      await c.query('SELECT 1');
    }));
    // The pool gives working connections afterwards (the broken one was discarded).
    assert.equal((await db.pool.query<{ one: number }>('SELECT 1 AS one')).rows[0]!.one, 1);
  } finally {
    await admin.end();
  }
});
