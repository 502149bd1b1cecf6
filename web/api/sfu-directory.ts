import type { Pool } from '../../infra/db/pool.ts';

/** This process's own SFU node, on the API's origin. */
export const LOCAL_SFU = '/sfu';

/**
 * Which SFU node a browser joins: a unit attaches to the node of its own control centre or, without
 * one, of its nearest ancestor's (sfu_nodes). `local` mode (the single-machine default, where the
 * registered nodes are only planned) sends everyone to this process's node.
 */
export class SfuDirectory {
  readonly #pool: Pool;
  readonly #routing: 'local' | 'nearest';

  constructor(pool: Pool, routing: 'local' | 'nearest') {
    this.#pool = pool;
    this.#routing = routing;
  }

  /** Signalling URL (absolute ws(s)://, or this origin's path) for someone at the unit with this path. */
  async urlFor(unitPath: string): Promise<string> {
    if (this.#routing === 'local') return LOCAL_SFU;
    const { rows } = await this.#pool.query<{ signalling_url: string }>(
      `SELECT n.signalling_url FROM sfu_nodes n JOIN units u ON u.id = n.unit_id
        WHERE $1 LIKE u.path || '%' ORDER BY u.depth DESC LIMIT 1`,
      [unitPath],
    );
    return rows[0]?.signalling_url ?? LOCAL_SFU;
  }
}
