import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type express from 'express';
import type { Request } from 'express';
import { z } from 'zod';
import { withTransaction, type Pool } from '../../../infra/db/pool.ts';
import type { ObjectStorage } from '../../../infra/storage/ObjectStorage.ts';
import { captureRequestSchema } from '../../../recorder/Recorder.ts';
import { listTimeline, type TimelineSegment } from '../../../recorder/timeline.ts';
import { chaptersMetadata, exportSidecar, planExport } from '../../../recorder/ExportGaps.ts';
import { h264EncodeArgs, needsRendition, TranscodeBusyError, TranscodeCache } from '../../../recorder/TranscodeCache.ts';
import { audit } from '../audit.ts';
import { CAPTURE_JOB_BODY_LIMIT } from '../body-limits.ts';
import { HttpError, inSubtree, type AuthUser } from '../auth-context.ts';
import { notFound } from '../errors.ts';
import { ApiRoutes, idParam } from '../route-registry.ts';

// Review of recordings: a camera's timeline (segments with thumbnails and the gaps between them),
// one segment, and playback/export of any time range across segments - either as presigned URLs
// with in/out points for a player, or streamed as one MP4 cut by ffmpeg (stream copy).
// A camera or recording outside the caller's subtree answers 404, exactly like a missing one.
// Every view is written to audit_log. Camera credentials and URLs are never part of an answer.

export interface RecordingsRouterOptions {
  pool: Pool;
  storage: ObjectStorage;
  /** Segments further apart than this are reported as a gap. */
  gapToleranceMs?: number;
  presignExpirySeconds?: number;
  /** Longest range one listing may cover. */
  maxListRangeMs?: number;
  /** Longest range one export may cover. */
  maxExportRangeMs?: number;
  ffmpegPath?: string;
  /** MP4 exports running at once on this node (each is an ffmpeg): more answer 503. */
  maxConcurrentExports?: number;
  /** MP4 exports one user may run at once: more answer 429. */
  maxExportsPerUser?: number;
  /** Wall-clock limit of one MP4 export; the ffmpeg is killed after it. */
  exportTimeoutMs?: number;
  /** Longest range one export may cover when it must be encoded (H.265 source): about 25 CPU s per minute of 1080p. */
  maxTranscodedExportRangeMs?: number;
  /** H.264 renditions of H.265 segments for browsers (made on demand, cached in S3). */
  transcodes?: TranscodeCache;
  /** Longest capture window (pre-roll + window + post-roll) one job may ask for. */
  maxCaptureWindowMs?: number;
  /** How far ahead a capture job may start. */
  maxCaptureLeadMs?: number;
  /** Scheduled or recording jobs one camera may have. */
  maxOpenJobsPerCamera?: number;
  /** Scheduled or recording jobs the cameras of one unit may have together. */
  maxOpenJobsPerUnit?: number;
}

const SCHEDULE_ROLES = new Set(['leader', 'supervisor', 'operator', 'admin']);
// Evidence is exempt from retention for ever: only those who answer for a unit's meetings may mark it.
const EVIDENCE_ROLES = new Set(['leader', 'admin']);

// An instant in a query (ISO 8601), within what PostgreSQL's timestamptz holds (JavaScript's Date
// reaches further back: such a range would otherwise fail in the database).
const instant = z
  .string()
  .max(64)
  .meta({ format: 'date-time' })
  .pipe(z.coerce.date())
  .refine((d) => d.getTime() >= 0 && d.getUTCFullYear() <= 9999, { message: '时间超出范围 / time out of range (1970-9999)' });
const afterFrom = { message: 'to must be after from' };

const rangeQuery = z.strictObject({ from: instant, to: instant }).refine((q) => q.to > q.from, afterFrom);
const playbackQuery = z
  .strictObject({ from: instant, to: instant, format: z.enum(['json', 'mp4', 'manifest']).default('json') })
  .refine((q) => q.to > q.from, afterFrom);
const roomParam = z.object({ room: z.string().max(64).regex(/^[A-Za-z0-9_-]{1,64}$/) });

// A capture job's body: the recorder's capture request without the camera, which is the path's.
// Not strict, as before: extra fields (a cameraId among them) are dropped.
const { cameraId: _cameraId, startsAt, endsAt, ...captureFields } = captureRequestSchema.shape;
const captureBody = z
  .object({ ...captureFields, startsAt: startsAt.meta({ format: 'date-time' }), endsAt: endsAt.meta({ format: 'date-time' }) })
  .refine((r) => r.endsAt > r.startsAt, { message: 'endsAt must be after startsAt' });

interface ScopedCamera {
  id: number;
  unit_id: number;
  name: string;
  path: string;
}

/** The camera if it exists and lies in the caller's subtree; otherwise 404. */
export async function requireCameraInScope(pool: Pool, user: AuthUser, cameraId: number): Promise<ScopedCamera> {
  const { rows } = await pool.query<ScopedCamera>(
    'SELECT c.id, c.unit_id, c.name, u.path FROM cameras c JOIN units u ON u.id = c.unit_id WHERE c.id = $1',
    [cameraId],
  );
  const cam = rows[0];
  if (!cam || !inSubtree(user, cam.path)) throw notFound('摄像机', 'camera');
  return cam;
}

/** The recordings routes as an express router (mounted under /api). */
export function createRecordingsRouter(opts: RecordingsRouterOptions): express.Router {
  return createRecordingRoutes(opts).router;
}

/** The recordings routes, declared with their schemas (validated, and listed in /api/openapi.json). */
export function createRecordingRoutes(opts: RecordingsRouterOptions): ApiRoutes {
  const { pool, storage } = opts;
  const gapTol = opts.gapToleranceMs ?? 1_000;
  const expiry = opts.presignExpirySeconds ?? 900;
  const maxList = opts.maxListRangeMs ?? 24 * 3600_000;
  const maxExport = opts.maxExportRangeMs ?? 2 * 3600_000;
  const maxTranscodedExport = opts.maxTranscodedExportRangeMs ?? 15 * 60_000;
  const maxExports = opts.maxConcurrentExports ?? 4;
  const maxExportsPerUser = opts.maxExportsPerUser ?? 1;
  const exportTimeoutMs = opts.exportTimeoutMs ?? 10 * 60_000;
  const maxWindow = opts.maxCaptureWindowMs ?? 4 * 3600_000;
  const maxLead = opts.maxCaptureLeadMs ?? 30 * 86_400_000;
  const maxJobsPerCamera = opts.maxOpenJobsPerCamera ?? 4;
  const maxJobsPerUnit = opts.maxOpenJobsPerUnit ?? 50;
  const exports = { total: 0, byUser: new Map<number, number>() };
  /** Counts an export against both caps; the returned function gives the slot back (once). */
  const reserveExport = (userId: number): (() => void) => {
    exports.total++;
    exports.byUser.set(userId, (exports.byUser.get(userId) ?? 0) + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      exports.total--;
      const n = (exports.byUser.get(userId) ?? 1) - 1;
      if (n > 0) exports.byUser.set(userId, n);
      else exports.byUser.delete(userId);
    };
  };
  const transcodes = opts.transcodes ?? new TranscodeCache({ storage, ...(opts.ffmpegPath ? { ffmpegPath: opts.ffmpegPath } : {}) });
  /** A browser-playable URL for a segment: the original, or its H.264 rendition (made now if missing). */
  const playableUrl = async (objectKey: string, videoCodec: string | null): Promise<string> => {
    if (!needsRendition(videoCodec)) return storage.presignGet(objectKey, expiry);
    try {
      return await storage.presignGet(await transcodes.ensure(objectKey), expiry);
    } catch (err) {
      if (err instanceof TranscodeBusyError) throw new HttpError(503, 'transcode_busy', '转码任务已满，请稍后再试 / too many recordings being converted for playback, try again later');
      throw err;
    }
  };
  /**
   * Streams one MP4 of the plan's pieces, end to end (its duration is the covered time), with a chapter
   * per continuous stretch naming the gap before it and the sidecar in the file's comment. H.265
   * sources are encoded to H.264 so the export plays in any browser; others are stream-copied (cuts
   * then fall on the keyframe before each in-point).
   */
  const streamExport = async (plan: ReturnType<typeof planExport>, transcoded: boolean, sidecar: Record<string, unknown>, cameraId: number, from: Date, req: Request, res: express.Response): Promise<undefined> => {
    // A client gone while the URLs were signed gets no ffmpeg (it would hold the slot until its deadline).
    if (req.socket.destroyed || res.destroyed) return undefined;
    const urls = await Promise.all(plan.pieces.map((p) => storage.presignInternal(p.objectKey, expiry)));
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'export-'));
    try {
      const list = path.join(dir, 'list.txt');
      fs.writeFileSync(
        list,
        `ffconcat version 1.0\n${plan.pieces.map((p, i) => `file '${urls[i]!.replace(/'/g, "'\\''")}'\ninpoint ${p.inS.toFixed(3)}\noutpoint ${p.outS.toFixed(3)}\n`).join('')}`,
      );
      const meta = path.join(dir, 'chapters.txt');
      // The file's comment carries the sidecar without its per-segment pieces (a 2 h export has hundreds).
      const { pieces: _pieces, ...summary } = sidecar;
      fs.writeFileSync(meta, chaptersMetadata(plan, JSON.stringify(summary)));
      const codec = transcoded ? ['-map', '0:v:0', '-map', '0:a:0?', ...h264EncodeArgs('ultrafast'), '-c:a', 'copy'] : ['-map', '0', '-c', 'copy'];
      const ff = spawn(opts.ffmpegPath ?? 'ffmpeg', [
        '-v', 'error', '-f', 'concat', '-safe', '0', '-protocol_whitelist', 'file,http,https,tcp,tls', '-i', list,
        '-f', 'ffmetadata', '-i', meta, '-map_metadata', '1', '-map_chapters', '1',
        ...codec, '-movflags', 'frag_keyframe+empty_moov+default_base_moof', '-f', 'mp4', 'pipe:1',
      ], { stdio: ['ignore', 'pipe', 'pipe'] });
      let stderr = '';
      ff.stderr.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-2000)));
      const deadline = setTimeout(() => {
        stderr += ' export took too long';
        ff.kill('SIGKILL');
      }, exportTimeoutMs);
      res.on('close', () => {
        if (ff.exitCode === null) ff.kill('SIGKILL');
      });
      // The gaps travel with the answer too, for a client that keeps only the file.
      res.status(200).type('video/mp4')
        .setHeader('Content-Disposition', `attachment; filename="camera-${cameraId}-${from.toISOString().replace(/[:.]/g, '')}.mp4"`)
        .setHeader('X-Export-Covered-Ms', String(plan.coveredMs))
        .setHeader('X-Export-Gaps', String(plan.gaps.length));
      ff.stdout.pipe(res);
      await new Promise<void>((resolve) => {
        ff.on('close', (code) => {
          clearTimeout(deadline);
          if (code !== 0) res.destroy(new Error(`export failed: ${stderr.trim().slice(0, 300)}`));
          resolve();
        });
        ff.on('error', () => {
          clearTimeout(deadline);
          res.destroy();
          resolve();
        });
      });
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
    // Answered (streamed, or the connection dropped): nothing for ApiRoutes to add.
    return undefined;
  };
  const routes = new ApiRoutes();

  const presented = async (s: TimelineSegment) => ({
    id: s.id,
    started_at: s.startedAt.toISOString(),
    ended_at: s.endedAt.toISOString(),
    duration_ms: s.endedAt.getTime() - s.startedAt.getTime(),
    bytes: s.bytes,
    video_codec: s.videoCodec,
    audio_codec: s.audioCodec,
    evidence: s.evidence,
    capture_job_id: s.captureJobId,
    thumb_url: s.thumbKey ? await storage.presignGet(s.thumbKey, expiry) : null,
    strip_url: s.stripKey ? await storage.presignGet(s.stripKey, expiry) : null,
  });

  const checkListRange = (q: { from: Date; to: Date }): void => {
    if (q.to.getTime() - q.from.getTime() > maxList) throw new HttpError(400, 'range_too_long', `时间范围过长 / range longer than ${maxList / 3600_000} h`);
  };
  /** A timeline as the list routes answer it: bounds, coverage, segments with their URLs, and the gaps. */
  const timelineAnswer = async (tl: Awaited<ReturnType<typeof listTimeline>>) => ({
    from: tl.from.toISOString(),
    to: tl.to.toISOString(),
    covered_ms: tl.coveredMs,
    segments: await Promise.all(tl.segments.map(presented)),
    gaps: tl.gaps.map((g) => ({ from: g.from.toISOString(), to: g.to.toISOString(), duration_ms: g.durationMs })),
  });

  const trail = (req: Request, user: AuthUser, action: string, objectType: string, objectId: number | string, unitId: number, detail: Record<string, unknown>) =>
    audit(pool, { action, user, objectType, objectId, unitId, ip: req.ip ?? null, detail });

  // Timeline: segments overlapping [from, to) and the gaps between them.
  routes.add(
    {
      method: 'get',
      path: '/cameras/:id/recordings',
      summary: "A camera's recording timeline over [from, to): segments (thumbnails, presigned) and the gaps between them",
      tag: 'recordings',
      params: idParam,
      query: rangeQuery,
      responses: { '400': 'invalid or reversed range, or range_too_long' },
    },
    async ({ params, query: q, user, req }) => {
      checkListRange(q);
      const cam = await requireCameraInScope(pool, user, params.id);
      const tl = await listTimeline(pool, { cameraId: cam.id }, q.from, q.to, gapTol);
      await trail(req, user, 'recording.list', 'camera', cam.id, cam.unit_id, { from: q.from, to: q.to, segments: tl.segments.length });
      return {
        camera: { id: cam.id, name: cam.name, unit_id: cam.unit_id },
        ...(await timelineAnswer(tl)),
      };
    },
  );

  // A recorded meeting room (conference recording): visible where the owning unit is in the subtree.
  routes.add(
    {
      method: 'get',
      path: '/rooms/:room/recordings',
      summary: "A recorded meeting room's timeline over [from, to), where the owning unit lies in your subtree",
      tag: 'recordings',
      params: roomParam,
      query: rangeQuery,
      responses: { '400': 'invalid or reversed range, or range_too_long' },
    },
    async ({ params, query: q, user, req }) => {
      const { room } = params;
      checkListRange(q);
      const owner = await pool.query<{ unit_id: number }>(
        `SELECT s.unit_id FROM recording_segments s JOIN units u ON u.id = s.unit_id WHERE s.room_id = $1 AND u.path LIKE $2 LIMIT 1`,
        [room, `${user.unitPath}%`],
      );
      if (!owner.rows[0]) throw notFound('会议录像', 'room recording');
      const tl = await listTimeline(pool, { roomId: room }, q.from, q.to, gapTol, { unitPathPrefix: user.unitPath });
      await trail(req, user, 'recording.list', 'room', room, owner.rows[0].unit_id, { room, from: q.from, to: q.to, segments: tl.segments.length });
      return {
        room,
        ...(await timelineAnswer(tl)),
      };
    },
  );

  // One segment with a presigned URL for its media.
  routes.add(
    {
      method: 'get',
      path: '/recordings/:id',
      summary: 'One recording segment with a presigned URL for its media',
      tag: 'recordings',
      params: idParam,
    },
    async ({ params, user, req }) => {
      const { rows } = await pool.query<{ id: number; camera_id: number | null; room_id: string | null; unit_id: number; path: string; object_key: string; started_at: Date; ended_at: Date; bytes: number; video_codec: string | null; audio_codec: string | null; thumb_key: string | null; strip_key: string | null; evidence: boolean; capture_job_id: number | null }>(
        `SELECT s.id, s.camera_id, s.room_id, u.id AS unit_id, u.path, s.object_key, s.started_at, s.ended_at, s.bytes, s.video_codec, s.audio_codec,
                s.thumb_key, s.strip_key, s.evidence, s.capture_job_id
           FROM recording_segments s
           JOIN units u ON u.id = COALESCE(s.unit_id, (SELECT c.unit_id FROM cameras c WHERE c.id = s.camera_id))
          WHERE s.id = $1`,
        [params.id],
      );
      const r = rows[0];
      if (!r || !inSubtree(user, r.path)) throw notFound('录像', 'recording');
      await trail(req, user, 'recording.view', 'recording', r.id, r.unit_id, { camera_id: r.camera_id, room_id: r.room_id });
      const seg = await presented({
        id: r.id, startedAt: r.started_at, endedAt: r.ended_at, bytes: Number(r.bytes), videoCodec: r.video_codec, audioCodec: r.audio_codec,
        objectKey: r.object_key, thumbKey: r.thumb_key, stripKey: r.strip_key, evidence: r.evidence, captureJobId: r.capture_job_id,
      });
      // H.265 (as many cameras send) plays in browsers only through its H.264 rendition; the original stays downloadable.
      const rendition = needsRendition(r.video_codec);
      return {
        ...seg, camera_id: r.camera_id, room_id: r.room_id,
        media_url: await playableUrl(r.object_key, r.video_codec),
        rendition: rendition ? 'h264' : null,
        original_url: rendition ? await storage.presignGet(r.object_key, expiry, { 'response-content-disposition': `attachment; filename="recording-${r.id}.mp4"` }) : null,
      };
    },
  );

  // Playback/export of [from, to) across segments. format=json (default): a playlist of presigned
  // URLs with in/out offsets, plus the gaps. format=mp4: one MP4 streamed back, cut by stream copy
  // (the handler writes the answer itself; ApiRoutes adds nothing once headers are out).
  routes.add(
    {
      method: 'get',
      path: '/cameras/:id/playback',
      summary: 'Play back or export [from, to) across segments: a playlist of presigned URLs with in/out points (format=json; H.265 segments as H.264 renditions), one MP4 streamed back with a chapter per continuous stretch (format=mp4, video/mp4; stream copy, or H.264 when the source is H.265), or the export\'s JSON sidecar listing its pieces and gaps in wall-clock and file time (format=manifest)',
      tag: 'recordings',
      params: idParam,
      query: playbackQuery,
      responses: {
        '400': 'invalid or reversed range, or range_too_long',
        '404': "no such camera in your subtree, or nothing recorded in the range (no_recording)",
        '429': 'you already have an MP4 export running (export_limit; Retry-After)',
        '503': 'too many MP4 exports running on this server (export_busy; Retry-After), or too many conversions for playback (transcode_busy)',
      },
    },
    async ({ params, query: q, user, req, res }) => {
      if (q.to.getTime() - q.from.getTime() > maxExport) throw new HttpError(400, 'range_too_long', `导出范围过长 / range longer than ${maxExport / 3600_000} h`);
      const cam = await requireCameraInScope(pool, user, params.id);
      const tl = await listTimeline(pool, { cameraId: cam.id }, q.from, q.to, gapTol);
      await trail(req, user, q.format === 'mp4' ? 'recording.export' : q.format === 'manifest' ? 'recording.export_manifest' : 'recording.playback', 'camera', cam.id, cam.unit_id, { from: q.from, to: q.to, segments: tl.segments.length });
      if (tl.segments.length === 0) throw new HttpError(404, 'no_recording', '该时段没有录像 / nothing recorded in this range', { gaps: tl.gaps });
      // Each export is an ffmpeg: bounded per user and per node before one is spawned. The slot is taken
      // in the same step as the check (before any await, so parallel requests cannot all pass it) and
      // given back in `finally`, whatever ends the export.
      let release: (() => void) | undefined;
      if (q.format === 'mp4') {
        if ((exports.byUser.get(user.id) ?? 0) >= maxExportsPerUser) {
          res.setHeader('Retry-After', '30');
          throw new HttpError(429, 'export_limit', `您已有导出在进行中 / you already have ${maxExportsPerUser} export(s) running`);
        }
        if (exports.total >= maxExports) {
          res.setHeader('Retry-After', '30');
          throw new HttpError(503, 'export_busy', '导出任务已满，请稍后再试 / too many exports running on this server, try again later');
        }
        release = reserveExport(user.id);
      }
      try {
        const plan = planExport(q.from, q.to, tl.segments, tl.gaps);
        const transcoded = plan.pieces.some((p) => needsRendition(p.videoCodec));
        const sidecar = exportSidecar(plan, { cameraId: cam.id, cameraName: cam.name, transcoded });
        if (q.format === 'manifest') return sidecar;
        if (q.format === 'mp4' && transcoded && q.to.getTime() - q.from.getTime() > maxTranscodedExport) {
          throw new HttpError(400, 'range_too_long', `H.265 录像导出需转码，单次最长 ${maxTranscodedExport / 60_000} 分钟 / H.265 exports are converted to H.264: at most ${maxTranscodedExport / 60_000} min at a time`);
        }
        if (q.format === 'mp4') return await streamExport(plan, transcoded, sidecar, cam.id, q.from, req, res);
        // Renditions are made for the first few H.265 segments only (what a player needs to start); the
        // rest answer url null with rendition "pending" and are converted in the background, to be asked for again.
        let toConvert = 8;
        let background = 32;
        const items = await Promise.all(
          tl.segments.map(async (s) => ({
            id: s.id,
            ...(!needsRendition(s.videoCodec) || toConvert-- > 0
              ? { url: await playableUrl(s.objectKey, s.videoCodec), rendition: needsRendition(s.videoCodec) ? 'h264' : null }
              : { url: null, rendition: (background-- > 0 && void transcodes.ensure(s.objectKey).catch(() => undefined), 'pending') }),
            started_at: s.startedAt.toISOString(),
            ended_at: s.endedAt.toISOString(),
            // Seconds into this segment where the requested range starts / ends.
            in_s: Math.max(0, (q.from.getTime() - s.startedAt.getTime()) / 1000),
            out_s: Math.min(s.endedAt.getTime(), q.to.getTime()) / 1000 - s.startedAt.getTime() / 1000,
          })),
        );
        return {
          camera: { id: cam.id, name: cam.name },
          from: q.from.toISOString(),
          to: q.to.toISOString(),
          covered_ms: tl.coveredMs,
          segments: items,
          gaps: tl.gaps.map((g) => ({ from: g.from.toISOString(), to: g.to.toISOString(), duration_ms: g.durationMs })),
        };
      } finally {
        release?.();
      }
    },
  );

  // Capture jobs (the scheduler will create these itself; this is the manual API).
  routes.add(
    {
      method: 'post',
      path: '/cameras/:id/capture-jobs',
      summary: 'Schedule a capture of a camera of your subtree over [startsAt, endsAt] (leader, supervisor, operator, admin; evidence: leader, admin)',
      tag: 'recordings',
      params: idParam,
      body: captureBody,
      bodyLimit: CAPTURE_JOB_BODY_LIMIT,
      status: 201,
      responses: {
        '400': 'invalid body, or window_too_long, window_past, too_far_ahead',
        '403': 'role may not schedule captures, or may not mark evidence (evidence_forbidden)',
        '404': 'no such camera, or meeting session, in your subtree',
        '409': 'camera disabled or retired (camera_disabled), or too many open capture jobs (too_many_jobs)',
        '413': 'body larger than 16 kB',
      },
    },
    async ({ params, body, user, req }) => {
      const cam = await requireCameraInScope(pool, user, params.id);
      if (!SCHEDULE_ROLES.has(user.role)) throw new HttpError(403, 'forbidden', '无权执行此操作 / your role may not do this');
      if (body.evidence && !EVIDENCE_ROLES.has(user.role)) throw new HttpError(403, 'evidence_forbidden', '无权将录像标记为证据 / your role may not mark recordings as evidence');
      const now = Date.now();
      const windowMs = body.endsAt.getTime() - body.startsAt.getTime() + (body.preRollS + body.postRollS) * 1000;
      if (windowMs > maxWindow) throw new HttpError(400, 'window_too_long', `录制时段过长 / capture window longer than ${maxWindow / 3600_000} h`);
      if (body.endsAt.getTime() + body.postRollS * 1000 <= now) throw new HttpError(400, 'window_past', '录制时段已过 / the capture window is over');
      if (body.startsAt.getTime() - now > maxLead) throw new HttpError(400, 'too_far_ahead', `开始时间过远 / a capture may start at most ${maxLead / 86_400_000} days ahead`);
      const rows = await withTransaction(pool, async (client) => {
        // Serialises job creation per camera so two requests cannot both pass the count.
        const live = await client.query('SELECT 1 FROM cameras WHERE id = $1 AND enabled AND retired_at IS NULL FOR UPDATE', [cam.id]);
        if (live.rowCount === 0) throw new HttpError(409, 'camera_disabled', '摄像机已停用 / camera is disabled');
        if (body.sessionId !== null) {
          // A job may only name a meeting session of the caller's own subtree.
          const s = await client.query<{ path: string }>(
            'SELECT u.path FROM meeting_sessions s JOIN branches b ON b.id = s.branch_id JOIN units u ON u.id = b.unit_id WHERE s.id = $1',
            [body.sessionId],
          );
          if (!s.rows[0] || !inSubtree(user, s.rows[0].path)) throw notFound('会议', 'meeting session', { field: 'sessionId' });
        }
        const open = await client.query<{ camera: number; unit: number }>(
          `SELECT count(*) FILTER (WHERE j.camera_id = $1)::int AS camera, count(*)::int AS unit
             FROM capture_jobs j JOIN cameras c ON c.id = j.camera_id
            WHERE c.unit_id = $2 AND j.state IN ('scheduled', 'recording')`,
          [cam.id, cam.unit_id],
        );
        if (open.rows[0]!.camera >= maxJobsPerCamera) throw new HttpError(409, 'too_many_jobs', `该摄像机待执行的录制任务已满 / camera already has ${maxJobsPerCamera} open capture jobs`);
        if (open.rows[0]!.unit >= maxJobsPerUnit) throw new HttpError(409, 'too_many_jobs', `本单位待执行的录制任务已满 / unit already has ${maxJobsPerUnit} open capture jobs`);
        const ins = await client.query<{ id: number; state: string }>(
          `INSERT INTO capture_jobs (camera_id, session_id, starts_at, ends_at, pre_roll_s, post_roll_s, evidence)
           VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id, state`,
          [cam.id, body.sessionId, body.startsAt, body.endsAt, body.preRollS, body.postRollS, body.evidence],
        );
        return ins.rows;
      });
      await trail(req, user, 'capture.schedule', 'camera', cam.id, cam.unit_id, { job_id: rows[0]!.id, starts_at: body.startsAt, ends_at: body.endsAt, evidence: body.evidence });
      return { id: rows[0]!.id, state: rows[0]!.state, camera_id: cam.id, starts_at: body.startsAt.toISOString(), ends_at: body.endsAt.toISOString() };
    },
  );

  return routes;
}
