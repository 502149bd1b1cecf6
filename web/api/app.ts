import type { KeyObject } from 'node:crypto';
import express from 'express';
import type { Pool } from '../../infra/db/pool.ts';
import { authenticate } from './authenticate.ts';
import { errorHandler, notFoundHandler } from './errors.ts';
import { buildOpenApi } from './openapi.ts';
import { ApiRoutes } from './route-registry.ts';
import { DEFAULT_LOGIN_LIMITS, registerAuthRoutes, type LoginLimits } from './routes/auth.ts';
import { registerAuditRoutes } from './routes/audit-log.ts';
import { registerBranchRoutes } from './routes/branches.ts';
import { registerCameraRoutes } from './routes/cameras.ts';
import { registerJoinTokenRoutes } from './routes/join-tokens.ts';
import { registerMemberRoutes } from './routes/members.ts';
import { registerOrgImportRoutes } from './routes/org-import.ts';
import { registerServicePointRoutes } from './routes/service-points.ts';
import { registerSfuNodeRoutes } from './routes/sfu-nodes.ts';
import { registerUnitRoutes } from './routes/units.ts';
import { registerUserRoutes } from './routes/users.ts';

// The express API. Order: body parsing -> authentication (sets req.user from a Bearer token) ->
// this module's routes -> routes other areas plug in (`extraRouters`, mounted after auth) ->
// JSON 404 and error answers.

export interface ExtraRouter {
  /** Mount path, e.g. '/api/recordings'. */
  path: string;
  router: express.Router;
  /** OpenAPI path items to merge into /api/openapi.json. */
  openapi?: Record<string, Record<string, unknown>>;
}

export interface ApiDeps {
  pool: Pool;
  /** Signs and checks access tokens (HS256). */
  tokenSecret: string;
  /** The private join-token key (ES256): join tokens are signed here, SFU nodes check them with the public half. */
  joinKey: KeyObject;
  extraRouters?: ExtraRouter[];
  /** Access token lifetime; default 2 hours. */
  accessTtlSeconds?: number;
  loginLimits?: LoginLimits;
  /** Express `trust proxy` setting when behind a reverse proxy (for client addresses in audit and rate limits). */
  trustProxy?: boolean | number | string;
}

export function createApiApp(deps: ApiDeps): express.Express {
  const app = express();
  app.disable('x-powered-by');
  if (deps.trustProxy !== undefined) app.set('trust proxy', deps.trustProxy);

  const routes = new ApiRoutes();
  registerAuthRoutes(routes, deps.pool, {
    tokenSecret: deps.tokenSecret,
    accessTtlSeconds: deps.accessTtlSeconds ?? 2 * 3600,
    limits: deps.loginLimits ?? DEFAULT_LOGIN_LIMITS,
  });
  registerUnitRoutes(routes, deps.pool);
  registerOrgImportRoutes(routes, deps.pool);
  registerBranchRoutes(routes, deps.pool);
  registerMemberRoutes(routes, deps.pool);
  registerServicePointRoutes(routes, deps.pool);
  registerCameraRoutes(routes, deps.pool);
  registerSfuNodeRoutes(routes, deps.pool);
  registerUserRoutes(routes, deps.pool);
  registerAuditRoutes(routes, deps.pool);
  registerJoinTokenRoutes(routes, deps.pool, deps.joinKey);

  const extraPaths = Object.assign({}, ...(deps.extraRouters ?? []).map((r) => r.openapi ?? {})) as Record<string, Record<string, unknown>>;
  const openapi = buildOpenApi(routes.specs, extraPaths);
  app.get('/api/openapi.json', (_req, res) => {
    res.json(openapi);
  });
  app.get('/api/health', (_req, res) => {
    res.json({ ok: true });
  });

  // The org import reads its body as raw text (CSV or JSON with line numbers); everything else is JSON.
  const json = express.json({ limit: '1mb' });
  app.use((req, res, next) => (req.path === '/api/org/import' ? next() : json(req, res, next)));
  app.use(authenticate(deps.pool, deps.tokenSecret));
  app.use('/api', routes.router);
  for (const extra of deps.extraRouters ?? []) app.use(extra.path, extra.router);
  app.use(notFoundHandler);
  app.use(errorHandler);
  return app;
}
