import type { Request } from 'express';
import type { Role } from '../../infra/tokens.ts';

/** The signed-in user as the API's auth middleware puts it on the request. */
export interface AuthUser {
  id: number;
  username: string;
  displayName: string;
  role: Role;
  unitId: number;
  /** Materialised path of the user's unit (units.path), e.g. '1.7.93.'. */
  unitPath: string;
}

declare module 'express-serve-static-core' {
  interface Request {
    user?: AuthUser;
  }
}

/** An error the API turns into `{ error: { code, message } }` with this HTTP status. */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly details?: unknown,
  ) {
    super(message);
    this.name = 'HttpError';
  }
}

export function currentUser(req: Request): AuthUser {
  if (!req.user) throw new HttpError(401, 'unauthenticated', '请先登录 / sign in first');
  return req.user;
}

/** Access follows the tree: a unit is visible when its path starts with the user's unit path. */
export function inSubtree(user: AuthUser, unitPath: string): boolean {
  return unitPath.startsWith(user.unitPath);
}
