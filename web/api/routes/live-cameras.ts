import type { KeyObject } from 'node:crypto';
import type express from 'express';
import { z } from 'zod';
import type { Pool } from '../../../infra/db/pool.ts';
import { signJoinToken } from '../../../infra/tokens.ts';
import { JOIN_TOKEN_TTL_SECONDS } from '../join-token-ttl.ts';
import { cameraPullUrl } from '../../../recorder/Recorder.ts';
import { audit } from '../audit.ts';
import { HttpError } from '../auth-context.ts';
import { ApiRoutes, idParam } from '../route-registry.ts';
import { requireCameraInScope } from './recordings.ts';
import { CameraUnavailableError } from '../../../recorder/CameraUnavailableError.ts';
import { FAILURE_TEXT, type CaptureFailureReason } from '../../../recorder/CaptureFailure.ts';
import type { LiveCameraState } from '../../../recorder/LiveCameraIngest.ts';

// Live inspection (在线巡查): a supervisor asks to watch a camera; if the camera lies in their subtree
// the SFU is asked to bring it in as a producer (ffmpeg -> PlainTransport, see recorder/LiveCameraIngest)
// and the caller gets a viewer-only join token for the camera's room. Outside the subtree: 404, and the
// SFU is never asked. The pull URL with credentials goes only to the provider (server side).
// A camera has a main stream (rtsp_url) and may have a sub-stream (sub_stream_url, e.g. read over
// ONVIF): the live wall's tiles ask for 'sub' (falling back to main when there is none), the
// single-camera inspection view for 'main'. Each stream is its own pull and its own room.

/** Which of a camera's streams a viewer asks for. */
export type LiveStream = 'main' | 'sub';
const liveStream = z.enum(['main', 'sub']);

export interface LiveCameraTarget {
  id: number;
  unitId: number;
  name: string;
  /** RTSP URL including credentials: for the server-side ingest only. */
  pullUrl: string;
  /** The stream pulled (default main): the provider keys its pulls by (camera, stream). */
  stream?: LiveStream;
  rtspTransport?: 'tcp' | 'udp' | 'auto';
}

export interface LiveCameraSession {
  /** SFU room the camera's producers live in. */
  room: string;
  producers: { kind: 'audio' | 'video'; producerId: string }[];
  /** Signalling URL of the SFU node holding the room, if the provider knows it. */
  signallingUrl?: string;
  /** 'connecting': the pull is starting (video follows); 'live': RTP is flowing. */
  state?: 'connecting' | 'live';
}

/** Implemented by the SFU node: makes sure the camera is being ingested and says where. */
export interface LiveCameraProvider {
  ensure(camera: LiveCameraTarget): Promise<LiveCameraSession>;
  /** The camera's state where this provider pulls it (undefined: not pulled here). */
  state?(cameraId: number, stream?: LiveStream): LiveCameraState | undefined;
}

/** How the live API answers a camera that cannot be watched now, per reason: distinct, so an operator can act. */
const UNAVAILABLE: Record<CaptureFailureReason, { status: number; code: string }> = {
  auth: { status: 502, code: 'camera_auth_failed' },
  not_found: { status: 502, code: 'camera_stream_not_found' },
  unsupported_transport: { status: 502, code: 'camera_transport_refused' },
  no_media: { status: 502, code: 'camera_no_media' },
  unreachable: { status: 504, code: 'camera_offline' },
};

/** The error a viewer gets for a camera that is down: its reason and state, never the pull URL. */
function unavailable(err: CameraUnavailableError): HttpError {
  const f = err.failure;
  const a = UNAVAILABLE[f.reason];
  return new HttpError(a.status, a.code, FAILURE_TEXT[f.reason], { state: 'offline', reason: f.reason, detail: f.detail, since: f.at.toISOString() });
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

export function liveRoomFor(cameraId: number, stream: LiveStream = 'main'): string {
  return stream === 'main' ? `camera-${cameraId}` : `camera-${cameraId}-sub`;
}

/**
 * The pull URL of the stream asked for: the sub-stream when the camera has one, else main. The
 * camera's credentials go to the sub-stream only if it is on the camera's own host (the address a
 * sub_stream_url names is not trusted beyond that).
 */
export function livePull(
  row: { rtsp_url: string; sub_stream_url: string | null; username: string | null; password: string | null },
  asked: LiveStream,
): { stream: LiveStream; pullUrl: string } {
  if (asked === 'sub' && row.sub_stream_url) {
    const host = (u: string): string | null => {
      try {
        return new URL(u).hostname.toLowerCase();
      } catch {
        return null;
      }
    };
    const same = host(row.sub_stream_url) !== null && host(row.sub_stream_url) === host(row.rtsp_url);
    return { stream: 'sub', pullUrl: cameraPullUrl({ rtsp_url: row.sub_stream_url, username: same ? row.username : null, password: same ? row.password : null }) };
  }
  return { stream: 'main', pullUrl: cameraPullUrl(row) };
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
      summary: "Watch a camera of your subtree live: the SFU brings it in and you get a viewer-only join token for its room; stream 'sub' (the wall's tiles) pulls the sub-stream when the camera has one",
      tag: 'cameras',
      params: idParam,
      body: z.union([z.undefined(), z.strictObject({ stream: liveStream.optional() })]),
      status: 201,
      responses: {
        '404': 'no such camera in your subtree',
        '409': 'camera disabled',
        '429': 'you are watching as many cameras as one person may',
        '502': 'the camera answered but cannot be watched: camera_auth_failed (401), camera_stream_not_found (404), camera_transport_refused (461), camera_no_media; details.state = offline with reason',
        '503': 'this node pulls as many cameras as it may',
        '504': 'camera_offline: the camera does not answer (refused / timed out); details.state = offline with reason',
      },
    },
    async ({ params, body, user, req, res }) => {
      const cam = await requireCameraInScope(pool, user, params.id);
      const { rows } = await pool.query<{ rtsp_url: string; sub_stream_url: string | null; username: string | null; password: string | null; enabled: boolean; retired: boolean; rtsp_transport: 'tcp' | 'udp' | 'auto' }>(
        'SELECT rtsp_url, sub_stream_url, username, password, enabled, retired_at IS NOT NULL AS retired, rtsp_transport FROM cameras WHERE id = $1',
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
      const pull = livePull(row, body?.stream ?? 'main');
      let session: LiveCameraSession;
      try {
        session = await opts.provider.ensure({ id: cam.id, unitId: cam.unit_id, name: cam.name, ...pull, rtspTransport: row.rtsp_transport });
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
        if (err instanceof CameraUnavailableError) {
          res.setHeader('Retry-After', '3');
          throw unavailable(err);
        }
        // The provider's error may echo the pull URL; say only that the camera is unreachable.
        throw new HttpError(502, 'camera_unreachable', '摄像机暂时无法连接 / camera cannot be reached right now');
      }
      const token = await signJoinToken(
        opts.joinKey,
        { userId: user.id, displayName: user.displayName.slice(0, 64), unitId: user.unitId, room: session.room, role: 'viewer' },
        ttl,
      );
      await audit(pool, { action: 'camera.live.view', user, objectType: 'camera', objectId: cam.id, unitId: cam.unit_id, ip: req.ip ?? null, detail: { room: session.room, stream: pull.stream } });
      return {
        camera: { id: cam.id, name: cam.name, unit_id: cam.unit_id },
        stream: pull.stream,
        room: session.room,
        producers: session.producers,
        signalling_url: session.signallingUrl ?? null,
        state: session.state ?? 'live',
        token,
        expires_in: ttl,
      };
    },
  );

  routes.add(
    {
      method: 'get',
      path: '/cameras/:id/live',
      summary: 'The live state of a camera of your subtree (its main stream, or ?stream=sub): connecting, live, offline with the reason, or idle (nobody watches it)',
      tag: 'cameras',
      params: idParam,
      query: z.strictObject({ stream: liveStream.optional() }),
      responses: { '404': 'no such camera in your subtree' },
    },
    async ({ params, query, user }) => {
      const cam = await requireCameraInScope(pool, user, params.id);
      const st = opts.provider.state?.(cam.id, query.stream ?? 'main');
      if (!st) return { camera_id: cam.id, state: 'idle' as const };
      if (st.state !== 'offline') return { camera_id: cam.id, state: st.state };
      return { camera_id: cam.id, state: 'offline' as const, reason: st.failure.reason, detail: st.failure.detail, message: FAILURE_TEXT[st.failure.reason], since: st.failure.at.toISOString() };
    },
  );

  return routes;
}
