import type { ObligationCode, PeriodKind } from '../obligations/types.ts';
import { obligationNamesEn, obligationNamesZh } from '../obligations/types.ts';
import { beidouBody, beidouShortText } from '../channels/beidou/shortForms.ts';

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
  /** The party group of a group meeting reminder. */
  groupName?: string | null;
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

/**
 * Full text for SMS (UCS-2: 70 characters fit one message, longer ones are concatenated). No 【】
 * here: the signature is the sending organisation's registered one (【XX县委组织部】), added per city
 * by the provider (scheduler/channels/sms/SmsRouter.ts); carriers refuse a slogan like 【三会一课提醒】.
 */
export function smsText(f: ReminderFacts): string {
  const ob = (f.groupName ?? '') + obligationNamesZh[f.obligation];
  const label = periodLabel(f.period, f.periodKey);
  if (f.target === 'secretary') {
    // With the signature (about 9 characters) a usual branch name still fits one 70-character SMS.
    return `${f.branchName}${label}「${ob}」已完成${f.done}/${f.required}次，请${deadline(f.periodEnd)}前召开并全程录像。回复1+日期或2+延期原因`;
  }
  return `三会一课督办：${f.unitName}${f.branchName}${label}「${ob}」逾期未完成（${f.done}/${f.required}次），请督促整改。`;
}

/** Compact text for Beidou, whose frames hold a few dozen Chinese characters. */
export function beidouText(f: ReminderFacts): string {
  const ob = (f.groupName ?? '') + obligationNamesZh[f.obligation];
  const label = f.periodKey.replace('-', '');
  if (f.target === 'secretary') return `${f.branchName}${label}${ob}完成${f.done}/${f.required}，请${deadline(f.periodEnd)}前召开录像`;
  return `督办：${f.branchName}${label}${ob}逾期${f.done}/${f.required}`;
}

/** Longest SMS we send: five concatenated UCS-2 parts; beyond that the compact text is used. */
export const maxSmsChars = 5 * 67;

export function textFor(channel: 'sms' | 'beidou', f: ReminderFacts): string {
  // Long form and a short form that fits a level-1 card (110 bits); the Beidou driver picks (shortForms.ts).
  if (channel === 'beidou') return beidouBody(beidouText(f), beidouShortText(f));
  const full = smsText(f);
  return full.length <= maxSmsChars ? full : beidouText(f);
}

/** Titles of the in-app to-do a reminder creates for its target (Chinese, English). */
export function todoTitles(f: ReminderFacts): { zh: string; en: string } {
  const ob = (f.groupName ?? '') + obligationNamesZh[f.obligation];
  const obEn = `${obligationNamesEn[f.obligation]}${f.groupName ? ` (${f.groupName})` : ''}`;
  const label = periodLabel(f.period, f.periodKey);
  if (f.target === 'secretary') {
    return {
      zh: `${label}「${ob}」已完成${f.done}/${f.required}次，请于${deadline(f.periodEnd)}前召开`,
      en: `${f.branchName}: ${obEn} ${f.periodKey}, ${f.done} of ${f.required} held — hold it before the period ends`,
    };
  }
  return {
    zh: `督办：${f.unitName}${f.branchName}${label}「${ob}」逾期未完成（${f.done}/${f.required}次）`,
    en: `Follow up: ${f.unitName} ${f.branchName}, ${obEn} ${f.periodKey} overdue (${f.done} of ${f.required})`,
  };
}

/** Template parameters of a reminder for cloud SMS (Alibaba / Tencent templates: one template per kind). */
export function templateParams(f: ReminderFacts): { kind: 'secretary' | 'supervisor'; params: Record<string, string> } {
  const ob = (f.groupName ?? '') + obligationNamesZh[f.obligation];
  // Cloud variables are short (Tencent: 12 characters for most): names cut on purpose, never mid-surrogate.
  const cut = (t: string, n: number) => Array.from(t).slice(0, n).join('');
  const params: Record<string, string> = {
    branch: cut(f.branchName, 20), period: periodLabel(f.period, f.periodKey), item: cut(ob, 12),
    done: String(f.done), required: String(f.required), deadline: deadline(f.periodEnd),
  };
  if (f.target === 'supervisor') params.unit = cut(f.unitName, 20);
  return { kind: f.target, params };
}

const orgSuffix = /(组织部|党委|党工委|党组|委员会|人民政府|政府|办公室|办事处|街道|镇|乡|局|委|中心|党支部|总支)$/u;
const slogan = /(提醒|通知|督办|平台|系统|服务)/u;

/**
 * A registered SMS signature names the sending organisation (e.g. XX县委组织部); carriers and cloud
 * providers refuse slogans such as 三会一课提醒. Returns the reason it is refused, or null.
 */
export function signatureProblem(signature: string): string | null {
  const sig = signature.replace(/^【|】$/g, '');
  if (!/^[\p{Script=Han}A-Za-z0-9]{2,20}$/u.test(sig)) return '签名须为2-20个汉字、字母或数字 / 2-20 Chinese characters, letters or digits';
  if (slogan.test(sig) || !orgSuffix.test(sig)) return '签名须为发送单位名称，如“XX县委组织部” / the signature must name the sending organisation, e.g. XX县委组织部';
  return null;
}
