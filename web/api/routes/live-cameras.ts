import type { KeyObject } from 'node:crypto';
import type express from 'express';
import type { Pool } from '../../../infra/db/pool.ts';
import { signJoinToken } from '../../../infra/tokens.ts';
import { JOIN_TOKEN_TTL_SECONDS } from '../join-token-ttl.ts';
import { cameraPullUrl } from '../../../recorder/Recorder.ts';
import { audit } from '../audit.ts';
import { HttpError } from '../auth-context.ts';
import { ApiRoutes, idParam } from '../route-registry.ts';
import { requireCameraInScope } from './recordings.ts';

// Live inspection (在线巡查): a supervisor asks to watch a camera; if the camera lies in their subtree
// the SFU is asked to bring it in as a producer (ffmpeg -> PlainTransport, see recorder/LiveCameraIngest)
// and the caller gets a viewer-only join token for the camera's room. Outside the subtree: 404, and the
// SFU is never asked. The pull URL with credentials goes only to the provider (server side).

export interface LiveCameraTarget {
  id: number;
  unitId: number;
  name: string;
  /** RTSP URL including credentials: for the server-side ingest only. */
  pullUrl: string;
}

export interface LiveCameraSession {
  /** SFU room the camera's producers live in. */
  room: string;
  producers: { kind: 'audio' | 'video'; producerId: string }[];
  /** Signalling URL of the SFU node holding the room, if the provider knows it. */
  signallingUrl?: string;
}

/** Implemented by the SFU node: makes sure the camera is being ingested and says where. */
export interface LiveCameraProvider {
  ensure(camera: LiveCameraTarget): Promise<LiveCameraSession>;
}

export interface LiveCamerasRouterOptions {
  pool: Pool;
  joinKey: KeyObject;
  provider: LiveCameraProvider;
  tokenTtlSeconds?: number;
  /** Distinct cameras one person may have asked for within `perUserWindowMs` (a 4×4 wall); default 16. */
  maxPerUser?: number;
  /** How long an asked-for camera counts against its asker; default 60 s, the provider's idle release. */
  perUserWindowMs?: number;
}

/** Thrown by a provider whose node pulls as many cameras as it may: answered 503, not "unreachable". */
export class LiveCapacityError extends Error {
  constructor(readonly max: number) {
    super(`at most ${max} live cameras at once`);
    this.name = 'LiveCapacityError';
  }
}

export function liveRoomFor(cameraId: number): string {
  return `camera-${cameraId}`;
}

/** The live-camera route as an express router (mounted under /api). */
export function createLiveCamerasRouter(opts: LiveCamerasRouterOptions): express.Router {
  return createLiveCameraRoutes(opts).router;
}

/** The live-camera route, declared with its schema (validated, and listed in /api/openapi.json). */
export function createLiveCameraRoutes(opts: LiveCamerasRouterOptions): ApiRoutes {
  const { pool } = opts;
  const ttl = opts.tokenTtlSeconds ?? JOIN_TOKEN_TTL_SECONDS;
  const maxPerUser = opts.maxPerUser ?? 16;
  const windowMs = opts.perUserWindowMs ?? 60_000;
  // Each person's recently asked-for cameras (camera id -> when): one person cannot take every pull
  // the node has. Entries older than the window are dropped on the person's next request.
  const asked = new Map<number, Map<number, number>>();
  const routes = new ApiRoutes();

  routes.add(
    {
      method: 'post',
      path: '/cameras/:id/live',
      summary: 'Watch a camera of your subtree live: the SFU brings it in and you get a viewer-only join token for its room',
      tag: 'cameras',
      params: idParam,
      status: 201,
      responses: { '404': 'no such camera in your subtree', '409': 'camera disabled', '429': 'you are watching as many cameras as one person may', '502': 'camera unreachable', '503': 'this node pulls as many cameras as it may' },
    },
    async ({ params, user, req, res }) => {
      const cam = await requireCameraInScope(pool, user, params.id);
      const { rows } = await pool.query<{ rtsp_url: string; username: string | null; password: string | null; enabled: boolean; retired: boolean }>(
        'SELECT rtsp_url, username, password, enabled, retired_at IS NOT NULL AS retired FROM cameras WHERE id = $1',
        [cam.id],
      );
      const row = rows[0]!;
      // A disabled or retired camera gives no join token (its room would otherwise be opened again).
      if (!row.enabled || row.retired) throw new HttpError(409, 'camera_disabled', '摄像机已停用 / camera is disabled');
      const now = Date.now();
      const mine = asked.get(user.id) ?? new Map<number, number>();
      for (const [id, at] of mine) if (now - at >= windowMs) mine.delete(id);
      const previous = mine.get(cam.id);
      if (previous === undefined && mine.size >= maxPerUser) {
        res.setHeader('Retry-After', String(Math.ceil(windowMs / 1000)));
        throw new HttpError(429, 'live_limit', `每人同时最多查看 ${maxPerUser} 路摄像机 / at most ${maxPerUser} live cameras per person at once`);
      }
      // Reserved before the provider is awaited, so parallel requests for other cameras see it.
      mine.set(cam.id, now);
      asked.set(user.id, mine);
      let session: LiveCameraSession;
      try {
        session = await opts.provider.ensure({ id: cam.id, unitId: cam.unit_id, name: cam.name, pullUrl: cameraPullUrl(row) });
      } catch (err) {
        // Not watched after all: give the reservation back (as it was before this request).
        if (mine.get(cam.id) === now) {
          if (previous !== undefined) mine.set(cam.id, previous);
          else mine.delete(cam.id);
          if (mine.size === 0 && asked.get(user.id) === mine) asked.delete(user.id);
        }
        if (err instanceof LiveCapacityError) {
          res.setHeader('Retry-After', '30');
          throw new HttpError(503, 'live_busy', `本节点已在拉取 ${err.max} 路摄像机，请稍后再试 / this node already pulls ${err.max} cameras; try again shortly`);
        }
        // The provider's error may echo the pull URL; say only that the camera is unreachable.
        throw new HttpError(502, 'camera_unreachable', '摄像机暂时无法连接 / camera cannot be reached right now');
      }
      const token = await signJoinToken(
        opts.joinKey,
        { userId: user.id, displayName: user.displayName.slice(0, 64), unitId: user.unitId, room: session.room, role: 'viewer' },
        ttl,
      );
      await audit(pool, { action: 'camera.live.view', user, objectType: 'camera', objectId: cam.id, unitId: cam.unit_id, ip: req.ip ?? null, detail: { room: session.room } });
      return {
        camera: { id: cam.id, name: cam.name, unit_id: cam.unit_id },
        room: session.room,
        producers: session.producers,
        signalling_url: session.signallingUrl ?? null,
        token,
        expires_in: ttl,
      };
    },
  );

  return routes;
}
