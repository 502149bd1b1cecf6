import express from 'express';
import type { Pool } from '../../infra/db/pool.ts';
import { authenticate } from './authenticate.ts';
import { declaredSizeAtMost, JSON_BODY_LIMIT, PUBLIC_BODY_LIMIT } from './body-limits.ts';
import { errorHandler, notFoundHandler } from './errors.ts';
import { buildOpenApi } from './openapi.ts';
import { ApiRoutes } from './route-registry.ts';
import { DEFAULT_LOGIN_LIMITS, registerAuthRoutes, type LoginLimits } from './routes/auth.ts';
import { LoginThrottle } from './login-throttle.ts';
import { registerAuditRoutes } from './routes/audit-log.ts';
import { registerBranchRoutes } from './routes/branches.ts';
import { registerCameraRoutes } from './routes/cameras.ts';
import { registerCameraTestRoutes } from './routes/camera-test.ts';
import { registerCameraOnvifRoutes } from './routes/camera-onvif.ts';
import { registerPasswordRoutes } from './routes/password.ts';
import { registerBulkImportRoutes } from './routes/bulk-import.ts';
import { registerUnitMoveRoutes } from './routes/unit-move.ts';
import { registerUnitRetireRoutes } from './routes/unit-retire.ts';
import { registerMemberRoutes } from './routes/members.ts';
import { registerOrgImportRoutes } from './routes/org-import.ts';
import { registerServicePointRoutes } from './routes/service-points.ts';
import { registerSfuNodeRoutes } from './routes/sfu-nodes.ts';
import { registerNodeEnrolmentRoutes, type NodeEnrolmentOptions } from './routes/node-enrolment.ts';
import { registerSfuEndpointRoutes } from './routes/sfu-endpoints.ts';
import { SfuNodeHosts } from '../../infra/sfu-node-hosts.ts';
import { CameraNetworks } from '../../infra/net/CameraNetworks.ts';
import { registerUnitRoutes } from './routes/units.ts';
import type { SubtreeStatsCacheOptions } from './subtree-stats-cache.ts';
import { registerUserRoutes } from './routes/users.ts';
import { registerBigScreenRoutes } from './routes/big-screen.ts';
import { registerBranchDutyRoutes } from './routes/branch-duties.ts';
import { registerObligationRuleRoutes } from './routes/obligation-rules.ts';
import { registerPostponementRoutes } from './routes/postponements.ts';
import { registerTodoRoutes } from './routes/todos.ts';
import { registerCaptureJobRoutes } from './routes/capture-jobs.ts';

// The express API. Order: authentication (sets req.user from a Bearer token) -> body parsing ->
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
  extraRouters?: ExtraRouter[];
  /** Access token lifetime; default 2 hours. */
  accessTtlSeconds?: number;
  loginLimits?: LoginLimits;
  /** Where SFU nodes may be registered and published (SFU_NODE_HOSTS); default loopback only. */
  sfuNodeHosts?: SfuNodeHosts;
  /** Where the server may connect for cameras (CAMERA_NETWORKS); default from the environment. */
  cameraNetworks?: CameraNetworks;
  /** Express `trust proxy` setting when behind a reverse proxy (for client addresses in audit and rate limits). */
  trustProxy?: false | number | string;
  /** Node enrolment: the API's own node's child-keys folder, and dropping a revoked node's link. */
  nodeEnrolment?: NodeEnrolmentOptions;
  /** Subtree counts (`/units/:id/stats`) kept for dashboards; default 30 s when they took ≥ 100 ms. */
  subtreeStats?: SubtreeStatsCacheOptions;
}

export function createApiApp(deps: ApiDeps): express.Express {
  const app = express();
  app.disable('x-powered-by');
  if (deps.trustProxy !== undefined) app.set('trust proxy', deps.trustProxy);

  const routes = new ApiRoutes();
  const session = { tokenSecret: deps.tokenSecret, accessTtlSeconds: deps.accessTtlSeconds ?? 2 * 3600, throttle: new LoginThrottle(deps.loginLimits ?? DEFAULT_LOGIN_LIMITS) };
  registerAuthRoutes(routes, deps.pool, session);
  registerUnitRoutes(routes, deps.pool, deps.subtreeStats);
  registerOrgImportRoutes(routes, deps.pool);
  registerBranchRoutes(routes, deps.pool);
  registerMemberRoutes(routes, deps.pool);
  registerServicePointRoutes(routes, deps.pool);
  const cameraNetworks = deps.cameraNetworks ?? CameraNetworks.fromEnv();
  registerCameraRoutes(routes, deps.pool, cameraNetworks);
  registerCameraTestRoutes(routes, deps.pool, cameraNetworks);
  registerCameraOnvifRoutes(routes, deps.pool, cameraNetworks);
  registerPasswordRoutes(routes, deps.pool, session);
  registerBulkImportRoutes(routes, deps.pool, cameraNetworks);
  registerUnitMoveRoutes(routes, deps.pool);
  registerUnitRetireRoutes(routes, deps.pool);
  const sfuNodeHosts = deps.sfuNodeHosts ?? new SfuNodeHosts('loopback');
  registerSfuNodeRoutes(routes, deps.pool, sfuNodeHosts);
  registerNodeEnrolmentRoutes(routes, deps.pool, deps.nodeEnrolment);
  registerSfuEndpointRoutes(routes, deps.pool, sfuNodeHosts);
  registerUserRoutes(routes, deps.pool);
  registerAuditRoutes(routes, deps.pool);
  registerBigScreenRoutes(routes, deps.pool);
  registerBranchDutyRoutes(routes, deps.pool);
  registerObligationRuleRoutes(routes, deps.pool);
  registerPostponementRoutes(routes, deps.pool);
  registerTodoRoutes(routes, deps.pool);
  registerCaptureJobRoutes(routes, deps.pool);

  const extraPaths = Object.assign({}, ...(deps.extraRouters ?? []).map((r) => r.openapi ?? {})) as Record<string, Record<string, unknown>>;
  const openapi = buildOpenApi(routes.specs, extraPaths);
  app.get('/api/openapi.json', (_req, res) => {
    res.json(openapi);
  });
  app.get('/api/health', (_req, res) => {
    res.json({ ok: true });
  });

  // Who is calling is settled from the Authorization header before any body is read: an anonymous
  // request reads a body only on a public route (sign-in), so nobody makes the API parse megabytes
  // without signing in. The org import reads its own body (raw text, larger) after its role check.
  app.use(authenticate(deps.pool, deps.tokenSecret));
  const publicPaths = new Set(routes.specs.filter((s) => s.public && s.method !== 'get').map((s) => `/api${s.path}`));
  const publicJson = express.Router().use(declaredSizeAtMost(PUBLIC_BODY_LIMIT), express.json({ limit: PUBLIC_BODY_LIMIT }));
  const json = express.Router().use(declaredSizeAtMost(JSON_BODY_LIMIT), express.json({ limit: JSON_BODY_LIMIT }));
  app.use((req, res, next) => {
    if (!req.user) return publicPaths.has(req.path) ? publicJson(req, res, next) : next();
    // The org import reads its own body; a film upload streams its body to disk (films.ts, size-limited there).
    return req.path === '/api/org/import' || (req.method === 'POST' && req.path === '/api/vod/films') ? next() : json(req, res, next);
  });
  app.use('/api', routes.router);
  for (const extra of deps.extraRouters ?? []) app.use(extra.path, extra.router);
  app.use(notFoundHandler);
  app.use(errorHandler);
  return app;
}
