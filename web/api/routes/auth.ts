import { ipKeyGenerator } from 'express-rate-limit';
import type { Response } from 'express';
import { z } from 'zod';
import type { Pool } from '../../../infra/db/pool.ts';
import { dummyHash, verifyPassword } from '../../../infra/auth/password.ts';
import { signAccessToken, type Role } from '../../../infra/tokens.ts';
import { HttpError } from '../auth-context.ts';
import { audit } from '../audit.ts';
import type { LoginThrottle, Refusal } from '../login-throttle.ts';
import type { ApiRoutes } from '../route-registry.ts';

// Sign-in with username and password (scrypt), answered with a signed, expiring access token.
// Failures are limited per account across addresses and per client address (see login-throttle.ts);
// the client address is the socket's unless TRUST_PROXY names the proxy in front.
// Every attempt is audited: login.ok, login.fail (with the reason), login.throttled.

export { DEFAULT_LOGIN_LIMITS, type LoginLimits } from '../login-throttle.ts';

const loginBody = z.strictObject({ username: z.string().min(1).max(64), password: z.string().min(1).max(256) });

/** The 429 for a refused attempt (sign-in or password change), with Retry-After. */
export function throttled(refused: Refusal, res: Response): HttpError {
  res.setHeader('Retry-After', String(Math.max(1, Math.ceil(refused.retryAfterMs / 1000))));
  if (refused.limit === 'busy') {
    // Its own code: not a verdict on the password, so the pages retry by themselves after Retry-After.
    return new HttpError(429, 'sign_in_busy', '同一地址同时登录的请求过多，请稍后重试 / too many sign-ins at once from your address, try again in a moment', { retry_after_ms: refused.retryAfterMs });
  }
  return new HttpError(429, 'too_many_attempts', '登录失败次数过多，请稍后再试 / too many failed sign-in attempts, try again later', { retry_after_ms: refused.retryAfterMs });
}

/** The client's address as the throttle counts it (the socket's, or the trusted proxy's X-Forwarded-For). */
export const throttleAddress = (ip: string | undefined): string => ipKeyGenerator(ip ?? '');

/** `throttle` is shared with the password change, whose current-password check is a sign-in by another door. */
export function registerAuthRoutes(routes: ApiRoutes, pool: Pool, opts: { tokenSecret: string; accessTtlSeconds: number; throttle: LoginThrottle }): void {
  const { throttle } = opts;
  routes.add(
    { method: 'post', path: '/auth/login', summary: 'Sign in; returns a bearer access token', tag: 'auth', public: true, body: loginBody, responses: { '401': 'wrong username or password', '429': 'too many failed attempts (Retry-After says how long)' } },
    async ({ body, req, res }) => {
      const ip = req.ip ?? null;
      const account = body.username.toLowerCase();
      const address = throttleAddress(req.ip);
      const admitted = throttle.begin(account, address);
      if (!admitted.ok) {
        const refused = admitted.refusal;
        if (refused.audit) await audit(pool, { action: 'login.throttled', username: body.username.slice(0, 64), ip, detail: { limit: refused.limit } });
        throw throttled(refused, res);
      }
      const { attempt } = admitted;
      let row: { id: number; username: string; display_name: string; role: Role; unit_id: number; password_hash: string; disabled: boolean; must_change_password: boolean } | undefined;
      try {
        const { rows } = await pool.query<NonNullable<typeof row>>(
          'SELECT id, username, display_name, role, unit_id, password_hash, disabled, must_change_password FROM users WHERE username = $1',
          [body.username],
        );
        row = rows[0];
        // Verify against a dummy hash for unknown names so timing does not reveal which names exist.
        const ok = await verifyPassword(body.password, row?.password_hash ?? (await dummyHash()));
        if (!row || !ok || row.disabled) {
          attempt.failed();
          const reason = !row ? 'unknown_user' : !ok ? 'bad_password' : 'disabled';
          await audit(pool, {
            action: 'login.fail',
            user: row ? { id: row.id, username: row.username } : null,
            username: body.username.slice(0, 64),
            unitId: row?.unit_id ?? null,
            ip,
            detail: { reason },
          });
          throw new HttpError(401, 'bad_credentials', '用户名或密码错误 / wrong username or password');
        }
        attempt.succeeded();
      } finally {
        // Whatever happened (a database error, say), the attempt no longer counts as in flight.
        attempt.end();
      }
      const token = await signAccessToken(opts.tokenSecret, { userId: row.id, username: row.username, role: row.role, unitId: row.unit_id }, opts.accessTtlSeconds);
      await audit(pool, { action: 'login.ok', user: row, unitId: row.unit_id, ip });
      return {
        token,
        token_type: 'Bearer',
        expires_in: opts.accessTtlSeconds,
        // Present only when an admin set the password and its owner must choose a new one first.
        user: { id: row.id, username: row.username, display_name: row.display_name, role: row.role, unit_id: row.unit_id, ...(row.must_change_password ? { must_change_password: true } : {}) },
      };
    },
  );

  routes.add({ method: 'get', path: '/auth/me', summary: 'The signed-in user and their unit', tag: 'auth' }, async ({ user }) => {
    const { rows } = await pool.query<{ name: string; level: string }>('SELECT name, level FROM units WHERE id = $1', [user.unitId]);
    return {
      id: user.id,
      username: user.username,
      display_name: user.displayName,
      role: user.role,
      unit: { id: user.unitId, name: rows[0]?.name, level: rows[0]?.level },
    };
  });
}
