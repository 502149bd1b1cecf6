import type { Pool } from '../../infra/db/pool.ts';
import { SfuNodeHosts } from '../../infra/sfu-node-hosts.ts';

/** This process's own SFU node, on the API's origin. */
export const LOCAL_SFU = '/sfu';

/** Bound on the nodes looked at for one person: one per level of the tree at most, in practice. */
const MAX_ANCESTOR_NODES = 32;

/**
 * Which SFU node a browser joins: a unit attaches to the node of its own control centre or, without
 * one, of its nearest ancestor's (sfu_nodes). `local` mode (the single-machine default, where the
 * registered nodes are only planned) sends everyone to this process's node. Passed over for the next
 * node up: a node whose host is not one of the deployment's SFU hosts (a row older than that rule),
 * a revoked node, and a node whose last report says it is draining for an upgrade.
 */
export class SfuDirectory {
  readonly #pool: Pool;
  readonly #routing: 'local' | 'nearest';
  readonly #hosts: SfuNodeHosts;

  constructor(pool: Pool, routing: 'local' | 'nearest', hosts: SfuNodeHosts = new SfuNodeHosts('loopback')) {
    this.#pool = pool;
    this.#routing = routing;
    this.#hosts = hosts;
  }

  /** Signalling URL (absolute ws(s)://, or this origin's path) for someone at the unit with this path. */
  async urlFor(unitPath: string): Promise<string> {
    if (this.#routing === 'local') return LOCAL_SFU;
    const { rows } = await this.#pool.query<{ signalling_url: string }>(
      `SELECT n.signalling_url FROM sfu_nodes n JOIN units u ON u.id = n.unit_id
        WHERE $1 LIKE u.path || '%' AND n.revoked_at IS NULL
          AND COALESCE(n.last_report->>'draining', 'false') <> 'true'
        ORDER BY u.depth DESC LIMIT $2`,
      [unitPath, MAX_ANCESTOR_NODES],
    );
    return rows.find((r) => this.#hosts.allows(r.signalling_url))?.signalling_url ?? LOCAL_SFU;
  }
}
