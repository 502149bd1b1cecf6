import type { ObligationCode } from '../../obligations/types.ts';
import type { ReminderFacts } from '../../reminders/messages.ts';

/**
 * Short forms of every reminder kind that fit the smallest common card, level 1 unencrypted: 110 bits,
 * i.e. 13 bytes in mixed mode, one of which is the 0xA4 flag: 12 bytes = 6 GB2312 characters, or fewer
 * with digits. Names (branch, group) cannot fit; the secretary knows their own branch and the in-app
 * to-do carries the full text. Two-character abbreviations, one per obligation.
 */
export const obligationAbbr: Record<ObligationCode, string> = {
  member_meeting: '大会',
  committee_meeting: '支委',
  group_meeting: '小组',
  party_lesson: '党课',
  theme_day: '党日',
  sunshine_day: '议事',
  org_life_meeting: '生活',
  member_review: '评议',
  secretary_lesson: '书记',
};

function mmdd(periodEnd: Date): string {
  const last = new Date(periodEnd.getTime() - 1 + 8 * 3_600_000); // China Standard Time, no DST
  return `${String(last.getUTCMonth() + 1).padStart(2, '0')}${String(last.getUTCDate()).padStart(2, '0')}`;
}

/** Secretary: "大会0331前开" (hold the member meeting before 31 March); supervisor: "督办大会逾期". */
export function beidouShortText(f: ReminderFacts): string {
  const abbr = obligationAbbr[f.obligation];
  return f.target === 'secretary' ? `${abbr}${mmdd(f.periodEnd)}前开` : `督办${abbr}逾期`;
}

/**
 * A Beidou body carrying both forms: the driver sends the long form when it fits the card (or when
 * splitting is wanted) and the short form otherwise. U+001F never occurs in reminder texts.
 */
export const shortFormSeparator = '\u001F';

export function beidouBody(long: string, short: string): string {
  return `${long}${shortFormSeparator}${short}`;
}

export function splitBeidouBody(body: string): { long: string; short: string | null } {
  const i = body.indexOf(shortFormSeparator);
  return i < 0 ? { long: body, short: null } : { long: body.slice(0, i), short: body.slice(i + 1) };
}
