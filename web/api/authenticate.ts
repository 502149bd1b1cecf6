import type { RequestHandler } from 'express';
import type { Pool } from '../../infra/db/pool.ts';
import { TokenError, verifyAccessToken } from '../../infra/tokens.ts';
import { HttpError, type AuthUser } from './auth-context.ts';
import type { Role } from '../../infra/tokens.ts';

// Bearer access token -> req.user. The token proves who signed in; role, unit and the disabled flag
// are re-read from the database on every request so a change or a block takes effect at once.

/** What an account that must change its password may still call. */
const PASSWORD_CHANGE_PATHS = new Set(['/api/auth/me', '/api/auth/password']);

export function authenticate(pool: Pool, tokenSecret: string): RequestHandler {
  return async (req, _res, next) => {
    const header = req.headers.authorization;
    if (!header) return next();
    const m = /^Bearer ([A-Za-z0-9._~+/=-]+)$/.exec(header);
    if (!m) throw new HttpError(401, 'token_invalid', '令牌无效 / invalid token');
    let userId: number;
    let issuedAt: number;
    try {
      ({ userId, issuedAt } = await verifyAccessToken(tokenSecret, m[1]!));
    } catch (err) {
      if (err instanceof TokenError && err.code === 'expired') throw new HttpError(401, 'token_expired', '登录已过期 / session expired, sign in again');
      throw new HttpError(401, 'token_invalid', '令牌无效 / invalid token');
    }
    const { rows } = await pool.query<{ id: number; username: string; display_name: string; role: Role; unit_id: number; path: string; disabled: boolean; must_change_password: boolean; valid_after: number | null }>(
      `SELECT x.id, x.username, x.display_name, x.role, x.unit_id, x.disabled, x.must_change_password, u.path,
              extract(epoch FROM x.sessions_valid_after)::float8 AS valid_after
       FROM users x JOIN units u ON u.id = x.unit_id WHERE x.id = $1`,
      [userId],
    );
    const row = rows[0];
    if (!row || row.disabled) throw new HttpError(401, 'account_disabled', '账号不存在或已停用 / account missing or disabled');
    if (row.valid_after !== null && issuedAt < row.valid_after) {
      throw new HttpError(401, 'session_revoked', '密码已修改，请重新登录 / the password was changed: sign in again');
    }
    // A password an admin set must be replaced before the account does anything else.
    if (row.must_change_password && !PASSWORD_CHANGE_PATHS.has(req.path)) {
      throw new HttpError(403, 'password_change_required', '请先修改密码 / change your password first');
    }
    const user: AuthUser = { id: row.id, username: row.username, displayName: row.display_name, role: row.role, unitId: row.unit_id, unitPath: row.path };
    req.user = user;
    next();
  };
}
