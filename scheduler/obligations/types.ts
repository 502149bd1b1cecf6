import { z } from 'zod';

export const obligationCodes = [
  'member_meeting',
  'committee_meeting',
  'group_meeting',
  'party_lesson',
  'theme_day',
  'sunshine_day',
] as const;
export const ObligationCode = z.enum(obligationCodes);
export type ObligationCode = z.infer<typeof ObligationCode>;

export const periodKinds = ['month', 'quarter', 'half_year', 'year'] as const;
export const PeriodKind = z.enum(periodKinds);
export type PeriodKind = z.infer<typeof PeriodKind>;

/** Shorter periods are stricter: a county may change quarterly to monthly, not the reverse. */
export const periodRank: Record<PeriodKind, number> = { month: 1, quarter: 2, half_year: 3, year: 4 };

export const obligationNamesZh: Record<ObligationCode, string> = {
  member_meeting: '支部党员大会',
  committee_meeting: '支委会',
  group_meeting: '党小组会',
  party_lesson: '党课',
  theme_day: '主题党日',
  sunshine_day: '阳光议事日',
};

export const ObligationRuleInput = z.object({
  obligation: ObligationCode,
  period: PeriodKind,
  requiredCount: z.number().int().min(0).max(31),
  minDurationS: z.number().int().min(1).max(86_400),
  enabled: z.boolean().default(true),
});
export type ObligationRuleInput = z.input<typeof ObligationRuleInput>;

export interface ObligationRule {
  obligation: ObligationCode;
  period: PeriodKind;
  requiredCount: number;
  minDurationS: number;
  enabled: boolean;
}

/** Where a branch stands on one obligation in one period. */
// 'checking': not done yet, but sessions that ended await their verdict and could still make it done.
export type ObligationStatus = 'done' | 'checking' | 'pending' | 'at_risk' | 'overdue';
