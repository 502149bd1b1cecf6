import { z } from 'zod';
import type { Pool } from '../../../infra/db/pool.ts';
import { permissions } from '../permissions.ts';
import { page, pageQuery, type ApiRoutes } from '../route-registry.ts';
import { scopePattern } from '../scope.ts';
import { idQuery } from '../schemas.ts';

// Reading the audit log: rows about units in the caller's subtree. Rows tied to no unit (e.g. a
// failed login with an unknown username) are shown only to users of the root unit.

export function registerAuditRoutes(routes: ApiRoutes, pool: Pool): void {
  routes.add(
    {
      method: 'get',
      path: '/audit',
      summary: "Audit log entries in the caller's subtree, newest first",
      tag: 'audit',
      roles: permissions.readAudit,
      query: z.strictObject({
        ...pageQuery,
        action: z.string().regex(/^[a-z_.]{1,64}$/).optional(),
        object_type: z.string().regex(/^[a-z_]{1,64}$/).optional(),
        object_id: z.string().max(64).optional(),
        user_id: idQuery.optional(),
        username: z.string().min(1).max(64).optional(),
        /** Entries about this unit and everything below it (within the caller's subtree). */
        under: idQuery.optional(),
        since: z.iso.datetime({ offset: true }).optional(),
        until: z.iso.datetime({ offset: true }).optional(),
      }),
    },
    async ({ query, user }) => {
      const isRoot = !user.unitPath.slice(0, -1).includes('.');
      const values: unknown[] = [scopePattern(user), isRoot];
      const where = ['(u.path LIKE $1 OR (a.unit_id IS NULL AND $2))'];
      if (query.action) where.push(`a.action = $${values.push(query.action)}`);
      if (query.object_type) where.push(`a.object_type = $${values.push(query.object_type)}`);
      if (query.object_id) where.push(`a.object_id = $${values.push(query.object_id)}`);
      if (query.user_id) where.push(`a.user_id = $${values.push(query.user_id)}`);
      if (query.username) where.push(`a.username = $${values.push(query.username)}`);
      if (query.under) where.push(`u.path LIKE (SELECT path FROM units WHERE id = $${values.push(query.under)}) || '%'`);
      if (query.since) where.push(`a.at >= $${values.push(query.since)}`);
      if (query.until) where.push(`a.at < $${values.push(query.until)}`);
      // newest first, so the keyset walks downwards
      if (query.after_id !== undefined) where.push(`a.id < $${values.push(query.after_id)}`);
      const { rows } = await pool.query<{ id: number } & Record<string, unknown>>(
        `SELECT a.id, a.at, a.user_id, a.username, a.action, a.object_type, a.object_id, a.unit_id, a.ip, a.detail
         FROM audit_log a LEFT JOIN units u ON u.id = a.unit_id
         WHERE ${where.join(' AND ')} ORDER BY a.id DESC LIMIT $${values.push(query.limit + 1)} OFFSET $${values.push(query.offset)}`,
        values,
      );
      return page(rows, query.limit, query.offset);
    },
  );
}
