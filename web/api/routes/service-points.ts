import { z } from 'zod';
import type { Pool } from '../../../infra/db/pool.ts';
import { permissions } from '../permissions.ts';
import type { ApiRoutes } from '../route-registry.ts';
import { registerScopedResource, unitRef } from '../scoped-resource.ts';
import { id, idQuery, name } from '../schemas.ts';

// Village service stations (服务站) and town/city service centres (服务中心).
export function registerServicePointRoutes(routes: ApiRoutes, pool: Pool): void {
  const kind = z.enum(['station', 'centre']);
  const services = z.array(z.string().regex(/^[a-z_]{1,40}$/, 'service key: a-z _')).max(30);
  registerScopedResource(routes, pool, {
    path: '/service-points',
    tag: 'service points',
    objectType: 'service_point',
    zh: '服务站点',
    en: 'service point',
    table: 'service_points',
    alias: 's',
    from: 'service_points s JOIN units u ON u.id = s.unit_id',
    select: 's.id, s.unit_id, s.kind, s.name, s.services, s.created_at',
    filters: { unit_id: { schema: idQuery, sql: 's.unit_id = ?' }, kind: { schema: kind, sql: 's.kind = ?' } },
    create: z.strictObject({ unit_id: id, kind, name, services: services.optional() }),
    update: z.strictObject({ name: name.optional(), services: services.optional() }),
    refs: { unit_id: unitRef },
    writeRoles: permissions.writeServicePoints,
    // A station or centre with service calls is retired: no new calls, the call history stays.
    retire: {
      kept: async (client, pointId) => {
        const { rows } = await client.query<Record<string, number>>(
          `SELECT (SELECT count(*) FROM service_calls WHERE station_id = $1 OR centre_id = $1)::int AS service_calls,
                  (SELECT count(*) FROM cameras WHERE service_point_id = $1)::int AS cameras`,
          [pointId],
        );
        return rows[0]!;
      },
    },
  });
}
