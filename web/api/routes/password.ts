import { z } from 'zod';
import type { Pool } from '../../../infra/db/pool.ts';
import { hashPassword, verifyPassword } from '../../../infra/auth/password.ts';
import { HttpError } from '../auth-context.ts';
import { audit } from '../audit.ts';
import type { ApiRoutes } from '../route-registry.ts';
import { password } from '../schemas.ts';

// A user changes their own password, knowing the current one. This is the only thing an account
// whose password was set by an admin may do (authenticate.ts lets nothing else through until then).

export function registerPasswordRoutes(routes: ApiRoutes, pool: Pool): void {
  routes.add(
    {
      method: 'post',
      path: '/auth/password',
      summary: 'Change your own password (required after an admin set or reset it)',
      tag: 'auth',
      body: z.strictObject({ current_password: z.string().min(1).max(256), new_password: password }),
      responses: { '403': 'the current password is wrong', '422': 'the new password equals the current one' },
    },
    async ({ body, user, req }) => {
      const { rows } = await pool.query<{ password_hash: string }>('SELECT password_hash FROM users WHERE id = $1', [user.id]);
      if (!rows[0] || !(await verifyPassword(body.current_password, rows[0].password_hash))) {
        await audit(pool, { action: 'user.password_change_fail', user, objectType: 'user', objectId: user.id, unitId: user.unitId, ip: req.ip ?? null });
        throw new HttpError(403, 'wrong_password', '当前密码不正确 / the current password is wrong', { field: 'current_password' });
      }
      if (body.new_password === body.current_password) {
        throw new HttpError(422, 'same_password', '新密码不能与当前密码相同 / the new password must differ from the current one', { field: 'new_password' });
      }
      await pool.query('UPDATE users SET password_hash = $2, must_change_password = false WHERE id = $1', [user.id, await hashPassword(body.new_password)]);
      await audit(pool, { action: 'user.password_change', user, objectType: 'user', objectId: user.id, unitId: user.unitId, ip: req.ip ?? null });
      return { changed: true };
    },
  );
}
