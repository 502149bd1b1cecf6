import type { KeyObject } from 'node:crypto';
import { z } from 'zod';
import { withTransaction, type Pool } from '../../../infra/db/pool.ts';
import { unitLevelSchema } from '../../../infra/org/levels.ts';
import { signJoinToken, type JoinClaims } from '../../../infra/tokens.ts';
import { audit } from '../audit.ts';
import { HttpError, inSubtree, type AuthUser } from '../auth-context.ts';
import { notFound } from '../errors.ts';
import { ApiRoutes, page, pageQuery } from '../route-registry.ts';
import { requireUnitInScope } from '../scope.ts';
import { LOCAL_SFU, type SfuDirectory } from '../sfu-directory.ts';
import { JOIN_TOKEN_TTL_SECONDS } from '../join-token-ttl.ts';
import { id, idQuery } from '../schemas.ts';

// Multi-level meetings. A leader picks the sites in their subtree — every unit of some levels under
// a unit ("all villages of this town"), or a hand-picked list — and chairs the SFU room `m-<id>`.
// A user whose unit is a site joins as a participant; leaders and supervisors above the chair's unit
// may watch; everyone else gets 404, as if the meeting did not exist.
// Above MEETING_OPEN_MAX_SITES sites (and for broadcasts) the room is held as main venue / branch venues
// (`layout: 'venue'` in every join token: sites watch the stage); the chair and those watching from above
// get `rotate: true` (they may step through the sites, 轮巡). Roster and attendance: meeting-roster.ts.

/** Upper bound on sites per meeting (a city has ~10,000 units). */
export const MAX_SITES = 20_000;
/** Live meetings one chair may hold at once: each is an SFU room on every node of its sites. */
export const MAX_LIVE_MEETINGS_PER_CHAIR = 20;

const createBody = z
  .strictObject({
    title: z.string().trim().min(1).max(100),
    mode: z.enum(['meeting', 'broadcast']).default('meeting'),
    /** Root of a level selection; default the chair's own unit. */
    under: id.optional(),
    levels: z.array(unitLevelSchema).min(1).max(5).optional(),
    unitIds: z.array(id).min(1).max(1000).optional(),
  })
  .refine((b) => (b.levels === undefined) !== (b.unitIds === undefined), { message: '须指定 levels 或 unitIds 之一 / give either levels or unitIds' });

export interface MeetingRow {
  id: number;
  title: string;
  mode: 'meeting' | 'broadcast';
  state: 'live' | 'ended';
  chair_user_id: number | null;
  chair_unit_id: number;
  chair_unit_name: string;
  chair_unit_path: string;
  created_at: Date;
  ended_at: Date | null;
  site_count: number;
}

const SELECT_MEETING = `
  SELECT m.id, m.title, m.mode, m.state, m.chair_user_id, m.chair_unit_id, u.name AS chair_unit_name, u.path AS chair_unit_path,
         m.created_at, m.ended_at, (SELECT count(*)::int FROM meeting_sites s WHERE s.meeting_id = m.id) AS site_count
    FROM meetings m JOIN units u ON u.id = m.chair_unit_id`;

/** Default of MEETING_OPEN_MAX_SITES: above this many sites a meeting is held as main venue / branch venues. */
export const DEFAULT_OPEN_MAX_SITES = 8;
/** Default of MEETING_ROTATION_SECONDS: the chair's rotation (轮巡) step. */
export const DEFAULT_ROTATION_SECONDS = 10;

export type MeetingLayout = NonNullable<JoinClaims['layout']>;

/** Everyone sees everyone in small meetings; above the threshold, and for broadcasts, sites watch the stage. */
export const layoutOf = (m: Pick<MeetingRow, 'mode' | 'site_count'>, openMaxSites: number): MeetingLayout =>
  m.mode === 'broadcast' || m.site_count > openMaxSites ? 'venue' : 'open';

/** The caller's part in a meeting (see `createMeetingRoutes`' load). */
export interface MeetingPart {
  meeting: MeetingRow;
  role: JoinClaims['role'];
  /** The chair, or a leader/supervisor watching from above: may rotate through the sites and read the roster. */
  rotate: boolean;
}

export interface MeetingRoutesOptions {
  /** MEETING_OPEN_MAX_SITES: meetings with more sites than this get `layout: 'venue'`; default 8. */
  openMaxSites?: number;
  /** MEETING_ROTATION_SECONDS: the console's default rotation step; default 10. */
  rotationSeconds?: number;
  /** Ends the meeting's SFU room (every peer on every node of the cascade is told and removed). */
  endRoom?: (room: string) => void;
  /** Which SFU node each person joins; default: this process's /sfu. */
  directory?: SfuDirectory;
  /** Lifetime of join tokens (pages fetch a fresh one to rejoin); default 10 minutes. */
  joinTokenTtlSeconds?: number;
  /** Films the chair can broadcast (web/film-broadcasts on this node); without it the film routes say 503. */
  films?: MeetingFilms;
}

/** Films on offer and playing one into a meeting room as its broadcast. */
export interface MeetingFilms {
  list(): Array<{ name: string; bytes: number }>;
  playing(roomId: string): { film: string; producerId: string } | undefined;
  play(roomId: string, film: string, unitId: number): Promise<{ film: string; producerId: string }>;
  stop(roomId: string): boolean;
}

const FILM_ERRORS: Record<string, [number, string]> = {
  not_found: [404, '没有这部影片 / no such film'],
  busy: [409, '同时播放的影片已达上限 / too many films playing'],
  ended: [409, '会议已结束 / the meeting has ended'],
};

/**
 * The caller's part in a meeting, or 404 when they have none: the chair; a user whose unit is a site
 * (participant, or viewer of a broadcast); a leader or supervisor at or above the chair's unit, who
 * watches (viewer) and may rotate through the sites.
 */
export async function loadMeetingPart(pool: Pool, user: AuthUser, meetingId: number): Promise<MeetingPart> {
  const { rows } = await pool.query<MeetingRow>(`${SELECT_MEETING} WHERE m.id = $1`, [meetingId]);
  const meeting = rows[0];
  if (meeting) {
    if (meeting.chair_user_id === user.id) return { meeting, role: 'chair', rotate: true };
    const site = await pool.query('SELECT 1 FROM meeting_sites WHERE meeting_id = $1 AND unit_id = $2', [meetingId, user.unitId]);
    if (site.rowCount) return { meeting, role: meeting.mode === 'broadcast' ? 'viewer' : 'participant', rotate: false };
    if ((user.role === 'leader' || user.role === 'supervisor') && inSubtree(user, meeting.chair_unit_path)) return { meeting, role: 'viewer', rotate: true };
  }
  throw notFound('会议', 'meeting');
}

export function createMeetingRoutes(pool: Pool, joinKey: KeyObject, options: MeetingRoutesOptions = {}): ApiRoutes {
  const routes = new ApiRoutes();
  const ttl = options.joinTokenTtlSeconds ?? JOIN_TOKEN_TTL_SECONDS;
  const openMaxSites = options.openMaxSites ?? DEFAULT_OPEN_MAX_SITES;
  const rotationSeconds = options.rotationSeconds ?? DEFAULT_ROTATION_SECONDS;
  const present = (m: MeetingRow) => ({
    id: m.id,
    title: m.title,
    mode: m.mode,
    state: m.state,
    room: `m-${m.id}`,
    chair: { unit_id: m.chair_unit_id, unit_name: m.chair_unit_name },
    site_count: m.site_count,
    layout: layoutOf(m, openMaxSites),
    rotation_seconds: rotationSeconds,
    created_at: m.created_at,
    ended_at: m.ended_at,
  });
  const load = (user: AuthUser, meetingId: number): Promise<MeetingPart> => loadMeetingPart(pool, user, meetingId);

  routes.add(
    {
      method: 'post',
      path: '/meetings',
      summary: 'A leader opens a meeting with the sites chosen by level under a unit, or by hand',
      tag: 'meetings',
      roles: ['leader'],
      body: createBody,
      status: 201,
      responses: { '404': 'a chosen unit is not in your subtree', '409': 'you already chair the most live meetings allowed', '422': 'no sites, or too many' },
    },
    async ({ body, user, req }) => {
      const meeting = await withTransaction(pool, async (db) => {
        // One chair's creations are serialised so the bound on live meetings holds under concurrency.
        await db.query(`SELECT pg_advisory_xact_lock(hashtext('meetings.chair:' || $1::text))`, [user.id]);
        const { rows: live } = await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM meetings WHERE chair_user_id = $1 AND state = 'live'`, [user.id]);
        if ((live[0]?.n ?? 0) >= MAX_LIVE_MEETINGS_PER_CHAIR) {
          throw new HttpError(409, 'too_many_meetings', `您已有 ${MAX_LIVE_MEETINGS_PER_CHAIR} 个进行中的会议，请先结束其中一些 / you already chair ${MAX_LIVE_MEETINGS_PER_CHAIR} live meetings: end some first`);
        }
        let siteIds: number[];
        if (body.unitIds) {
          const unique = [...new Set(body.unitIds)];
          const { rows } = await db.query<{ id: number }>('SELECT id FROM units WHERE id = ANY($1) AND path LIKE $2', [unique, `${user.unitPath}%`]);
          const found = new Set(rows.map((r) => r.id));
          const missing = unique.filter((u) => !found.has(u));
          if (missing.length) throw notFound('单位', 'unit', { unitIds: missing });
          siteIds = unique.filter((u) => u !== user.unitId);
        } else {
          const root = body.under ? await requireUnitInScope(db, user, body.under, 'under') : { path: user.unitPath };
          const { rows } = await db.query<{ id: number }>(
            'SELECT id FROM units WHERE path LIKE $1 AND level = ANY($2) AND id <> $3 ORDER BY path LIMIT $4',
            [`${root.path}%`, body.levels, user.unitId, MAX_SITES + 1],
          );
          siteIds = rows.map((r) => r.id);
        }
        if (siteIds.length === 0) throw new HttpError(422, 'no_sites', '所选范围内没有参会单位 / no sites in the selection');
        if (siteIds.length > MAX_SITES) throw new HttpError(422, 'too_many_sites', `参会单位超过 ${MAX_SITES} 个 / more than ${MAX_SITES} sites`);
        const { rows } = await db.query<{ id: number }>(
          'INSERT INTO meetings (title, mode, chair_user_id, chair_unit_id) VALUES ($1, $2, $3, $4) RETURNING id',
          [body.title, body.mode, user.id, user.unitId],
        );
        const meetingId = rows[0]!.id;
        await db.query('INSERT INTO meeting_sites (meeting_id, unit_id) SELECT $1, unnest($2::bigint[])', [meetingId, siteIds]);
        await audit(db, { action: 'meeting.create', user, objectType: 'meeting', objectId: meetingId, unitId: user.unitId, ip: req.ip ?? null, detail: { sites: siteIds.length, mode: body.mode } });
        return meetingId;
      });
      return present((await load(user, meeting)).meeting);
    },
  );

  routes.add(
    {
      method: 'get',
      path: '/meetings',
      summary: 'Live and past meetings you chair, take part in as a site, or may watch (chaired within your subtree)',
      tag: 'meetings',
      query: z.strictObject({ state: z.enum(['live', 'ended']).optional(), ...pageQuery }),
    },
    async ({ query, user }) => {
      const canWatch = user.role === 'leader' || user.role === 'supervisor';
      const args: unknown[] = [user.id, user.unitId, `${user.unitPath}%`, canWatch, query.limit + 1, query.offset];
      const state = query.state ? `AND m.state = $${args.push(query.state)}` : '';
      const { rows } = await pool.query<MeetingRow>(
        `${SELECT_MEETING}
          WHERE (m.chair_user_id = $1 OR EXISTS (SELECT 1 FROM meeting_sites s WHERE s.meeting_id = m.id AND s.unit_id = $2)
                 OR ($4::boolean AND u.path LIKE $3)) ${state}
          ORDER BY m.id DESC LIMIT $5 OFFSET $6`,
        args,
      );
      return page(rows.map(present), query.limit, query.offset);
    },
  );

  routes.add(
    { method: 'get', path: '/meetings/:id', summary: 'One meeting and your role in it', tag: 'meetings', params: z.object({ id: idQuery }) },
    async ({ params, user }) => {
      const { meeting, role, rotate } = await load(user, params.id);
      return { ...present(meeting), your_role: role, can_rotate: rotate };
    },
  );

  routes.add(
    {
      method: 'get',
      path: '/meetings/:id/sites',
      summary: 'The sites of a meeting, in tree order (paged)',
      tag: 'meetings',
      params: z.object({ id: idQuery }),
      query: z.strictObject(pageQuery),
    },
    async ({ params, query, user }) => {
      await load(user, params.id);
      const { rows } = await pool.query<{ id: number; name: string; level: string }>(
        `SELECT u.id, u.name, u.level FROM meeting_sites s JOIN units u ON u.id = s.unit_id WHERE s.meeting_id = $1 ORDER BY u.path LIMIT $2 OFFSET $3`,
        [params.id, query.limit + 1, query.offset],
      );
      return page(rows, query.limit, query.offset);
    },
  );

  routes.add(
    { method: 'post', path: '/meetings/:id/join-token', summary: 'A join token for the meeting room with your role (chair, participant or viewer)', tag: 'meetings', params: z.object({ id: idQuery }), status: 201 },
    async ({ params, user, req }) => {
      const { meeting, role, rotate } = await load(user, params.id);
      if (meeting.state !== 'live') throw new HttpError(409, 'ended', '会议已结束 / the meeting has ended');
      const room = `m-${meeting.id}`;
      const layout = layoutOf(meeting, openMaxSites);
      const { rows } = await pool.query<{ name: string }>('SELECT name FROM units WHERE id = $1', [user.unitId]);
      const displayName = `${rows[0]?.name ?? ''} ${user.displayName}`.trim().slice(0, 64);
      // The node enforces both: a venue room's sites consume only the stage; `rotate` may consume any site.
      const claims: JoinClaims = { userId: user.id, displayName, unitId: user.unitId, room, role, layout, ...(rotate ? { rotate: true } : {}) };
      const token = await signJoinToken(joinKey, claims, ttl);
      await audit(pool, { action: 'meeting.join_token', user, objectType: 'meeting', objectId: meeting.id, unitId: user.unitId, ip: req.ip ?? null, detail: { role, layout, rotate } });
      const sfu = options.directory ? await options.directory.urlFor(user.unitPath) : LOCAL_SFU;
      return { room, token, role, sfu, expires_in: ttl, layout, rotate };
    },
  );

  routes.add(
    { method: 'post', path: '/meetings/:id/end', summary: 'The chair ends the meeting', tag: 'meetings', params: z.object({ id: idQuery }) },
    async ({ params, user, req }) => {
      const { meeting, role } = await load(user, params.id);
      if (role !== 'chair') throw new HttpError(403, 'forbidden', '只有主持人可以结束会议 / only the chair ends the meeting');
      await pool.query(`UPDATE meetings SET state = 'ended', ended_at = now() WHERE id = $1 AND state = 'live'`, [meeting.id]);
      try {
        options.endRoom?.(`m-${meeting.id}`);
      } catch {
        // the meeting is ended in the database either way; the room empties as tokens expire
      }
      await audit(pool, { action: 'meeting.end', user, objectType: 'meeting', objectId: meeting.id, unitId: user.unitId, ip: req.ip ?? null });
      return present((await load(user, meeting.id)).meeting);
    },
  );

  // --- Broadcasting a film to every site (the chair's "play the education film") ---

  function films(): MeetingFilms {
    if (!options.films) throw new HttpError(503, 'no_films', '本系统未配置影片 / films are not available here');
    return options.films;
  }

  async function chairOf(user: AuthUser, meetingId: number): Promise<MeetingRow> {
    const { meeting, role } = await load(user, meetingId);
    if (role !== 'chair') throw new HttpError(403, 'forbidden', '只有主持人可以播放影片 / only the chair plays films');
    if (meeting.state !== 'live') throw new HttpError(409, 'ended', '会议已结束 / the meeting has ended');
    return meeting;
  }

  routes.add(
    { method: 'get', path: '/films', summary: 'Films a chair can broadcast to a meeting', tag: 'meetings', roles: ['leader', 'admin'] },
    async () => ({ films: films().list() }),
  );

  routes.add(
    {
      method: 'post',
      path: '/meetings/:id/film',
      summary: 'The chair plays a film to every site: it becomes the broadcast and every site microphone is held',
      tag: 'meetings',
      params: z.object({ id: idQuery }),
      body: z.strictObject({ film: z.string().min(1).max(200) }),
      status: 201,
      responses: { '404': 'no such film', '409': 'the meeting has ended, or too many films are playing' },
    },
    async ({ params, body, user, req }) => {
      const meeting = await chairOf(user, params.id);
      let playing: { film: string; producerId: string };
      try {
        playing = await films().play(`m-${meeting.id}`, body.film, meeting.chair_unit_id);
      } catch (err) {
        const known = FILM_ERRORS[(err as { code?: string }).code ?? ''];
        if (known) throw new HttpError(known[0], (err as { code: string }).code, known[1]);
        throw err;
      }
      await audit(pool, { action: 'meeting.film', user, objectType: 'meeting', objectId: meeting.id, unitId: user.unitId, ip: req.ip ?? null, detail: { film: body.film } });
      return playing;
    },
  );

  routes.add(
    { method: 'delete', path: '/meetings/:id/film', summary: 'The chair stops the film; the meeting goes on', tag: 'meetings', params: z.object({ id: idQuery }) },
    async ({ params, user }) => {
      const meeting = await chairOf(user, params.id);
      return { stopped: films().stop(`m-${meeting.id}`) };
    },
  );

  return routes;
}
