import fs from 'node:fs/promises';
import S3rver from 's3rver';

// The embedded S3-compatible server for a first run on one machine and for tests. It does not check
// signatures, so access control must never rely on it (the application enforces it).

export interface EmbeddedS3 {
  endpoint: string;
  port: number;
  accessKey: string;
  secretKey: string;
  /** Stops listening and drops open connections (a test uses this to take "S3 down"). */
  close(): Promise<void>;
}

export async function startEmbeddedS3(dir: string, port = 0, host = '127.0.0.1'): Promise<EmbeddedS3> {
  await fs.mkdir(dir, { recursive: true });
  const server = new S3rver({ directory: dir, port, address: host, silent: true });
  const addr = await server.run();
  return {
    endpoint: host,
    port: addr.port,
    accessKey: 'S3RVER',
    secretKey: 'S3RVER',
    async close() {
      const closing = server.close();
      server.httpServer?.closeAllConnections();
      await closing;
    },
  };
}
