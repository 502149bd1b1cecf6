import { z } from 'zod';
import { withTransaction, type Pool } from '../../../infra/db/pool.ts';
import { judgeQuorum, type QuorumVerdict } from '../../../scheduler/checks/quorum.ts';
import { obligationNamesZh, type ObligationCode } from '../../../scheduler/obligations/types.ts';
import { audit } from '../audit.ts';
import { HttpError } from '../auth-context.ts';
import type { SessionPhotos } from '../ledger-photos.ts';
import { ledgerWorkbook } from '../ledger-xlsx.ts';
import { idParam, type ApiRoutes } from '../route-registry.ts';
import { requireUnitInScope } from '../scope.ts';
import { loadSession, presentSession, REVIEWERS, SELECT_SESSION, SESSION_WRITERS, type SessionRoutesOptions, type SessionRow } from './sessions.ts';

// The ledger (台账): the secretary submits a session's ledger once it is over; a supervisor or leader
// of a unit strictly above the branch approves it or returns it with a reason. Submission puts a to-do
// before the supervisors of the nearest higher unit that has one; a return puts one before the
// branch's secretary; a decision closes the open ones. A unit's ledger for a period is read as JSON
// (the print pages) or as a spreadsheet (exceljs; one sheet of sessions, one of attendance).

/** Sessions in one ledger read or export. */
export const LEDGER_MAX_SESSIONS = 2000;

export interface LedgerRow {
  id: number;
  startsAt: Date;
  endsAt: Date;
  branchId: number;
  branchName: string;
  unitName: string;
  kinds: ObligationCode[];
  kindsZh: string[];
  topic: string | null;
  agenda: string | null;
  origin: string;
  chairName: string | null;
  lecturerName: string | null;
  minutes: string | null;
  expected: number;
  present: Array<{ memberId: number; name: string; source: string }>;
  absent: Array<{ memberId: number; name: string; status: 'absent' | 'leave' | 'unrecorded'; reason: string | null }>;
  quorum: QuorumVerdict[];
  check: { passed: boolean; reasons: Array<{ code: string; message: string }>; coveredS: number; requiredS: number } | null;
  ledgerState: string;
  ledgerNote: string | null;
  submittedAt: Date | null;
  reviewedAt: Date | null;
}

const kindsZh = (kinds: ObligationCode[]): string[] => kinds.map((k) => (obligationNamesZh as Record<string, string>)[k] ?? k);

async function ledgerRows(pool: Pool, unitPath: string, from: Date, to: Date): Promise<LedgerRow[]> {
  const { rows } = await pool.query<SessionRow>(
    `${SELECT_SESSION} WHERE u.path LIKE $1 AND s.starts_at >= $2 AND s.starts_at < $3 AND NOT s.cancelled
      ORDER BY s.starts_at, s.id LIMIT $4`,
    [`${unitPath}%`, from, to, LEDGER_MAX_SESSIONS + 1],
  );
  if (rows.length > LEDGER_MAX_SESSIONS) {
    throw new HttpError(422, 'too_many_sessions', `时段内会议超过${LEDGER_MAX_SESSIONS}次，请缩小范围 / more than ${LEDGER_MAX_SESSIONS} sessions: choose a shorter period or a smaller unit`);
  }
  const ids = rows.map((r) => Number(r.id));
  const [members, checks] = await Promise.all([
    pool.query<{ session_id: number; member_id: number; name: string; status: string | null; reason: string | null; source: string | null; committee_role: string | null; party_group_id: number | null }>(
      `SELECT s.id AS session_id, m.id AS member_id, m.name, a.status, a.reason, a.source, m.committee_role, m.party_group_id
         FROM meeting_sessions s
         JOIN members m ON m.branch_id = s.branch_id AND (m.left_at IS NULL OR m.left_at > s.starts_at)
         LEFT JOIN session_attendance a ON a.session_id = s.id AND a.member_id = m.id
        WHERE s.id = ANY($1::bigint[])
        ORDER BY s.id, m.is_secretary DESC, m.id`,
      [ids],
    ),
    pool.query<{ session_id: number; passed: boolean; reasons: Array<{ code: string; message: string }>; covered_s: number; required_s: number }>(
      'SELECT session_id, passed, reasons, covered_s, required_s FROM completion_checks WHERE session_id = ANY($1::bigint[])',
      [ids],
    ),
  ]);
  const checkBy = new Map(checks.rows.map((c) => [Number(c.session_id), c]));
  const membersBy = new Map<number, typeof members.rows>();
  for (const m of members.rows) {
    const list = membersBy.get(Number(m.session_id)) ?? [];
    list.push(m);
    membersBy.set(Number(m.session_id), list);
  }
  const out: LedgerRow[] = [];
  for (const s of rows) {
    const sid = Number(s.id);
    const quorum = await judgeQuorum(pool, sid);
    const kinds = s.kinds;
    // Who the session concerned: a committee meeting only its committee, a group meeting only its group.
    const onlyCommittee = kinds.every((k) => k === 'committee_meeting');
    const onlyGroup = kinds.every((k) => k === 'group_meeting');
    const concerned = (membersBy.get(sid) ?? []).filter((m) =>
      onlyCommittee ? m.committee_role !== null : onlyGroup ? s.party_group_id !== null && Number(m.party_group_id) === Number(s.party_group_id) : true,
    );
    const c = checkBy.get(sid);
    out.push({
      id: sid,
      startsAt: s.starts_at,
      endsAt: s.ends_at,
      branchId: Number(s.branch_id),
      branchName: s.branch_name,
      unitName: s.unit_name,
      kinds,
      kindsZh: kindsZh(kinds),
      topic: s.topic ?? s.title,
      agenda: s.agenda,
      origin: s.origin,
      chairName: s.chair_name,
      lecturerName: s.lecturer_name,
      minutes: s.minutes,
      expected: concerned.length,
      present: concerned.filter((m) => m.status === 'present').map((m) => ({ memberId: Number(m.member_id), name: m.name, source: m.source ?? '' })),
      absent: concerned
        .filter((m) => m.status !== 'present')
        .map((m) => ({ memberId: Number(m.member_id), name: m.name, status: (m.status ?? 'unrecorded') as 'absent' | 'leave' | 'unrecorded', reason: m.reason })),
      quorum,
      check: c ? { passed: c.passed, reasons: c.reasons, coveredS: c.covered_s, requiredS: c.required_s } : null,
      ledgerState: s.ledger_state,
      ledgerNote: s.ledger_note,
      submittedAt: s.submitted_at,
      reviewedAt: s.reviewed_at,
    });
  }
  return out;
}

const periodQuery = z
  .strictObject({ from: z.coerce.date(), to: z.coerce.date() })
  .refine((q) => q.to.getTime() > q.from.getTime(), { message: '结束须晚于开始 / to must be after from', path: ['to'] })
  .refine((q) => q.to.getTime() - q.from.getTime() <= 366 * 86_400_000, { message: '最长一年 / at most one year', path: ['to'] });

export function registerLedgerRoutes(routes: ApiRoutes, opts: SessionRoutesOptions & { photos?: SessionPhotos }): void {
  const { pool } = opts;

  routes.add(
    {
      method: 'post',
      path: '/sessions/:id/submit',
      summary: 'The secretary submits the session\'s ledger for review by the higher organisation (a to-do for its supervisors)',
      tag: 'ledger',
      roles: SESSION_WRITERS,
      params: idParam,
      responses: { '409': 'the session is not over, is cancelled, or its ledger is already submitted or approved' },
    },
    async ({ params, user, req }) => {
      await withTransaction(pool, async (db) => {
        const s = await loadSession(db, user, params.id, true);
        if (s.state === 'cancelled') throw new HttpError(409, 'cancelled', '会议已取消 / the session was cancelled');
        if (s.state !== 'ended') throw new HttpError(409, 'not_ended', '会议结束后才能提交台账 / submit the ledger once the session is over');
        if (s.ledger_state === 'submitted' || s.ledger_state === 'approved') {
          throw new HttpError(409, 'already_submitted', '台账已提交 / the ledger is already submitted');
        }
        await db.query(`UPDATE meeting_sessions SET ledger_state = 'submitted', submitted_at = now(), reviewed_at = NULL, reviewed_by = NULL WHERE id = $1`, [s.id]);
        // The nearest unit above the branch's that has a supervisor reviews (the community party committee or the town).
        const { rows } = await db.query<{ id: number }>(
          `SELECT a.id FROM units a
            WHERE $1 LIKE a.path || '%' AND a.id <> $2
            ORDER BY EXISTS (SELECT 1 FROM users x WHERE x.unit_id = a.id AND x.role = 'supervisor' AND NOT x.disabled) DESC, a.depth DESC
            LIMIT 1`,
          [s.unit_path, s.unit_id],
        );
        await db.query(`UPDATE todos SET done_at = now() WHERE object_type = 'session' AND object_id = $1 AND done_at IS NULL`, [String(s.id)]);
        if (rows[0]) {
          await db.query(
            `INSERT INTO todos (unit_id, role, kind, title_zh, title_en, object_type, object_id, due_at)
             VALUES ($1, 'supervisor', 'ledger_review', $2, $3, 'session', $4, now() + interval '7 days')`,
            [rows[0].id, `审核台账：${s.branch_name}「${s.topic ?? s.title ?? ''}」`, `Review the ledger: ${s.branch_name} "${s.topic ?? s.title ?? ''}"`, String(s.id)],
          );
        }
        await audit(db, { action: 'ledger.submit', user, objectType: 'session', objectId: s.id, unitId: s.unit_id, ip: req.ip ?? null });
      });
      if (opts.photos) opts.photos.extractInBackground(params.id);
      return presentSession(await loadSession(pool, user, params.id));
    },
  );

  routes.add(
    {
      method: 'post',
      path: '/sessions/:id/review',
      summary: 'A supervisor or leader of a unit above the branch approves the ledger or returns it with a reason',
      tag: 'ledger',
      roles: REVIEWERS,
      params: idParam,
      body: z
        .strictObject({ decision: z.enum(['approve', 'return']), reason: z.string().trim().min(1).max(1000).optional() })
        .refine((b) => b.decision === 'approve' || b.reason !== undefined, { message: '退回须说明原因 / a return needs a reason', path: ['reason'] }),
      responses: { '403': 'your unit is not above the branch', '409': 'the ledger is not submitted' },
    },
    async ({ params, body, user, req }) => {
      await withTransaction(pool, async (db) => {
        const s = await loadSession(db, user, params.id, true);
        if (Number(s.unit_id) === user.unitId) throw new HttpError(403, 'forbidden', '只有上级组织可以审核台账 / only a higher organisation reviews the ledger');
        if (s.ledger_state !== 'submitted') throw new HttpError(409, 'not_submitted', '台账尚未提交或已审核 / the ledger is not awaiting review');
        const state = body.decision === 'approve' ? 'approved' : 'returned';
        await db.query(
          `UPDATE meeting_sessions SET ledger_state = $2, ledger_note = $3, reviewed_at = now(), reviewed_by = $4 WHERE id = $1`,
          [s.id, state, body.reason ?? null, user.id],
        );
        await db.query(`UPDATE todos SET done_at = now() WHERE object_type = 'session' AND object_id = $1 AND done_at IS NULL`, [String(s.id)]);
        if (state === 'returned') {
          await db.query(
            `INSERT INTO todos (unit_id, role, kind, title_zh, title_en, object_type, object_id, due_at)
             VALUES ($1, 'secretary', 'ledger_returned', $2, $3, 'session', $4, now() + interval '7 days')`,
            [s.unit_id, `台账被退回：「${s.topic ?? s.title ?? ''}」——${body.reason}`, `Ledger returned: "${s.topic ?? s.title ?? ''}" — ${body.reason}`, String(s.id)],
          );
        }
        await audit(db, { action: `ledger.${body.decision}`, user, objectType: 'session', objectId: s.id, unitId: s.unit_id, ip: req.ip ?? null, detail: body.reason ? { reason: body.reason } : {} });
      });
      return presentSession(await loadSession(pool, user, params.id));
    },
  );

  routes.add(
    {
      method: 'get',
      path: '/units/:id/ledger',
      summary: 'The ledger (台账) of the branches under a unit for [from, to): sessions with attendance, quorum, check and review',
      tag: 'ledger',
      params: idParam,
      query: periodQuery,
    },
    async ({ params, query, user }) => {
      const unit = await requireUnitInScope(pool, user, params.id);
      const { rows } = await pool.query<{ name: string }>('SELECT name FROM units WHERE id = $1', [unit.id]);
      return { unitId: Number(unit.id), unitName: rows[0]!.name, from: query.from, to: query.to, sessions: await ledgerRows(pool, unit.path, query.from, query.to) };
    },
  );

  routes.add(
    {
      method: 'get',
      path: '/units/:id/ledger.xlsx',
      summary: 'The same ledger as a spreadsheet (.xlsx): a sheet of sessions and a sheet of attendance',
      tag: 'ledger',
      params: idParam,
      query: periodQuery,
      responses: { '200': 'application/vnd.openxmlformats-officedocument.spreadsheetml.sheet' },
    },
    async ({ params, query, user, res, req }) => {
      const unit = await requireUnitInScope(pool, user, params.id);
      const { rows } = await pool.query<{ name: string }>('SELECT name FROM units WHERE id = $1', [unit.id]);
      const unitName = rows[0]!.name;
      const sessions = await ledgerRows(pool, unit.path, query.from, query.to);
      const buf = await ledgerWorkbook(unitName, query.from, query.to, sessions);
      await audit(pool, { action: 'ledger.export', user, objectType: 'unit', objectId: unit.id, unitId: unit.id, ip: req.ip ?? null, detail: { sessions: sessions.length } });
      const day = (d: Date) => d.toISOString().slice(0, 10);
      const file = `ledger-${unit.id}-${day(query.from)}-${day(query.to)}.xlsx`;
      res
        .status(200)
        .set('Content-Type', 'application/vnd.openxmlformats-officedocument.spreadsheetml.sheet')
        .set('Content-Disposition', `attachment; filename="${file}"; filename*=UTF-8''${encodeURIComponent(`${unitName}台账-${day(query.from)}.xlsx`)}`)
        .send(buf);
      return undefined;
    },
  );
}
