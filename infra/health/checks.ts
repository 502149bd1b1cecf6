import type { Pool } from '../db/pool.ts';
import type { ObjectStorage } from '../storage/ObjectStorage.ts';

// The dependencies roles wait on. Each throws with the reason when not ready.

/** PostgreSQL answers a query through the role's own pool. */
export function databaseCheck(pool: Pool): () => Promise<string | undefined> {
  return async () => {
    await pool.query('SELECT 1');
    return undefined;
  };
}

/** The S3 server answers with the role's credentials and the recordings bucket exists (a listing would fail otherwise). */
export function storageCheck(storage: Pick<ObjectStorage, 'list'>): () => Promise<string | undefined> {
  return async () => {
    await storage.list('readyz-probe/');
    return undefined;
  };
}
