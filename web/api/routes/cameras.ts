import { z } from 'zod';
import type { Pool } from '../../../infra/db/pool.ts';
import { permissions } from '../permissions.ts';
import type { ApiRoutes } from '../route-registry.ts';
import { registerScopedResource, unitRef } from '../scoped-resource.ts';
import { boolQuery, id, idQuery, inCameraNetworks, name, rtspUrl, snapshotUrl } from '../schemas.ts';
import type { CameraNetworks } from '../../../infra/net/CameraNetworks.ts';

// Cameras. username/password are write-only: accepted on create/update, never selected into a
// response (has_credentials says whether they are set). Every single-camera read is audited.
// Stored credentials belong to the endpoint they were given for: the recorder's relay answers
// whatever server the address names, so a PATCH that points the camera elsewhere without giving
// credentials drops them (answer credentials_cleared) - else an operator could read them out with
// an address of their own and a "test now".

/** Where an address sends its credentials: scheme, host and port (the path plays no part). */
export function cameraEndpoint(url: string): string {
  try {
    const u = new URL(url);
    return `${u.protocol}//${u.hostname.toLowerCase()}:${u.port || (u.protocol === 'rtsps:' ? '322' : '554')}`;
  } catch {
    return url; // an unparsable stored address matches no new one
  }
}

/** The camera columns any response may carry; shared with other areas that show cameras. */
export const CAMERA_PUBLIC_COLUMNS =
  'c.id, c.unit_id, c.service_point_id, c.name, c.rtsp_url, c.location, c.enabled, c.rtsp_transport, (c.username IS NOT NULL OR c.password IS NOT NULL) AS has_credentials, c.created_at, c.sub_stream_url, c.snapshot_url, c.onvif_port, c.onvif_checked_at';

export function registerCameraRoutes(routes: ApiRoutes, pool: Pool, networks: CameraNetworks): void {
  const cameraUrl = inCameraNetworks(rtspUrl, networks);
  const secret = z.string().max(100).nullable().optional();
  const fields = {
    service_point_id: id.nullable().optional(),
    name,
    rtsp_url: cameraUrl,
    username: secret,
    password: secret,
    location: z.string().trim().max(200).nullable().optional(),
    enabled: z.boolean().optional(),
    rtsp_transport: z.enum(['tcp', 'udp', 'auto']).optional(),
    // ONVIF: the sub-stream the live wall pulls (credentials go to it only on the camera's own host),
    // the snapshot address and the device service's port.
    sub_stream_url: cameraUrl.nullable().optional(),
    snapshot_url: inCameraNetworks(snapshotUrl, networks).nullable().optional(),
    onvif_port: z.number().int().min(1).max(65535).nullable().optional(),
  };
  registerScopedResource(routes, pool, {
    path: '/cameras',
    tag: 'cameras',
    objectType: 'camera',
    zh: '摄像机',
    en: 'camera',
    table: 'cameras',
    alias: 'c',
    from: 'cameras c JOIN units u ON u.id = c.unit_id',
    select: CAMERA_PUBLIC_COLUMNS,
    filters: {
      unit_id: { schema: idQuery, sql: 'c.unit_id = ?' },
      service_point_id: { schema: idQuery, sql: 'c.service_point_id = ?' },
      enabled: { schema: boolQuery, sql: 'c.enabled = ?' },
      // Name search (strpos: the typed text is never a pattern).
      q: { schema: z.string().trim().min(1).max(100), sql: 'strpos(c.name, ?) > 0' },
    },
    create: z.strictObject({ unit_id: id, ...fields }),
    update: z.strictObject({ ...fields, unit_id: id.optional(), name: name.optional(), rtsp_url: cameraUrl.optional() }),
    refs: {
      unit_id: unitRef,
      service_point_id: { sql: 'SELECT u.path FROM service_points s JOIN units u ON u.id = s.unit_id WHERE s.id = $1 AND s.retired_at IS NULL', zh: '服务站点', en: 'service point' },
    },
    writeRoles: permissions.writeCameras,
    auditView: true,
    beforeUpdate: async (client, cameraId, body) => {
      if (typeof body.rtsp_url !== 'string') return { answer: { credentials_cleared: false } };
      const { rows } = await client.query<{ rtsp_url: string; username: string | null; password: string | null }>(
        'SELECT rtsp_url, username, password FROM cameras WHERE id = $1',
        [cameraId],
      );
      const old = rows[0]!;
      const from = cameraEndpoint(old.rtsp_url);
      const to = cameraEndpoint(body.rtsp_url);
      if (from === to) return { answer: { credentials_cleared: false } };
      // Each credential not given anew is dropped: a new user name must not be sent with the old password.
      const columns: Record<string, null> = {};
      let cleared = false;
      for (const k of ['username', 'password'] as const) {
        if (k in body) continue;
        columns[k] = null;
        if (old[k] !== null) cleared = true;
      }
      return { columns, answer: { credentials_cleared: cleared }, audit: { endpoint_changed: { from, to }, credentials_cleared: cleared } };
    },
    // A camera with recordings, capture jobs or sessions is retired, never deleted: evidence stays
    // reviewable; the camera stops recording (disabled, its open capture jobs cancelled).
    retire: {
      onRetire: async (client, cameraId) => {
        await client.query('UPDATE cameras SET enabled = false WHERE id = $1', [cameraId]);
        await client.query(
          `UPDATE capture_jobs SET state = 'cancelled', finished_at = now(), error = 'camera retired'
            WHERE camera_id = $1 AND state IN ('scheduled', 'recording')`,
          [cameraId],
        );
      },
      kept: async (client, cameraId) => {
        const { rows } = await client.query<Record<string, number>>(
          `SELECT (SELECT count(*) FROM recording_segments WHERE camera_id = $1)::int AS recording_segments,
                  (SELECT count(*) FROM recording_segments WHERE camera_id = $1 AND evidence)::int AS evidence_segments,
                  (SELECT count(*) FROM capture_jobs WHERE camera_id = $1)::int AS capture_jobs,
                  (SELECT count(*) FROM meeting_sessions WHERE camera_id = $1)::int AS meeting_sessions`,
          [cameraId],
        );
        return rows[0]!;
      },
    },
  });
}
