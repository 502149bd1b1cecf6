import type { Pool } from '../../../infra/db/pool.ts';
import type { ObligationCode, PeriodKind } from '../../obligations/types.ts';
import { templateParams } from '../../reminders/messages.ts';
import { periodOf } from '../../reminders/plan.ts';

/** The template kind and parameters of the reminder a send carries (cloud SMS sends templates, not text). */
export type TemplateResolver = (sendId: number) => Promise<{ kind: 'secretary' | 'supervisor'; params: Record<string, string> } | null>;

export function dbTemplateResolver(pool: Pool): TemplateResolver {
  return async (sendId) => {
    const { rows } = await pool.query<{
      target: 'secretary' | 'supervisor'; obligation: ObligationCode; period: PeriodKind; period_key: string; period_end: Date;
      done_count: number; required_count: number; branch_name: string; unit_name: string; group_name: string | null;
    }>(
      `SELECT r.target, r.obligation, ${periodOf('r')} AS period, r.period_key, r.period_end, r.done_count, r.required_count,
              b.name AS branch_name, u.name AS unit_name, g.name AS group_name
         FROM message_sends s JOIN reminders r ON r.id = s.reminder_id
         JOIN branches b ON b.id = r.branch_id JOIN units u ON u.id = b.unit_id
         LEFT JOIN party_groups g ON g.id = r.party_group_id
        WHERE s.id = $1`,
      [sendId],
    );
    const r = rows[0];
    if (!r) return null;
    return templateParams({
      target: r.target, branchName: r.branch_name, unitName: r.unit_name, obligation: r.obligation, period: r.period,
      periodKey: r.period_key, periodEnd: r.period_end, done: r.done_count, required: r.required_count, groupName: r.group_name,
    });
  };
}
