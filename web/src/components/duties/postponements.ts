import type { Lang } from '../../lib/i18n.ts';

export interface Postponement {
  id: number; branchId: number; branchName: string; unitId: number; obligation: string; nameZh: string; nameEn: string;
  partyGroupId: number | null; periodKey: string; reason: string; requestedAt: string; state: 'requested' | 'approved' | 'refused';
  decidedAt: string | null; decisionNote: string | null;
}

const names = {
  zh: { requested: '待审批', approved: '已批准', refused: '不予批准' },
  en: { requested: 'Awaiting decision', approved: 'Approved', refused: 'Refused' },
} as const;

export const postponementStateName = (state: string, lang: Lang): string =>
  (names[lang === 'zh' ? 'zh' : 'en'] as Record<string, string>)[state] ?? state;
