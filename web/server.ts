import type { KeyObject } from 'node:crypto';
import http from 'node:http';
import path from 'node:path';
import express from 'express';
import type { Pool } from '../infra/db/pool.ts';
import { createLogger } from '../infra/logger.ts';
import type { ObjectStorage } from '../infra/storage/ObjectStorage.ts';
import type { SfuNode } from '../sfu/SfuNode.ts';
import { metricsAccess } from '../sfu/metricsAccess.ts';
import { createApiApp, type ExtraRouter } from './api/app.ts';
import { buildOpenApi } from './api/openapi.ts';
import type { ApiRoutes } from './api/route-registry.ts';
import { createCompletionRoutes } from './api/routes/completion.ts';
import { createLiveCameraRoutes } from './api/routes/live-cameras.ts';
import { createRecordingRoutes } from './api/routes/recordings.ts';
import { createFilmRoutes } from './api/routes/films.ts';
import { createMeetingRoutes } from './api/routes/meetings.ts';
import { createReminderRoutes } from './api/routes/reminders.ts';
import { createSessionRoutes } from './api/routes/sessions.ts';
import { createServiceCallRoutes, type CallRecordings } from './api/routes/service-calls.ts';
import { SfuDirectory } from './api/sfu-directory.ts';
import { SfuNodeHosts } from '../infra/sfu-node-hosts.ts';
import { NodeLiveCameraProvider } from './live-camera-provider.ts';
import { FilmBroadcasts } from './film-broadcasts.ts';
import { createMeetingRosterRoutes } from './api/routes/meeting-roster.ts';
import { AttendanceRecorder } from './attendance-recorder.ts';
import type { CameraNetworks } from '../infra/net/CameraNetworks.ts';

export interface WebServerOptions {
  pool: Pool;
  tokenSecret: string;
  /** The private join-token key (the SFU nodes hold the public half). */
  joinKey: KeyObject;
  sfu: SfuNode;
  /** Where recordings are; without it the recordings routes are not served. */
  storage?: ObjectStorage;
  /** Records face-to-face calls that ask for it (recorder/RoomRecordings on this node). */
  recordings?: CallRecordings;
  /** Which SFU node browsers are sent to: this one (`local`, default) or the nearest registered one. */
  routing?: 'local' | 'nearest';
  /** Where the deployment's SFU nodes may run (SFU_NODE_HOSTS); default loopback only. */
  sfuNodeHosts?: SfuNodeHosts;
  /** Where the server may connect for cameras (CAMERA_NETWORKS); default from the environment. */
  cameraNetworks?: CameraNetworks;
  /** Express `trust proxy` for the API (TRUST_PROXY): whose X-Forwarded-For names the client. */
  trustProxy?: false | number | string;
  /** Folder of films chairs can broadcast to meetings; without it the film routes say 503. */
  filmsDir?: string;
  /** Lifetime of meeting and call join tokens; default 10 minutes. */
  joinTokenTtlSeconds?: number;
  /** Routers of other areas (recordings, live cameras, completion figures), mounted after sign-in. */
  extraRouters?: ExtraRouter[];
  /** Bearer token a scraper must show for /metrics; without it only un-proxied loopback requests are answered. */
  metricsToken?: string;
  /** Live inspection: cameras this node pulls at once (default 32) and one person may ask for (default 16). */
  liveCameras?: { maxCameras?: number; maxPerUser?: number; cameraProbeIntervalMs?: number };
  /** How long a client may take to send its request headers; default 10 s. */
  headersTimeoutMs?: number;
  /** Built front end; default web/dist. */
  distDir?: string;
  /** Large meetings: MEETING_OPEN_MAX_SITES (default 8) and MEETING_ROTATION_SECONDS (default 10). */
  meetings?: { openMaxSites?: number; rotationSeconds?: number };
  /**
   * Record meeting attendance from this process's SFU node (default true). Only the cascade's root
   * hears every site: a process whose node has a parent must not record (it would see only its part).
   */
  attendance?: boolean;
}

const recorders = new WeakMap<http.Server, AttendanceRecorder>();

/** The attendance recorder createWebServer attached to this server (tests flush and close it). */
export function attendanceRecorderOf(server: http.Server): AttendanceRecorder | undefined {
  return recorders.get(server);
}

/** Routes declared with ApiRoutes, as an extra router under /api with their OpenAPI paths. */
export function apiExtra(routes: ApiRoutes): ExtraRouter {
  const doc = buildOpenApi(routes.specs) as { paths?: Record<string, Record<string, unknown>> };
  return { path: '/api', router: routes.router, openapi: doc.paths ?? {} };
}

/**
 * One HTTP origin for people: the API under /api, SFU signalling on /sfu (WebSocket), the SFU's
 * Prometheus metrics on /metrics, and the Svelte pages for everything else.
 */
export function createWebServer(opts: WebServerOptions): http.Server {
  const live = new NodeLiveCameraProvider({ sfu: opts.sfu, log: createLogger('live-cameras'), ...(opts.liveCameras?.maxCameras ? { maxCameras: opts.liveCameras.maxCameras } : {}), ...(opts.liveCameras?.cameraProbeIntervalMs ? { cameraProbeIntervalMs: opts.liveCameras.cameraProbeIntervalMs } : {}) });
  const sfuNodeHosts = opts.sfuNodeHosts ?? new SfuNodeHosts('loopback');
  const directory = new SfuDirectory(opts.pool, opts.routing ?? 'local', sfuNodeHosts);
  const endRoom = (room: string): void => void opts.sfu.endRoom(room);
  const ttl = opts.joinTokenTtlSeconds ? { joinTokenTtlSeconds: opts.joinTokenTtlSeconds } : {};
  const films = opts.filmsDir ? new FilmBroadcasts({ sfu: opts.sfu, filmsDir: opts.filmsDir, log: createLogger('films') }) : undefined;
  const attendance = opts.attendance === false ? undefined : new AttendanceRecorder({ pool: opts.pool, sfu: opts.sfu, log: createLogger('attendance') });
  if (attendance) {
    void attendance.start();
    attendance.registerMetrics(opts.sfu.metrics.registry);
  }
  const meetingSettings = {
    ...(opts.meetings?.openMaxSites !== undefined ? { openMaxSites: opts.meetings.openMaxSites } : {}),
    ...(opts.meetings?.rotationSeconds !== undefined ? { rotationSeconds: opts.meetings.rotationSeconds } : {}),
  };
  const api = createApiApp({
    pool: opts.pool,
    tokenSecret: opts.tokenSecret,
    sfuNodeHosts,
    ...(opts.cameraNetworks ? { cameraNetworks: opts.cameraNetworks } : {}),
    ...(opts.trustProxy !== undefined ? { trustProxy: opts.trustProxy } : {}),
    // A revoked node's live link to this process's node is dropped at once.
    nodeEnrolment: { onRevoke: (id: string) => opts.sfu.cascade?.dropChild(id, 'revoked') ?? false },
    extraRouters: [
      apiExtra(createServiceCallRoutes(opts.pool, opts.joinKey, { directory, endRoom, ...ttl, ...(opts.recordings ? { recordings: opts.recordings } : {}) })),
      apiExtra(createMeetingRoutes(opts.pool, opts.joinKey, { endRoom, directory, ...ttl, ...meetingSettings, ...(films ? { films } : {}) })),
      apiExtra(createMeetingRosterRoutes(opts.pool)),
      apiExtra(createReminderRoutes(opts.pool)),
      apiExtra(createSessionRoutes({ pool: opts.pool, tokenSecret: opts.tokenSecret, joinKey: opts.joinKey, directory, endRoom, ...ttl, ...(opts.storage ? { storage: opts.storage } : {}) })),
      apiExtra(createCompletionRoutes({ pool: opts.pool, ...(opts.storage ? { storage: opts.storage } : {}) })),
      apiExtra(createLiveCameraRoutes({ pool: opts.pool, joinKey: opts.joinKey, provider: live, ...(opts.liveCameras?.maxPerUser ? { maxPerUser: opts.liveCameras.maxPerUser } : {}) })),
      ...(opts.storage ? [apiExtra(createRecordingRoutes({ pool: opts.pool, storage: opts.storage }))] : []),
      ...(opts.storage ? [apiExtra(createFilmRoutes({ pool: opts.pool, storage: opts.storage }))] : []),
      ...(opts.extraRouters ?? []),
    ],
  });
  const app = express();
  app.disable('x-powered-by');
  app.get('/metrics', async (req, res) => {
    const access = metricsAccess(req, opts.metricsToken);
    if (access === 401) return void res.status(401).set('WWW-Authenticate', 'Bearer').json({ error: { code: 'unauthorized', message: '需要监控令牌 / metrics token required' } });
    if (access === 404) return void res.status(404).json({ error: { code: 'not_found', message: '未找到 / not found' } });
    res.type(opts.sfu.metrics.registry.contentType).send(await opts.sfu.metrics.registry.metrics());
  });
  app.use((req, res, next) => (req.path.startsWith('/api') ? api(req, res, next) : next()));
  const dist = opts.distDir ?? path.resolve('web/dist');
  app.use(express.static(dist));
  app.get(/^\/(?!api\/).*/, (_req, res) => res.sendFile(path.join(dist, 'index.html')));
  // A client that sends its headers slowly (slowloris) holds a socket: the headers must arrive within
  // 10 s. Bodies keep Node's 5-minute bound for the whole request (a 20 MB org import over a village line).
  const headersTimeout = opts.headersTimeoutMs ?? 10_000;
  const server = http.createServer({ headersTimeout, connectionsCheckingInterval: Math.min(2_000, headersTimeout) }, app);
  opts.sfu.attach(server, '/sfu');
  if (attendance) recorders.set(server, attendance);
  server.on('close', () => {
    live.close();
    films?.close();
    void attendance?.close();
  });
  return server;
}
