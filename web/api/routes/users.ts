import { z } from 'zod';
import type { Pool } from '../../../infra/db/pool.ts';
import { hashPassword } from '../../../infra/auth/password.ts';
import { roleSchema } from '../../../infra/tokens.ts';
import { HttpError } from '../auth-context.ts';
import { permissions } from '../permissions.ts';
import type { ApiRoutes } from '../route-registry.ts';
import { registerScopedResource, unitRef } from '../scoped-resource.ts';
import { boolQuery, id, idQuery, password, username } from '../schemas.ts';

// User accounts, bound to a unit; an admin manages accounts only inside their own subtree.
export function registerUserRoutes(routes: ApiRoutes, pool: Pool): void {
  const displayName = z.string().trim().min(1).max(64);
  registerScopedResource(routes, pool, {
    path: '/users',
    tag: 'users',
    objectType: 'user',
    zh: '用户',
    en: 'user',
    table: 'users',
    alias: 'x',
    from: 'users x JOIN units u ON u.id = x.unit_id',
    select: 'x.id, x.username, x.display_name, x.unit_id, x.role, x.disabled, x.created_at',
    filters: {
      unit_id: { schema: idQuery, sql: 'x.unit_id = ?' },
      role: { schema: roleSchema, sql: 'x.role = ?' },
      disabled: { schema: boolQuery, sql: 'x.disabled = ?' },
      // Search in username or name (strpos: the typed text is never a pattern).
      q: { schema: z.string().trim().min(1).max(64), sql: "strpos(lower(x.username || ' ' || x.display_name), lower(?)) > 0" },
    },
    create: z.strictObject({ username, display_name: displayName, unit_id: id, role: roleSchema, password }),
    update: z.strictObject({
      display_name: displayName.optional(),
      unit_id: id.optional(),
      role: roleSchema.optional(),
      password: password.optional(),
      disabled: z.boolean().optional(),
    }),
    refs: { unit_id: unitRef },
    readRoles: permissions.readUsers,
    writeRoles: permissions.writeUsers,
    // The audit log keeps naming a user forever, so an account with history is disabled, not deleted.
    beforeDelete: async (client, userId) => {
      const { rows } = await client.query<{ used: boolean }>('SELECT EXISTS (SELECT 1 FROM audit_log WHERE user_id = $1) AS used', [userId]);
      if (rows[0]?.used) throw new HttpError(409, 'has_history', '该用户已有审计记录，请停用而不是删除 / the user has audit history: disable the account instead of deleting it');
    },
    toColumns: async (body) => {
      const { password: pw, ...rest } = body;
      // A password an admin sets is temporary: its owner must replace it at the next sign-in.
      return typeof pw === 'string' ? { ...rest, password_hash: await hashPassword(pw), must_change_password: true } : rest;
    },
  });
}
