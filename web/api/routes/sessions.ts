import type { KeyObject } from 'node:crypto';
import express from 'express';
import { z } from 'zod';
import { withTransaction, type Pool, type PoolClient } from '../../../infra/db/pool.ts';
import type { ObjectStorage } from '../../../infra/storage/ObjectStorage.ts';
import { createLogger } from '../../../infra/logger.ts';
import { ObligationCode } from '../../../scheduler/obligations/types.ts';
import { expectedMembers, judgeQuorum } from '../../../scheduler/checks/quorum.ts';
import { audit } from '../audit.ts';
import { HttpError, type AuthUser } from '../auth-context.ts';
import { declaredSizeAtMost, PUBLIC_BODY_LIMIT } from '../body-limits.ts';
import { notFound } from '../errors.ts';
import { ApiRoutes, idParam, page, pageQuery } from '../route-registry.ts';
import { requireUnitInScope, scopePattern, type Db } from '../scope.ts';
import type { SfuDirectory } from '../sfu-directory.ts';
import { id, idQuery } from '../schemas.ts';
import { SessionPhotos } from '../ledger-photos.ts';
import { registerSessionAttendanceRoutes } from './session-attendance.ts';
import { registerLedgerRoutes } from './ledger.ts';

// The secretary's sessions of 三会一课 (issue 16): planned ahead (driving the scheduler's capture jobs
// and check), started now and ended when done, cancelled, or claimed afterwards from a recording. One
// session may count for several kinds (session_obligations; meeting_sessions.obligation = the first).
// Everyone in whose subtree the branch lies reads them (a town sees its branches' plans); the branch's
// secretary and operators/admins of the subtree change them. Attendance, sign-in codes and remote
// links: session-attendance.ts; the ledger's submission, review and export: ledger.ts.

const log = createLogger('sessions');

export const SESSION_WRITERS = ['secretary', 'operator', 'admin'] as const;
export const REVIEWERS = ['supervisor', 'leader'] as const;

/** Planned sessions may start this long in the past (a form filled in just after the hour). */
const START_SLACK_MS = 5 * 60_000;
/** Longest session, planned or claimed. */
const MAX_SESSION_MS = 8 * 3_600_000;
/** Sessions are planned at most this far ahead. */
const MAX_AHEAD_MS = 366 * 86_400_000;
/** A recording is claimed within this many days (retention keeps 90). */
const CLAIM_MAX_AGE_MS = 90 * 86_400_000;
/** Share of a claimed window the camera's segments must cover. */
const CLAIM_COVERAGE = 0.9;

export interface SessionRoutesOptions {
  pool: Pool;
  /** The API's master secret: sign-in codes and remote links are HMACs under a key derived from it. */
  tokenSecret: string;
  /** The API's join-token key: remote members get a token for the session's online meeting only. */
  joinKey?: KeyObject;
  /** Which SFU node the remote member is sent to. */
  directory?: SfuDirectory;
  /** Lifetime of the remote member's join token; default 10 minutes. */
  joinTokenTtlSeconds?: number;
  /** Ends an SFU room (the session's online meeting when the session ends). */
  endRoom?: (room: string) => void;
  /** Recordings store: photos are taken from the recording into it. Without it there are no photos. */
  storage?: ObjectStorage;
  /** Photos taken per session (evenly over the window); default 6. */
  photoCount?: number;
  /** Presigned photo URLs live this long; default 15 min. */
  presignExpirySeconds?: number;
}

export interface SessionRow {
  id: number;
  branch_id: number;
  branch_name: string;
  unit_id: number;
  unit_name: string;
  unit_path: string;
  obligation: ObligationCode;
  party_group_id: number | null;
  topic: string | null;
  agenda: string | null;
  title: string | null;
  starts_at: Date;
  ends_at: Date;
  camera_id: number | null;
  stored_state: 'planned' | 'running' | 'ended' | 'cancelled';
  state: 'planned' | 'running' | 'ended' | 'cancelled';
  origin: 'planned' | 'started_now' | 'claimed';
  planned_by: number | null;
  chair_member_id: number | null;
  chair_name: string | null;
  lecturer_member_id: number | null;
  lecturer_name: string | null;
  minutes: string | null;
  ledger_state: 'draft' | 'submitted' | 'approved' | 'returned';
  ledger_note: string | null;
  submitted_at: Date | null;
  reviewed_at: Date | null;
  reviewed_by: number | null;
  meeting_id: number | null;
  capture_job_id: number | null;
  created_at: Date;
  kinds: ObligationCode[];
}

/**
 * The stored state moves on with the clock: a planned session is running inside its window and ended
 * after it; a session started now that nobody ended is ended at its planned end.
 */
export const SELECT_SESSION = `
  SELECT s.id, s.branch_id, b.name AS branch_name, b.unit_id, u.name AS unit_name, u.path AS unit_path,
         s.obligation, s.party_group_id, s.topic, s.agenda, s.title, s.starts_at, s.ends_at, s.camera_id,
         s.state AS stored_state,
         CASE WHEN s.state IN ('planned', 'running') AND now() >= s.ends_at THEN 'ended'
              WHEN s.state = 'planned' AND now() >= s.starts_at THEN 'running'
              ELSE s.state END AS state,
         s.origin, s.planned_by, s.chair_member_id, cm.name AS chair_name, s.lecturer_member_id, lm.name AS lecturer_name,
         s.minutes, s.ledger_state, s.ledger_note, s.submitted_at, s.reviewed_at, s.reviewed_by, s.meeting_id,
         s.capture_job_id, s.created_at,
         COALESCE((SELECT array_agg(so.obligation ORDER BY so.obligation = s.obligation DESC, t.sort)
                     FROM session_obligations so JOIN obligation_types t ON t.code = so.obligation
                    WHERE so.session_id = s.id), ARRAY[s.obligation]) AS kinds
    FROM meeting_sessions s
    JOIN branches b ON b.id = s.branch_id
    JOIN units u ON u.id = b.unit_id
    LEFT JOIN members cm ON cm.id = s.chair_member_id
    LEFT JOIN members lm ON lm.id = s.lecturer_member_id`;

const num = (v: unknown): number | null => (v === null || v === undefined ? null : Number(v));

export function presentSession(s: SessionRow) {
  return {
    id: Number(s.id),
    branchId: Number(s.branch_id),
    branchName: s.branch_name,
    unitId: Number(s.unit_id),
    unitName: s.unit_name,
    obligation: s.obligation,
    kinds: s.kinds,
    partyGroupId: num(s.party_group_id),
    topic: s.topic ?? s.title,
    agenda: s.agenda,
    startsAt: s.starts_at,
    endsAt: s.ends_at,
    cameraId: num(s.camera_id),
    state: s.state,
    origin: s.origin,
    plannedBy: num(s.planned_by),
    chairMemberId: num(s.chair_member_id),
    chairName: s.chair_name,
    lecturerMemberId: num(s.lecturer_member_id),
    lecturerName: s.lecturer_name,
    minutes: s.minutes,
    ledgerState: s.ledger_state,
    ledgerNote: s.ledger_note,
    submittedAt: s.submitted_at,
    reviewedAt: s.reviewed_at,
    reviewedBy: num(s.reviewed_by),
    meetingId: num(s.meeting_id),
    captureJobId: num(s.capture_job_id),
    createdAt: s.created_at,
  };
}

/** The session if its branch lies in the caller's subtree, else 404 (`lock`: FOR UPDATE of the session). */
export async function loadSession(db: Db, user: AuthUser, sessionId: number, lock = false): Promise<SessionRow> {
  const { rows } = await db.query<SessionRow>(`${SELECT_SESSION} WHERE s.id = $1 AND u.path LIKE $2${lock ? ' FOR UPDATE OF s' : ''}`, [
    sessionId,
    scopePattern(user),
  ]);
  if (!rows[0]) throw notFound('会议', 'session');
  return rows[0];
}

/** A session by id regardless of the caller (public sign-in and remote links, after their signature). */
export async function loadSessionById(db: Db, sessionId: number): Promise<SessionRow | undefined> {
  const { rows } = await db.query<SessionRow>(`${SELECT_SESSION} WHERE s.id = $1`, [sessionId]);
  return rows[0];
}

/** Writers of a session: the branch's secretary, operators and admins of the subtree. */
export function requireWriter(user: AuthUser): void {
  if (!(SESSION_WRITERS as readonly string[]).includes(user.role)) {
    throw new HttpError(403, 'forbidden', '只有支部书记或管理员可以修改会议 / only the branch secretary or an administrator changes sessions');
  }
}

export function refuseApproved(s: SessionRow): void {
  if (s.ledger_state === 'approved') throw new HttpError(409, 'ledger_approved', '台账已审核通过，不能再修改 / the ledger is approved and can no longer change');
}

interface BranchRow {
  id: number;
  unit_id: number;
  name: string;
  path: string;
}

async function requireBranch(db: Db, user: AuthUser, branchId: number): Promise<BranchRow> {
  const { rows } = await db.query<BranchRow>(
    `SELECT b.id, b.unit_id, b.name, u.path FROM branches b JOIN units u ON u.id = b.unit_id
      WHERE b.id = $1 AND u.path LIKE $2 AND b.retired_at IS NULL`,
    [branchId, scopePattern(user)],
  );
  if (!rows[0]) throw notFound('党支部', 'branch', { field: 'branchId' });
  return { ...rows[0], id: Number(rows[0].id), unit_id: Number(rows[0].unit_id) };
}

/** The kinds must apply to the branch (committee only with a committee, group only with an active group of its own). */
async function checkKinds(db: Db, branch: BranchRow, kinds: ObligationCode[], partyGroupId: number | undefined): Promise<void> {
  if (new Set(kinds).size !== kinds.length) throw new HttpError(400, 'invalid_request', '会议类型重复 / a kind is listed twice', [{ path: 'body.kinds', message: 'duplicate' }]);
  const { rows } = await db.query<{ obligation: string; enabled: boolean }>(
    `SELECT obligation, enabled FROM branch_obligation_rules WHERE branch_id = $1`,
    [branch.id],
  );
  const applies = new Set(rows.filter((r) => r.enabled).map((r) => r.obligation));
  const refused = kinds.filter((k) => !applies.has(k));
  if (refused.length) {
    throw new HttpError(422, 'kind_not_applicable', `本支部不适用的会议类型：${refused.join('、')} / kinds that do not apply to this branch: ${refused.join(', ')}`, { kinds: refused });
  }
  const group = kinds.includes('group_meeting');
  if (group && partyGroupId === undefined) throw new HttpError(422, 'group_required', '党小组会须选择党小组 / a group meeting needs its party group', { field: 'partyGroupId' });
  if (!group && partyGroupId !== undefined) throw new HttpError(422, 'group_not_expected', '只有党小组会需要选择党小组 / only a group meeting takes a party group', { field: 'partyGroupId' });
  if (partyGroupId !== undefined) {
    const g = await db.query('SELECT 1 FROM party_groups WHERE id = $1 AND branch_id = $2 AND retired_at IS NULL', [partyGroupId, branch.id]);
    if (!g.rowCount) throw new HttpError(422, 'group_not_active', '党小组不属于本支部或已撤销 / the party group is not an active group of this branch', { field: 'partyGroupId' });
  }
}

/** A camera in the caller's subtree (else 404) at the branch's own unit, enabled and not retired (else 422). */
async function checkCamera(db: Db, user: AuthUser, branch: BranchRow, cameraId: number): Promise<void> {
  const { rows } = await db.query<{ unit_id: number; enabled: boolean; retired: boolean }>(
    `SELECT c.unit_id, c.enabled, c.retired_at IS NOT NULL AS retired FROM cameras c JOIN units u ON u.id = c.unit_id WHERE c.id = $1 AND u.path LIKE $2`,
    [cameraId, scopePattern(user)],
  );
  const cam = rows[0];
  if (!cam) throw notFound('摄像机', 'camera', { field: 'cameraId' });
  if (Number(cam.unit_id) !== branch.unit_id) throw new HttpError(422, 'camera_other_unit', '只能选择本支部所在单位的摄像机 / choose a camera of the branch\'s own unit', { field: 'cameraId' });
  if (!cam.enabled || cam.retired) throw new HttpError(422, 'camera_disabled', '摄像机已停用 / the camera is disabled', { field: 'cameraId' });
}

async function checkMember(db: Db, branchId: number, memberId: number | null | undefined, field: string): Promise<void> {
  if (memberId === null || memberId === undefined) return;
  const { rowCount } = await db.query('SELECT 1 FROM members WHERE id = $1 AND branch_id = $2', [memberId, branchId]);
  if (!rowCount) throw new HttpError(422, 'not_a_member', '该党员不属于本支部 / not a member of this branch', { field });
}

/** What a new session names must belong to its branch: kinds that apply, its camera, its members. */
async function checkSessionInput(
  db: Db,
  user: AuthUser,
  branch: BranchRow,
  body: { kinds: ObligationCode[]; partyGroupId?: number | undefined; cameraId?: number | undefined; chairMemberId?: number | null | undefined; lecturerMemberId?: number | null | undefined },
): Promise<void> {
  await checkKinds(db, branch, body.kinds, body.partyGroupId);
  if (body.cameraId !== undefined) await checkCamera(db, user, branch, body.cameraId);
  await checkMember(db, branch.id, body.chairMemberId, 'chairMemberId');
  await checkMember(db, branch.id, body.lecturerMemberId, 'lecturerMemberId');
}

interface NewSession {
  branch: BranchRow;
  kinds: ObligationCode[];
  partyGroupId?: number | undefined;
  startsAt: Date;
  endsAt: Date;
  topic: string;
  agenda?: string | undefined;
  cameraId?: number | undefined;
  chairMemberId?: number | undefined;
  lecturerMemberId?: number | undefined;
  state: 'planned' | 'running' | 'ended';
  origin: 'planned' | 'started_now' | 'claimed';
  /** Start-now: the capture job is asked for at once rather than at the scheduler's next tick. */
  captureNow?: boolean;
  /** Claimed: no capture (it is over), the check is queued by the scheduler's next tick. */
  noCapture?: boolean;
}

async function insertSession(db: PoolClient, user: AuthUser, n: NewSession): Promise<number> {
  const { rows } = await db.query<{ id: number }>(
    `INSERT INTO meeting_sessions (branch_id, obligation, party_group_id, title, topic, agenda, starts_at, ends_at, camera_id,
                                   state, origin, planned_by, chair_member_id, lecturer_member_id, capture_requested_at)
     VALUES ($1, $2, $3, $4, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, CASE WHEN $14::boolean THEN now() END) RETURNING id`,
    [n.branch.id, n.kinds[0], n.partyGroupId ?? null, n.topic, n.agenda ?? null, n.startsAt, n.endsAt, n.cameraId ?? null,
      n.state, n.origin, user.id, n.chairMemberId ?? null, n.lecturerMemberId ?? null, n.noCapture === true],
  );
  const sessionId = Number(rows[0]!.id);
  await db.query(
    `INSERT INTO session_obligations (session_id, obligation, party_group_id)
     SELECT $1, k, CASE WHEN k = 'group_meeting' THEN $3::bigint END FROM unnest($2::text[]) AS k
     ON CONFLICT DO NOTHING`,
    [sessionId, n.kinds, n.partyGroupId ?? null],
  );
  // The first kind's row comes from 0060's trigger with the session's group: only a group meeting names one.
  await db.query(`UPDATE session_obligations SET party_group_id = NULL WHERE session_id = $1 AND obligation <> 'group_meeting' AND party_group_id IS NOT NULL`, [sessionId]);
  if (n.captureNow && n.cameraId !== undefined) {
    const job = await db.query<{ id: number }>(
      `INSERT INTO capture_jobs (camera_id, session_id, starts_at, ends_at, pre_roll_s, post_roll_s, evidence)
       VALUES ($1, $2, $3, $4, 0, 300, true) RETURNING id`,
      [n.cameraId, sessionId, n.startsAt, n.endsAt],
    );
    await db.query('UPDATE meeting_sessions SET capture_job_id = $2, capture_requested_at = now() WHERE id = $1', [sessionId, job.rows[0]!.id]);
  }
  const expected = await expectedMembers(db, sessionId);
  await db.query('UPDATE meeting_sessions SET expected_attendance = $2 WHERE id = $1', [sessionId, expected.length]);
  return sessionId;
}

const kinds = z.array(ObligationCode).min(1).max(4);
const topic = z.string().trim().min(1).max(200);
const agenda = z.string().trim().max(4000);
const isoTime = z.coerce.date();

const planBody = z.strictObject({
  branchId: id,
  kinds,
  partyGroupId: id.optional(),
  startsAt: isoTime,
  endsAt: isoTime,
  topic,
  agenda: agenda.optional(),
  cameraId: id.optional(),
  chairMemberId: id.optional(),
  lecturerMemberId: id.optional(),
});

const startNowBody = z.strictObject({
  branchId: id,
  kinds,
  partyGroupId: id.optional(),
  topic,
  agenda: agenda.optional(),
  cameraId: id.optional(),
  chairMemberId: id.optional(),
  lecturerMemberId: id.optional(),
  plannedMinutes: z.number().int().min(5).max(240),
});

const claimBody = z.strictObject({
  branchId: id,
  kinds,
  partyGroupId: id.optional(),
  cameraId: id,
  startsAt: isoTime,
  endsAt: isoTime,
  topic,
  agenda: agenda.optional(),
  chairMemberId: id.optional(),
  lecturerMemberId: id.optional(),
});

const patchBody = z
  .strictObject({
    topic: topic.optional(),
    agenda: agenda.nullable().optional(),
    minutes: z.string().trim().max(20000).nullable().optional(),
    chairMemberId: id.nullable().optional(),
    lecturerMemberId: id.nullable().optional(),
    /** Rescheduling: only before the session starts. */
    startsAt: isoTime.optional(),
    endsAt: isoTime.optional(),
    cameraId: id.nullable().optional(),
  })
  .refine((o) => Object.keys(o).length > 0, { message: '至少修改一个字段 / change at least one field' });

function checkWindow(startsAt: Date, endsAt: Date): void {
  if (endsAt.getTime() <= startsAt.getTime()) throw new HttpError(422, 'bad_window', '结束时间须晚于开始时间 / the end must be after the start', { field: 'endsAt' });
  if (endsAt.getTime() - startsAt.getTime() > MAX_SESSION_MS) throw new HttpError(422, 'too_long', '会议最长8小时 / a session lasts at most 8 hours', { field: 'endsAt' });
}

export function createSessionRoutes(opts: SessionRoutesOptions): ApiRoutes {
  const { pool } = opts;
  const routes = new ApiRoutes();
  // The public sign-in and remote-link routes take small JSON bodies from people who are not signed in.
  routes.router.use('/attend', declaredSizeAtMost(PUBLIC_BODY_LIMIT), express.json({ limit: PUBLIC_BODY_LIMIT }));
  const photos = opts.storage
    ? new SessionPhotos(pool, opts.storage, { count: opts.photoCount ?? 6, expirySeconds: opts.presignExpirySeconds ?? 900 })
    : undefined;

  const show = async (user: AuthUser, sessionId: number) => presentSession(await loadSession(pool, user, sessionId));

  routes.add(
    {
      method: 'post',
      path: '/sessions',
      summary: 'The secretary plans a session of one or more kinds (三会一课); it drives the capture job and the check',
      tag: 'sessions',
      roles: SESSION_WRITERS,
      body: planBody,
      status: 201,
      responses: { '404': 'branch or camera not in your subtree', '422': 'a kind does not apply, the camera is not the branch\'s, or the time is past' },
    },
    async ({ body, user, req }) => {
      const sessionId = await withTransaction(pool, async (db) => {
        const branch = await requireBranch(db, user, body.branchId);
        checkWindow(body.startsAt, body.endsAt);
        if (body.startsAt.getTime() < Date.now() - START_SLACK_MS) {
          throw new HttpError(422, 'in_the_past', '开始时间已过；已开过的会议请从录像补登 / the start is past: claim a session already held from its recording', { field: 'startsAt' });
        }
        if (body.startsAt.getTime() > Date.now() + MAX_AHEAD_MS) throw new HttpError(422, 'too_far_ahead', '最多提前一年安排 / plan at most a year ahead', { field: 'startsAt' });
        await checkSessionInput(db, user, branch, body);
        const sid = await insertSession(db, user, { ...body, branch, state: 'planned', origin: 'planned' });
        await audit(db, { action: 'session.plan', user, objectType: 'session', objectId: sid, unitId: branch.unit_id, ip: req.ip ?? null, detail: { kinds: body.kinds } });
        return sid;
      });
      return show(user, sessionId);
    },
  );

  routes.add(
    {
      method: 'post',
      path: '/sessions/start-now',
      summary: 'Start a session now (running at once, the camera captured from now); end it when done',
      tag: 'sessions',
      roles: SESSION_WRITERS,
      body: startNowBody,
      status: 201,
    },
    async ({ body, user, req }) => {
      const sessionId = await withTransaction(pool, async (db) => {
        const branch = await requireBranch(db, user, body.branchId);
        await checkSessionInput(db, user, branch, body);
        const { rows } = await db.query<{ now: Date }>('SELECT now() AS now');
        const startsAt = rows[0]!.now;
        const endsAt = new Date(startsAt.getTime() + body.plannedMinutes * 60_000);
        const sid = await insertSession(db, user, { ...body, branch, startsAt, endsAt, state: 'running', origin: 'started_now', captureNow: true });
        await audit(db, { action: 'session.start', user, objectType: 'session', objectId: sid, unitId: branch.unit_id, ip: req.ip ?? null, detail: { kinds: body.kinds } });
        return sid;
      });
      return show(user, sessionId);
    },
  );

  routes.add(
    {
      method: 'post',
      path: '/sessions/claim',
      summary: 'Claim a session held without being planned, from the camera\'s recording of that (past) window',
      tag: 'sessions',
      roles: SESSION_WRITERS,
      body: claimBody,
      status: 201,
      responses: { '422': 'no_recording: the camera\'s recordings do not cover the window; or the window is not past' },
    },
    async ({ body, user, req }) => {
      const sessionId = await withTransaction(pool, async (db) => {
        const branch = await requireBranch(db, user, body.branchId);
        checkWindow(body.startsAt, body.endsAt);
        if (body.endsAt.getTime() > Date.now()) throw new HttpError(422, 'not_past', '只能补登已结束的会议 / only a session that is over can be claimed', { field: 'endsAt' });
        if (body.startsAt.getTime() < Date.now() - CLAIM_MAX_AGE_MS) throw new HttpError(422, 'too_old', '只能补登90天内的会议 / only sessions of the last 90 days can be claimed', { field: 'startsAt' });
        await checkSessionInput(db, user, branch, body);
        const { rows } = await db.query<{ covered: number }>(
          `SELECT COALESCE(sum(extract(epoch FROM LEAST(ended_at, $3) - GREATEST(started_at, $2))), 0)::float8 AS covered
             FROM recording_segments WHERE camera_id = $1 AND ended_at > $2 AND started_at < $3`,
          [body.cameraId, body.startsAt, body.endsAt],
        );
        const covered = rows[0]!.covered;
        const windowS = (body.endsAt.getTime() - body.startsAt.getTime()) / 1000;
        if (covered < windowS * CLAIM_COVERAGE) {
          throw new HttpError(422, 'no_recording', `该摄像机在此时段的录像不足（${Math.round(covered)}秒/${Math.round(windowS)}秒） / the camera's recordings do not cover that window (${Math.round(covered)} of ${Math.round(windowS)} s)`, { coveredS: covered, windowS });
        }
        const sid = await insertSession(db, user, { ...body, branch, state: 'ended', origin: 'claimed', noCapture: true });
        await audit(db, { action: 'session.claim', user, objectType: 'session', objectId: sid, unitId: branch.unit_id, ip: req.ip ?? null, detail: { kinds: body.kinds, coveredS: covered } });
        return sid;
      });
      return show(user, sessionId);
    },
  );

  routes.add(
    {
      method: 'get',
      path: '/sessions',
      summary: 'Sessions of the branches under a unit (default: your own subtree) or of one branch, by start time',
      tag: 'sessions',
      query: z.strictObject({
        branchId: idQuery.optional(),
        under: idQuery.optional(),
        from: isoTime.optional(),
        to: isoTime.optional(),
        state: z.enum(['planned', 'running', 'ended', 'cancelled']).optional(),
        ledgerState: z.enum(['draft', 'submitted', 'approved', 'returned']).optional(),
        ...pageQuery,
      }),
    },
    async ({ query, user }) => {
      const root = query.under !== undefined ? await requireUnitInScope(pool, user, query.under, 'under') : { path: user.unitPath };
      const args: unknown[] = [`${root.path}%`, query.limit + 1, query.offset];
      const where: string[] = ['u.path LIKE $1'];
      if (query.branchId !== undefined) where.push(`s.branch_id = $${args.push(query.branchId)}`);
      if (query.from) where.push(`s.ends_at > $${args.push(query.from)}`);
      if (query.to) where.push(`s.starts_at < $${args.push(query.to)}`);
      if (query.ledgerState) where.push(`s.ledger_state = $${args.push(query.ledgerState)}`);
      const state = query.state ? `WHERE x.state = $${args.push(query.state)}` : '';
      const { rows } = await pool.query<SessionRow & { present: number }>(
        `SELECT x.* FROM (
           ${SELECT_SESSION.replace('s.capture_job_id, s.created_at,', `s.capture_job_id, s.created_at,
                (SELECT count(*)::int FROM session_attendance a WHERE a.session_id = s.id AND a.status = 'present') AS present,
                (SELECT c.passed FROM completion_checks c WHERE c.session_id = s.id) AS check_passed,`)}
           WHERE ${where.join(' AND ')}) x ${state}
          ORDER BY x.starts_at DESC, x.id DESC LIMIT $2 OFFSET $3`,
        args,
      );
      const items = rows.map((r) => ({ ...presentSession(r), present: r.present, checkPassed: (r as unknown as { check_passed: boolean | null }).check_passed }));
      return page(items, query.limit, query.offset);
    },
  );

  routes.add(
    {
      method: 'get',
      path: '/sessions/:id',
      summary: 'One session with its ledger: kinds and verdicts, members expected, attendance, quorum, the check, photos',
      tag: 'sessions',
      params: idParam,
    },
    async ({ params, user }) => {
      const s = await loadSession(pool, user, params.id);
      const [kindRows, expected, attendance, quorum, check, photoList] = await Promise.all([
        pool.query<{ obligation: ObligationCode; party_group_id: number | null; passed: boolean | null; reasons: unknown[]; name_zh: string; name_en: string }>(
          `SELECT so.obligation, so.party_group_id, so.passed, so.reasons, t.name_zh, t.name_en
             FROM session_obligations so JOIN obligation_types t ON t.code = so.obligation
            WHERE so.session_id = $1 ORDER BY so.obligation = $2 DESC, t.sort`,
          [s.id, s.obligation],
        ),
        expectedMembers(pool, s.id),
        pool.query<{ member_id: number; name: string; status: string; reason: string | null; source: string; recorded_at: Date }>(
          `SELECT a.member_id, m.name, a.status, a.reason, a.source, a.recorded_at
             FROM session_attendance a JOIN members m ON m.id = a.member_id WHERE a.session_id = $1 ORDER BY a.recorded_at, a.member_id`,
          [s.id],
        ),
        judgeQuorum(pool, s.id),
        pool.query<{ passed: boolean; reasons: unknown[]; covered_s: number; required_s: number; checked_at: Date }>(
          'SELECT passed, reasons, covered_s, required_s, checked_at FROM completion_checks WHERE session_id = $1',
          [s.id],
        ),
        photos ? photos.list(s.id) : Promise.resolve([]),
      ]);
      // Photos are taken once the session is over and recorded (in the background; the next read shows them).
      if (photos && photoList.length === 0 && s.state === 'ended' && s.camera_id !== null) photos.extractInBackground(s.id);
      const c = check.rows[0];
      return {
        session: presentSession(s),
        kinds: kindRows.rows.map((k) => ({ obligation: k.obligation, nameZh: k.name_zh, nameEn: k.name_en, partyGroupId: num(k.party_group_id), passed: k.passed, reasons: k.reasons })),
        expected: expected.map((m) => ({ memberId: m.memberId, name: m.name, membership: m.membership, obligations: m.obligations })),
        attendance: attendance.rows.map((a) => ({ memberId: Number(a.member_id), name: a.name, status: a.status, reason: a.reason, source: a.source, recordedAt: a.recorded_at })),
        quorum,
        check: c ? { passed: c.passed, reasons: c.reasons, coveredS: c.covered_s, requiredS: c.required_s, checkedAt: c.checked_at } : null,
        ledger: {
          state: s.ledger_state,
          note: s.ledger_note,
          minutes: s.minutes,
          submittedAt: s.submitted_at,
          reviewedAt: s.reviewed_at,
          reviewedBy: num(s.reviewed_by),
        },
        photos: photoList,
      };
    },
  );

  routes.add(
    {
      method: 'patch',
      path: '/sessions/:id',
      summary: 'The ledger\'s text: topic, agenda, minutes, chair and lecturer (not once approved); time and camera while not started',
      tag: 'sessions',
      roles: SESSION_WRITERS,
      params: idParam,
      body: patchBody,
    },
    async ({ params, body, user, req }) => {
      await withTransaction(pool, async (db) => {
        const s = await loadSession(db, user, params.id, true);
        refuseApproved(s);
        await checkMember(db, s.branch_id, body.chairMemberId, 'chairMemberId');
        await checkMember(db, s.branch_id, body.lecturerMemberId, 'lecturerMemberId');
        const cols: Record<string, unknown> = {};
        if (body.topic !== undefined) cols.topic = body.topic;
        if (body.agenda !== undefined) cols.agenda = body.agenda;
        if (body.minutes !== undefined) cols.minutes = body.minutes;
        if (body.chairMemberId !== undefined) cols.chair_member_id = body.chairMemberId;
        if (body.lecturerMemberId !== undefined) cols.lecturer_member_id = body.lecturerMemberId;
        if (body.startsAt !== undefined || body.endsAt !== undefined || body.cameraId !== undefined) {
          if (s.state !== 'planned') throw new HttpError(409, 'already_started', '会议已开始，不能再改时间或摄像机 / the session has started: its time and camera are fixed');
          const startsAt = body.startsAt ?? s.starts_at;
          const endsAt = body.endsAt ?? s.ends_at;
          checkWindow(startsAt, endsAt);
          if (startsAt.getTime() < Date.now() - START_SLACK_MS) throw new HttpError(422, 'in_the_past', '开始时间已过 / the start is past', { field: 'startsAt' });
          if (body.cameraId !== undefined && body.cameraId !== null) await checkCamera(db, user, await requireBranch(db, user, Number(s.branch_id)), body.cameraId);
          cols.starts_at = startsAt;
          cols.ends_at = endsAt;
          if (body.cameraId !== undefined) cols.camera_id = body.cameraId;
          // A capture already asked for is withdrawn; the scheduler asks again for the new window and camera.
          if (s.capture_job_id !== null) {
            await db.query(`UPDATE capture_jobs SET state = 'cancelled', finished_at = now(), error = 'session rescheduled' WHERE id = $1 AND state IN ('scheduled', 'recording')`, [s.capture_job_id]);
            cols.capture_job_id = null;
            cols.capture_requested_at = null;
          }
        }
        const keys = Object.keys(cols);
        await db.query(`UPDATE meeting_sessions SET ${keys.map((k, i) => `${k} = $${i + 2}`).join(', ')} WHERE id = $1`, [s.id, ...keys.map((k) => cols[k])]);
        await audit(db, { action: 'session.update', user, objectType: 'session', objectId: s.id, unitId: s.unit_id, ip: req.ip ?? null, detail: { fields: keys } });
      });
      return show(user, params.id);
    },
  );

  routes.add(
    {
      method: 'post',
      path: '/sessions/:id/end',
      summary: 'End a running session now: its end becomes now and its capture job is shortened to match',
      tag: 'sessions',
      roles: SESSION_WRITERS,
      params: idParam,
      responses: { '409': 'the session is not running' },
    },
    async ({ params, user, req }) => {
      const meetingId = await withTransaction(pool, async (db) => {
        const s = await loadSession(db, user, params.id, true);
        if (s.state !== 'running') throw new HttpError(409, 'not_running', '会议不在进行中 / the session is not running');
        await db.query(
          `UPDATE meeting_sessions SET ends_at = GREATEST(now(), starts_at + interval '1 second'), state = 'ended' WHERE id = $1`,
          [s.id],
        );
        // The recorder stops at the job's new end (plus a 10 s post-roll: the end is known now) instead of the planned one.
        await db.query(
          `UPDATE capture_jobs SET ends_at = GREATEST(now(), starts_at + interval '1 second'), post_roll_s = LEAST(post_roll_s, 10)
            WHERE id = $1 AND state IN ('scheduled', 'recording')`,
          [s.capture_job_id],
        );
        if (s.meeting_id !== null) await db.query(`UPDATE meetings SET state = 'ended', ended_at = now() WHERE id = $1 AND state = 'live'`, [s.meeting_id]);
        await audit(db, { action: 'session.end', user, objectType: 'session', objectId: s.id, unitId: s.unit_id, ip: req.ip ?? null });
        return s.meeting_id;
      });
      if (meetingId !== null) {
        try {
          opts.endRoom?.(`m-${meetingId}`);
        } catch (err) {
          log.warn({ err: String(err) }, 'ending the remote meeting room failed');
        }
      }
      return show(user, params.id);
    },
  );

  routes.add(
    {
      method: 'post',
      path: '/sessions/:id/cancel',
      summary: 'Cancel a session that has not ended, with a reason (its capture job is cancelled)',
      tag: 'sessions',
      roles: SESSION_WRITERS,
      params: idParam,
      body: z.strictObject({ reason: z.string().trim().min(1).max(500) }),
      responses: { '409': 'the session is over or already cancelled' },
    },
    async ({ params, body, user, req }) => {
      await withTransaction(pool, async (db) => {
        const s = await loadSession(db, user, params.id, true);
        if (s.state === 'ended' || s.state === 'cancelled') throw new HttpError(409, 'not_cancellable', '会议已结束或已取消 / the session is over or already cancelled');
        await db.query(`UPDATE meeting_sessions SET state = 'cancelled', ledger_note = $2 WHERE id = $1`, [s.id, body.reason]);
        await db.query(`UPDATE capture_jobs SET state = 'cancelled', finished_at = now(), error = 'session cancelled' WHERE id = $1 AND state IN ('scheduled', 'recording')`, [s.capture_job_id]);
        if (s.meeting_id !== null) await db.query(`UPDATE meetings SET state = 'ended', ended_at = now() WHERE id = $1 AND state = 'live'`, [s.meeting_id]);
        await audit(db, { action: 'session.cancel', user, objectType: 'session', objectId: s.id, unitId: s.unit_id, ip: req.ip ?? null, detail: { reason: body.reason } });
      });
      return show(user, params.id);
    },
  );

  routes.add(
    {
      method: 'post',
      path: '/sessions/:id/photos',
      summary: 'Take the ledger\'s photos from the session\'s recording now (frames at intervals, stored with the recordings)',
      tag: 'sessions',
      roles: SESSION_WRITERS,
      params: idParam,
      responses: { '409': 'the session has not ended', '503': 'no recordings store' },
    },
    async ({ params, user }) => {
      const s = await loadSession(pool, user, params.id);
      if (!photos) throw new HttpError(503, 'no_storage', '未配置录像存储 / no recordings store here');
      if (s.state !== 'ended') throw new HttpError(409, 'not_ended', '会议结束后才能截取照片 / photos are taken once the session is over');
      await photos.extract(s.id);
      return { photos: await photos.list(s.id) };
    },
  );

  registerSessionAttendanceRoutes(routes, opts);
  registerLedgerRoutes(routes, { ...opts, ...(photos ? { photos } : {}) });
  return routes;
}
