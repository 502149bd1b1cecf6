import { z } from 'zod';
import { withTransaction, type Pool } from '../../../infra/db/pool.ts';
import { evaluateObligations } from '../../../scheduler/obligations/evaluate.ts';
import { obligationNamesEn, obligationNamesZh, obligationQuorum, type ObligationCode } from '../../../scheduler/obligations/types.ts';
import { HttpError, type AuthUser } from '../auth-context.ts';
import { audit } from '../audit.ts';
import { notFound } from '../errors.ts';
import { permissions } from '../permissions.ts';
import { idParam, type ApiRoutes } from '../route-registry.ts';
import { scopePattern, type Db } from '../scope.ts';
import { id, name } from '../schemas.ts';

// Branch facts the 2018 条例 derives obligations from: full and probationary members, the branch
// committee (支委会, only with >= 7 full members), party groups (党小组) and who belongs to them;
// and the obligations that follow for a branch at an instant.

/** 条例: a branch with seven or more full members sets up a branch committee. */
export const COMMITTEE_MIN_FULL_MEMBERS = 7;

interface BranchRow {
  id: number;
  unit_id: number;
  path: string;
  has_committee: boolean;
}

/** A live branch in the caller's subtree, else 404 (missing and out of subtree look alike). */
export async function branchInScope(db: Db, user: AuthUser, branchId: number, lock = false): Promise<BranchRow> {
  const { rows } = await db.query<BranchRow>(
    `SELECT b.id, b.unit_id, u.path, b.has_committee FROM branches b JOIN units u ON u.id = b.unit_id
      WHERE b.id = $1 AND u.path LIKE $2 AND b.retired_at IS NULL${lock ? ' FOR UPDATE OF b' : ''}`,
    [branchId, scopePattern(user)],
  );
  if (!rows[0]) throw notFound('党支部', 'branch');
  return rows[0];
}

/** Members counted from now: not transferred out or deceased. */
const active = `(m.left_at IS NULL OR m.left_at > now())`;

async function facts(db: Db, branchId: number) {
  const b = await db.query<{ has_committee: boolean }>(`SELECT has_committee FROM branches WHERE id = $1`, [branchId]);
  const members = await db.query<{
    id: number; name: string; membership: 'full' | 'probationary'; committee_role: string | null; party_group_id: number | null;
    left_at: Date | null; is_secretary: boolean;
  }>(
    `SELECT m.id, m.name, m.membership, m.committee_role, m.party_group_id, m.left_at, m.is_secretary
       FROM members m WHERE m.branch_id = $1 ORDER BY m.id`,
    [branchId],
  );
  const groups = await db.query<{ id: number; name: string; leader_member_id: number | null }>(
    `SELECT id, name, leader_member_id FROM party_groups WHERE branch_id = $1 AND retired_at IS NULL ORDER BY id`,
    [branchId],
  );
  const now = Date.now();
  const live = members.rows.filter((m) => m.left_at === null || m.left_at.getTime() > now);
  return {
    branchId,
    hasCommittee: b.rows[0]!.has_committee,
    members: members.rows.map((m) => ({
      id: Number(m.id), name: m.name, membership: m.membership, committeeRole: m.committee_role,
      partyGroupId: m.party_group_id === null ? null : Number(m.party_group_id), leftAt: m.left_at, isSecretary: m.is_secretary,
    })),
    groups: groups.rows.map((g) => ({
      id: Number(g.id), name: g.name, leaderMemberId: g.leader_member_id === null ? null : Number(g.leader_member_id),
      members: live.filter((m) => m.party_group_id !== null && Number(m.party_group_id) === Number(g.id)).map((m) => Number(m.id)),
    })),
    fullMembers: live.filter((m) => m.membership === 'full').length,
    probationaryMembers: live.filter((m) => m.membership === 'probationary').length,
  };
}

async function activeFullMembers(db: Db, branchId: number): Promise<number> {
  const { rows } = await db.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM members m WHERE m.branch_id = $1 AND m.membership = 'full' AND ${active}`,
    [branchId],
  );
  return rows[0]!.n;
}

function committeeRefused(n: number): HttpError {
  return new HttpError(
    422,
    'committee_needs_seven',
    `正式党员${n}人，不足${COMMITTEE_MIN_FULL_MEMBERS}人，不设支部委员会 / a branch committee needs at least ${COMMITTEE_MIN_FULL_MEMBERS} full members (this branch has ${n})`,
    { field: 'hasCommittee', fullMembers: n },
  );
}

/** A live group of this branch, else 404/422 with the field named. */
async function groupOfBranch(db: Db, branchId: number, groupId: number, field: string): Promise<void> {
  const { rows } = await db.query<{ branch_id: number }>(`SELECT branch_id FROM party_groups WHERE id = $1 AND retired_at IS NULL`, [groupId]);
  if (!rows[0] || Number(rows[0].branch_id) !== branchId) {
    throw new HttpError(422, 'group_not_in_branch', '党小组不属于该党支部 / the party group is not one of this branch', { field });
  }
}

async function memberOfBranch(db: Db, branchId: number, memberId: number, field: string): Promise<void> {
  const { rows } = await db.query<{ branch_id: number }>(`SELECT branch_id FROM members WHERE id = $1`, [memberId]);
  if (!rows[0] || Number(rows[0].branch_id) !== branchId) {
    throw new HttpError(422, 'member_not_in_branch', '该党员不属于本党支部 / the member does not belong to this branch', { field });
  }
}

export function registerBranchDutyRoutes(routes: ApiRoutes, pool: Pool): void {
  const tag = 'branch-duties';
  const writeRoles = permissions.writeBranches;

  routes.add(
    { method: 'get', path: '/branches/:id/facts', summary: 'Branch facts: members (full/probationary), committee, party groups', tag, params: idParam },
    async ({ params, user }) => {
      const b = await branchInScope(pool, user, params.id);
      return facts(pool, b.id);
    },
  );

  routes.add(
    {
      method: 'patch', path: '/branches/:id/facts', summary: 'Set whether the branch has a committee (needs >= 7 active full members)', tag,
      roles: writeRoles, params: idParam,
      body: z.strictObject({ hasCommittee: z.boolean().optional() }).refine((o) => Object.keys(o).length > 0, { message: '至少修改一个字段 / change at least one field' }),
    },
    async ({ params, body, user, req }) =>
      withTransaction(pool, async (c) => {
        const b = await branchInScope(c, user, params.id, true);
        if (body.hasCommittee === true) {
          const n = await activeFullMembers(c, b.id);
          if (n < COMMITTEE_MIN_FULL_MEMBERS) throw committeeRefused(n);
        }
        if (body.hasCommittee !== undefined) await c.query(`UPDATE branches SET has_committee = $2 WHERE id = $1`, [b.id, body.hasCommittee]);
        await audit(c, { user, action: 'branch.facts', objectType: 'branch', objectId: b.id, unitId: b.unit_id, ip: req.ip, detail: body });
        return facts(c, b.id);
      }),
  );

  routes.add(
    {
      method: 'patch', path: '/members/:id/duties', summary: 'A member\'s membership, committee role, party group, leaving date', tag,
      roles: writeRoles, params: idParam,
      body: z.strictObject({
        membership: z.enum(['full', 'probationary']).optional(),
        committeeRole: z.enum(['secretary', 'deputy_secretary', 'member']).nullable().optional(),
        partyGroupId: id.nullable().optional(),
        leftAt: z.iso.datetime({ offset: true }).nullable().optional(),
      }).refine((o) => Object.keys(o).length > 0, { message: '至少修改一个字段 / change at least one field' }),
    },
    async ({ params, body, user, req }) =>
      withTransaction(pool, async (c) => {
        const { rows } = await c.query<{ branch_id: number }>(
          `SELECT m.branch_id FROM members m JOIN branches b ON b.id = m.branch_id JOIN units u ON u.id = b.unit_id
            WHERE m.id = $1 AND u.path LIKE $2 AND b.retired_at IS NULL FOR UPDATE OF m`,
          [params.id, scopePattern(user)],
        );
        if (!rows[0]) throw notFound('党员', 'member');
        const branchId = Number(rows[0].branch_id);
        const b = await branchInScope(c, user, branchId, true);
        if (body.partyGroupId !== undefined && body.partyGroupId !== null) await groupOfBranch(c, branchId, body.partyGroupId, 'partyGroupId');
        const sets: string[] = [];
        const values: unknown[] = [params.id];
        const col = (column: string, v: unknown) => sets.push(`${column} = $${values.push(v)}`);
        if (body.membership !== undefined) col('membership', body.membership);
        if (body.committeeRole !== undefined) col('committee_role', body.committeeRole);
        if (body.partyGroupId !== undefined) col('party_group_id', body.partyGroupId);
        if (body.leftAt !== undefined) col('left_at', body.leftAt === null ? null : new Date(body.leftAt));
        await c.query(`UPDATE members SET ${sets.join(', ')} WHERE id = $1`, values);
        // A committee stays only while the branch keeps seven full members.
        if (b.has_committee && (body.membership !== undefined || body.leftAt !== undefined)) {
          const n = await activeFullMembers(c, branchId);
          if (n < COMMITTEE_MIN_FULL_MEMBERS) throw committeeRefused(n);
        }
        await audit(c, { user, action: 'member.duties', objectType: 'member', objectId: params.id, unitId: b.unit_id, ip: req.ip, detail: body });
        return facts(c, branchId);
      }),
  );

  routes.add(
    {
      method: 'post', path: '/branches/:id/groups', summary: 'Set up a party group (党小组) in a branch', tag, roles: writeRoles, params: idParam,
      body: z.strictObject({ name, leaderMemberId: id.nullable().optional() }), status: 201,
    },
    async ({ params, body, user, req }) =>
      withTransaction(pool, async (c) => {
        const b = await branchInScope(c, user, params.id, true);
        if (body.leaderMemberId) await memberOfBranch(c, b.id, body.leaderMemberId, 'leaderMemberId');
        const { rows } = await c.query<{ id: number }>(
          `INSERT INTO party_groups (branch_id, name, leader_member_id) VALUES ($1, $2, $3) RETURNING id`,
          [b.id, body.name, body.leaderMemberId ?? null],
        );
        const gid = Number(rows[0]!.id);
        if (body.leaderMemberId) await c.query(`UPDATE members SET party_group_id = $2 WHERE id = $1`, [body.leaderMemberId, gid]);
        await audit(c, { user, action: 'party_group.create', objectType: 'party_group', objectId: gid, unitId: b.unit_id, ip: req.ip, detail: body });
        return { id: gid, branchId: b.id, name: body.name, leaderMemberId: body.leaderMemberId ?? null };
      }),
  );

  const groupInScope = async (c: Db, user: AuthUser, groupId: number) => {
    const { rows } = await c.query<{ branch_id: number }>(
      `SELECT g.branch_id FROM party_groups g JOIN branches b ON b.id = g.branch_id JOIN units u ON u.id = b.unit_id
        WHERE g.id = $1 AND g.retired_at IS NULL AND u.path LIKE $2 FOR UPDATE OF g`,
      [groupId, scopePattern(user)],
    );
    if (!rows[0]) throw notFound('党小组', 'party group');
    return branchInScope(c, user, Number(rows[0].branch_id));
  };

  routes.add(
    {
      method: 'patch', path: '/party-groups/:id', summary: 'Rename a party group or change its leader', tag, roles: writeRoles, params: idParam,
      body: z.strictObject({ name: name.optional(), leaderMemberId: id.nullable().optional() })
        .refine((o) => Object.keys(o).length > 0, { message: '至少修改一个字段 / change at least one field' }),
    },
    async ({ params, body, user, req }) =>
      withTransaction(pool, async (c) => {
        const b = await groupInScope(c, user, params.id);
        if (body.leaderMemberId) await memberOfBranch(c, b.id, body.leaderMemberId, 'leaderMemberId');
        if (body.name !== undefined) await c.query(`UPDATE party_groups SET name = $2 WHERE id = $1`, [params.id, body.name]);
        if (body.leaderMemberId !== undefined) await c.query(`UPDATE party_groups SET leader_member_id = $2 WHERE id = $1`, [params.id, body.leaderMemberId]);
        await audit(c, { user, action: 'party_group.update', objectType: 'party_group', objectId: params.id, unitId: b.unit_id, ip: req.ip, detail: body });
        const { rows } = await c.query<{ name: string; leader_member_id: number | null }>(`SELECT name, leader_member_id FROM party_groups WHERE id = $1`, [params.id]);
        return { id: params.id, branchId: b.id, name: rows[0]!.name, leaderMemberId: rows[0]!.leader_member_id === null ? null : Number(rows[0]!.leader_member_id) };
      }),
  );

  routes.add(
    { method: 'delete', path: '/party-groups/:id', summary: 'Retire a party group (history kept; its members leave it)', tag, roles: writeRoles, params: idParam },
    async ({ params, user, req }) =>
      withTransaction(pool, async (c) => {
        const b = await groupInScope(c, user, params.id);
        const { rows } = await c.query<{ retired_at: Date }>(`UPDATE party_groups SET retired_at = now() WHERE id = $1 RETURNING retired_at`, [params.id]);
        await c.query(`UPDATE members SET party_group_id = NULL WHERE party_group_id = $1`, [params.id]);
        await audit(c, { user, action: 'party_group.retire', objectType: 'party_group', objectId: params.id, unitId: b.unit_id, ip: req.ip });
        return { id: params.id, retiredAt: rows[0]!.retired_at };
      }),
  );

  routes.add(
    {
      method: 'get', path: '/branches/:id/obligations', summary: 'What the branch owes in the current and previous period of each obligation', tag,
      params: idParam, query: z.strictObject({ at: z.iso.datetime({ offset: true }).optional() }),
    },
    async ({ params, query, user }) => {
      const b = await branchInScope(pool, user, params.id);
      const at = query.at ? new Date(query.at) : new Date();
      const rows = (await evaluateObligations(pool, { at, unitPath: b.path })).filter((r) => Number(r.branch_id) === b.id);
      const groups = await pool.query<{ id: number; name: string; retired_at: Date | null }>(`SELECT id, name, retired_at FROM party_groups WHERE branch_id = $1 ORDER BY id`, [b.id]);
      const groupName = new Map(groups.rows.map((g) => [Number(g.id), g.name]));
      const sortKey = Object.keys(obligationNamesZh);
      rows.sort((x, y) => sortKey.indexOf(x.obligation) - sortKey.indexOf(y.obligation)
        || Number(x.party_group_id ?? 0) - Number(y.party_group_id ?? 0) || y.period_start.getTime() - x.period_start.getTime());
      // The kinds a session of this branch may be held for (enabled and applicable), for planning forms.
      const applicable = await pool.query<{ obligation: ObligationCode; period: string; scope: string }>(
        `SELECT bor.obligation, bor.period, bor.scope FROM branch_obligation_rules bor JOIN obligation_types t ON t.code = bor.obligation
          WHERE bor.branch_id = $1 AND bor.enabled AND bor.required_count > 0 ORDER BY t.sort`,
        [b.id],
      );
      return {
        branchId: b.id,
        at,
        hasCommittee: b.has_committee,
        kinds: applicable.rows.map((k) => ({
          obligation: k.obligation, nameZh: obligationNamesZh[k.obligation], nameEn: obligationNamesEn[k.obligation],
          period: k.period, scope: k.scope, quorum: obligationQuorum[k.obligation],
        })),
        groups: groups.rows.filter((g) => g.retired_at === null).map((g) => ({ id: Number(g.id), name: g.name })),
        rows: rows.map((r) => ({
          obligation: r.obligation,
          nameZh: obligationNamesZh[r.obligation],
          nameEn: obligationNamesEn[r.obligation],
          partyGroupId: r.party_group_id === null ? null : Number(r.party_group_id),
          partyGroupName: r.party_group_id === null ? null : groupName.get(Number(r.party_group_id)) ?? null,
          period: r.period,
          periodKey: r.period_key,
          periodStart: r.period_start,
          periodEnd: r.period_end,
          requiredCount: r.required_count,
          doneCount: r.done_count,
          checkingCount: r.checking_count,
          status: r.status,
        })),
      };
    },
  );
}
