import { z } from 'zod';

export const obligationCodes = [
  'member_meeting',
  'committee_meeting',
  'group_meeting',
  'party_lesson',
  'theme_day',
  'sunshine_day',
  'org_life_meeting',
  'member_review',
  'secretary_lesson',
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
  org_life_meeting: '组织生活会',
  member_review: '民主评议党员',
  secretary_lesson: '书记讲党课',
};

export const obligationNamesEn: Record<ObligationCode, string> = {
  member_meeting: 'branch member meeting',
  committee_meeting: 'branch committee meeting',
  group_meeting: 'party group meeting',
  party_lesson: 'party lesson',
  theme_day: 'theme party day',
  sunshine_day: 'sunshine deliberation day',
  org_life_meeting: 'organisational life meeting',
  member_review: 'annual review of members',
  secretary_lesson: 'party lesson by the secretary',
};

/** Whom an obligation concerns: the whole branch, its committee (支委会), or each party group (党小组). */
export type ObligationScope = 'branch' | 'committee' | 'group';
export const obligationScope: Record<ObligationCode, ObligationScope> = {
  member_meeting: 'branch',
  committee_meeting: 'committee',
  group_meeting: 'group',
  party_lesson: 'branch',
  theme_day: 'branch',
  sunshine_day: 'branch',
  org_life_meeting: 'branch',
  member_review: 'branch',
  secretary_lesson: 'branch',
};

/** Quorum rule of a session held for an obligation (more than half of these present). */
export type ObligationQuorum = 'none' | 'full_members' | 'committee' | 'group';
export const obligationQuorum: Record<ObligationCode, ObligationQuorum> = {
  member_meeting: 'full_members',
  committee_meeting: 'committee',
  group_meeting: 'group',
  party_lesson: 'none',
  theme_day: 'none',
  sunshine_day: 'none',
  org_life_meeting: 'none',
  member_review: 'none',
  secretary_lesson: 'none',
};

/** Set by the 条例 (a floor a city may tighten, not loosen); false = local or common practice. */
export const obligationStatutory: Record<ObligationCode, boolean> = {
  member_meeting: true,
  committee_meeting: true,
  group_meeting: true,
  party_lesson: true,
  theme_day: false,
  sunshine_day: false,
  org_life_meeting: true,
  member_review: true,
  secretary_lesson: true,
};

export const ObligationRuleInput = z.object({
  obligation: ObligationCode,
  period: PeriodKind,
  requiredCount: z.number().int().min(0).max(31),
  minDurationS: z.number().int().min(1).max(86_400),
  enabled: z.boolean().default(true),
  /** Yearly items: listed and reminded from this month of the year (10 = Q4); omitted = inherited. */
  dueFromMonth: z.number().int().min(1).max(12).nullable().optional(),
});
export type ObligationRuleInput = z.input<typeof ObligationRuleInput>;

export interface ObligationRule {
  obligation: ObligationCode;
  period: PeriodKind;
  requiredCount: number;
  minDurationS: number;
  enabled: boolean;
  dueFromMonth: number | null;
}

/** Where a branch stands on one obligation in one period. */
// 'checking': not done yet, but sessions that ended await their verdict and could still make it done.
// 'postponed': not done, and the higher organisation approved a postponement for the period.
export type ObligationStatus = 'done' | 'checking' | 'postponed' | 'pending' | 'at_risk' | 'overdue';
