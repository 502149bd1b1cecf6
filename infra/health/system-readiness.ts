import type { Pool } from '../db/pool.ts';
import type { ObjectStorage } from '../storage/ObjectStorage.ts';
import type { SfuNode } from '../../sfu/SfuNode.ts';
import { databaseCheck, storageCheck } from './checks.ts';
import { Readiness } from './Readiness.ts';

/**
 * Readiness of the combined process (API + pages + this host's SFU node, `npm start` / the api role):
 * the database, the S3 store, a running mediasoup worker, the link to the parent node when it has
 * one, and not draining.
 */
export function systemReadiness(deps: { pool: Pool; storage: Pick<ObjectStorage, 'list'>; sfu: SfuNode; hasParent: boolean }): Readiness {
  const r = new Readiness('api')
    .add('database', databaseCheck(deps.pool))
    .add('storage', storageCheck(deps.storage))
    .add('workers', () => {
      const up = deps.sfu.pool.slots.filter((w) => !w.restarting).length;
      if (up === 0) throw new Error('no mediasoup worker running');
      return `${up}/${deps.sfu.pool.slots.length}`;
    })
    .add('drain', () => {
      if (deps.sfu.drain.draining) throw new Error(`draining: ${deps.sfu.rooms.size} rooms left`);
      return undefined;
    });
  if (deps.hasParent) {
    r.add('parent', () => {
      if (!deps.sfu.cascade?.parentConnected) throw new Error('no control link to the parent node');
      return undefined;
    });
  }
  return r;
}
