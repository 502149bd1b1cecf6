import { z } from 'zod';
import { withTransaction, type Pool } from '../../../infra/db/pool.ts';
import { levelRank, unitLevelSchema } from '../../../infra/org/levels.ts';
import { HttpError } from '../auth-context.ts';
import { audit } from '../audit.ts';
import { permissions } from '../permissions.ts';
import { idParam, type ApiRoutes } from '../route-registry.ts';
import { requireUnitInScope } from '../scope.ts';
import { id } from '../schemas.ts';

// Moving a unit (with everything below it) under another parent of the caller's subtree, e.g. a
// village merged into another town. The database rewrites the subtree's paths (units_move, migration
// 0051); the SFU nodes inside then follow the cascade rule again (parent = the node of the nearest
// ancestor unit that hosts one). Everything that belongs to the units moves with them.

export function registerUnitMoveRoutes(routes: ApiRoutes, pool: Pool): void {
  routes.add(
    {
      method: 'post',
      path: '/units/:id/move',
      summary: 'Move a unit and its subtree under another parent in the caller\'s subtree',
      tag: 'units',
      roles: permissions.writeUnits,
      params: idParam,
      body: z.strictObject({ parent_id: id }),
      responses: { '422': 'the new parent is inside the unit, or not above its level' },
    },
    async ({ params, body, user, req }) =>
      withTransaction(pool, async (client) => {
        const unit = await requireUnitInScope(client, user, params.id);
        const parent = await requireUnitInScope(client, user, body.parent_id, 'parent_id');
        if (unit.id === user.unitId) throw new HttpError(403, 'own_unit', '不能移动本人所属单位 / you cannot move your own unit');
        if (parent.path.startsWith(unit.path)) {
          throw new HttpError(422, 'cycle', '不能移到本单位或其下级之下 / a unit cannot move under itself or its own subtree', { field: 'parent_id' });
        }
        if (levelRank(unitLevelSchema.parse(unit.level)) <= levelRank(unitLevelSchema.parse(parent.level))) {
          throw new HttpError(422, 'bad_level', `层级须低于上级 / a ${unit.level} cannot be placed under a ${parent.level}`, { field: 'parent_id' });
        }
        await client.query('SELECT units_move($1, $2)', [unit.id, parent.id]);
        // Nodes in the moved subtree re-attach to their nearest ancestor node at the new place.
        await client.query(
          `UPDATE sfu_nodes n SET parent_node_id = (
             SELECT pn.id FROM sfu_nodes pn JOIN units pu ON pu.id = pn.unit_id
              WHERE me.path LIKE pu.path || '%' AND pu.id <> me.id ORDER BY pu.depth DESC LIMIT 1)
             FROM units me, units moved
            WHERE moved.id = $1 AND me.id = n.unit_id AND me.path LIKE moved.path || '%'`,
          [unit.id],
        );
        await audit(client, { action: 'unit.move', user, objectType: 'unit', objectId: unit.id, unitId: unit.id, ip: req.ip ?? null, detail: { from_parent: unit.parent_id, to_parent: parent.id } });
        const { rows } = await client.query<Record<string, unknown>>('SELECT id, parent_id, level, name, code, depth FROM units WHERE id = $1', [unit.id]);
        return rows[0];
      }),
  );
}
