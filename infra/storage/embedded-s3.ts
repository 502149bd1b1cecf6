import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import S3rver from 's3rver';
import { sigV4Gate } from './sigv4-gate.ts';

// The embedded S3-compatible server for a first run on one machine and for tests. s3rver itself
// accepts anonymous and unsigned requests and knows one fixed key pair, so it is fronted by a gate
// that checks every request's AWS Signature V4 (headers or presigned query) against a key pair
// generated per installation into `<dir>/.credentials.json` (0600; s3rver never serves a file at its
// root, only bucket folders).

export interface EmbeddedS3 {
  endpoint: string;
  port: number;
  accessKey: string;
  secretKey: string;
  /** Stops listening and drops open connections (a test uses this to take "S3 down"). */
  close(): Promise<void>;
}

interface Credentials {
  accessKey: string;
  secretKey: string;
}

async function installationCredentials(dir: string): Promise<Credentials> {
  const file = path.join(dir, '.credentials.json');
  try {
    const c = JSON.parse(await fs.readFile(file, 'utf8')) as Partial<Credentials>;
    if (typeof c.accessKey === 'string' && typeof c.secretKey === 'string' && c.accessKey.length >= 16 && c.secretKey.length >= 32) return c as Credentials;
  } catch {
    // none yet
  }
  const c: Credentials = { accessKey: `GRV${crypto.randomBytes(12).toString('hex').toUpperCase()}`, secretKey: crypto.randomBytes(30).toString('base64url') };
  const tmp = `${file}.tmp`;
  await fs.writeFile(tmp, JSON.stringify(c), { mode: 0o600 });
  await fs.rename(tmp, file);
  return c;
}

// s3rver only accepts access keys of its account registry (process-wide).
const s3rverAccounts = createRequire(import.meta.url)('s3rver/lib/models/account.js') as { DUMMY_ACCOUNT: { createKeyPair(accessKey: string, secretKey: string): void } };

export async function startEmbeddedS3(dir: string, port = 0, host = '127.0.0.1'): Promise<EmbeddedS3> {
  await fs.mkdir(dir, { recursive: true });
  const creds = await installationCredentials(dir);
  s3rverAccounts.DUMMY_ACCOUNT.createKeyPair(creds.accessKey, creds.secretKey);
  const server = new S3rver({ directory: dir, port, address: host, silent: true });
  // First in the chain: nothing reaches s3rver without a valid signature by this installation's key.
  (server as unknown as { middleware: unknown[] }).middleware.unshift(sigV4Gate(creds));
  const addr = await server.run();
  return {
    endpoint: host,
    port: addr.port,
    accessKey: creds.accessKey,
    secretKey: creds.secretKey,
    async close() {
      const closing = server.close();
      server.httpServer?.closeAllConnections();
      await closing;
    },
  };
}
