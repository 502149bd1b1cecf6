import type { Pool } from '../../../infra/db/pool.ts';
import type { SfuNodeHosts } from '../../../infra/sfu-node-hosts.ts';
import type { ApiRoutes } from '../route-registry.ts';
import { LOCAL_SFU } from '../sfu-directory.ts';

// The system's own SFU nodes, published so a page opened from a meeting link connects its camera and
// microphone only to one of them (the link's `sfu=` is checked against this list, never trusted).
// Public: a meeting link opens without sign-in, and a node's signalling URL is no secret. Only nodes
// on the deployment's SFU hosts are published: a row stored before that rule, or by hand, is left out.

/** Bound on the list (a city has one node per control centre: a few hundred). */
const MAX_ENDPOINTS = 5_000;

export function registerSfuEndpointRoutes(routes: ApiRoutes, pool: Pool, hosts: SfuNodeHosts): void {
  routes.add(
    { method: 'get', path: '/sfu-endpoints', summary: "The SFU nodes' signalling URLs a page may connect to (this origin's /sfu and every registered node)", tag: 'sfu nodes', public: true },
    async ({ res }) => {
      const { rows } = await pool.query<{ signalling_url: string }>('SELECT DISTINCT signalling_url FROM sfu_nodes ORDER BY signalling_url LIMIT $1', [MAX_ENDPOINTS]);
      res.setHeader('Cache-Control', 'no-store');
      return { endpoints: [LOCAL_SFU, ...rows.map((r) => r.signalling_url).filter((u) => hosts.allows(u))] };
    },
  );
}
