import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { startEmbeddedS3, type EmbeddedS3 } from '../../infra/storage/embedded-s3.ts';
import { ObjectStorage } from '../../infra/storage/ObjectStorage.ts';
import { localCertificates } from '../../infra/tls/certificates.ts';
import { BridgeForward } from '../support/bridge-forward.ts';
import { CASCADE_SECRET } from '../support/cascade-harness.ts';
import { createTestDatabase, type TestDatabase } from '../support/database.ts';
import { TEST_JOIN_KEYS, TEST_JOIN_PUBLIC_PEM } from '../support/join-keys.ts';
import { NetLab } from '../support/netns.ts';
import { addCamera, seedOrg, tempDir, waitFor } from '../support/recorder-fixture.ts';
import { TestCamera } from '../support/rtsp-camera.ts';
import { RtspServer } from '../support/rtsp-server.ts';
import { SITE_MEDIA, SignallingError, SyntheticSite, UdpMux } from '../support/synthetic-site.ts';

// The roles of a county deployment on separate hosts, started the way the hosts start them: each from
// its systemd unit's ExecStart and Environment (infra/deploy/systemd) with its own host file (the
// shipped example's keys, this lab's addresses), as its own process in its own network namespace:
//   api       API + city node (infra/system.ts, EMBEDDED_ROLES=none)
//   sfu       a county SFU node, child of the city node
//   sfu2      a town SFU node, child of the county node
//   recorder, recorder2  two recorder hosts
//   scheduler the scheduler
// The API and the SFU nodes serve HTTPS/WSS with the deployment's own CA (one leaf for the lab's
// addresses, as an organisation issues them: TLS_CERT_FILE/TLS_KEY_FILE), and each child node checks
// its parent's certificate against that CA (SFU_PARENT_CA_FILE) on its wss:// control link.
// PostgreSQL and the S3 server are reached over the lab's network at the bridge address (the "data
// host": the host namespace). They run a meeting (a site joins through the town node, a site on the
// city node receives it through the county node) and a capture (segments land in S3) during which the
// recorder host holding the job is killed and the other takes it over within the lease bound; each
// role's /readyz turns false when its dependency is taken away; the county node drains: a new room is
// refused while the old meeting continues through it.

// Recorder leases scaled for the test: 4 s (25 s by default), renewed every second.
const LEASE_MS = 4_000;
const HEARTBEAT_MS = 1_000;
const SEGMENT_S = 2;
const recorderJson = (id: string) => JSON.stringify({ recorderId: id, segmentSeconds: SEGMENT_S, jobPollMs: 250, startLeadMs: 3000, rtspTimeoutMs: 3000, stallTimeoutMs: 6000, uploadRetryMinMs: 200, uploadRetryMaxMs: 1000, thumbnails: false, leaseMs: LEASE_MS, leaseHeartbeatMs: HEARTBEAT_MS, claimGraceMs: 1000, cameraProbeIntervalMs: 300 });
const METRICS_TOKEN = 'metrics-token-of-the-lab-0123456789';

/** GET/POST over http or https (trusting `ca`): status and JSON body. */
function request(url: string, ca: string, opts: { method?: string; headers?: Record<string, string> } = {}): Promise<{ status: number; body: unknown }> {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    const mod = u.protocol === 'https:' ? https : http;
    const req = mod.request(u, { method: opts.method ?? 'GET', headers: { connection: 'close', ...opts.headers }, ...(u.protocol === 'https:' ? { ca } : {}), timeout: 5_000 }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (text += d));
      res.on('end', () => {
        try {
          resolve({ status: res.statusCode ?? 0, body: text ? (JSON.parse(text) as unknown) : undefined });
        } catch {
          resolve({ status: res.statusCode ?? 0, body: text });
        }
      });
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end();
  });
}

interface Ready {
  ready: boolean;
  checks: Record<string, { ok: boolean; detail?: string }>;
}

/** The unit's command and environment: ExecStart (node is this test's node) and Environment= lines. */
function fromUnit(role: string): { argv: string[]; env: Record<string, string> } {
  const text = fs.readFileSync(`infra/deploy/systemd/grassroots-av-${role}.service`, 'utf8');
  const env: Record<string, string> = {};
  for (const m of text.matchAll(/^Environment=([A-Z_]+)=(.*)$/gm)) env[m[1]!] = m[2]!;
  const exec = /^ExecStart=(.*)$/m.exec(text)?.[1];
  assert.ok(exec, `${role}: ExecStart`);
  const argv = exec.split(/\s+/);
  assert.equal(argv[0], '/usr/bin/node');
  argv[0] = process.execPath;
  return { argv, env };
}

const HOSTS = ['api', 'sfu', 'sfu2', 'recorder', 'recorder2', 'scheduler'];

describe('roles on separate namespace hosts, started from the deploy units and host files', { timeout: 600_000 }, () => {
  let lab: NetLab;
  let db: TestDatabase;
  let dbHost: BridgeForward;
  let s3: EmbeddedS3;
  let s3Dir: string;
  let storage: ObjectStorage;
  let rtsp: RtspServer;
  let cam: TestCamera;
  let cameraId: number;
  let mux: UdpMux;
  const procs = new Map<string, ChildProcess>();
  const sites: SyntheticSite[] = [];
  let etc: string;
  const ip = (host: string) => lab.node(host).ip;
  let caPem: string;
  const base = (host: string) => ({ api: `https://${ip('api')}:8080`, sfu: `https://${ip('sfu')}:4443`, sfu2: `https://${ip('sfu2')}:4443`, recorder: `http://${ip('recorder')}:9102`, recorder2: `http://${ip('recorder2')}:9102`, scheduler: `http://${ip('scheduler')}:9103` })[host]!;

  const readyz = async (host: string): Promise<Ready | undefined> => {
    try {
      const res = await request(`${base(host)}/readyz`, caPem);
      return typeof res.body === 'object' ? (res.body as Ready) : undefined;
    } catch {
      return undefined;
    }
  };
  const becomes = async (host: string, ready: boolean, timeoutMs = 30_000): Promise<Ready> => {
    let last: Ready | undefined;
    return waitFor(`${host} /readyz ready=${ready}`, async () => {
      last = await readyz(host);
      return last && last.ready === ready ? last : undefined;
    }, timeoutMs, 250).catch((err: Error) => {
      throw new Error(`${err.message}; last answer ${JSON.stringify(last)}`);
    });
  };

  /** Starts `host`'s role (its unit: the host's name without a trailing digit) in the host's namespace. */
  function startRole(host: string): void {
    const role = host.replace(/\d$/, '');
    const unit = fromUnit(role);
    assert.equal(unit.env.CONFIG_FILE, `/etc/grassroots-av/${role}.env`);
    const env = {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      LOG_LEVEL: 'warn',
      ...unit.env,
      // The unit's paths, moved into this test's folders.
      CONFIG_FILE: path.join(etc, `${host}.env`),
      DATA_DIR: tempDir(`host-${host}-`),
    };
    const p = spawn('ip', ['netns', 'exec', lab.node(host).ns, ...unit.argv], { env, stdio: ['ignore', 'ignore', 'pipe'] });
    p.stderr?.on('data', (d: Buffer) => process.stderr.write(`[${host}] ${d}`));
    procs.set(host, p);
  }

  before(async () => {
    lab = await NetLab.create(['api', 'sfu', 'sfu2', 'recorder', 'recorder2', 'scheduler']);
    db = await createTestDatabase();
    const u = new URL(db.url);
    dbHost = await BridgeForward.start(lab.hostIp, { host: u.hostname, port: Number(u.port || 5432) });
    s3Dir = tempDir('lab-s3-');
    s3 = await startEmbeddedS3(s3Dir, 0, lab.hostIp);
    storage = new ObjectStorage({ endPoint: lab.hostIp, port: s3.port, accessKey: s3.accessKey, secretKey: s3.secretKey, bucket: 'recordings' });
    await storage.ensureBucket();
    rtsp = await RtspServer.start(0, '0.0.0.0');
    cam = new TestCamera({ server: rtsp, path: 'village-1', audio: 'none' });
    await cam.start();
    const org = await seedOrg(db.pool);
    cameraId = await addCamera(db.pool, org.villageAId, cam.url.replace('127.0.0.1', lab.hostIp));

    // /etc/grassroots-av of each host: its file and the secrets it names.
    etc = tempDir('lab-etc-');
    const secrets = path.join(etc, 'secrets');
    fs.mkdirSync(secrets);
    const dbUrl = new URL(db.url);
    dbUrl.host = `${lab.hostIp}:${dbHost.port}`;
    dbUrl.searchParams.set('sslmode', 'disable');
    const secret = (name: string, value: string) => fs.writeFileSync(path.join(secrets, name), `${value}\n`, { mode: 0o640 });
    secret('database-url', dbUrl.toString());
    secret('s3-access-key', s3.accessKey);
    secret('s3-secret-key', s3.secretKey);
    secret('cascade-secret', CASCADE_SECRET);
    secret('metrics-token', METRICS_TOKEN);
    secret('join-private.pem', TEST_JOIN_KEYS.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString());
    secret('join-public.pem', TEST_JOIN_PUBLIC_PEM);
    // The deployment's CA and a leaf for the API and node addresses.
    const tlsDir = path.join(etc, 'tls');
    await localCertificates(tlsDir, [ip('api'), ip('sfu'), ip('sfu2')]);
    caPem = fs.readFileSync(path.join(tlsDir, 'ca.crt'), 'utf8');
    const tlsLines = [`TLS_CERT_FILE=${tlsDir}/server.crt`, `TLS_KEY_FILE=${tlsDir}/server.key`, `TLS_CA_FILE=${tlsDir}/ca.crt`];
    const films = tempDir('lab-films-');
    fs.writeFileSync(path.join(films, 'placeholder.txt'), 'no film in this test\n');
    const s3Lines = [`S3_ENDPOINT=${lab.hostIp}`, `S3_PORT=${s3.port}`, 'S3_USE_SSL=false', 'S3_ACCESS_KEY_FILE=secrets/s3-access-key', 'S3_SECRET_KEY_FILE=secrets/s3-secret-key', 'S3_BUCKET=recordings'];
    const files: Record<string, string[]> = {
      api: [
        `HTTP_HOST=${ip('api')}`, 'HTTP_PORT=8080', ...tlsLines, 'DATABASE_URL_FILE=secrets/database-url', ...s3Lines, 'EMBEDDED_ROLES=none',
        'SFU_NODE_ID=city', 'SFU_UNIT_ID=1', `SFU_NODE_HOSTS=${lab.hostIp}/24`, `SFU_LISTEN_IP=${ip('api')}`, `SFU_ANNOUNCED_IP=${ip('api')}`,
        'SFU_NUM_WORKERS=1', 'SFU_RTC_PORT=40000', 'SFU_RTC_MIN_PORT=40100', 'SFU_RTC_MAX_PORT=40400', 'SFU_PLAIN_RTP=1',
        'SFU_CASCADE_SECRET_FILE=secrets/cascade-secret', 'JOIN_PRIVATE_KEY_FILE=secrets/join-private.pem', 'METRICS_TOKEN_FILE=secrets/metrics-token', `FILMS_DIR=${films}`,
      ],
      sfu: [
        `HTTP_HOST=${ip('sfu')}`, 'SFU_HTTP_PORT=4443', ...tlsLines, 'SFU_NODE_ID=county', 'SFU_UNIT_ID=2', `SFU_PARENT_URL=wss://${ip('api')}:8080/cascade`, `SFU_PARENT_CA_FILE=${tlsDir}/ca.crt`,
        `SFU_LISTEN_IP=${ip('sfu')}`, `SFU_ANNOUNCED_IP=${ip('sfu')}`, 'SFU_NUM_WORKERS=1', 'SFU_RTC_PORT=40000', 'SFU_RTC_MIN_PORT=40100', 'SFU_RTC_MAX_PORT=40400', 'SFU_PLAIN_RTP=1',
        'JOIN_PUBLIC_KEY_FILE=secrets/join-public.pem', 'SFU_CASCADE_SECRET_FILE=secrets/cascade-secret', 'METRICS_TOKEN_FILE=secrets/metrics-token',
      ],
      sfu2: [
        `HTTP_HOST=${ip('sfu2')}`, 'SFU_HTTP_PORT=4443', ...tlsLines, 'SFU_NODE_ID=town', 'SFU_UNIT_ID=3', `SFU_PARENT_URL=wss://${ip('sfu')}:4443/cascade`, `SFU_PARENT_CA_FILE=${tlsDir}/ca.crt`,
        `SFU_LISTEN_IP=${ip('sfu2')}`, `SFU_ANNOUNCED_IP=${ip('sfu2')}`, 'SFU_NUM_WORKERS=1', 'SFU_RTC_PORT=40000', 'SFU_RTC_MIN_PORT=40100', 'SFU_RTC_MAX_PORT=40400', 'SFU_PLAIN_RTP=1',
        'JOIN_PUBLIC_KEY_FILE=secrets/join-public.pem', 'SFU_CASCADE_SECRET_FILE=secrets/cascade-secret', 'METRICS_TOKEN_FILE=secrets/metrics-token',
      ],
      recorder: ['DATABASE_URL_FILE=secrets/database-url', ...s3Lines, `RECORDER_CONFIG=${recorderJson('recorder-host-1')}`, `HEALTH_HOST=${ip('recorder')}`, 'HEALTH_PORT=9102'],
      recorder2: ['DATABASE_URL_FILE=secrets/database-url', ...s3Lines, `RECORDER_CONFIG=${recorderJson('recorder-host-2')}`, `HEALTH_HOST=${ip('recorder2')}`, 'HEALTH_PORT=9102'],
      scheduler: ['DATABASE_URL_FILE=secrets/database-url', ...s3Lines, `HEALTH_HOST=${ip('scheduler')}`, 'HEALTH_PORT=9103'],
    };
    for (const [role, lines] of Object.entries(files)) fs.writeFileSync(path.join(etc, `${role}.env`), `# ${role} host of the lab\n${lines.join('\n')}\n`, { mode: 0o640 });

    const t0 = Date.now();
    for (const host of HOSTS) startRole(host);
    await Promise.all(HOSTS.map((h) => becomes(h, true, 120_000)));
    console.log(`# ${HOSTS.length} role processes on ${HOSTS.length} namespace hosts ready in ${Date.now() - t0} ms`);
    mux = await UdpMux.create(lab.hostIp);
  });

  after(async () => {
    for (const s of sites) s.close();
    mux?.close();
    for (const p of procs.values()) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
    await Promise.all([...procs.values()].map((p) => (p.exitCode !== null || p.signalCode !== null ? undefined : new Promise((r) => p.once('exit', r)))));
    await cam?.stop();
    await rtsp?.close();
    await s3?.close();
    dbHost?.close();
    await db?.drop();
    await lab?.close();
  });

  const site = (host: 'api' | 'sfu' | 'sfu2', room: string, userId: number, role: 'participant' | 'viewer'): SyntheticSite => {
    const s = new SyntheticSite({ url: `wss://${ip(host)}:${host === 'api' ? 8080 : 4443}/sfu`, ca: caPem, room, userId, displayName: `site-${userId}`, unitId: 100 + userId, role, layout: 'open', media: role === 'viewer' ? null : SITE_MEDIA, mux, consume: role === 'viewer' ? 'all' : 'none' });
    sites.push(s);
    return s;
  };
  let sender: SyntheticSite;
  let cityViewer: SyntheticSite;

  test('a meeting: a site joins through the town node and the city node, two links up, receives it', async () => {
    sender = site('sfu2', 'county-meeting', 1, 'participant');
    await sender.start();
    cityViewer = site('api', 'county-meeting', 2, 'viewer');
    await cityViewer.start();
    await waitFor('the city receives the town site', () => cityViewer.receiving(sender.videoProducerId!, 20) && cityViewer.receiving(sender.audioProducerId!, 20), 30_000);
  });

  test('a capture: segments land in S3; the recorder host holding the job is killed and the other takes it over', async () => {
    const startsAt = new Date(Date.now() + 4_000);
    const endsAt = new Date(startsAt.getTime() + 20_000);
    const job = await db.pool.query<{ id: number }>('INSERT INTO capture_jobs (camera_id, starts_at, ends_at) VALUES ($1, $2, $3) RETURNING id', [cameraId, startsAt, endsAt]);
    const jobId = job.rows[0]!.id;
    const holder = async (): Promise<string | null> =>
      (await db.pool.query<{ recorder_id: string | null }>('SELECT recorder_id FROM capture_jobs WHERE id = $1 AND lease_until > now()', [jobId])).rows[0]?.recorder_id ?? null;
    const segments = async () =>
      (await db.pool.query<{ object_key: string; bytes: number; started_at: Date; ended_at: Date }>('SELECT object_key, bytes, started_at, ended_at FROM recording_segments WHERE capture_job_id = $1 ORDER BY started_at', [jobId])).rows;
    const first = await waitFor('two segments of the job indexed', async () => {
      const rows = await segments();
      return rows.length >= 2 ? rows[0] : undefined;
    }, 60_000, 200);
    const obj = await storage.stat(first.object_key);
    assert.ok(obj && obj.size === Number(first.bytes) && obj.size > 1000, `object ${first.object_key} in S3 with its bytes`);

    const victim = await holder();
    assert.ok(victim === 'recorder-host-1' || victim === 'recorder-host-2', `a recorder host holds the job: ${victim}`);
    const victimHost = victim === 'recorder-host-1' ? 'recorder' : 'recorder2';
    const survivor = victim === 'recorder-host-1' ? 'recorder-host-2' : 'recorder-host-1';
    const killedAt = Date.now();
    const proc = procs.get(victimHost)!;
    proc.kill('SIGKILL');
    await new Promise((r) => proc.once('exit', r));
    const takenAt = await waitFor('the job taken over', async () => ((await holder()) === survivor ? Date.now() : undefined), LEASE_MS + 20_000, 100);
    const takeoverMs = takenAt - killedAt;
    assert.ok(takeoverMs <= LEASE_MS + HEARTBEAT_MS + 3_000, `taken over ${takeoverMs} ms after the kill (lease ${LEASE_MS} ms)`);
    await waitFor('the job finished', async () => {
      const r = await db.pool.query<{ state: string }>('SELECT state FROM capture_jobs WHERE id = $1', [jobId]);
      return r.rows[0] && !['scheduled', 'recording'].includes(r.rows[0].state) ? r.rows[0].state : undefined;
    }, endsAt.getTime() - Date.now() + 30_000, 250);
    const rows = await segments();
    let gapMs = 0;
    for (let i = 1; i < rows.length; i++) {
      const between = rows[i]!.started_at.getTime() - rows[i - 1]!.ended_at.getTime();
      assert.ok(between > -500, `segments do not overlap: ${between} ms at ${i}`);
      if (between > 1_000) gapMs += between;
    }
    assert.ok(gapMs <= takeoverMs + 8_000, `one hole at most, about the takeover: ${gapMs} ms`);
    assert.ok(rows.at(-1)!.ended_at.getTime() >= endsAt.getTime() - SEGMENT_S * 1000, 'the survivor recorded to the window\'s end');
    console.log(`# recorder hosts: lease ${LEASE_MS} ms, taken over ${takeoverMs} ms after SIGKILL, hole ${gapMs} ms, ${rows.length} segments, none overlapping`);
  });

  test('each role is not ready while its dependency is away, and ready again when it is back', async () => {
    // The recorder host still running after the takeover.
    const LIVE_DB_ROLES = ['api', 'scheduler', ...['recorder', 'recorder2'].filter((h) => procs.get(h)!.exitCode === null && procs.get(h)!.signalCode === null)];
    dbHost.cut();
    for (const h of LIVE_DB_ROLES) {
      const r = await becomes(h, false);
      assert.equal(r.checks.database?.ok, false, `${h}: the database is blamed`);
    }
    assert.equal((await readyz('sfu'))?.ready, true, 'an SFU node does not need the database');
    assert.equal((await readyz('sfu2'))?.ready, true);
    dbHost.restore();
    await Promise.all(LIVE_DB_ROLES.map((h) => becomes(h, true)));

    const port = s3.port;
    await s3.close();
    for (const h of LIVE_DB_ROLES) {
      const r = await becomes(h, false);
      assert.equal(r.checks.storage?.ok, false, `${h}: the S3 store is blamed`);
      assert.equal(r.checks.database?.ok, true);
    }
    s3 = await startEmbeddedS3(s3Dir, port, lab.hostIp);
    await Promise.all(LIVE_DB_ROLES.map((h) => becomes(h, true)));
  });

  test('the county node drains: a new room is refused, the old meeting continues; so does the city node; without its parent a node is not ready', async () => {
    const res = await request(`${base('sfu')}/drain`, caPem, { method: 'POST', headers: { authorization: `Bearer ${METRICS_TOKEN}` } });
    assert.equal(res.status, 202);
    assert.equal((await request(`${base('sfu')}/drain`, caPem, { method: 'POST' })).status, 401, 'draining needs the operator token from another host');
    const r = await becomes('sfu', false);
    assert.equal(r.checks.drain?.ok, false);
    const newcomer = site('sfu', 'new-meeting', 3, 'participant');
    await assert.rejects(newcomer.start(), (err: unknown) => err instanceof SignallingError && err.code === 'busy');
    const video = () => cityViewer.consumerOf(sender.videoProducerId!)?.packets ?? 0;
    const before = video();
    await waitFor('the old meeting still flows to the city', () => video() > before + 30, 20_000);

    // The api host's city node drains the same way (its upgrade comes last).
    assert.equal((await request(`${base('api')}/drain`, caPem, { method: 'POST', headers: { authorization: `Bearer ${METRICS_TOKEN}` } })).status, 202);
    assert.equal((await becomes('api', false)).checks.drain?.ok, false);
    await assert.rejects(site('api', 'another-new-meeting', 5, 'participant').start(), (err: unknown) => err instanceof SignallingError && err.code === 'busy');

    // The city host goes away: the county node's parent link is down.
    procs.get('api')!.kill('SIGKILL');
    const r2 = await waitFor('county readiness blames the parent', async () => {
      const x = await readyz('sfu');
      return x?.checks.parent?.ok === false ? x : undefined;
    }, 30_000);
    assert.equal(r2.ready, false);
  });
});
