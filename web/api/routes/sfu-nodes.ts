import { z } from 'zod';
import type { Pool, PoolClient } from '../../../infra/db/pool.ts';
import type { SfuNodeHosts } from '../../../infra/sfu-node-hosts.ts';
import { HttpError } from '../auth-context.ts';
import { permissions } from '../permissions.ts';
import type { ApiRoutes } from '../route-registry.ts';
import { registerScopedResource, unitRef } from '../scoped-resource.ts';
import { id, idQuery, name, wsUrl } from '../schemas.ts';
import { REPORT_FRESH_SECONDS } from './node-enrolment.ts';

// SFU nodes (one per control centre). The cascade follows the tree, so the parent node is derived,
// never chosen: it is the node of the nearest ancestor unit that hosts one. Adding or removing a node
// re-links the nodes below it. A parent node outside the caller's subtree is shown as null.

async function linkNewNode(client: PoolClient, nodeId: number): Promise<void> {
  const { rows } = await client.query<{ parent_node_id: number | null; path: string }>(
    `UPDATE sfu_nodes n SET parent_node_id = (
       SELECT pn.id FROM sfu_nodes pn JOIN units pu ON pu.id = pn.unit_id
       WHERE me.path LIKE pu.path || '%' AND pu.id <> me.id ORDER BY pu.depth DESC LIMIT 1)
     FROM units me WHERE me.id = n.unit_id AND n.id = $1
     RETURNING n.parent_node_id, me.path`,
    [nodeId],
  );
  const { parent_node_id: parent, path } = rows[0]!;
  // Nodes below that were attached past this level now attach to the new node.
  await client.query(
    `UPDATE sfu_nodes c SET parent_node_id = $1 FROM units cu
     WHERE cu.id = c.unit_id AND cu.path LIKE $2 || '%' AND c.id <> $1 AND c.parent_node_id IS NOT DISTINCT FROM $3`,
    [nodeId, path, parent],
  );
}

async function unlinkNode(client: PoolClient, nodeId: number): Promise<void> {
  await client.query(
    `UPDATE sfu_nodes c SET parent_node_id = (SELECT parent_node_id FROM sfu_nodes WHERE id = $1) WHERE c.parent_node_id = $1`,
    [nodeId],
  );
}

/** A node's URL must name one of the deployment's SFU hosts: pages and join tokens are sent there. */
function checkHost(hosts: SfuNodeHosts, body: Record<string, unknown>): Record<string, unknown> {
  const url = body.signalling_url;
  if (typeof url === 'string' && !hosts.allows(url)) {
    const message = `该地址不在本系统的SFU主机之列(SFU_NODE_HOSTS) / the host is not one of this deployment's SFU hosts (SFU_NODE_HOSTS)`;
    throw new HttpError(422, 'sfu_host_not_allowed', message, [{ path: 'body.signalling_url', message }]);
  }
  return body;
}

export function registerSfuNodeRoutes(routes: ApiRoutes, pool: Pool, hosts: SfuNodeHosts): void {
  registerScopedResource(routes, pool, {
    path: '/sfu-nodes',
    tag: 'sfu nodes',
    objectType: 'sfu_node',
    zh: 'SFU节点',
    en: 'SFU node',
    table: 'sfu_nodes',
    alias: 'n',
    from: `sfu_nodes n JOIN units u ON u.id = n.unit_id
      LEFT JOIN sfu_nodes pn ON pn.id = n.parent_node_id LEFT JOIN units pu ON pu.id = pn.unit_id`,
    select: `n.id, n.unit_id, CASE WHEN pu.path LIKE $1 THEN n.parent_node_id END AS parent_node_id,
      CASE WHEN pu.path LIKE $1 THEN pn.name END AS parent_name,
      n.name, n.signalling_url, n.created_at, n.cascade_id, n.revoked_at, n.last_seen_at, n.last_report,
      EXISTS (SELECT 1 FROM sfu_node_keys k WHERE k.node_id = n.id AND k.state = 'active') AS enrolled,
      (n.revoked_at IS NULL AND COALESCE(n.last_seen_at > now() - interval '${REPORT_FRESH_SECONDS} seconds', false)
        AND n.last_report->>'parent_connected' = 'true') AS connected`,
    filters: { unit_id: { schema: idQuery, sql: 'n.unit_id = ?' } },
    create: z.strictObject({ unit_id: id, name, signalling_url: wsUrl }),
    update: z.strictObject({ name: name.optional(), signalling_url: wsUrl.optional() }),
    refs: { unit_id: unitRef },
    writeRoles: permissions.writeSfuNodes,
    toColumns: async (body) => checkHost(hosts, body),
    afterCreate: (client, nodeId) => linkNewNode(client, nodeId),
    beforeDelete: (client, nodeId) => unlinkNode(client, nodeId),
  });
}
