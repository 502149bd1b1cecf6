import { z } from 'zod';
import type { Pool } from '../../../infra/db/pool.ts';
import { permissions } from '../permissions.ts';
import type { ApiRoutes } from '../route-registry.ts';
import { registerScopedResource, unitRef } from '../scoped-resource.ts';
import { id, idQuery, name } from '../schemas.ts';

// Party branches (党支部), each belonging to a unit.
export function registerBranchRoutes(routes: ApiRoutes, pool: Pool): void {
  registerScopedResource(routes, pool, {
    path: '/branches',
    tag: 'branches',
    objectType: 'branch',
    zh: '党支部',
    en: 'branch',
    table: 'branches',
    alias: 'b',
    from: 'branches b JOIN units u ON u.id = b.unit_id',
    select: `b.id, b.unit_id, b.name, b.has_committee, b.created_at,
      (SELECT m.id FROM members m WHERE m.branch_id = b.id AND m.is_secretary) AS secretary_member_id`,
    filters: { unit_id: { schema: idQuery, sql: 'b.unit_id = ?' } },
    create: z.strictObject({ unit_id: id, name }),
    update: z.strictObject({ name: name.optional() }),
    refs: { unit_id: unitRef },
    writeRoles: permissions.writeBranches,
    // A branch with members, sessions or reminders is retired: its obligations stop, its history stays.
    retire: {
      kept: async (client, branchId) => {
        const { rows } = await client.query<Record<string, number>>(
          `SELECT (SELECT count(*) FROM members WHERE branch_id = $1)::int AS members,
                  (SELECT count(*) FROM meeting_sessions WHERE branch_id = $1)::int AS meeting_sessions,
                  (SELECT count(*) FROM completion_checks c JOIN meeting_sessions s ON s.id = c.session_id WHERE s.branch_id = $1)::int AS completion_checks,
                  (SELECT count(*) FROM reminders WHERE branch_id = $1)::int AS reminders`,
          [branchId],
        );
        return rows[0]!;
      },
    },
  });
}
