import type pg from 'pg';
import type { ObligationCode } from '../obligations/types.ts';

// Quorum of a session, per obligation it was held for (中国共产党支部工作条例（试行）2018):
// - 支部党员大会 (member_meeting, rule 'full_members'): valid only with more than half of the voting
//   members present — active full members; probationary members attend but have no vote;
// - 支委会 (committee_meeting, rule 'committee'): more than half of the committee members;
// - 党小组会 (group_meeting, rule 'group'): more than half of the group's members;
// - everything else (lessons, 主题党日 …) has no quorum rule.
// "Present" is attendance 'present'; "active" is a member who had not left (members.left_at) when
// the session started.

export type QuorumRule = 'none' | 'full_members' | 'committee' | 'group';

export interface QuorumVerdict {
  obligation: ObligationCode;
  rule: QuorumRule;
  expected: number;
  present: number;
  passed: boolean;
  /** Chinese, e.g. `到会4人，应到10人，未超过半数`. */
  message?: string;
}

export interface ExpectedMember {
  memberId: number;
  name: string;
  membership: 'full' | 'probationary';
  /** The kinds of the session this member is expected at. */
  obligations: ObligationCode[];
}

/** A pool or a transaction's client. */
type Db = Pick<pg.Pool, 'query'>;

interface KindRow extends Record<string, unknown> {
  obligation: ObligationCode;
  quorum: QuorumRule;
  scope: 'branch' | 'committee' | 'group';
  party_group_id: number | null;
}

/** The session's kinds (session_obligations; the session's own obligation for rows without any). */
async function kindsOf(db: Db, sessionId: number): Promise<KindRow[]> {
  const { rows } = await db.query<KindRow>(
    `SELECT k.obligation, t.quorum, t.scope, k.party_group_id
       FROM (SELECT so.obligation, COALESCE(so.party_group_id, s.party_group_id) AS party_group_id, 0 AS first
               FROM session_obligations so JOIN meeting_sessions s ON s.id = so.session_id WHERE so.session_id = $1
             UNION ALL
             SELECT s.obligation, s.party_group_id, 1 FROM meeting_sessions s
              WHERE s.id = $1 AND NOT EXISTS (SELECT 1 FROM session_obligations so WHERE so.session_id = s.id)) k
       JOIN obligation_types t ON t.code = k.obligation
      ORDER BY (k.obligation = (SELECT obligation FROM meeting_sessions WHERE id = $1)) DESC, t.sort, k.obligation`,
    [sessionId],
  );
  return rows.map((r) => ({ ...r, party_group_id: r.party_group_id === null ? null : Number(r.party_group_id) }));
}

interface MemberRow extends Record<string, unknown> {
  id: number;
  name: string;
  membership: 'full' | 'probationary';
  committee_role: string | null;
  party_group_id: number | null;
  present: boolean;
}

/** Active members of the session's branch when it started, with whether each was present. */
async function membersOf(db: Db, sessionId: number): Promise<MemberRow[]> {
  const { rows } = await db.query<MemberRow>(
    `SELECT m.id, m.name, m.membership, m.committee_role, m.party_group_id,
            COALESCE(a.status = 'present', false) AS present
       FROM meeting_sessions s
       JOIN members m ON m.branch_id = s.branch_id AND (m.left_at IS NULL OR m.left_at > s.starts_at)
       LEFT JOIN session_attendance a ON a.session_id = s.id AND a.member_id = m.id
      WHERE s.id = $1
      ORDER BY m.is_secretary DESC, m.id`,
    [sessionId],
  );
  return rows.map((r) => ({ ...r, id: Number(r.id), party_group_id: r.party_group_id === null ? null : Number(r.party_group_id) }));
}

/** Who a kind of session concerns: the committee, the group, or the whole branch. */
function concerns(kind: KindRow, m: MemberRow): boolean {
  if (kind.scope === 'committee' || kind.quorum === 'committee') return m.committee_role !== null;
  if (kind.scope === 'group' || kind.quorum === 'group') return kind.party_group_id !== null && m.party_group_id === kind.party_group_id;
  return true;
}

/**
 * Who is expected at the session: member meetings, lessons and 主题党日 -> all active members;
 * a committee meeting -> the committee members; a group meeting -> the group's members. A session
 * held for several kinds expects everyone any of them concerns.
 */
export async function expectedMembers(db: Db, sessionId: number): Promise<ExpectedMember[]> {
  const [kinds, members] = await Promise.all([kindsOf(db, sessionId), membersOf(db, sessionId)]);
  const out: ExpectedMember[] = [];
  for (const m of members) {
    const obligations = kinds.filter((k) => concerns(k, m)).map((k) => k.obligation);
    if (obligations.length > 0) out.push({ memberId: m.id, name: m.name, membership: m.membership, obligations });
  }
  return out;
}

/** Strictly more than half. */
export const quorumReached = (present: number, expected: number): boolean => expected > 0 && present * 2 > expected;

export function quorumMessage(present: number, expected: number, passed: boolean): string {
  return `到会${present}人，应到${expected}人，${passed ? '超过半数' : '未超过半数'}`;
}

/** One verdict per kind of the session; kinds without a quorum rule always pass. */
export async function judgeQuorum(db: Db, sessionId: number): Promise<QuorumVerdict[]> {
  const [kinds, members] = await Promise.all([kindsOf(db, sessionId), membersOf(db, sessionId)]);
  return kinds.map((k) => {
    // Only voting (full) members count toward a member meeting's quorum.
    const counted = members.filter((m) => concerns(k, m) && (k.quorum !== 'full_members' || m.membership === 'full'));
    const expected = counted.length;
    const present = counted.filter((m) => m.present).length;
    if (k.quorum === 'none') return { obligation: k.obligation, rule: 'none', expected, present, passed: true };
    const passed = quorumReached(present, expected);
    return { obligation: k.obligation, rule: k.quorum, expected, present, passed, message: quorumMessage(present, expected, passed) };
  });
}
