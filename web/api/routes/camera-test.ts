import { execFile } from 'node:child_process';
import net from 'node:net';
import type { Pool } from '../../../infra/db/pool.ts';
import { cameraPullUrl } from '../../../recorder/Recorder.ts';
import { probe } from '../../../recorder/probe.ts';
import { pullSource, type RtspTransport } from '../../../recorder/RtspRestreamer.ts';
import { redact } from '../../../recorder/SegmentCapture.ts';
import { HttpError } from '../auth-context.ts';
import { audit } from '../audit.ts';
import { notFound } from '../errors.ts';
import { permissions } from '../permissions.ts';
import { z } from 'zod';
import { idParam, type ApiRoutes } from '../route-registry.ts';
import { CameraNetworks } from '../../../infra/net/CameraNetworks.ts';
import { scopePattern } from '../scope.ts';

// "Test now" for the operator's console: the server connects to the camera with its stored
// credentials (they never leave the server, and reach ffmpeg only through the recorder's loopback
// restreamer, never its command line) over the camera's own RTSP transport (tcp, udp or auto), answers codec and resolution with one JPEG frame, or the reason it
// failed in words an operator can act on (wrong password, wrong path, unreachable, no answer).
// Each test is remembered (camera_status: online or not, since when, why not), and the camera's state
// joins it with its newest segment and capture job.

/** Tests running at once, server-wide: each is an ffprobe and an ffmpeg on a camera link. */
export const MAX_CONCURRENT_CAMERA_TESTS = 4;
const RTSP_TIMEOUT_MS = 5_000;

export type CameraTestFailure = 'unauthorized' | 'not_found' | 'unsupported_transport' | 'unreachable' | 'timeout' | 'no_video' | 'failed' | 'not_allowed';

const FAILURE_TEXT: Record<CameraTestFailure, string> = {
  unauthorized: '用户名或密码错误（摄像机回答 401） / wrong username or password (the camera answered 401)',
  not_found: '地址中的路径不存在（摄像机回答 404） / the path in the address does not exist (the camera answered 404)',
  unsupported_transport: '摄像机不支持所设的传输方式（回答 461），请改为 UDP 或自动 / the camera refuses the configured RTSP transport (461); choose UDP or auto',
  unreachable: '无法连接摄像机（地址或端口不通） / cannot connect to the camera (address or port unreachable)',
  timeout: '摄像机无应答（超时） / the camera did not answer in time',
  no_video: '摄像机没有视频流 / the camera sends no video',
  failed: '摄像机连接失败 / the camera could not be read',
  not_allowed: '地址不在本服务器允许连接的摄像机网段内（CAMERA_NETWORKS），未连接 / the address is outside the camera networks this server may connect to (CAMERA_NETWORKS); nothing was connected',
};

/** Maps ffmpeg's own words (last lines of stderr) to a reason. */
export function classifyRtspError(text: string): CameraTestFailure {
  // Words, not bare numbers: a port such as :40401 is in the same text.
  if (/unauthori[sz]ed|authorization failed/i.test(text)) return 'unauthorized';
  if (/not found/i.test(text)) return 'not_found';
  // 461 from the camera (passed on by the restreamer): ffmpeg says "Unsupported transport" / EPROTONOSUPPORT.
  if (/unsupported transport|protocol not supported/i.test(text)) return 'unsupported_transport';
  if (/refused|unreachable|no route|resolve|name or service|host is down|EHOSTUNREACH|ECONNREFUSED/i.test(text)) return 'unreachable';
  if (/time(d)? ?out|ETIMEDOUT|SIGKILL|killed/i.test(text)) return 'timeout';
  return 'failed';
}

export type CameraTestResult =
  | { ok: true; camera_id: number; video_codec: string; audio_codec: string | null; width: number | null; height: number | null; snapshot: string; tested_at: string }
  | { ok: false; camera_id: number; reason: CameraTestFailure; message: string; detail: string; tested_at: string };

/** One frame as JPEG (at most 640 wide), or rejects with ffmpeg's last words. */
function grabJpeg(url: string): Promise<Buffer> {
  const args = ['-v', 'error', '-rtsp_transport', 'tcp', '-timeout', String(RTSP_TIMEOUT_MS * 1000), '-i', url];
  args.push('-frames:v', '1', '-vf', "scale='min(640,iw)':-2", '-f', 'image2', '-c:v', 'mjpeg', '-q:v', '5', 'pipe:1');
  return new Promise((resolve, reject) => {
    execFile('ffmpeg', args, { encoding: 'buffer', timeout: RTSP_TIMEOUT_MS * 3, killSignal: 'SIGKILL', maxBuffer: 4 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (err || stdout.length === 0) reject(new Error(`ffmpeg: ${stderr.toString().trim().split('\n').slice(-2).join(' ') || err?.message || 'no frame'}`));
      else resolve(stdout);
    });
  });
}

/** Whether the camera's host accepts a TCP connection: the relay in between would hide why not. */
function reach(target: URL, networks: CameraNetworks): Promise<{ reason: CameraTestFailure; detail: string } | null> {
  const port = Number(target.port || (target.protocol === 'rtsps:' ? 322 : 554));
  return new Promise((resolve) => {
    const socket = net.connect({ host: target.hostname.replace(/^\[|\]$/g, ''), port, lookup: networks.lookup });
    const timer = setTimeout(() => {
      socket.destroy();
      resolve({ reason: 'timeout', detail: `no TCP answer from ${target.hostname}:${port} in ${RTSP_TIMEOUT_MS} ms` });
    }, RTSP_TIMEOUT_MS);
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.destroy();
      resolve(null);
    });
    socket.once('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      if (err.code === 'ECAMERANET') resolve({ reason: 'not_allowed', detail: err.message });
      else resolve({ reason: 'unreachable', detail: `${err.code ?? 'error'} ${target.hostname}:${port}` });
    });
  });
}

export async function testCamera(
  row: { id: number; rtsp_url: string; username: string | null; password: string | null; rtsp_transport?: RtspTransport | null },
  networks: CameraNetworks = CameraNetworks.fromEnv(),
): Promise<CameraTestResult> {
  const testedAt = new Date().toISOString();
  let relayUrl = '';
  const fail = (reason: CameraTestFailure, detail: string): CameraTestResult => ({
    ok: false,
    camera_id: row.id,
    reason,
    message: FAILURE_TEXT[reason],
    // ffmpeg echoes the URL it was given (the relay's, with its token): the camera's own address is shown.
    detail: redact(relayUrl ? detail.split(relayUrl).join(row.rtsp_url) : detail)
      .replace(/rtsp:\/\/127\.0\.0\.1:\d+\/[A-Za-z0-9_-]{24}/g, 'rtsp://relay')
      .slice(0, 300),
    tested_at: testedAt,
  });
  let target: URL;
  try {
    target = new URL(row.rtsp_url);
  } catch {
    return fail('unreachable', 'the address cannot be parsed');
  }
  // Checked before any packet leaves: an operator's address must not make the server probe other hosts.
  // An IP here; a name by the connection's own lookup in reach(), which resolves it once and refuses it.
  const refusal = networks.literalRefusal(target.hostname);
  if (refusal) return fail('not_allowed', refusal);
  const unreachable = await reach(target, networks);
  if (unreachable) return fail(unreachable.reason, unreachable.detail);
  // The restreamer meets the camera with its transport setting; ffprobe and ffmpeg read it over loopback TCP.
  const source = await pullSource(cameraPullUrl(row), { transport: row.rtsp_transport ?? 'auto' });
  relayUrl = source.url;
  try {
    return await probeAndGrab(row.id, source.url, testedAt, fail);
  } finally {
    await source.close();
  }
}

async function probeAndGrab(
  cameraId: number,
  url: string,
  testedAt: string,
  fail: (reason: CameraTestFailure, detail: string) => CameraTestResult,
): Promise<CameraTestResult> {
  const started = Date.now();
  let info;
  try {
    info = await probe(url, { rtspTimeoutMs: RTSP_TIMEOUT_MS, timeoutMs: RTSP_TIMEOUT_MS * 2 });
  } catch (err) {
    const text = (err as Error).message;
    const reason = classifyRtspError(text);
    // A camera that accepts the connection and then says nothing makes ffmpeg give up with a vague
    // "invalid data" once its socket timeout has passed.
    return fail(reason === 'failed' && Date.now() - started >= RTSP_TIMEOUT_MS * 0.9 ? 'timeout' : reason, text);
  }
  if (!info.videoCodec) return fail('no_video', `audio ${info.audioCodec ?? 'none'}`);
  let jpeg: Buffer;
  try {
    jpeg = await grabJpeg(url);
  } catch (err) {
    const text = (err as Error).message;
    return fail(classifyRtspError(text), text);
  }
  return {
    ok: true,
    camera_id: cameraId,
    video_codec: info.videoCodec,
    audio_codec: info.audioCodec ?? null,
    width: info.width ?? null,
    height: info.height ?? null,
    snapshot: `data:image/jpeg;base64,${jpeg.toString('base64')}`,
    tested_at: testedAt,
  };
}

export function registerCameraTestRoutes(routes: ApiRoutes, pool: Pool, networks: CameraNetworks): void {
  let running = 0;

  routes.add(
    {
      method: 'post',
      path: '/cameras/:id/test',
      summary: 'Connect to the camera now (over its RTSP transport): codec, resolution and a JPEG snapshot, or why it failed (unauthorized, not_found, unsupported_transport, unreachable, timeout, not_allowed: outside CAMERA_NETWORKS, nothing connected)',
      tag: 'cameras',
      roles: permissions.writeCameras,
      params: idParam,
      responses: { '429': 'too many camera tests running; try again shortly' },
    },
    async ({ params, user, req }) => {
      const { rows } = await pool.query<{ id: number; unit_id: number; rtsp_url: string; username: string | null; password: string | null; rtsp_transport: RtspTransport }>(
        `SELECT c.id, c.unit_id, c.rtsp_url, c.username, c.password, c.rtsp_transport FROM cameras c JOIN units u ON u.id = c.unit_id
          WHERE u.path LIKE $1 AND c.id = $2 AND c.retired_at IS NULL`,
        [scopePattern(user), params.id],
      );
      const row = rows[0];
      if (!row) throw notFound('摄像机', 'camera');
      if (running >= MAX_CONCURRENT_CAMERA_TESTS) throw new HttpError(429, 'busy', '同时进行的摄像机测试过多，请稍后再试 / too many camera tests running, try again shortly');
      running++;
      let result: CameraTestResult;
      try {
        result = await testCamera(row, networks);
      } finally {
        running--;
      }
      // `since` moves only when the state flips, so the page can say "offline since 08:12".
      await pool.query(
        `INSERT INTO camera_status (camera_id, online, since, reason, checked_at) VALUES ($1, $2, now(), $3, now())
         ON CONFLICT (camera_id) DO UPDATE SET
           since = CASE WHEN camera_status.online = EXCLUDED.online THEN camera_status.since ELSE now() END,
           online = EXCLUDED.online, reason = EXCLUDED.reason, checked_at = now()`,
        [row.id, result.ok, result.ok ? null : result.reason],
      );
      await audit(pool, {
        action: 'camera.test',
        user,
        objectType: 'camera',
        objectId: row.id,
        unitId: row.unit_id,
        ip: req.ip ?? null,
        detail: result.ok ? { ok: true, codec: result.video_codec, width: result.width, height: result.height } : { ok: false, reason: result.reason },
      });
      return result;
    },
  );

  routes.add(
    {
      method: 'get',
      path: '/cameras/:id/state',
      summary: "A camera's recording state: newest segment, newest capture job and its error",
      tag: 'cameras',
      params: idParam,
    },
    async ({ params, user }) => {
      const { rows } = await pool.query<{ id: number; enabled: boolean }>(
        `SELECT c.id, c.enabled FROM cameras c JOIN units u ON u.id = c.unit_id WHERE u.path LIKE $1 AND c.id = $2 AND c.retired_at IS NULL`,
        [scopePattern(user), params.id],
      );
      if (!rows[0]) throw notFound('摄像机', 'camera');
      const seg = await pool.query<{ started_at: Date; ended_at: Date }>(
        'SELECT started_at, ended_at FROM recording_segments WHERE camera_id = $1 ORDER BY ended_at DESC LIMIT 1',
        [params.id],
      );
      const job = await pool.query<{ id: number; state: string; starts_at: Date; ends_at: Date; error: string | null }>(
        'SELECT id, state, starts_at, ends_at, error FROM capture_jobs WHERE camera_id = $1 ORDER BY id DESC LIMIT 1',
        [params.id],
      );
      const j = job.rows[0];
      const status = (await readStatuses([params.id])).get(params.id) ?? null;
      return {
        camera_id: params.id,
        enabled: rows[0].enabled,
        status,
        last_segment: seg.rows[0] ? { started_at: seg.rows[0].started_at.toISOString(), ended_at: seg.rows[0].ended_at.toISOString() } : null,
        last_job: j ? { id: Number(j.id), state: j.state, starts_at: j.starts_at.toISOString(), ends_at: j.ends_at.toISOString(), error: j.error ? redactText(j.error) : null } : null,
      };
    },
  );

  routes.add(
    {
      method: 'get',
      path: '/camera-statuses',
      summary: 'What the last test of each listed camera found (online, since, reason) and its newest segment; cameras outside the subtree are left out',
      tag: 'cameras',
      query: z.strictObject({ ids: z.string().regex(/^\d{1,15}(,\d{1,15}){0,99}$/, 'ids: up to 100 comma-separated camera ids') }),
    },
    async ({ query, user }) => {
      const ids = [...new Set(query.ids.split(',').map(Number))];
      const { rows } = await pool.query<{ id: number; last_segment_at: Date | null }>(
        `SELECT c.id, (SELECT max(ended_at) FROM recording_segments s WHERE s.camera_id = c.id) AS last_segment_at
           FROM cameras c JOIN units u ON u.id = c.unit_id WHERE u.path LIKE $1 AND c.id = ANY($2::bigint[]) AND c.retired_at IS NULL`,
        [scopePattern(user), ids],
      );
      const statuses = await readStatuses(rows.map((r) => Number(r.id)));
      return {
        items: rows.map((r) => ({
          camera_id: Number(r.id),
          status: statuses.get(Number(r.id)) ?? null,
          last_segment_at: r.last_segment_at ? r.last_segment_at.toISOString() : null,
        })),
      };
    },
  );

  async function readStatuses(ids: number[]): Promise<Map<number, { online: boolean; since: string; reason: string | null; checked_at: string }>> {
    const { rows } = await pool.query<{ camera_id: string; online: boolean; since: Date; reason: string | null; checked_at: Date }>(
      'SELECT camera_id, online, since, reason, checked_at FROM camera_status WHERE camera_id = ANY($1::bigint[])',
      [ids],
    );
    return new Map(rows.map((r) => [Number(r.camera_id), { online: r.online, since: r.since.toISOString(), reason: r.reason, checked_at: r.checked_at.toISOString() }]));
  }
}

function redactText(s: string): string {
  return redact(s).slice(0, 300);
}
