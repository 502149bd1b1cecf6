import type { Request } from 'express';
import { z } from 'zod';
import type { Pool } from '../../../infra/db/pool.ts';
import { audit } from '../audit.ts';
import type { AuthUser } from '../auth-context.ts';
import { notFound } from '../errors.ts';
import { ApiRoutes } from '../route-registry.ts';
import { requireUnitInScope } from '../scope.ts';
import { idQuery } from '../schemas.ts';
import { loadMeetingPart, type MeetingRow } from './meetings.ts';

// The chair's view of a large meeting (issue 11): which sites are connected, which are missing, counts
// by child unit, and the attendance record kept with the meeting. "Joined" is what the root SFU node saw
// (web/attendance-recorder.ts writes meeting_attendance as sites join and leave anywhere in the cascade).
// Only the chair and the leaders/supervisors above may read it; sites and strangers get 404, as for a
// meeting they cannot see.

const params = z.object({ id: idQuery });
const paging = {
  limit: z.coerce.number().int().min(1).max(500).default(100),
  offset: z.coerce.number().int().min(0).max(1_000_000).default(0),
};
/** A name fragment; NUL cannot reach PostgreSQL text. */
const nameFragment = z
  .string()
  .trim()
  .min(1)
  .max(100)
  .refine((s) => !s.includes('\u0000'), '不能包含空字符 / must not contain NUL');

const rosterQuery = z.strictObject({
  filter: z.enum(['all', 'joined', 'missing']).default('all'),
  under: idQuery.optional(),
  q: nameFragment.optional(),
  ...paging,
});
const summaryQuery = z.strictObject({ under: idQuery.optional() });
const attendanceQuery = z.strictObject({ format: z.enum(['json', 'csv']).default('json'), ...paging });

/** Per site: what its sessions add up to (overlapping sessions of one site — two devices — merged). */
interface SiteStats {
  unit_id: number;
  first_joined_at: Date | null;
  last_left_at: Date | null;
  present: boolean;
  minutes: number;
  sessions: number;
}

interface SiteRow {
  unit_id: number;
  name: string;
  parent_name: string | null;
  level: string;
}

/**
 * Sessions merged into islands per unit (a session starting after every earlier one ended opens a new
 * island), then summed: a site with two devices in the meeting is present once, not twice. Live
 * sessions count up to now. `$2` null: every unit of the meeting.
 */
const SITE_STATS = `
  WITH s AS (
    SELECT unit_id, joined_at AS b, coalesce(left_at, now()) AS e, left_at
      FROM meeting_attendance WHERE meeting_id = $1 AND ($2::bigint[] IS NULL OR unit_id = ANY($2::bigint[]))
  ), m AS (
    SELECT s.*, max(e) OVER (PARTITION BY unit_id ORDER BY b, e ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS prev_end FROM s
  ), g AS (
    SELECT m.*, count(*) FILTER (WHERE prev_end IS NULL OR b > prev_end) OVER (PARTITION BY unit_id ORDER BY b, e ROWS UNBOUNDED PRECEDING) AS island FROM m
  ), i AS (
    SELECT unit_id, min(b) AS b, max(e) AS e FROM g GROUP BY unit_id, island
  ), totals AS (
    SELECT unit_id, round((sum(extract(epoch FROM e - b)) / 60)::numeric, 2)::float8 AS minutes FROM i GROUP BY unit_id
  )
  SELECT s.unit_id::int AS unit_id, min(s.b) AS first_joined_at,
         CASE WHEN bool_or(s.left_at IS NULL) THEN NULL ELSE max(s.left_at) END AS last_left_at,
         bool_or(s.left_at IS NULL) AS present, t.minutes, count(*)::int AS sessions
    FROM s JOIN totals t USING (unit_id)
   GROUP BY s.unit_id, t.minutes`;

/** The live session of each connected site (the most recent one when a site has two). */
const LIVE = `
  SELECT DISTINCT ON (unit_id) unit_id, peer_id, display_name
    FROM meeting_attendance WHERE meeting_id = $1 AND left_at IS NULL ORDER BY unit_id, joined_at DESC`;

/** One audit row per person, meeting and view per minute: the console polls the counts every few seconds. */
const AUDIT_EVERY_MS = 60_000;
const MAX_AUDIT_MEMORY = 10_000;

const csvField = (v: unknown): string => {
  const s = v === null || v === undefined ? '' : v instanceof Date ? v.toISOString() : String(v);
  // Quote what CSV needs quoted, and neutralise spreadsheet formulas (=, +, -, @ at the start of a name).
  const safe = /^[=+\-@\t\r]/.test(s) && !/^-?\d/.test(s) ? `'${s}` : s;
  return /[",\r\n]/.test(safe) ? `"${safe.replace(/"/g, '""')}"` : safe;
};

export function createMeetingRosterRoutes(pool: Pool): ApiRoutes {
  const routes = new ApiRoutes();
  const lastAudit = new Map<string, number>();

  /** The meeting when the caller chairs it or watches it from above; 404 for sites and everyone else. */
  async function watched(user: AuthUser, meetingId: number): Promise<MeetingRow> {
    const part = await loadMeetingPart(pool, user, meetingId);
    if (!part.rotate) throw notFound('会议', 'meeting');
    return part.meeting;
  }

  /** `under` as a path prefix: the caller's choice (in their subtree, else 404) or the fallback. */
  async function subtree(user: AuthUser, under: number | undefined, fallback: { id: number; path: string }): Promise<{ id: number; path: string }> {
    if (under === undefined) return fallback;
    const unit = await requireUnitInScope(pool, user, under, 'under');
    return { id: unit.id, path: unit.path };
  }

  async function trail(req: Request, user: AuthUser, action: string, meetingId: number, detail: Record<string, unknown>, throttled: boolean): Promise<void> {
    if (throttled) {
      const key = `${user.id}:${meetingId}:${action}`;
      const now = Date.now();
      const last = lastAudit.get(key);
      if (last !== undefined && now - last < AUDIT_EVERY_MS) return;
      if (lastAudit.size >= MAX_AUDIT_MEMORY) lastAudit.clear();
      lastAudit.set(key, now);
    }
    await audit(pool, { action, user, objectType: 'meeting', objectId: meetingId, unitId: user.unitId, ip: req.ip ?? null, detail });
  }

  async function stats(meetingId: number, unitIds: number[] | null): Promise<Map<number, SiteStats>> {
    const { rows } = await pool.query<SiteStats>(SITE_STATS, [meetingId, unitIds]);
    return new Map(rows.map((r) => [r.unit_id, r]));
  }

  routes.add(
    {
      method: 'get',
      path: '/meetings/:id/roster',
      summary: "The chair's roster of a meeting: invited sites in tree order with joined state, current peer, first join and minutes present (filter joined / missing, under a unit, name search)",
      tag: 'meetings',
      params,
      query: rosterQuery,
      responses: { '404': 'no such meeting for you (sites too), or `under` not in your subtree' },
    },
    async ({ params: p, query, user, req }) => {
      const meeting = await watched(user, p.id);
      // Without `under`: every site of the meeting.
      const within = query.under === undefined ? '' : (await requireUnitInScope(pool, user, query.under, 'under')).path;
      const values: unknown[] = [meeting.id, `${within}%`];
      const where: string[] = [];
      if (query.q !== undefined) where.push(`strpos(lower(u.name), lower($${values.push(query.q)})) > 0`);
      if (query.filter === 'joined') where.push('l.unit_id IS NOT NULL');
      if (query.filter === 'missing') where.push('l.unit_id IS NULL');
      const from = `
        FROM meeting_sites s JOIN units u ON u.id = s.unit_id
        LEFT JOIN (${LIVE}) l ON l.unit_id = s.unit_id
       WHERE s.meeting_id = $1 AND u.path LIKE $2 ${where.map((w) => `AND ${w}`).join(' ')}`;
      const filtered = values.length;
      const limit = `$${values.push(query.limit)}`;
      const offset = `$${values.push(query.offset)}`;
      const { rows } = await pool.query<SiteRow & { peer_id: string | null; display_name: string | null; total: number }>(
        `SELECT u.id::int AS unit_id, u.name, (SELECT p.name FROM units p WHERE p.id = u.parent_id) AS parent_name, u.level,
                l.peer_id, l.display_name, count(*) OVER ()::int AS total
           ${from}
          ORDER BY u.path LIMIT ${limit} OFFSET ${offset}`,
        values,
      );
      let total = rows[0]?.total;
      if (total === undefined) {
        // Past the end: the count alone (the window count needs at least one row to ride on).
        const counted = await pool.query<{ n: number }>(`SELECT count(*)::int AS n ${from}`, values.slice(0, filtered));
        total = counted.rows[0]?.n ?? 0;
      }
      const byUnit = rows.length ? await stats(meeting.id, rows.map((r) => r.unit_id)) : new Map<number, SiteStats>();
      await trail(req, user, 'meeting.roster.view', meeting.id, { filter: query.filter, under: query.under ?? null, q: query.q ?? null, offset: query.offset }, true);
      return {
        items: rows.map((r) => {
          const s = byUnit.get(r.unit_id);
          return {
            unit_id: r.unit_id,
            name: r.name,
            parent_name: r.parent_name,
            level: r.level,
            joined: r.peer_id !== null,
            peer_id: r.peer_id,
            display_name: r.display_name,
            joined_at: s?.first_joined_at ?? null,
            minutes_present: s?.minutes ?? 0,
          };
        }),
        total,
        limit: query.limit,
        offset: query.offset,
        next_offset: query.offset + rows.length < total ? query.offset + query.limit : null,
      };
    },
  );

  routes.add(
    {
      method: 'get',
      path: '/meetings/:id/attendance/summary',
      summary: 'Live counts of a meeting: sites expected and joined under a unit (default the chair’s), overall and by child unit',
      tag: 'meetings',
      params,
      query: summaryQuery,
      responses: { '404': 'no such meeting for you (sites too), or `under` not in your subtree' },
    },
    async ({ params: p, query, user, req }) => {
      const meeting = await watched(user, p.id);
      const root = await subtree(user, query.under, { id: meeting.chair_unit_id, path: meeting.chair_unit_path });
      // Each site counts under the child of `under` whose subtree holds it: the path segment after
      // under's path is that child's id (paths are ancestor ids), so one grouped pass over the sites.
      const { rows } = await pool.query<{ child: string | null; expected: number; joined: number }>(
        `SELECT nullif(split_part(substr(u.path, $3 + 1), '.', 1), '') AS child, count(*)::int AS expected, count(o.unit_id)::int AS joined
           FROM meeting_sites s JOIN units u ON u.id = s.unit_id
           LEFT JOIN (SELECT DISTINCT unit_id FROM meeting_attendance WHERE meeting_id = $1 AND left_at IS NULL) o ON o.unit_id = s.unit_id
          WHERE s.meeting_id = $1 AND u.path LIKE $2
          GROUP BY 1`,
        [meeting.id, `${root.path}%`, root.path.length],
      );
      const children = rows.filter((r) => r.child !== null).map((r) => Number(r.child));
      const { rows: units } = await pool.query<{ id: number; name: string; level: string }>(
        'SELECT id::int AS id, name, level FROM units WHERE id = ANY($1::bigint[]) OR id = $2 ORDER BY path',
        [children, root.id],
      );
      const counts = new Map(rows.map((r) => [r.child === null ? root.id : Number(r.child), r]));
      const self = units.find((u) => u.id === root.id);
      await trail(req, user, 'meeting.attendance.summary', meeting.id, { under: root.id }, true);
      return {
        under: { unit_id: root.id, name: self?.name ?? '', level: self?.level ?? '' },
        expected: rows.reduce((n, r) => n + r.expected, 0),
        joined: rows.reduce((n, r) => n + r.joined, 0),
        by_unit: units
          .filter((u) => u.id !== root.id)
          .map((u) => ({ unit_id: u.id, name: u.name, level: u.level, expected: counts.get(u.id)?.expected ?? 0, joined: counts.get(u.id)?.joined ?? 0 })),
        at: new Date(),
      };
    },
  );

  routes.add(
    {
      method: 'get',
      path: '/meetings/:id/attendance',
      summary: "A meeting's attendance record per invited site (first joined, last left, minutes present, sessions), for the supervisors' records; `format=csv` exports every site",
      tag: 'meetings',
      params,
      query: attendanceQuery,
      responses: { '404': 'no such meeting for you (sites too)' },
    },
    async ({ params: p, query, user, req, res }) => {
      const meeting = await watched(user, p.id);
      const csv = query.format === 'csv';
      const values: unknown[] = [meeting.id];
      const window = csv ? '' : `LIMIT $${values.push(query.limit)} OFFSET $${values.push(query.offset)}`;
      const { rows } = await pool.query<SiteRow & { total: number }>(
        `SELECT u.id::int AS unit_id, u.name, p.name AS parent_name, u.level, count(*) OVER ()::int AS total
           FROM meeting_sites s JOIN units u ON u.id = s.unit_id LEFT JOIN units p ON p.id = u.parent_id
          WHERE s.meeting_id = $1 ORDER BY u.path ${window}`,
        values,
      );
      const byUnit = await stats(meeting.id, csv ? null : rows.map((r) => r.unit_id));
      await trail(req, user, 'meeting.attendance.view', meeting.id, { format: query.format }, false);
      const items = rows.map((r) => {
        const s = byUnit.get(r.unit_id);
        return {
          unit_id: r.unit_id,
          name: r.name,
          parent_name: r.parent_name,
          level: r.level,
          first_joined_at: s?.first_joined_at ?? null,
          last_left_at: s?.last_left_at ?? null,
          present: s?.present ?? false,
          minutes: s?.minutes ?? 0,
          sessions: s?.sessions ?? 0,
        };
      });
      if (csv) {
        const header = 'unit_id,unit,parent,level,first_joined_at,last_left_at,present,minutes,sessions';
        const lines = items.map((i) =>
          [i.unit_id, i.name, i.parent_name, i.level, i.first_joined_at, i.last_left_at, i.present ? 'yes' : 'no', i.minutes, i.sessions].map(csvField).join(','),
        );
        // The BOM lets spreadsheet programs read the Chinese names as UTF-8.
        res
          .status(200)
          .type('text/csv; charset=utf-8')
          .setHeader('Content-Disposition', `attachment; filename="meeting-${meeting.id}-attendance.csv"`)
          .send(`\uFEFF${[header, ...lines].join('\r\n')}\r\n`);
        return undefined;
      }
      let total = rows[0]?.total;
      if (total === undefined) {
        const counted = await pool.query<{ n: number }>('SELECT count(*)::int AS n FROM meeting_sites WHERE meeting_id = $1', [meeting.id]);
        total = counted.rows[0]?.n ?? 0;
      }
      return {
        meeting: { id: meeting.id, title: meeting.title, mode: meeting.mode, state: meeting.state, created_at: meeting.created_at, ended_at: meeting.ended_at },
        items,
        total,
        limit: query.limit,
        offset: query.offset,
        next_offset: query.offset + rows.length < total ? query.offset + query.limit : null,
      };
    },
  );

  return routes;
}
