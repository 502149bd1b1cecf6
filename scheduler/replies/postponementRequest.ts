import type { PoolClient } from '../../infra/db/pool.ts';
import { HttpError } from '../../web/api/auth-context.ts';
import { obligationNamesEn, obligationNamesZh, type ObligationCode } from '../obligations/types.ts';

// One way to ask for a postponement, used by POST /api/postponements and by an SMS/Beidou reply "2":
// the same checks, the same row, the same to-do for the unit above that decides it.

const periodPattern: Record<string, RegExp> = {
  month: /^\d{4}-(0[1-9]|1[0-2])$/,
  quarter: /^\d{4}-Q[1-4]$/,
  half_year: /^\d{4}-H[12]$/,
  year: /^\d{4}$/,
};

export interface PostponementAsk {
  branch: { id: number; unit_id: number; path: string };
  obligation: ObligationCode;
  partyGroupId: number | null;
  periodKey: string;
  reason: string;
  requestedBy: number | null;
  requestedByMember?: number | null;
  via?: 'web' | 'sms' | 'beidou';
}

/** Inserts (or renews a refused) postponement request and its to-do; throws HttpError when not allowed. */
export async function insertPostponementRequest(c: PoolClient, a: PostponementAsk): Promise<number> {
  const rule = await c.query<{ period: string; scope: string }>(
    `SELECT period, scope FROM branch_obligation_rules WHERE branch_id = $1 AND obligation = $2 AND enabled`,
    [a.branch.id, a.obligation],
  );
  const r = rule.rows[0];
  if (!r) throw new HttpError(422, 'not_applicable', '该党支部无此项任务 / this obligation does not apply to the branch', { field: 'obligation' });
  if (!periodPattern[r.period]!.test(a.periodKey)) {
    throw new HttpError(422, 'bad_period', '期间格式与该任务的周期不符 / the period key does not match the obligation\'s period', { field: 'periodKey', period: r.period });
  }
  const groupId = a.partyGroupId;
  if ((r.scope === 'group') !== (groupId !== null)) {
    throw new HttpError(422, 'group_required', '党小组会须指定党小组，其他任务不得指定 / a group meeting names its party group; other obligations do not', { field: 'partyGroupId' });
  }
  if (groupId !== null) {
    const g = await c.query(`SELECT 1 FROM party_groups WHERE id = $1 AND branch_id = $2 AND retired_at IS NULL`, [groupId, a.branch.id]);
    if (g.rowCount === 0) throw new HttpError(422, 'group_not_in_branch', '党小组不属于该党支部 / the party group is not one of this branch', { field: 'partyGroupId' });
  }
  // A refused request may be asked again (with a new reason); a pending or approved one stands.
  const { rows } = await c.query<{ id: number }>(
    `INSERT INTO obligation_postponements (branch_id, obligation, party_group_id, period_key, reason, requested_by, requested_by_member, requested_via)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
     ON CONFLICT (branch_id, obligation, coalesce(party_group_id, 0), period_key) DO UPDATE
       SET reason = EXCLUDED.reason, requested_by = EXCLUDED.requested_by, requested_at = now(), state = 'requested',
           requested_by_member = EXCLUDED.requested_by_member, requested_via = EXCLUDED.requested_via,
           decided_by = NULL, decided_at = NULL, decision_note = NULL
       WHERE obligation_postponements.state = 'refused'
     RETURNING id`,
    [a.branch.id, a.obligation, groupId, a.periodKey, a.reason, a.requestedBy, a.requestedByMember ?? null, a.via ?? 'web'],
  );
  if (!rows[0]) throw new HttpError(409, 'already_requested', '该期间已申请延期 / a postponement for this period was already asked for');
  const pid = Number(rows[0].id);
  // A to-do for the supervisors of the nearest unit above with a supervisor.
  await c.query(
    `INSERT INTO todos (unit_id, role, kind, title_zh, title_en, object_type, object_id)
     SELECT t.id, 'supervisor', 'postponement_request', $2, $3, 'postponement', $4
       FROM unnest(string_to_array(rtrim($1, '.'), '.')::bigint[]) AS a(id) JOIN units t ON t.id = a.id
      WHERE t.id <> $5 AND EXISTS (SELECT 1 FROM users us WHERE us.unit_id = t.id AND us.role = 'supervisor' AND NOT us.disabled)
      ORDER BY t.depth DESC LIMIT 1`,
    [a.branch.path, `延期申请：${obligationNamesZh[a.obligation]} ${a.periodKey}`, `Postponement asked: ${obligationNamesEn[a.obligation]} ${a.periodKey}`, String(pid), a.branch.unit_id],
  );
  return pid;
}
