import crypto, { type KeyObject } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { Logger } from '../../infra/logger.ts';
import { EnrolmentClient } from './EnrolmentClient.ts';
import type { ChildKeysLookup } from './EnrolmentKeys.ts';

// A parent node on another host than the API (no database) learns its enrolled children's keys from
// the API, asking with its own enrolment key (POST /api/node-enrolment/child-keys). The answer is
// cached for `ttlMs`, so a revocation reaches this parent within that time (and its live link is
// dropped by CascadeNode's periodic re-check). If the API cannot be reached, the last answer is used
// for at most `staleMs`: a short API outage does not cut the tree, a long one does not keep a revoked
// node in.

export class ApiChildKeys {
  readonly #client: EnrolmentClient;
  readonly #log: Logger;
  readonly #ttlMs: number;
  readonly #staleMs: number;
  #keys = new Map<string, KeyObject[]>();
  #fetchedAt = 0;
  #inflight: Promise<void> | undefined;
  #failures = 0;

  constructor(client: EnrolmentClient, logger: Logger, options: { ttlMs?: number; staleMs?: number } = {}) {
    this.#client = client;
    this.#log = logger;
    this.#ttlMs = options.ttlMs ?? 15_000;
    this.#staleMs = options.staleMs ?? 10 * 60_000;
  }

  async #refresh(): Promise<void> {
    try {
      const children = await this.#client.childKeys();
      this.#keys = new Map(children.map((c) => [c.node_id, c.keys.map((pem) => crypto.createPublicKey(pem))]));
      this.#fetchedAt = Date.now();
      this.#failures = 0;
    } catch (err) {
      if (this.#failures++ % 20 === 0) this.#log.warn({ err: (err as Error).message }, "children's keys could not be read from the API");
      if (Date.now() - this.#fetchedAt > this.#staleMs) this.#keys = new Map();
    }
  }

  readonly lookup: ChildKeysLookup = async (nodeId) => {
    if (Date.now() - this.#fetchedAt >= this.#ttlMs) {
      this.#inflight ??= this.#refresh().finally(() => (this.#inflight = undefined));
      await this.#inflight;
    }
    return this.#keys.get(nodeId) ?? [];
  };

  /** For a node whose DATA_DIR holds an enrolment (sfu/bin/enrol.ts): its children's keys from the API. */
  static fromDataDir(dataDir: string, logger: Logger): ApiChildKeys | undefined {
    const file = path.join(dataDir, 'enrolment.json');
    if (!fs.existsSync(file)) return undefined;
    return new ApiChildKeys(EnrolmentClient.fromDataDir(dataDir), logger);
  }
}

/**
 * What a standalone node with per-node keys adds when it was enrolled (DATA_DIR/enrolment.json): it
 * dials with its key file as it is at each attempt (a rotation needs no restart), and accepts its
 * enrolled children (keys from the API) besides those in its child-keys folder. Nothing otherwise.
 */
export function enrolledNodeAuth(
  dataDir: string,
  folder: (nodeId: string) => KeyObject | undefined,
  logger: Logger,
  nodeKeyFromEnv?: string,
): { nodeKey?: () => KeyObject; childKeys?: ChildKeysLookup } {
  const api = ApiChildKeys.fromDataDir(dataDir, logger);
  if (!api) return {};
  const fromFolder: ChildKeysLookup = async (nodeId) => {
    const k = folder(nodeId);
    return k ? [k] : [];
  };
  const client = EnrolmentClient.fromDataDir(dataDir);
  return {
    ...(nodeKeyFromEnv ? {} : { nodeKey: () => client.currentKey() }),
    childKeys: async (nodeId) => [...(await api.lookup(nodeId)), ...(await fromFolder(nodeId))],
  };
}
