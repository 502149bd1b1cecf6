import crypto, { type KeyObject } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { decodeJwt } from 'jose';
import type { Pool } from '../../infra/db/pool.ts';
import { TokenError, verifyNodeToken, type NodeClaims } from '../../infra/tokens.ts';

// Where a parent finds its enrolled children's public keys: the database (the API's own node, or any
// node given DATABASE_URL) or the child-keys folder the API writes on enrolment. Each child may have
// two keys at once (active + pending while it rotates), so a node switching keys never finds its link
// refused. Both are read at every connection attempt: a revocation bites on the next one.

export type ChildKeysLookup = (nodeId: string) => Promise<readonly KeyObject[]>;

const NODE_ID = /^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,63}$/;

/** Keys of an enrolled, unrevoked node; if `parentCascadeId` is given, only of that parent's children. */
export class EnrolledKeys {
  readonly #pool: Pool;
  readonly #parent: string | undefined;

  constructor(pool: Pool, parentCascadeId?: string) {
    this.#pool = pool;
    this.#parent = parentCascadeId;
  }

  readonly lookup: ChildKeysLookup = async (nodeId) => {
    if (!NODE_ID.test(nodeId)) return [];
    const { rows } = await this.#pool.query<{ public_key: string }>(
      `SELECT k.public_key FROM sfu_node_keys k JOIN sfu_nodes n ON n.id = k.node_id
       LEFT JOIN sfu_nodes p ON p.id = n.parent_node_id
       WHERE n.cascade_id = $1 AND n.revoked_at IS NULL AND k.state IN ('active', 'pending')
         AND ($2::text IS NULL OR p.cascade_id = $2)
       ORDER BY k.state`,
      [nodeId, this.#parent ?? null],
    );
    return rows.map((r) => crypto.createPublicKey(r.public_key));
  };
}

/** Reads `<nodeId>.pub.pem` and, while it rotates, `<nodeId>.next.pub.pem` from a folder. */
export function childKeysInDir(dir: string): ChildKeysLookup {
  return async (nodeId) => {
    if (!NODE_ID.test(nodeId)) return [];
    const keys: KeyObject[] = [];
    for (const file of [`${nodeId}.pub.pem`, `${nodeId}.next.pub.pem`]) {
      try {
        keys.push(crypto.createPublicKey(await fs.promises.readFile(path.join(dir, file), 'utf8')));
      } catch {
        // absent: not enrolled, or not rotating
      }
    }
    return keys;
  };
}

/** Mirrors one node's keys into a child-keys folder (absent keys: files removed, so revocation bites). */
export function writeChildKeyFiles(dir: string, nodeId: string, keys: { active?: string | undefined; pending?: string | undefined }): void {
  if (!NODE_ID.test(nodeId)) throw new Error(`bad node id ${nodeId}`);
  fs.mkdirSync(dir, { recursive: true });
  for (const [file, pem] of [[`${nodeId}.pub.pem`, keys.active], [`${nodeId}.next.pub.pem`, keys.pending]] as const) {
    const target = path.join(dir, file);
    if (pem) {
      // Write then rename: a parent reading at that moment sees the old file or the new one.
      fs.writeFileSync(`${target}.tmp`, pem, { mode: 0o644 });
      fs.renameSync(`${target}.tmp`, target);
    } else {
      fs.rmSync(target, { force: true });
    }
  }
}

/** A child's node token checked against every key registered for the node id it claims. */
export async function verifyEnrolledNodeToken(lookup: ChildKeysLookup, token: string): Promise<NodeClaims> {
  let claimed: unknown;
  try {
    claimed = decodeJwt(token).nodeId;
  } catch {
    throw new TokenError('token invalid', 'invalid');
  }
  const keys = typeof claimed === 'string' ? await lookup(claimed) : [];
  let last: unknown = new TokenError('no key registered for that node', 'invalid');
  for (const key of keys) {
    try {
      return await verifyNodeToken(() => key, token);
    } catch (err) {
      last = err;
    }
  }
  throw last;
}

/** Accepts a child if any lookup knows a key for it (the database, then the folder), read at each attempt. */
export function anyOf(...lookups: ChildKeysLookup[]): ChildKeysLookup {
  return async (nodeId) => (await Promise.all(lookups.map((l) => l(nodeId).catch(() => [] as KeyObject[])))).flat();
}

/**
 * The API process's own node with per-node keys (SFU_NODE_AUTH=key): it also accepts children enrolled
 * through the API (keys in the database), besides those whose key file is in its child-keys folder.
 */
export function withEnrolledChildren<T extends { cascade?: { childKey?: (nodeId: string) => KeyObject | undefined; childKeys?: ChildKeysLookup } | undefined }>(options: T, pool: Pool): T {
  const c = options.cascade;
  if (!c?.childKey) return options;
  const fromFolder = c.childKey;
  const folder: ChildKeysLookup = async (nodeId) => {
    const k = fromFolder(nodeId);
    return k ? [k] : [];
  };
  return { ...options, cascade: { ...c, childKeys: anyOf(new EnrolledKeys(pool).lookup, folder) } };
}
