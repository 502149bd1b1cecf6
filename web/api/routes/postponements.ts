import { z } from 'zod';
import { withTransaction, type Pool } from '../../../infra/db/pool.ts';
import { ObligationCode, obligationNamesEn, obligationNamesZh } from '../../../scheduler/obligations/types.ts';
import { HttpError } from '../auth-context.ts';
import { audit } from '../audit.ts';
import { notFound } from '../errors.ts';
import { idParam, type ApiRoutes } from '../route-registry.ts';
import { requireUnitInScope, scopePattern } from '../scope.ts';
import { id, idQuery } from '../schemas.ts';
import { branchInScope } from './branch-duties.ts';
import { insertPostponementRequest } from '../../../scheduler/replies/postponementRequest.ts';

// Postponement of an obligation for one period: asked by the branch, decided by the higher
// organisation (a supervisor, leader or operator of a unit strictly above the branch's unit), recorded.
// An approved one makes the period 'postponed': no reminder, not overdue.

const deciderRoles = ['supervisor', 'leader', 'operator'] as const;

interface PostponementRow {
  id: number; branch_id: number; branch_name: string; unit_id: number; obligation: ObligationCode; party_group_id: number | null;
  period_key: string; reason: string; requested_by: number | null; requested_at: Date; state: string; decided_by: number | null;
  decided_at: Date | null; decision_note: string | null;
}

const out = (r: PostponementRow) => ({
  id: Number(r.id), branchId: Number(r.branch_id), branchName: r.branch_name, unitId: Number(r.unit_id), obligation: r.obligation,
  nameZh: obligationNamesZh[r.obligation], nameEn: obligationNamesEn[r.obligation],
  partyGroupId: r.party_group_id === null ? null : Number(r.party_group_id), periodKey: r.period_key, reason: r.reason,
  requestedBy: r.requested_by === null ? null : Number(r.requested_by), requestedAt: r.requested_at, state: r.state,
  decidedBy: r.decided_by === null ? null : Number(r.decided_by), decidedAt: r.decided_at, decisionNote: r.decision_note,
});

const select = `SELECT p.id, p.branch_id, b.name AS branch_name, b.unit_id, p.obligation, p.party_group_id, p.period_key, p.reason,
       p.requested_by, p.requested_at, p.state, p.decided_by, p.decided_at, p.decision_note
  FROM obligation_postponements p JOIN branches b ON b.id = p.branch_id JOIN units u ON u.id = b.unit_id`;

export function registerPostponementRoutes(routes: ApiRoutes, pool: Pool): void {
  const tag = 'postponements';

  routes.add(
    {
      method: 'post', path: '/postponements', summary: 'Ask the higher organisation to postpone an obligation for one period', tag,
      roles: ['secretary', 'admin'], status: 201,
      body: z.strictObject({
        branchId: id, obligation: ObligationCode, partyGroupId: id.nullable().optional(),
        periodKey: z.string().max(10), reason: z.string().trim().min(1).max(1000),
      }),
    },
    async ({ body, user, req }) =>
      withTransaction(pool, async (c) => {
        const b = await branchInScope(c, user, body.branchId);
        const pid = await insertPostponementRequest(c, {
          branch: b, obligation: body.obligation, partyGroupId: body.partyGroupId ?? null, periodKey: body.periodKey,
          reason: body.reason, requestedBy: user.id,
        });
        await audit(c, { user, action: 'postponement.request', objectType: 'postponement', objectId: pid, unitId: b.unit_id, ip: req.ip, detail: body });
        const got = await c.query<PostponementRow>(`${select} WHERE p.id = $1`, [pid]);
        return out(got.rows[0]!);
      }),
  );

  routes.add(
    {
      method: 'get', path: '/postponements', summary: 'Postponements of branches under a unit', tag,
      query: z.strictObject({ under: idQuery.optional(), state: z.enum(['requested', 'approved', 'refused']).optional() }),
    },
    async ({ query, user }) => {
      const unit = await requireUnitInScope(pool, user, query.under ?? user.unitId, 'under');
      const { rows } = await pool.query<PostponementRow>(
        `${select} WHERE u.path LIKE $1 AND ($2::text IS NULL OR p.state = $2) ORDER BY p.requested_at DESC, p.id DESC LIMIT 500`,
        [`${unit.path}%`, query.state ?? null],
      );
      return { items: rows.map(out) };
    },
  );

  routes.add(
    {
      method: 'post', path: '/postponements/:id/decision', summary: 'Approve or refuse a postponement (higher organisation)', tag,
      roles: deciderRoles, params: idParam,
      body: z.strictObject({ decision: z.enum(['approve', 'refuse']), note: z.string().trim().max(1000).default('') }),
    },
    async ({ params, body, user, req }) =>
      withTransaction(pool, async (c) => {
        const { rows } = await c.query<PostponementRow & { path: string }>(
          `${select.replace('SELECT p.id,', 'SELECT u.path, p.id,')} WHERE p.id = $1 AND u.path LIKE $2 FOR UPDATE OF p`,
          [params.id, scopePattern(user)],
        );
        const p = rows[0];
        if (!p) throw notFound('延期申请', 'postponement');
        if (p.path === user.unitPath) {
          throw new HttpError(403, 'not_higher', '须由上级组织审批 / a unit above the branch decides', { field: 'decision' });
        }
        if (p.state !== 'requested') throw new HttpError(409, 'already_decided', '该申请已审批 / already decided');
        if (body.decision === 'refuse' && !body.note) {
          throw new HttpError(400, 'invalid_request', '不予批准须说明理由 / a refusal needs a note', [{ path: 'body.note', message: '不予批准须说明理由 / a refusal needs a note' }]);
        }
        await c.query(
          `UPDATE obligation_postponements SET state = $2, decided_by = $3, decided_at = now(), decision_note = $4 WHERE id = $1`,
          [params.id, body.decision === 'approve' ? 'approved' : 'refused', user.id, body.note || null],
        );
        await c.query(`UPDATE todos SET done_at = now() WHERE object_type = 'postponement' AND object_id = $1 AND done_at IS NULL`, [String(params.id)]);
        await audit(c, { user, action: `postponement.${body.decision}`, objectType: 'postponement', objectId: params.id, unitId: p.unit_id, ip: req.ip, detail: body });
        const got = await c.query<PostponementRow>(`${select} WHERE p.id = $1`, [params.id]);
        return out(got.rows[0]!);
      }),
  );
}
