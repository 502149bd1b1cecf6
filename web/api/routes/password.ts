import { z } from 'zod';
import type { Pool } from '../../../infra/db/pool.ts';
import { hashPassword, verifyPassword } from '../../../infra/auth/password.ts';
import { signAccessToken } from '../../../infra/tokens.ts';
import { HttpError } from '../auth-context.ts';
import { audit } from '../audit.ts';
import type { LoginThrottle } from '../login-throttle.ts';
import type { ApiRoutes } from '../route-registry.ts';
import { password } from '../schemas.ts';
import { throttleAddress, throttled } from './auth.ts';

// A user changes their own password, knowing the current one. This is the only thing an account
// whose password was set by an admin may do (authenticate.ts lets nothing else through until then).
// Wrong current passwords are limited like sign-in failures (a taken-over session cannot guess on
// here without limit), and a change ends every other session: tokens issued before it are refused, and
// the caller gets a fresh one.

export function registerPasswordRoutes(routes: ApiRoutes, pool: Pool, opts: { tokenSecret: string; accessTtlSeconds: number; throttle: LoginThrottle }): void {
  const { throttle } = opts;
  routes.add(
    {
      method: 'post',
      path: '/auth/password',
      summary: 'Change your own password (required after an admin set or reset it); ends your other sessions and returns a fresh token',
      tag: 'auth',
      body: z.strictObject({ current_password: z.string().min(1).max(256), new_password: password }),
      responses: { '403': 'the current password is wrong', '422': 'the new password equals the current one', '429': 'too many wrong passwords (Retry-After says how long)' },
    },
    async ({ body, user, req, res }) => {
      // Counted apart from sign-in: a session's own address is one its account signed in from, which
      // sign-in exempts (kiosks behind one NAT); here that exemption would exempt the thief.
      const account = `password-change:${user.username.toLowerCase()}`;
      const address = throttleAddress(req.ip);
      const admitted = throttle.begin(account, address);
      if (!admitted.ok) throw throttled(admitted.refusal, res);
      const { attempt } = admitted;
      let row: { password_hash: string; role: 'leader' | 'clerk' | 'supervisor' | 'secretary' | 'operator' | 'admin'; unit_id: number } | undefined;
      try {
        const { rows } = await pool.query<NonNullable<typeof row>>('SELECT password_hash, role, unit_id FROM users WHERE id = $1', [user.id]);
        row = rows[0];
        if (!row || !(await verifyPassword(body.current_password, row.password_hash))) {
          attempt.failed();
          await audit(pool, { action: 'user.password_change_fail', user, objectType: 'user', objectId: user.id, unitId: user.unitId, ip: req.ip ?? null });
          throw new HttpError(403, 'wrong_password', '当前密码不正确 / the current password is wrong', { field: 'current_password' });
        }
      } finally {
        // Not `succeeded()`: that would make this address a known one, exempt from this limit.
        attempt.end();
      }
      if (body.new_password === body.current_password) {
        throw new HttpError(422, 'same_password', '新密码不能与当前密码相同 / the new password must differ from the current one', { field: 'new_password' });
      }
      // Whole seconds, as tokens carry them: the fresh token below (issued now) is not older than this.
      const cutoff = Math.floor(Date.now() / 1000);
      await pool.query('UPDATE users SET password_hash = $2, must_change_password = false, sessions_valid_after = to_timestamp($3) WHERE id = $1', [
        user.id,
        await hashPassword(body.new_password),
        cutoff,
      ]);
      const token = await signAccessToken(opts.tokenSecret, { userId: user.id, username: user.username, role: row.role, unitId: row.unit_id }, opts.accessTtlSeconds);
      await audit(pool, { action: 'user.password_change', user, objectType: 'user', objectId: user.id, unitId: user.unitId, ip: req.ip ?? null });
      return { changed: true, token, token_type: 'Bearer', expires_in: opts.accessTtlSeconds };
    },
  );
}
