import { createHmac, hkdfSync, timingSafeEqual } from 'node:crypto';
import { z } from 'zod';
import { withTransaction, type Pool } from '../../../infra/db/pool.ts';
import { signJoinToken, type JoinClaims } from '../../../infra/tokens.ts';
import { audit } from '../audit.ts';
import { HttpError, type AuthUser } from '../auth-context.ts';
import { JOIN_TOKEN_TTL_SECONDS } from '../join-token-ttl.ts';
import { idParam, type ApiRoutes } from '../route-registry.ts';
import { id } from '../schemas.ts';
import { LOCAL_SFU } from '../sfu-directory.ts';
import { loadSession, loadSessionById, refuseApproved, requireWriter, SESSION_WRITERS, type SessionRoutesOptions, type SessionRow } from './sessions.ts';

// Attendance of a session (签到): the secretary (or a member tapping their name at the kiosk) records
// each member; a member signs in with their phone from a QR code (a signed code scoped to the session,
// expiring 30 minutes after its end, checked with the last 4 digits of the member's mobile, throttled);
// a member away from home (流动党员) gets a personal link that marks them present 'remote' and hands
// out a join token for the session's online meeting (`m-<meetingId>`) and nothing else.

/** Codes and links stay valid this long after the session's end. */
const GRACE_AFTER_END_S = 30 * 60;
/** Wrong last-4 digits per (session, member) before that member is locked out for the window. */
const MAX_FAILURES_PER_MEMBER = 5;
/** Wrong answers per client address per window. */
const MAX_FAILURES_PER_ADDRESS = 30;
const FAILURE_WINDOW_MS = 15 * 60_000;
/** Join-token user ids of remote members: far above any account id, so they never replace a user's connection. */
export const REMOTE_MEMBER_USER_ID_BASE = 1_000_000_000_000;

type CodeKind = 's' | 'r';

/** HMAC-signed, scoped, expiring codes: `<kind>.<sessionId>[.<memberId>].<exp>.<mac>` (URL-safe). */
export class SessionCodes {
  readonly #key: Buffer;

  constructor(tokenSecret: string) {
    this.#key = Buffer.from(hkdfSync('sha256', tokenSecret, Buffer.alloc(0), 'grassroots-av/session-attendance/v1', 32));
  }

  #mac(body: string): string {
    return createHmac('sha256', this.#key).update(body).digest('base64url').slice(0, 27);
  }

  sign(kind: CodeKind, sessionId: number, memberId: number | null, expSeconds: number): string {
    const body = [kind, sessionId, ...(memberId === null ? [] : [memberId]), expSeconds].join('.');
    return `${body}.${this.#mac(body)}`;
  }

  /** The code's session (and member) if it is genuine, of this kind and not expired; else a 403/410. */
  verify(kind: CodeKind, code: string): { sessionId: number; memberId: number | null; exp: number } {
    const parts = code.split('.');
    const expected = kind === 's' ? 4 : 5;
    const invalid = new HttpError(403, 'code_invalid', '签到码无效 / invalid sign-in code');
    if (parts.length !== expected || parts[0] !== kind || !parts.slice(1, -1).every((p) => /^[0-9]{1,16}$/.test(p))) throw invalid;
    const body = parts.slice(0, -1).join('.');
    const mac = Buffer.from(parts[parts.length - 1]!);
    const want = Buffer.from(this.#mac(body));
    if (mac.length !== want.length || !timingSafeEqual(mac, want)) throw invalid;
    const exp = Number(parts[parts.length - 2]);
    if (exp * 1000 < Date.now()) throw new HttpError(410, 'code_expired', '签到码已过期 / the code has expired');
    return { sessionId: Number(parts[1]), memberId: kind === 'r' ? Number(parts[2]) : null, exp };
  }
}

/** Failure counts in memory (per API process), like the sign-in throttle. */
class FailureThrottle {
  readonly #counts = new Map<string, { n: number; since: number }>();

  blocked(key: string, max: number): boolean {
    const e = this.#counts.get(key);
    if (!e) return false;
    if (Date.now() - e.since > FAILURE_WINDOW_MS) {
      this.#counts.delete(key);
      return false;
    }
    return e.n >= max;
  }

  fail(key: string): void {
    const e = this.#counts.get(key);
    if (!e || Date.now() - e.since > FAILURE_WINDOW_MS) this.#counts.set(key, { n: 1, since: Date.now() });
    else e.n++;
    if (this.#counts.size > 100_000) this.#prune();
  }

  /** Drops expired entries, then (a flood of fresh ones) the oldest half: memory stays bounded. */
  #prune(): void {
    const now = Date.now();
    for (const [k, e] of this.#counts) if (now - e.since > FAILURE_WINDOW_MS) this.#counts.delete(k);
    let excess = this.#counts.size - 50_000;
    for (const k of this.#counts.keys()) {
      if (excess-- <= 0) break;
      this.#counts.delete(k);
    }
  }

  clear(key: string): void {
    this.#counts.delete(key);
  }
}

const expiryOf = (s: SessionRow): number => Math.floor(s.ends_at.getTime() / 1000) + GRACE_AFTER_END_S;

function requireOpen(s: SessionRow | undefined): SessionRow {
  if (!s) throw new HttpError(403, 'code_invalid', '签到码无效 / invalid sign-in code');
  if (s.state === 'cancelled') throw new HttpError(409, 'cancelled', '会议已取消 / the session was cancelled');
  if (s.ledger_state === 'approved') throw new HttpError(409, 'ledger_approved', '台账已审核通过 / the ledger is already approved');
  return s;
}

async function upsertAttendance(db: Pick<Pool, 'query'>, sessionId: number, memberId: number, status: string, reason: string | null, source: string): Promise<void> {
  await db.query(
    `INSERT INTO session_attendance (session_id, member_id, status, reason, source) VALUES ($1, $2, $3, $4, $5)
     ON CONFLICT (session_id, member_id) DO UPDATE SET status = EXCLUDED.status, reason = EXCLUDED.reason, source = EXCLUDED.source, recorded_at = now()`,
    [sessionId, memberId, status, reason, source],
  );
}

/** A member of the session's branch who had not left when it started. */
async function requireActiveMember(db: Pick<Pool, 'query'>, s: SessionRow, memberId: number): Promise<{ id: number; name: string; mobile: string | null }> {
  const { rows } = await db.query<{ id: number; name: string; mobile: string | null }>(
    'SELECT id, name, mobile FROM members WHERE id = $1 AND branch_id = $2 AND (left_at IS NULL OR left_at > $3)',
    [memberId, s.branch_id, s.starts_at],
  );
  if (!rows[0]) throw new HttpError(422, 'not_a_member', '该党员不属于本支部 / not a member of this branch', { field: 'memberId' });
  return rows[0];
}

export function registerSessionAttendanceRoutes(routes: ApiRoutes, opts: SessionRoutesOptions): void {
  const { pool } = opts;
  const codes = new SessionCodes(opts.tokenSecret);
  // Separate tables: a flood of addresses can only push out address entries, never a member's
  // lock-out (member keys exist only behind a genuine code, so they are few).
  const memberThrottle = new FailureThrottle();
  const addressThrottle = new FailureThrottle();
  const ttl = opts.joinTokenTtlSeconds ?? JOIN_TOKEN_TTL_SECONDS;

  const writable = async (user: AuthUser, sessionId: number): Promise<SessionRow> => {
    requireWriter(user);
    const s = await loadSession(pool, user, sessionId);
    if (s.state === 'cancelled') throw new HttpError(409, 'cancelled', '会议已取消 / the session was cancelled');
    refuseApproved(s);
    return s;
  };

  routes.add(
    {
      method: 'put',
      path: '/sessions/:id/attendance/:memberId',
      summary: 'Record one member as present, absent or on leave (with a reason); at the branch\'s kiosk the source is `kiosk`',
      tag: 'sessions',
      roles: SESSION_WRITERS,
      params: idParam.extend({ memberId: z.coerce.number().int().positive().max(Number.MAX_SAFE_INTEGER) }),
      body: z.strictObject({ status: z.enum(['present', 'absent', 'leave']), reason: z.string().trim().max(200).optional() }),
    },
    async ({ params, body, user, req }) => {
      const s = await writable(user, params.id);
      await requireActiveMember(pool, s, params.memberId);
      // The branch's own secretary account is the kiosk in the village's office.
      const source = user.role === 'secretary' && user.unitId === Number(s.unit_id) ? 'kiosk' : 'secretary';
      await withTransaction(pool, async (db) => {
        await upsertAttendance(db, s.id, params.memberId, body.status, body.reason ?? null, source);
        await audit(db, { action: 'session.attendance', user, objectType: 'session', objectId: s.id, unitId: s.unit_id, ip: req.ip ?? null, detail: { memberId: params.memberId, status: body.status, source } });
      });
      return { sessionId: s.id, memberId: params.memberId, status: body.status, reason: body.reason ?? null, source };
    },
  );

  routes.add(
    {
      method: 'post',
      path: '/sessions/:id/sign-in-code',
      summary: 'A signed sign-in code for members\' phones (QR code), scoped to the session, expiring 30 minutes after its end',
      tag: 'sessions',
      roles: SESSION_WRITERS,
      params: idParam,
      status: 201,
    },
    async ({ params, user }) => {
      const s = await writable(user, params.id);
      const exp = expiryOf(s);
      if (exp * 1000 <= Date.now()) throw new HttpError(409, 'over', '会议已结束超过30分钟 / the session ended more than 30 minutes ago');
      const code = codes.sign('s', s.id, null, exp);
      return { code, url: `/#/sign-in/${code}`, expiresAt: new Date(exp * 1000) };
    },
  );

  routes.add(
    {
      method: 'get',
      path: '/attend/sign-in/:code',
      summary: 'Public: what a member\'s phone shows for a sign-in code (branch, topic, the members to pick from)',
      tag: 'attend',
      public: true,
      params: z.object({ code: z.string().min(10).max(200) }),
      responses: { '403': 'invalid code', '410': 'expired code' },
    },
    async ({ params }) => {
      const { sessionId } = codes.verify('s', params.code);
      const s = requireOpen(await loadSessionById(pool, sessionId));
      const { rows } = await pool.query<{ id: number; name: string; status: string | null }>(
        `SELECT m.id, m.name, a.status FROM members m LEFT JOIN session_attendance a ON a.session_id = $3 AND a.member_id = m.id
          WHERE m.branch_id = $1 AND (m.left_at IS NULL OR m.left_at > $2) ORDER BY m.is_secretary DESC, m.id`,
        [s.branch_id, s.starts_at, s.id],
      );
      return {
        branchName: s.branch_name,
        topic: s.topic ?? s.title,
        startsAt: s.starts_at,
        endsAt: s.ends_at,
        members: rows.map((m) => ({ id: Number(m.id), name: m.name, present: m.status === 'present' })),
      };
    },
  );

  routes.add(
    {
      method: 'post',
      path: '/attend/sign-in',
      summary: 'Public: a member signs in by phone with the code and the last 4 digits of their mobile (throttled)',
      tag: 'attend',
      public: true,
      body: z.strictObject({ code: z.string().min(10).max(200), memberId: id, mobileLast4: z.string().regex(/^[0-9]{4}$/, '须为4位数字 / 4 digits') }),
      responses: { '403': 'wrong digits or invalid code', '410': 'expired code', '429': 'too many wrong answers' },
    },
    async ({ body, req }) => {
      const { sessionId } = codes.verify('s', body.code);
      const memberKey = `m:${sessionId}:${body.memberId}`;
      const addrKey = `a:${req.ip ?? ''}`;
      if (memberThrottle.blocked(memberKey, MAX_FAILURES_PER_MEMBER) || addressThrottle.blocked(addrKey, MAX_FAILURES_PER_ADDRESS)) {
        throw new HttpError(429, 'too_many_attempts', '错误次数过多，请稍后再试或请书记代为签到 / too many wrong answers: try later or ask the secretary');
      }
      const s = requireOpen(await loadSessionById(pool, sessionId));
      if (Date.now() < s.starts_at.getTime() - GRACE_AFTER_END_S * 1000) throw new HttpError(409, 'not_yet', '会议开始前30分钟起才能签到 / sign-in opens 30 minutes before the start');
      const member = await requireActiveMember(pool, s, body.memberId);
      if (!member.mobile || !member.mobile.endsWith(body.mobileLast4)) {
        memberThrottle.fail(memberKey);
        addressThrottle.fail(addrKey);
        await audit(pool, { action: 'session.sign_in_refused', objectType: 'session', objectId: s.id, unitId: s.unit_id, ip: req.ip ?? null, detail: { memberId: member.id } });
        throw new HttpError(403, 'wrong_mobile', '手机号后四位不符 / the last 4 digits of the mobile do not match');
      }
      memberThrottle.clear(memberKey);
      await upsertAttendance(pool, s.id, member.id, 'present', null, 'phone');
      await audit(pool, { action: 'session.sign_in', objectType: 'session', objectId: s.id, unitId: s.unit_id, ip: req.ip ?? null, detail: { memberId: member.id, source: 'phone' } });
      return { sessionId: s.id, memberId: member.id, name: member.name, status: 'present', source: 'phone' };
    },
  );

  routes.add(
    {
      method: 'post',
      path: '/sessions/:id/remote-links',
      summary: 'A personal link for a member away from home (流动党员) to attend the session remotely',
      tag: 'sessions',
      roles: SESSION_WRITERS,
      params: idParam,
      body: z.strictObject({ memberId: id }),
      status: 201,
    },
    async ({ params, body, user, req }) => {
      const s = await writable(user, params.id);
      await requireActiveMember(pool, s, body.memberId);
      const exp = expiryOf(s);
      if (exp * 1000 <= Date.now()) throw new HttpError(409, 'over', '会议已结束超过30分钟 / the session ended more than 30 minutes ago');
      const token = codes.sign('r', s.id, body.memberId, exp);
      await audit(pool, { action: 'session.remote_link', user, objectType: 'session', objectId: s.id, unitId: s.unit_id, ip: req.ip ?? null, detail: { memberId: body.memberId } });
      return { token, url: `/#/attend/${token}`, expiresAt: new Date(exp * 1000) };
    },
  );

  routes.add(
    {
      method: 'post',
      path: '/attend/remote',
      summary: 'Public: a remote member\'s link marks them present (remote) and gives a join token for the session\'s online meeting only',
      tag: 'attend',
      public: true,
      body: z.strictObject({ token: z.string().min(10).max(200) }),
      responses: { '403': 'invalid link', '409': 'the session is over or cancelled', '410': 'expired link', '503': 'meetings unavailable' },
    },
    async ({ body, req }) => {
      const { sessionId, memberId } = codes.verify('r', body.token);
      const joinKey = opts.joinKey;
      if (!joinKey) throw new HttpError(503, 'no_meetings', '本系统未启用在线会议 / online meetings are not available here');
      const result = await withTransaction(pool, async (db) => {
        const { rows: locked } = await db.query('SELECT id FROM meeting_sessions WHERE id = $1 FOR UPDATE', [sessionId]);
        const s = requireOpen(locked[0] ? await loadSessionById(db, sessionId) : undefined);
        if (s.state === 'ended') throw new HttpError(409, 'over', '会议已结束 / the session is over');
        const member = await requireActiveMember(db, s, memberId!);
        // The online meeting of the session, created on first use; the branch's kiosk account chairs it.
        let meetingId = s.meeting_id === null ? null : Number(s.meeting_id);
        if (meetingId !== null) {
          const live = await db.query(`SELECT 1 FROM meetings WHERE id = $1 AND state = 'live'`, [meetingId]);
          if (!live.rowCount) meetingId = null;
        }
        if (meetingId === null) {
          const { rows: chair } = await db.query<{ id: number }>(
            `SELECT id FROM users WHERE unit_id = $1 AND role = 'secretary' AND NOT disabled ORDER BY id LIMIT 1`,
            [s.unit_id],
          );
          const title = `${s.branch_name} ${s.topic ?? s.title ?? ''}`.trim().slice(0, 100);
          const { rows } = await db.query<{ id: number }>(
            `INSERT INTO meetings (title, mode, chair_user_id, chair_unit_id) VALUES ($1, 'meeting', $2, $3) RETURNING id`,
            [title, chair[0]?.id ?? null, s.unit_id],
          );
          meetingId = Number(rows[0]!.id);
          await db.query('UPDATE meeting_sessions SET meeting_id = $2 WHERE id = $1', [s.id, meetingId]);
        }
        await upsertAttendance(db, s.id, member.id, 'present', null, 'remote');
        await audit(db, { action: 'session.remote_join', objectType: 'session', objectId: s.id, unitId: s.unit_id, ip: req.ip ?? null, detail: { memberId: member.id, meetingId } });
        return { s, member, meetingId };
      });
      const room = `m-${result.meetingId}`;
      const claims: JoinClaims = {
        userId: REMOTE_MEMBER_USER_ID_BASE + result.member.id,
        displayName: `${result.member.name}（远程）`.slice(0, 64),
        unitId: Number(result.s.unit_id),
        room,
        role: 'participant',
        layout: 'open',
      };
      const joinToken = await signJoinToken(joinKey, claims, ttl);
      const sfu = opts.directory ? await opts.directory.urlFor(result.s.unit_path) : LOCAL_SFU;
      return {
        sessionId: result.s.id,
        memberId: result.member.id,
        name: result.member.name,
        branchName: result.s.branch_name,
        topic: result.s.topic ?? result.s.title,
        status: 'present',
        source: 'remote',
        meetingId: result.meetingId,
        room,
        joinToken,
        role: 'participant',
        layout: 'open',
        sfu,
        expiresIn: ttl,
      };
    },
  );
}
