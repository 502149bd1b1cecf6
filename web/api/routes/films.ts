import { execFile } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { Transform } from 'node:stream';
import { promisify } from 'node:util';
import { z } from 'zod';
import type { Pool } from '../../../infra/db/pool.ts';
import type { ObjectStorage } from '../../../infra/storage/ObjectStorage.ts';
import { audit } from '../audit.ts';
import { HttpError, inSubtree, type AuthUser } from '../auth-context.ts';
import { tooLarge } from '../body-limits.ts';
import { forbidden, notFound } from '../errors.ts';
import { ApiRoutes, idParam } from '../route-registry.ts';
import { idQuery } from '../schemas.ts';

// Video on demand (seed 001), under /api/vod (/api/films is the meeting broadcast's folder).
// A control centre (city or county) uploads an education film. It is spooled to a local file within
// the size limit (ffprobe and the remux need the whole file: a camcorder's MP4 keeps its index at the
// end), checked with ffprobe - H.264 video, AAC or no audio, in MP4; anything else is refused (415),
// not transcoded: a transcode of a long film would hold a CPU of the control centre's server for as
// long as the film - remuxed with the index at the front (stream copy: playback starts before the
// download ends) and streamed into the media store (S3). Every site below the owner plays it from a
// presigned S3 URL (S3 answers Range requests: the player seeks without downloading the film).
// Viewings are recorded per site (film_views) and shown to the owner's operators and leaders.
// A film neither owned by an ancestor of the caller's unit (or the unit itself) nor inside the
// caller's subtree answers 404, like a missing one.

const execFileP = promisify(execFile);

export interface FilmRoutesOptions {
  pool: Pool;
  storage: ObjectStorage;
  /** Largest film accepted (bytes); default 2 GiB. */
  maxBytes?: number;
  presignExpirySeconds?: number;
  ffprobePath?: string;
  ffmpegPath?: string;
  /** Where an upload is spooled while it is probed; default the OS temp dir. */
  spoolDir?: string;
  /** Uploads this node takes at once (each spools a file and runs ffprobe/ffmpeg); more answer 503. */
  maxConcurrentUploads?: number;
}

const MANAGE_ROLES = ['leader', 'operator', 'admin'] as const;
const WATCH_ROLES = ['leader', 'supervisor', 'operator', 'admin', 'secretary', 'clerk'] as const;
/** Levels with a control centre that publishes films. */
const OWNER_LEVELS = new Set(['city', 'county']);

const uploadQuery = z.strictObject({
  title: z.string().trim().min(1).max(200),
  description: z.string().trim().max(2000).optional(),
});
const listQuery = z.strictObject({
  /** `manage`: the films owned inside the caller's subtree (the upload page); default: the films the caller's site may watch. */
  scope: z.enum(['watch', 'manage']).default('watch'),
});
const viewParams = z.object({ id: idQuery, viewId: idQuery });
const progressBody = z.strictObject({
  watchedS: z.number().min(0).max(24 * 3600),
  completed: z.boolean().optional(),
});

interface FilmRow {
  id: string;
  unit_id: string;
  owner: string;
  owner_path: string;
  title: string;
  description: string | null;
  object_key: string;
  bytes: string;
  duration_s: number;
  video_codec: string;
  audio_codec: string | null;
  width: number | null;
  height: number | null;
  created_at: Date;
  retired_at: Date | null;
}

const FILM_COLUMNS = `f.id, f.unit_id, u.name AS owner, u.path AS owner_path, f.title, f.description, f.object_key, f.bytes,
  f.duration_s, f.video_codec, f.audio_codec, f.width, f.height, f.created_at, f.retired_at`;

const presentFilm = (f: FilmRow) => ({
  id: Number(f.id),
  unitId: Number(f.unit_id),
  owner: f.owner,
  title: f.title,
  description: f.description,
  bytes: Number(f.bytes),
  durationS: f.duration_s,
  videoCodec: f.video_codec,
  audioCodec: f.audio_codec,
  width: f.width,
  height: f.height,
  createdAt: f.created_at.toISOString(),
  retired: f.retired_at !== null,
});

/** The caller may watch a film owned by their unit or an ancestor, and see any film inside their subtree. */
function visible(user: AuthUser, ownerPath: string): boolean {
  return user.unitPath.startsWith(ownerPath) || inSubtree(user, ownerPath);
}

interface Probe {
  format: string;
  durationS: number;
  video?: { codec: string; width: number; height: number };
  audio?: { codec: string };
}

async function probe(ffprobe: string, file: string): Promise<Probe | undefined> {
  try {
    const { stdout } = await execFileP(ffprobe, ['-v', 'error', '-print_format', 'json', '-show_format', '-show_streams', file], { maxBuffer: 4 * 1024 * 1024, timeout: 60_000 });
    const j = JSON.parse(stdout) as { format?: { format_name?: string; duration?: string }; streams?: Array<{ codec_type?: string; codec_name?: string; width?: number; height?: number }> };
    const v = j.streams?.find((s) => s.codec_type === 'video');
    const a = j.streams?.find((s) => s.codec_type === 'audio');
    return {
      format: j.format?.format_name ?? '',
      durationS: Number(j.format?.duration ?? 0),
      ...(v ? { video: { codec: v.codec_name ?? '', width: v.width ?? 0, height: v.height ?? 0 } } : {}),
      ...(a ? { audio: { codec: a.codec_name ?? '' } } : {}),
    };
  } catch {
    return undefined;
  }
}

export function createFilmRoutes(opts: FilmRoutesOptions): ApiRoutes {
  const { pool, storage } = opts;
  const maxBytes = opts.maxBytes ?? 2 * 1024 ** 3;
  const expiry = opts.presignExpirySeconds ?? 4 * 3600;
  const ffprobe = opts.ffprobePath ?? 'ffprobe';
  const ffmpeg = opts.ffmpegPath ?? 'ffmpeg';
  const maxUploads = opts.maxConcurrentUploads ?? 2;
  let uploads = 0;
  const routes = new ApiRoutes();

  async function loadFilm(user: AuthUser, id: number): Promise<FilmRow> {
    const { rows } = await pool.query<FilmRow>(`SELECT ${FILM_COLUMNS} FROM films f JOIN units u ON u.id = f.unit_id WHERE f.id = $1`, [id]);
    const f = rows[0];
    if (!f || !visible(user, f.owner_path)) throw notFound('影片', 'film');
    return f;
  }

  routes.add(
    {
      method: 'post',
      path: '/vod/films',
      summary: 'Upload an education film (raw MP4 body, H.264 video + AAC audio; others refused with 415) owned by your unit (city or county)',
      tag: 'films',
      roles: MANAGE_ROLES,
      query: uploadQuery,
      rawBody: { contentTypes: ['video/mp4', 'application/octet-stream'], description: 'the film file itself' },
      status: 201,
      responses: { '403': 'only a city or county control centre publishes films', '411': 'Content-Length required', '413': 'film larger than the limit', '415': 'not H.264/AAC in MP4', '503': 'this node is taking as many uploads as it may' },
    },
    async ({ req, res, query, user }) => {
      const { rows: unitRows } = await pool.query<{ level: string }>('SELECT level FROM units WHERE id = $1', [user.unitId]);
      if (!OWNER_LEVELS.has(unitRows[0]?.level ?? '')) throw new HttpError(403, 'forbidden', '只有市、县（区）指挥中心可以上传影片 / only a city or county control centre can upload films');
      const declared = Number(req.headers['content-length'] ?? NaN);
      if (!Number.isFinite(declared)) throw new HttpError(411, 'length_required', '需要 Content-Length / Content-Length required');
      if (declared > maxBytes) throw tooLarge();
      if (declared <= 0) throw new HttpError(400, 'empty', '影片文件为空 / empty file');
      if (uploads >= maxUploads) {
        res.setHeader('Retry-After', '60');
        throw new HttpError(503, 'uploads_busy', `本节点同时最多处理 ${maxUploads} 个上传，请稍后再试 / this node takes at most ${maxUploads} uploads at once; try again shortly`);
      }
      uploads++;
      const dir = await fs.promises.mkdtemp(path.join(opts.spoolDir ?? os.tmpdir(), 'film-')).catch((err: unknown) => {
        uploads--;
        throw err;
      });
      try {
        const raw = path.join(dir, 'upload');
        let seen = 0;
        const limit = new Transform({
          transform(chunk: Buffer, _enc, cb) {
            seen += chunk.length;
            if (seen > maxBytes) cb(tooLarge());
            else cb(null, chunk);
          },
        });
        await pipeline(req, limit, fs.createWriteStream(raw));
        const p = await probe(ffprobe, raw);
        if (!p || !p.format.split(',').includes('mp4') || !p.video || !(p.durationS > 0)) {
          throw new HttpError(415, 'unsupported_film', '不是可播放的 MP4 影片 / not a playable MP4 film');
        }
        if (p.video.codec !== 'h264' || (p.audio && p.audio.codec !== 'aac')) {
          throw new HttpError(
            415,
            'unsupported_codec',
            `影片须为 H.264 视频和 AAC 音频（本片为 ${p.video.codec}/${p.audio?.codec ?? '无音频'}），请先转码 / the film must be H.264 video with AAC audio (this one is ${p.video.codec}/${p.audio?.codec ?? 'no audio'}); transcode it first`,
          );
        }
        // Stream copy with the index (moov) at the front: the kiosk starts playing before the whole film arrives.
        const ready = path.join(dir, 'film.mp4');
        try {
          await execFileP(ffmpeg, ['-v', 'error', '-i', raw, '-map', '0:v:0', '-map', '0:a:0?', '-c', 'copy', '-movflags', '+faststart', '-f', 'mp4', ready], { timeout: 10 * 60_000 });
        } catch {
          throw new HttpError(415, 'unsupported_film', '影片无法处理 / the film could not be processed');
        }
        const bytes = (await fs.promises.stat(ready)).size;
        const key = `films/${user.unitId}/${crypto.randomUUID()}.mp4`;
        await storage.putFile(key, ready, 'video/mp4');
        const { rows } = await pool.query<{ id: string }>(
          `INSERT INTO films (unit_id, title, description, object_key, bytes, duration_s, video_codec, audio_codec, width, height, created_by)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id`,
          [user.unitId, query.title, query.description ?? null, key, bytes, p.durationS, p.video.codec, p.audio?.codec ?? null, p.video.width, p.video.height, user.id],
        );
        const id = Number(rows[0]!.id);
        await audit(pool, { action: 'film.upload', user, objectType: 'film', objectId: id, unitId: user.unitId, ip: req.ip ?? null, detail: { bytes, title: query.title } });
        return presentFilm((await loadFilm(user, id)));
      } finally {
        uploads--;
        await fs.promises.rm(dir, { recursive: true, force: true });
      }
    },
  );

  routes.add(
    {
      method: 'get',
      path: '/vod/films',
      summary: "Films your site may watch (owned by your unit or an ancestor), or with scope=manage those owned inside your subtree with their viewing figures",
      tag: 'films',
      roles: WATCH_ROLES,
      query: listQuery,
    },
    async ({ query, user }) => {
      if (query.scope === 'manage') {
        if (!(MANAGE_ROLES as readonly string[]).includes(user.role) && user.role !== 'supervisor') throw forbidden();
        const { rows } = await pool.query<FilmRow & { sites: number; views: number }>(
          `SELECT ${FILM_COLUMNS},
                  (SELECT count(DISTINCT v.unit_id)::int FROM film_views v JOIN units vu ON vu.id = v.unit_id WHERE v.film_id = f.id AND vu.path LIKE $1 || '%') AS sites,
                  (SELECT count(*)::int FROM film_views v JOIN units vu ON vu.id = v.unit_id WHERE v.film_id = f.id AND vu.path LIKE $1 || '%') AS views
             FROM films f JOIN units u ON u.id = f.unit_id
            WHERE u.path LIKE $1 || '%' AND f.retired_at IS NULL ORDER BY f.created_at DESC, f.id DESC LIMIT 500`,
          [user.unitPath],
        );
        return { items: rows.map((r) => ({ ...presentFilm(r), sites: r.sites, views: r.views })) };
      }
      // Ancestors or self: the owner's path is a prefix of the caller's.
      const { rows } = await pool.query<FilmRow & { watched_s: number | null; completed: boolean | null }>(
        `SELECT ${FILM_COLUMNS},
                (SELECT max(v.watched_s) FROM film_views v WHERE v.film_id = f.id AND v.unit_id = $2) AS watched_s,
                (SELECT bool_or(v.completed) FROM film_views v WHERE v.film_id = f.id AND v.unit_id = $2) AS completed
           FROM films f JOIN units u ON u.id = f.unit_id
          WHERE $1 LIKE u.path || '%' AND f.retired_at IS NULL ORDER BY f.created_at DESC, f.id DESC LIMIT 500`,
        [user.unitPath, user.unitId],
      );
      return { items: rows.map((r) => ({ ...presentFilm(r), watchedS: r.watched_s ?? 0, completed: r.completed ?? false })) };
    },
  );

  routes.add(
    {
      method: 'get',
      path: '/vod/films/:id',
      summary: 'One film with a presigned playback URL (S3 answers Range requests: seeking fetches only what is played)',
      tag: 'films',
      roles: WATCH_ROLES,
      params: idParam,
      responses: { '404': 'no such film for your unit' },
    },
    async ({ params, user, req }) => {
      const f = await loadFilm(user, params.id);
      if (f.retired_at && !inSubtree(user, f.owner_path)) throw notFound('影片', 'film');
      const url = await storage.presignGet(f.object_key, expiry);
      await audit(pool, { action: 'film.play', user, objectType: 'film', objectId: Number(f.id), unitId: user.unitId, ip: req.ip ?? null });
      return { ...presentFilm(f), url, expiresIn: expiry };
    },
  );

  routes.add(
    {
      method: 'post',
      path: '/vod/films/:id/views',
      summary: 'Start a viewing of a film at your site (recorded per site)',
      tag: 'films',
      roles: WATCH_ROLES,
      params: idParam,
      status: 201,
      responses: { '404': 'no such film for your unit' },
    },
    async ({ params, user }) => {
      const f = await loadFilm(user, params.id);
      if (f.retired_at) throw notFound('影片', 'film');
      const { rows } = await pool.query<{ id: string; started_at: Date }>(
        'INSERT INTO film_views (film_id, unit_id, user_id) VALUES ($1, $2, $3) RETURNING id, started_at',
        [f.id, user.unitId, user.id],
      );
      return { id: Number(rows[0]!.id), filmId: Number(f.id), startedAt: rows[0]!.started_at.toISOString() };
    },
  );

  routes.add(
    {
      method: 'post',
      path: '/vod/films/:id/views/:viewId/progress',
      summary: 'Report how far a viewing got (seconds of the film watched; completed at the end)',
      tag: 'films',
      roles: WATCH_ROLES,
      params: viewParams,
      body: progressBody,
      responses: { '404': 'no such viewing of yours' },
    },
    async ({ params, body, user }) => {
      const f = await loadFilm(user, params.id);
      // Only the viewer's own record moves; watched seconds never go back and never pass the film's length.
      const { rows } = await pool.query<{ watched_s: number; completed: boolean }>(
        `UPDATE film_views SET watched_s = greatest(watched_s, least($4::double precision, $5::double precision)),
                completed = completed OR coalesce($6::boolean, false) OR least($4::double precision, $5::double precision) >= 0.95 * $5::double precision,
                updated_at = now()
          WHERE id = $1 AND film_id = $2 AND user_id = $3 RETURNING watched_s, completed`,
        [params.viewId, f.id, user.id, body.watchedS, f.duration_s, body.completed ?? null],
      );
      if (!rows[0]) throw notFound('观看记录', 'viewing');
      return { watchedS: rows[0].watched_s, completed: rows[0].completed };
    },
  );

  routes.add(
    {
      method: 'get',
      path: '/vod/films/:id/views',
      summary: "Viewing records of a film per site, for the sites of your subtree",
      tag: 'films',
      roles: ['leader', 'supervisor', 'operator', 'admin'],
      params: idParam,
      responses: { '404': 'no such film for your unit' },
    },
    async ({ params, user }) => {
      const f = await loadFilm(user, params.id);
      const { rows } = await pool.query<{ unit_id: string; unit: string; level: string; views: number; watched_s: number; completed: boolean; first_at: Date; last_at: Date }>(
        `SELECT v.unit_id, u.name AS unit, u.level, count(*)::int AS views, max(v.watched_s) AS watched_s, bool_or(v.completed) AS completed,
                min(v.started_at) AS first_at, max(v.updated_at) AS last_at
           FROM film_views v JOIN units u ON u.id = v.unit_id
          WHERE v.film_id = $1 AND u.path LIKE $2 || '%'
          GROUP BY v.unit_id, u.name, u.level, u.path ORDER BY u.path`,
        [f.id, user.unitPath],
      );
      return {
        film: presentFilm(f),
        sites: rows.map((r) => ({ unitId: Number(r.unit_id), unit: r.unit, level: r.level, views: r.views, watchedS: r.watched_s, completed: r.completed, firstAt: r.first_at.toISOString(), lastAt: r.last_at.toISOString() })),
      };
    },
  );

  routes.add(
    {
      method: 'delete',
      path: '/vod/films/:id',
      summary: 'Retire a film (no longer listed or playable; its viewing records are kept)',
      tag: 'films',
      roles: MANAGE_ROLES,
      params: idParam,
      responses: { '404': 'no such film in your subtree' },
    },
    async ({ params, user, req }) => {
      const f = await loadFilm(user, params.id);
      if (!inSubtree(user, f.owner_path)) throw notFound('影片', 'film');
      await pool.query('UPDATE films SET retired_at = coalesce(retired_at, now()) WHERE id = $1', [f.id]);
      await audit(pool, { action: 'film.retire', user, objectType: 'film', objectId: Number(f.id), unitId: Number(f.unit_id), ip: req.ip ?? null });
      return undefined;
    },
  );

  return routes;
}
