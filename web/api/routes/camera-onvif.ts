import { z } from 'zod';
import type { Pool } from '../../../infra/db/pool.ts';
import { ONVIF_FAILURE_TEXT, OnvifCamera, OnvifError, type OnvifDiscovery, type OnvifFailureReason } from '../../../recorder/OnvifCamera.ts';
import { audit } from '../audit.ts';
import { HttpError } from '../auth-context.ts';
import { notFound } from '../errors.ts';
import { permissions } from '../permissions.ts';
import { idParam, type ApiRoutes } from '../route-registry.ts';
import { rtspUrl, snapshotUrl } from '../schemas.ts';
import { requireUnitInScope, scopePattern } from '../scope.ts';
import type { CameraNetworks } from '../../../infra/net/CameraNetworks.ts';

// ONVIF for the operator's console: read a camera's profiles, its main and sub stream and its
// snapshot address from the camera itself (recorder/OnvifCamera). For a stored camera the server
// talks to the camera's own host (from rtsp_url) with the stored credentials, which never leave the
// server; `apply` stores main as rtsp_url, sub as sub_stream_url and the snapshot address. Before a
// camera exists, the add-camera form probes a host with the credentials it was typed with (nothing
// stored). Both are audited; answers carry addresses without credentials.

/** Discoveries running at once, server-wide (each is a few HTTP requests to one camera). */
export const MAX_CONCURRENT_ONVIF = 4;
/** Discoveries one person may start per minute. */
export const ONVIF_PER_USER_PER_MINUTE = 12;

const port = z.number().int().min(1).max(65535);
const host = z
  .string()
  .trim()
  .min(1)
  .max(253)
  .regex(/^(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*|\[?[0-9A-Fa-f:.]+\]?)$/, '主机须为域名或 IP 地址 / host: a host name or an IP address');

const FAILURE: Record<OnvifFailureReason, { status: number; code: string }> = {
  auth: { status: 502, code: 'onvif_auth_failed' },
  not_onvif: { status: 502, code: 'onvif_not_supported' },
  unreachable: { status: 504, code: 'onvif_unreachable' },
};

/** Host of a stored camera address (IPv6 without brackets), or null. */
function cameraHost(url: string): string | null {
  try {
    return new URL(url).hostname.replace(/^\[|\]$/g, '') || null;
  } catch {
    return null;
  }
}

/** A camera-given URI the way it may be stored and shown, or null (dropped, said in `dropped`). */
function storable(uri: string | null, schema: z.ZodType<string>): string | null {
  return uri !== null && schema.safeParse(uri).success ? uri : null;
}

/** The discovery as answered: every URI checked like an operator-typed one. */
function sanitised(d: OnvifDiscovery): OnvifDiscovery & { dropped: number } {
  let dropped = 0;
  const keep = (uri: string | null, schema: z.ZodType<string>): string | null => {
    const ok = storable(uri, schema);
    if (uri !== null && ok === null) dropped++;
    return ok;
  };
  const profiles = d.profiles.map((p) => ({ ...p, stream_uri: keep(p.stream_uri, rtspUrl), snapshot_uri: keep(p.snapshot_uri, snapshotUrl) }));
  const byToken = new Map(profiles.map((p) => [p.token, p]));
  return {
    ...d,
    profiles,
    main_stream_uri: d.main ? (byToken.get(d.main)?.stream_uri ?? null) : null,
    sub_stream_uri: d.sub ? (byToken.get(d.sub)?.stream_uri ?? null) : null,
    snapshot_uri: storable(d.snapshot_uri, snapshotUrl),
    dropped,
  };
}

export function registerCameraOnvifRoutes(routes: ApiRoutes, pool: Pool, networks: CameraNetworks): void {
  let running = 0;

  /** Refuses a host outside CAMERA_NETWORKS before any packet goes to it (422, audited by the caller); inside `bounded`, so refusals count against the limits too. */
  async function allowed(host: string): Promise<void> {
    const refusal = await networks.refusal(host);
    if (refusal) throw new HttpError(422, 'camera_network_refused', refusal, { reason: 'not_allowed' });
  }
  const recent = new Map<number, number[]>();

  /** Runs one discovery within the server-wide and per-person bounds; failures become HTTP errors. */
  async function bounded<T>(userId: number, secrets: Array<string | null>, fn: () => Promise<T>): Promise<T> {
    const now = Date.now();
    const mine = (recent.get(userId) ?? []).filter((at) => now - at < 60_000);
    if (mine.length >= ONVIF_PER_USER_PER_MINUTE) throw new HttpError(429, 'onvif_rate_limited', `每人每分钟最多读取 ${ONVIF_PER_USER_PER_MINUTE} 次 ONVIF / at most ${ONVIF_PER_USER_PER_MINUTE} ONVIF reads per person per minute`);
    if (running >= MAX_CONCURRENT_ONVIF) throw new HttpError(429, 'busy', '同时进行的 ONVIF 读取过多，请稍后再试 / too many ONVIF reads running, try again shortly');
    mine.push(now);
    recent.set(userId, mine);
    if (recent.size > 10_000) for (const [k, v] of recent) if (v.every((at) => now - at >= 60_000)) recent.delete(k);
    running++;
    try {
      return await fn();
    } catch (err) {
      if (!(err instanceof OnvifError)) throw err;
      const f = FAILURE[err.reason];
      // A hostile device may echo the request: the detail never carries the credentials.
      let detail = err.detail;
      for (const s of secrets) if (s) detail = detail.split(s).join('***');
      throw new HttpError(f.status, f.code, ONVIF_FAILURE_TEXT[err.reason], { reason: err.reason, detail: detail.slice(0, 200) });
    } finally {
      running--;
    }
  }

  async function discover(cam: OnvifCamera, snapshot: boolean): Promise<OnvifDiscovery & { dropped: number; snapshot: string | null }> {
    const d = sanitised(await cam.discover());
    let image: string | null = null;
    if (snapshot && d.snapshot_uri) {
      // The picture is a bonus: a camera that will not give one still gives its streams.
      image = await cam.snapshot(d.snapshot_uri).then((jpeg) => `data:image/jpeg;base64,${jpeg.toString('base64')}`, () => null);
    }
    return { ...d, snapshot: image };
  }

  routes.add(
    {
      method: 'post',
      path: '/cameras/:id/onvif/discover',
      summary: "Read the camera's ONVIF profiles, main/sub stream and snapshot addresses (with its stored credentials); apply: store them on the camera",
      tag: 'cameras',
      roles: permissions.writeCameras,
      params: idParam,
      body: z.union([
        z.undefined(),
        z.strictObject({
          /** The device service's port; default the stored onvif_port, else 80. */
          port: port.optional(),
          apply: z.boolean().optional(),
          snapshot: z.boolean().optional(),
        }),
      ]),
      responses: {
        '404': 'no such camera in your subtree',
        '422': 'camera_network_refused: the host is outside CAMERA_NETWORKS (nothing sent); apply: the camera offers no usable main stream (onvif_no_stream)',
        '429': 'too many ONVIF reads running, or by you this minute',
        '502': 'onvif_auth_failed (the camera refused the credentials) or onvif_not_supported (not an ONVIF service); details.reason',
        '504': 'onvif_unreachable: the camera does not answer',
      },
    },
    async ({ params, body, user, req }) => {
      const { rows } = await pool.query<{ id: number; unit_id: number; rtsp_url: string; username: string | null; password: string | null; onvif_port: number | null }>(
        `SELECT c.id, c.unit_id, c.rtsp_url, c.username, c.password, c.onvif_port FROM cameras c JOIN units u ON u.id = c.unit_id
          WHERE u.path LIKE $1 AND c.id = $2 AND c.retired_at IS NULL`,
        [scopePattern(user), params.id],
      );
      const row = rows[0];
      if (!row) throw notFound('摄像机', 'camera');
      const hostname = cameraHost(row.rtsp_url);
      if (!hostname) throw new HttpError(422, 'camera_address_invalid', '摄像机地址无法解析 / the camera address cannot be parsed');
      const onvifPort = body?.port ?? row.onvif_port ?? 80;
      const apply = body?.apply === true;
      const started = Date.now();
      let result: Awaited<ReturnType<typeof discover>>;
      try {
        // The camera's own host only: its stored credentials belong to it.
        const cam = new OnvifCamera({ host: hostname, port: onvifPort, username: row.username, password: row.password, lookup: networks.lookup });
        result = await bounded(user.id, [row.username, row.password], async () => {
          await allowed(hostname);
          return discover(cam, body?.snapshot === true);
        });
      } catch (err) {
        if (err instanceof HttpError) {
          await audit(pool, {
            action: 'camera.onvif.discover', user, objectType: 'camera', objectId: row.id, unitId: row.unit_id, ip: req.ip ?? null,
            detail: { port: onvifPort, ok: false, reason: (err.details as { reason?: string } | undefined)?.reason ?? err.code, apply },
          });
        }
        throw err;
      }
      if (apply && !result.main_stream_uri) {
        throw new HttpError(422, 'onvif_no_stream', '摄像机没有可用的主码流地址 / the camera offers no usable main stream address', { profiles: result.profiles.length });
      }
      const stored = { device: result.device, profiles: result.profiles, main: result.main, sub: result.sub, address_rewritten: result.address_rewritten };
      if (apply) {
        await pool.query(
          `UPDATE cameras SET rtsp_url = $2, sub_stream_url = $3, snapshot_url = $4, onvif_port = $5, onvif_profiles = $6, onvif_checked_at = now() WHERE id = $1`,
          [row.id, result.main_stream_uri, result.sub_stream_uri, result.snapshot_uri, onvifPort, JSON.stringify(stored)],
        );
      }
      await audit(pool, {
        action: 'camera.onvif.discover', user, objectType: 'camera', objectId: row.id, unitId: row.unit_id, ip: req.ip ?? null,
        detail: { port: onvifPort, ok: true, apply, profiles: result.profiles.length, main: result.main, sub: result.sub, ms: Date.now() - started },
      });
      return { camera_id: row.id, port: onvifPort, applied: apply, ...result };
    },
  );

  routes.add(
    {
      method: 'post',
      path: '/units/:id/onvif/probe',
      summary: "Before adding a camera: read a device's ONVIF profiles and stream/snapshot addresses with the credentials given (nothing stored)",
      tag: 'cameras',
      roles: permissions.writeCameras,
      params: idParam,
      body: z.strictObject({
        host,
        port: port.default(80),
        username: z.string().max(100).nullable().optional(),
        password: z.string().max(100).nullable().optional(),
        snapshot: z.boolean().optional(),
      }),
      responses: {
        '404': 'no such unit in your subtree',
        '422': 'camera_network_refused: the host is outside CAMERA_NETWORKS (nothing sent)',
        '429': 'too many ONVIF reads running, or by you this minute',
        '502': 'onvif_auth_failed or onvif_not_supported; details.reason',
        '504': 'onvif_unreachable',
      },
    },
    async ({ params, body, user, req }) => {
      const unit = await requireUnitInScope(pool, user, params.id);
      const target = { host: body.host.replace(/^\[|\]$/g, ''), port: body.port };
      let result: Awaited<ReturnType<typeof discover>>;
      try {
        const cam = new OnvifCamera({ ...target, username: body.username ?? null, password: body.password ?? null, lookup: networks.lookup });
        result = await bounded(user.id, [body.username ?? null, body.password ?? null], async () => {
          await allowed(target.host);
          return discover(cam, body.snapshot === true);
        });
      } catch (err) {
        if (err instanceof HttpError) {
          await audit(pool, {
            action: 'camera.onvif.probe', user, objectType: 'unit', objectId: unit.id, unitId: unit.id, ip: req.ip ?? null,
            detail: { ...target, ok: false, reason: (err.details as { reason?: string } | undefined)?.reason ?? err.code },
          });
        }
        throw err;
      }
      await audit(pool, {
        action: 'camera.onvif.probe', user, objectType: 'unit', objectId: unit.id, unitId: unit.id, ip: req.ip ?? null,
        detail: { ...target, ok: true, profiles: result.profiles.length },
      });
      return { unit_id: unit.id, ...target, ...result };
    },
  );
}
