import type { ObligationCode, PeriodKind } from '../obligations/types.ts';
import { obligationNamesZh } from '../obligations/types.ts';

export interface ReminderFacts {
  target: 'secretary' | 'supervisor';
  branchName: string;
  unitName: string;
  obligation: ObligationCode;
  period: PeriodKind;
  periodKey: string;
  periodEnd: Date;
  done: number;
  required: number;
}

/** China Standard Time calendar date of an instant (no DST in China). */
function cstDate(d: Date): { y: number; m: number; day: number } {
  const t = new Date(d.getTime() + 8 * 3_600_000);
  return { y: t.getUTCFullYear(), m: t.getUTCMonth() + 1, day: t.getUTCDate() };
}

export function periodLabel(period: PeriodKind, key: string): string {
  const y = key.slice(0, 4);
  if (period === 'month') return `${y}年${Number(key.slice(5, 7))}月`;
  if (period === 'quarter') return `${y}年第${key.slice(6)}季度`;
  if (period === 'half_year') return `${y}年${key.endsWith('H1') ? '上' : '下'}半年`;
  return `${y}年`;
}

function deadline(periodEnd: Date): string {
  const last = cstDate(new Date(periodEnd.getTime() - 1));
  return `${last.m}月${last.day}日`;
}

/** Full text for SMS (UCS-2: 70 characters fit one message, longer ones are concatenated). */
export function smsText(f: ReminderFacts): string {
  const ob = obligationNamesZh[f.obligation];
  const label = periodLabel(f.period, f.periodKey);
  if (f.target === 'secretary') {
    return `【三会一课提醒】${f.branchName}：${label}「${ob}」已完成${f.done}/${f.required}次，请于${deadline(f.periodEnd)}前召开，并在站点摄像头下全程录像。`;
  }
  return `【三会一课督办】${f.unitName}${f.branchName}${label}「${ob}」逾期未完成（${f.done}/${f.required}次），请督促整改。`;
}

/** Compact text for Beidou, whose frames hold a few dozen Chinese characters. */
export function beidouText(f: ReminderFacts): string {
  const ob = obligationNamesZh[f.obligation];
  const label = f.periodKey.replace('-', '');
  if (f.target === 'secretary') return `${f.branchName}${label}${ob}完成${f.done}/${f.required}，请${deadline(f.periodEnd)}前召开录像`;
  return `督办：${f.branchName}${label}${ob}逾期${f.done}/${f.required}`;
}

/** Longest SMS we send: five concatenated UCS-2 parts; beyond that the compact text is used. */
export const maxSmsChars = 5 * 67;

export function textFor(channel: 'sms' | 'beidou', f: ReminderFacts): string {
  if (channel === 'beidou') return beidouText(f);
  const full = smsText(f);
  return full.length <= maxSmsChars ? full : beidouText(f);
}
