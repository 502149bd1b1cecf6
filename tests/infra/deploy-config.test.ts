import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { promisify } from 'node:util';
import { CONFIG_KEYS, loadConfig } from '../../infra/config.ts';
import { HostConfigError, withHostConfigFile } from '../../infra/deploy/host-config.ts';
import { tempDir } from '../support/recorder-fixture.ts';

// The per-host configuration files of infra/deploy/: what a wrong file does to a role at start, the
// secrets-in-files convention, the shipped examples, the install script and the systemd units.

const run = promisify(execFile);

function hostFile(lines: string[], secrets: Record<string, string> = {}): string {
  const dir = tempDir('host-conf-');
  fs.mkdirSync(path.join(dir, 'secrets'));
  for (const [name, value] of Object.entries(secrets)) fs.writeFileSync(path.join(dir, 'secrets', name), `${value}\n`);
  const file = path.join(dir, 'role.env');
  fs.writeFileSync(file, lines.join('\n'));
  return file;
}

/** Starts an entry point with only a host file; resolves with its exit code and stderr (it must stop by itself). */
function startRole(entry: string, file: string): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve) => {
    const env: NodeJS.ProcessEnv = { PATH: process.env.PATH, NODE_ENV: 'test', LOG_LEVEL: 'warn', CONFIG_FILE: file };
    const p = spawn(process.execPath, ['--import', 'tsx', entry], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    p.stdout.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => p.kill('SIGKILL'), 60_000);
    p.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stderr });
    });
  });
}

test('a host file sets the configuration beneath the environment; secrets come from *_FILE files', () => {
  const file = hostFile(['# county node', 'HTTP_PORT=9443', "S3_BUCKET='media'", 'SFU_CASCADE_SECRET_FILE=secrets/cascade', ''], { cascade: 'c'.repeat(40) });
  const config = loadConfig({ CONFIG_FILE: file, S3_BUCKET: 'from-env' });
  assert.equal(config.HTTP_PORT, 9443);
  assert.equal(config.S3_BUCKET, 'from-env', 'the environment overrides the file for one run');
  assert.equal(config.SFU_CASCADE_SECRET, 'c'.repeat(40), 'the secret file is read, its newline dropped');
  // A setting that is itself a path (TLS_CERT_FILE) stays a path.
  const tls = loadConfig({ CONFIG_FILE: hostFile(['TLS_CERT_FILE=/etc/grassroots-av/tls/api.crt', 'TLS_KEY_FILE=/etc/grassroots-av/tls/api.key']) });
  assert.equal(tls.TLS_CERT_FILE, '/etc/grassroots-av/tls/api.crt');
});

test('a wrong file is refused with the key named: wrong value, misspelt key, unreadable secret, duplicate, bad line', () => {
  assert.throws(() => loadConfig({ CONFIG_FILE: hostFile(['SFU_RTC_MIN_PORT=forty']) }), /SFU_RTC_MIN_PORT/);
  assert.throws(() => loadConfig({ CONFIG_FILE: hostFile(['SFU_NUM_WORKES=2']) }), /SFU_NUM_WORKES: unknown setting \(did you mean SFU_NUM_WORKERS\?\)/);
  assert.throws(() => loadConfig({ CONFIG_FILE: hostFile(['S3_SECRET_KEY_FILE=secrets/missing']) }), /S3_SECRET_KEY_FILE: cannot read/);
  assert.throws(() => loadConfig({ CONFIG_FILE: hostFile(['HTTP_PORT=1', 'HTTP_PORT=2']) }), /:2: HTTP_PORT: set twice/);
  assert.throws(() => loadConfig({ CONFIG_FILE: hostFile(['export HTTP_PORT=1']) }), /:1: expected KEY=VALUE/);
  assert.throws(() => loadConfig({ CONFIG_FILE: '/nonexistent/grassroots.env' }), /CONFIG_FILE: cannot read/);
  // A well-known S3 credential from a file is refused like one from the environment.
  assert.throws(() => loadConfig({ CONFIG_FILE: hostFile(['S3_ENDPOINT=10.0.0.6', 'S3_ACCESS_KEY=minioadmin', 'S3_SECRET_KEY=minioadmin']) }), /S3_ACCESS_KEY/);
});

test('external PostgreSQL beyond loopback must say how it uses TLS, and named certificate files must exist', () => {
  const db = (url: string) => () => withHostConfigFile({ CONFIG_FILE: hostFile([`DATABASE_URL=${url}`]) }, CONFIG_KEYS);
  assert.throws(db('postgres://app@10.20.0.5:5432/grassroots'), /DATABASE_URL: a server beyond loopback needs sslmode/);
  assert.throws(db('postgres://app@10.20.0.5/g?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem'), /sslrootcert \/nonexistent\/ca.pem does not exist/);
  assert.throws(db('mysql://app@10.20.0.5/g?sslmode=disable'), /postgres:\/\//);
  assert.throws(db('postgres://app@10.20.0.5/g?sslmode=sometimes'), /sslmode=sometimes/);
  assert.doesNotThrow(db('postgres://app@10.20.0.5/g?sslmode=disable'));
  assert.doesNotThrow(db('postgres://app@127.0.0.1:5432/g'));
  assert.throws(() => withHostConfigFile({ CONFIG_FILE: hostFile([]), NODE_EXTRA_CA_CERTS: '/nonexistent/ca.pem' }, CONFIG_KEYS), HostConfigError);
  assert.throws(() => withHostConfigFile({ CONFIG_FILE: hostFile(['NODE_EXTRA_CA_CERTS=/etc/ca.pem']) }, CONFIG_KEYS), /read when the process starts.*Environment=NODE_EXTRA_CA_CERTS/);
});

test('each role stops at start with a message naming the wrong key of its host file', { timeout: 120_000 }, async () => {
  const roles: Array<[string, string[], RegExp]> = [
    ['sfu/main.ts', ['SFU_NODE_ID=county-a', 'SFU_RTC_MIN_PORT=forty'], /SFU_RTC_MIN_PORT/],
    ['web/api/main.ts', ['HTTP_HOST=127.0.0.1', 'HTTP_PROT=8080'], /HTTP_PROT: unknown setting \(did you mean HTTP_PORT\?\)/],
    ['scheduler/main.ts', ['DATABASE_URL=postgres://a@127.0.0.1:1/x', 'TICK_MS=5'], /TICK_MS/],
    ['recorder/main.ts', ['DATABASE_URL=postgres://a@10.9.9.9:1/x'], /DATABASE_URL: a server beyond loopback needs sslmode/],
  ];
  const results = await Promise.all(roles.map(([entry, lines]) => startRole(entry, hostFile(lines))));
  results.forEach((r, i) => {
    const [entry, , pattern] = roles[i]!;
    assert.notEqual(r.code, 0, `${entry} must not run with a wrong file`);
    assert.match(r.stderr, pattern, `${entry}: ${r.stderr.slice(-600)}`);
  });
});

test('the shipped host files are valid once their secrets exist, and the install script lays a host out', async () => {
  const root = tempDir('deploy-root-');
  const { stdout } = await run('bash', ['infra/deploy/install.sh', '--root', root, 'api', 'sfu', 'recorder', 'scheduler']);
  assert.match(stdout, /wrote .*api\.env/);
  for (const role of ['api', 'sfu', 'recorder', 'scheduler']) {
    assert.ok(fs.existsSync(path.join(root, `etc/systemd/system/grassroots-av-${role}.service`)), `${role} unit installed`);
    assert.ok(fs.existsSync(path.join(root, `etc/grassroots-av/${role}.env`)), `${role} host file installed`);
    assert.equal(fs.statSync(path.join(root, `etc/grassroots-av/${role}.env`)).mode & 0o777, 0o640, 'host files are not world-readable');
  }
  // A second run keeps the operator's edited files.
  fs.appendFileSync(path.join(root, 'etc/grassroots-av/sfu.env'), 'SFU_UPLINK_KBPS=2000\n');
  const again = await run('bash', ['infra/deploy/install.sh', '--root', root, 'sfu']);
  assert.match(again.stdout, /kept .*sfu\.env/);
  assert.match(fs.readFileSync(path.join(root, 'etc/grassroots-av/sfu.env'), 'utf8'), /SFU_UPLINK_KBPS=2000/);

  const secrets = path.join(root, 'etc/grassroots-av/secrets');
  const write = (name: string, v: string) => fs.writeFileSync(path.join(secrets, name), `${v}\n`);
  write('database-url', 'postgres://grassroots:pw@10.20.0.5:5432/grassroots?sslmode=require');
  write('s3-access-key', 'county-recordings');
  write('s3-secret-key', 's3-secret-key-of-the-county-0123');
  write('cascade-secret', 'cascade-secret-of-the-county-0123456789');
  write('metrics-token', 'metrics-token-0123456789');
  write('join-public.pem', '-----BEGIN PUBLIC KEY-----\nMFkw\n-----END PUBLIC KEY-----');
  write('smpp-password', 'smpp-pw');
  const api = loadConfig({ CONFIG_FILE: path.join(root, 'etc/grassroots-av/api.env') });
  assert.deepEqual(api.EMBEDDED_ROLES, [], 'the api host runs neither recorder nor scheduler');
  assert.equal(api.S3_SECRET_KEY, 's3-secret-key-of-the-county-0123');
  assert.equal(loadConfig({ CONFIG_FILE: path.join(root, 'etc/grassroots-av/sfu.env') }).SFU_PARENT_URL, 'wss://10.20.0.10:443/cascade');
  assert.equal(loadConfig({ CONFIG_FILE: path.join(root, 'etc/grassroots-av/recorder.env') }).S3_ENDPOINT, '10.20.0.6');
  const sched = withHostConfigFile({ CONFIG_FILE: path.join(root, 'etc/grassroots-av/scheduler.env') }, [...CONFIG_KEYS, 'SMPP_HOST', 'SMPP_PORT', 'SMPP_SYSTEM_ID', 'SMPP_PASSWORD', 'BEIDOU_SERIAL']);
  assert.equal(sched.SMPP_PASSWORD, 'smpp-pw');
});

test('the systemd units pass systemd-analyze verify', async () => {
  const which = await run('sh', ['-c', 'command -v systemd-analyze']).catch(() => undefined);
  // infra/setup/setup.sh installs systemd: a missing tool is a failed set-up, not a reason to skip.
  assert.ok(which, 'systemd-analyze is installed (Debian package systemd)');
  for (const f of fs.readdirSync('infra/deploy/systemd')) {
    const r = await run('systemd-analyze', ['verify', '--man=no', path.join('infra/deploy/systemd', f)]).catch((e: { stderr?: string }) => ({ stderr: `FAILED ${e.stderr ?? ''}` }));
    assert.equal(r.stderr.trim(), '', `${f}: ${r.stderr}`);
  }
});
