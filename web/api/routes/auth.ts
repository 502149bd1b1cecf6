import type { Request, RequestHandler } from 'express';
import { ipKeyGenerator, rateLimit } from 'express-rate-limit';
import { z } from 'zod';
import type { Pool } from '../../../infra/db/pool.ts';
import { dummyHash, verifyPassword } from '../../../infra/auth/password.ts';
import { signAccessToken, type Role } from '../../../infra/tokens.ts';
import { HttpError } from '../auth-context.ts';
import { audit } from '../audit.ts';
import type { ErrorBody } from '../errors.ts';
import type { ApiRoutes } from '../route-registry.ts';

// Sign-in with username and password (scrypt), answered with a signed, expiring access token.
// Two rate limits: per client address, and per address+account on failures (password guessing).
// Every attempt is audited: login.ok, login.fail (with the reason), login.throttled.

export interface LoginLimits {
  windowMs: number;
  /** Attempts per client address per window. */
  perIp: number;
  /** Failed attempts per address and username per window. */
  perAccount: number;
}

export const DEFAULT_LOGIN_LIMITS: LoginLimits = { windowMs: 15 * 60_000, perIp: 100, perAccount: 10 };

const loginBody = z.strictObject({ username: z.string().min(1).max(64), password: z.string().min(1).max(256) });

function attemptedUsername(req: Request): string {
  const body: unknown = req.body;
  const u = typeof body === 'object' && body !== null ? (body as { username?: unknown }).username : undefined;
  return typeof u === 'string' ? u.slice(0, 64).toLowerCase() : '';
}

function limiters(pool: Pool, limits: LoginLimits): RequestHandler[] {
  const reject = (which: string): ((req: Request, res: import('express').Response) => void) => (req, res) => {
    void audit(pool, { action: 'login.throttled', username: attemptedUsername(req) || null, ip: req.ip ?? null, detail: { limit: which } }).catch(() => undefined);
    const body: ErrorBody = { error: { code: 'too_many_attempts', message: '登录尝试过多，请稍后再试 / too many sign-in attempts, try again later' } };
    res.status(429).json(body);
  };
  return [
    rateLimit({ windowMs: limits.windowMs, limit: limits.perIp, standardHeaders: 'draft-8', legacyHeaders: false, handler: reject('ip') }),
    rateLimit({
      windowMs: limits.windowMs,
      limit: limits.perAccount,
      standardHeaders: false,
      legacyHeaders: false,
      skipSuccessfulRequests: true,
      keyGenerator: (req) => `${ipKeyGenerator(req.ip ?? '')}|${attemptedUsername(req)}`,
      handler: reject('account'),
    }),
  ];
}

export function registerAuthRoutes(routes: ApiRoutes, pool: Pool, opts: { tokenSecret: string; accessTtlSeconds: number; limits: LoginLimits }): void {
  routes.router.post('/auth/login', ...limiters(pool, opts.limits));
  routes.add(
    { method: 'post', path: '/auth/login', summary: 'Sign in; returns a bearer access token', tag: 'auth', public: true, body: loginBody, responses: { '401': 'wrong username or password', '429': 'too many attempts' } },
    async ({ body, req }) => {
      const { rows } = await pool.query<{ id: number; username: string; display_name: string; role: Role; unit_id: number; password_hash: string; disabled: boolean }>(
        'SELECT id, username, display_name, role, unit_id, password_hash, disabled FROM users WHERE username = $1',
        [body.username],
      );
      const row = rows[0];
      // Verify against a dummy hash for unknown names so timing does not reveal which names exist.
      const ok = await verifyPassword(body.password, row?.password_hash ?? (await dummyHash()));
      const ip = req.ip ?? null;
      if (!row || !ok || row.disabled) {
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
      const token = await signAccessToken(opts.tokenSecret, { userId: row.id, username: row.username, role: row.role, unitId: row.unit_id }, opts.accessTtlSeconds);
      await audit(pool, { action: 'login.ok', user: row, unitId: row.unit_id, ip });
      return {
        token,
        token_type: 'Bearer',
        expires_in: opts.accessTtlSeconds,
        user: { id: row.id, username: row.username, display_name: row.display_name, role: row.role, unit_id: row.unit_id },
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
