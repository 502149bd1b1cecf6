import { withTransaction, type Pool, type PoolClient } from '../../infra/db/pool.ts';
import { createLogger } from '../../infra/logger.ts';
import { HttpError } from '../../web/api/auth-context.ts';
import type { ObligationCode } from '../obligations/types.ts';
import { insertPostponementRequest } from './postponementRequest.ts';

// Replies of branch secretaries to a reminder, from any channel (SMPP deliver_sm MO, CMPP DELIVER,
// a cloud provider's MO callback, Beidou $BDTXR / $TXXX / BD-3): "1 <date>" = the meeting is
// scheduled for that date; "2 <reason>" = please postpone (a request the town decides through
// POST /api/postponements/:id/decision). The reply lands on the latest open reminder sent to that
// number or card, is shown in the delivery view, and stops that period's escalation (plan.ts).

const log = createLogger('scheduler.replies');

export type ReplyOutcome = 'scheduled' | 'postpone_requested' | 'unrecognised' | 'unknown_sender';

export interface IncomingReply {
  channel: 'sms' | 'beidou';
  /** The handset number (any of 138…, 86138…, +86138…) or the Beidou card number. */
  from: string;
  text: string;
  receivedAt: Date;
  /** The provider's id of the MO message: a resent MO is recorded once. */
  providerMessageId?: string;
}

export interface ReplyResult {
  outcome: ReplyOutcome;
  reminderId?: number;
  /** There is no obligation row: a reminder names branch + obligation + period; this is the branch id. */
  obligationId?: number;
  postponementId?: number;
  /** The date the secretary gave for "1" (YYYY-MM-DD, China time). */
  scheduledFor?: string;
}

export type ParsedReply = { kind: 'scheduled'; date: string } | { kind: 'postpone'; reason: string } | null;

/** Full-width digits and punctuation (typed on Chinese phones) to ASCII. */
function halfWidth(s: string): string {
  return s.replace(/[\uff01-\uff5e]/g, (ch) => String.fromCharCode(ch.charCodeAt(0) - 0xfee0)).replace(/\u3000/g, ' ');
}

/** CST calendar date of an instant. */
function cst(d: Date): { y: number; m: number; day: number } {
  const t = new Date(d.getTime() + 8 * 3_600_000);
  return { y: t.getUTCFullYear(), m: t.getUTCMonth() + 1, day: t.getUTCDate() };
}

function validDate(y: number, m: number, d: number): boolean {
  const t = new Date(Date.UTC(y, m - 1, d));
  return t.getUTCFullYear() === y && t.getUTCMonth() === m - 1 && t.getUTCDate() === d;
}

const iso = (y: number, m: number, d: number) => `${y}-${String(m).padStart(2, '0')}-${String(d).padStart(2, '0')}`;

/**
 * Parses a reply. "1 12-20", "1 2026-12-20", "1 12月20日", "1 12/20" → scheduled; a month-day more
 * than 30 days before the reply means next year (a reply in late December naming January).
 * "2", "2 暴雨路断" → postpone. Anything else → null.
 */
export function parseReply(text: string, receivedAt: Date): ParsedReply {
  const original = text.trim();
  const t = halfWidth(original); // one character for one: positions match the original
  const m = /^([12])(?:[\s,.;:、，。：]+|$)(.*)$/su.exec(t);
  if (!m) return null;
  const rest = m[2]!.trim();
  // The reason as the secretary wrote it (full-width punctuation kept).
  if (m[1] === '2') return { kind: 'postpone', reason: original.slice(t.length - m[2]!.length).trim().slice(0, 1000) };
  const full = /^(\d{4})[-/.年](\d{1,2})[-/.月](\d{1,2})日?/.exec(rest);
  const short = /^(\d{1,2})[-/.月](\d{1,2})日?/.exec(rest);
  const now = cst(receivedAt);
  if (full) {
    const [y, mo, d] = [Number(full[1]), Number(full[2]), Number(full[3])];
    return validDate(y, mo, d) ? { kind: 'scheduled', date: iso(y, mo, d) } : null;
  }
  if (short) {
    const [mo, d] = [Number(short[1]), Number(short[2])];
    let y = now.y;
    if (!validDate(y, mo, d) && !validDate(y + 1, mo, d)) return null;
    if (Date.UTC(y, mo - 1, d) < Date.UTC(now.y, now.m - 1, now.day) - 30 * 86_400_000) y++;
    return validDate(y, mo, d) ? { kind: 'scheduled', date: iso(y, mo, d) } : null;
  }
  return null;
}

/** A handset number as its 11 national digits (CN mobiles); a Beidou card without leading zeros. */
export function normaliseAddress(channel: 'sms' | 'beidou', from: string): string {
  const digits = from.replace(/\D/g, '');
  if (channel === 'beidou') return digits.replace(/^0+/, '');
  return digits.length > 11 && /^(0086|86)1\d{10}$/.test(digits) ? digits.slice(-11) : digits;
}

interface OpenReminder {
  reminder_id: number; branch_id: number; unit_id: number; path: string; obligation: ObligationCode;
  party_group_id: number | null; period_key: string; member_id: number | null;
}

/** The latest reminder to a secretary at this address whose period is not long over. */
async function latestOpenReminder(c: PoolClient, channel: 'sms' | 'beidou', address: string, at: Date): Promise<OpenReminder | null> {
  const norm = channel === 'sms'
    ? `(CASE WHEN regexp_replace(s.address, '\\D', '', 'g') ~ '^(0086|86)1[0-9]{10}$' THEN right(regexp_replace(s.address, '\\D', '', 'g'), 11)
             ELSE regexp_replace(s.address, '\\D', '', 'g') END)`
    : `ltrim(regexp_replace(s.address, '\\D', '', 'g'), '0')`;
  const { rows } = await c.query<OpenReminder>(
    `SELECT r.id AS reminder_id, r.branch_id, b.unit_id, u.path, r.obligation, r.party_group_id, r.period_key,
            CASE WHEN s.recipient_kind = 'member' THEN s.recipient_id END AS member_id
       FROM message_sends s JOIN reminders r ON r.id = s.reminder_id
       JOIN branches b ON b.id = r.branch_id JOIN units u ON u.id = b.unit_id
      WHERE s.channel = $1 AND ${norm} = $2 AND r.target = 'secretary'
        AND r.period_end + interval '60 days' > $3 AND b.retired_at IS NULL
      ORDER BY s.created_at DESC, s.id DESC LIMIT 1`,
    [channel, address, at],
  );
  return rows[0] ?? null;
}

/** Records one reply and acts on it; idempotent per (channel, providerMessageId). */
export async function recordReply(pool: Pool, r: IncomingReply): Promise<ReplyResult> {
  const from = normaliseAddress(r.channel, r.from);
  return withTransaction(pool, async (c) => {
    if (r.providerMessageId) {
      await c.query(`SELECT pg_advisory_xact_lock(hashtext('reply:' || $1 || ':' || $2))`, [r.channel, r.providerMessageId]);
      const seen = await c.query<{ outcome: ReplyOutcome; reminder_id: number | null; postponement_id: number | null; scheduled_for: string | null; branch_id: number | null }>(
        `SELECT rr.outcome, rr.reminder_id, rr.postponement_id, to_char(rr.scheduled_for, 'YYYY-MM-DD') AS scheduled_for, rm.branch_id
           FROM reminder_replies rr LEFT JOIN reminders rm ON rm.id = rr.reminder_id
          WHERE rr.channel = $1 AND rr.provider_message_id = $2`, [r.channel, r.providerMessageId]);
      const s = seen.rows[0];
      if (s) return resultOf(s.outcome, s.reminder_id, s.branch_id, s.postponement_id, s.scheduled_for);
    }
    const rem = from ? await latestOpenReminder(c, r.channel, from, r.receivedAt) : null;
    const parsed = parseReply(r.text, r.receivedAt);
    let outcome: ReplyOutcome = !rem ? 'unknown_sender' : parsed ? (parsed.kind === 'scheduled' ? 'scheduled' : 'postpone_requested') : 'unrecognised';
    let postponementId: number | null = null;
    if (rem && parsed?.kind === 'postpone') {
      const reason = parsed.reason || `${r.channel === 'sms' ? '短信' : '北斗'}回复"2"申请延期（未写理由） / asked by reply "2" without a reason`;
      try {
        postponementId = await insertPostponementRequest(c, {
          branch: { id: Number(rem.branch_id), unit_id: Number(rem.unit_id), path: rem.path }, obligation: rem.obligation,
          partyGroupId: rem.party_group_id === null ? null : Number(rem.party_group_id), periodKey: rem.period_key, reason,
          requestedBy: null, requestedByMember: rem.member_id === null ? null : Number(rem.member_id), via: r.channel,
        });
      } catch (err) {
        if (!(err instanceof HttpError)) throw err;
        // Already asked (pending or approved): the reply joins that request; anything else is not a request.
        const existing = await c.query<{ id: number }>(
          `SELECT id FROM obligation_postponements WHERE branch_id = $1 AND obligation = $2 AND coalesce(party_group_id, 0) = coalesce($3::bigint, 0)
              AND period_key = $4 AND state IN ('requested', 'approved')`,
          [rem.branch_id, rem.obligation, rem.party_group_id, rem.period_key]);
        postponementId = existing.rows[0] ? Number(existing.rows[0].id) : null;
        if (postponementId === null) {
          log.warn({ code: err.code, reminderId: rem.reminder_id }, 'reply "2" could not become a postponement request');
          outcome = 'unrecognised';
        }
      }
    }
    const scheduledFor = rem && parsed?.kind === 'scheduled' ? parsed.date : null;
    await c.query(
      `INSERT INTO reminder_replies (channel, from_address, body, received_at, provider_message_id, outcome, reminder_id, member_id, scheduled_for, postponement_id)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
      [r.channel, from || r.from.slice(0, 40), r.text.slice(0, 2000), r.receivedAt, r.providerMessageId ?? null, outcome,
        rem?.reminder_id ?? null, rem?.member_id ?? null, scheduledFor, postponementId],
    );
    if (rem && outcome !== 'unknown_sender') {
      // The secretary's to-do for this reminder is answered.
      if (outcome !== 'unrecognised') await c.query(`UPDATE todos SET done_at = now() WHERE reminder_id = $1 AND done_at IS NULL`, [rem.reminder_id]);
    }
    log.info({ channel: r.channel, outcome, reminderId: rem?.reminder_id }, 'reply recorded');
    return resultOf(outcome, rem?.reminder_id ?? null, rem?.branch_id ?? null, postponementId, scheduledFor);
  });
}

function resultOf(outcome: ReplyOutcome, reminderId: number | null, branchId: number | null, postponementId: number | null, scheduledFor: string | null): ReplyResult {
  const out: ReplyResult = { outcome };
  if (reminderId !== null) out.reminderId = Number(reminderId);
  if (branchId !== null) out.obligationId = Number(branchId);
  if (postponementId !== null) out.postponementId = Number(postponementId);
  if (scheduledFor !== null) out.scheduledFor = scheduledFor;
  return out;
}

/**
 * SQL condition (for plan.ts) true when a secretary answered a reminder of this branch, obligation and
 * period: a pending or approved postponement request, or "1 <date>" whose date has not yet passed.
 * `st` is the obligation status row; `$1` the planning instant.
 */
export const answeredSql = (st: string, now: string) => `(EXISTS (
  SELECT 1 FROM reminder_replies rr JOIN reminders r0 ON r0.id = rr.reminder_id
    LEFT JOIN obligation_postponements op ON op.id = rr.postponement_id
   WHERE r0.branch_id = ${st}.branch_id AND r0.obligation = ${st}.obligation AND r0.period_key = ${st}.period_key
     AND coalesce(r0.party_group_id, 0) = coalesce(${st}.party_group_id, 0)
     AND ((rr.outcome = 'scheduled' AND rr.scheduled_for >= (${now} AT TIME ZONE 'Asia/Shanghai')::date)
       OR (rr.outcome = 'postpone_requested' AND op.state IN ('requested', 'approved')))))`;
