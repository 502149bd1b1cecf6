import type PgBoss from 'pg-boss';
import type { Pool, PoolClient } from '../../infra/db/pool.ts';
import { withTransaction } from '../../infra/db/pool.ts';
import { createLogger } from '../../infra/logger.ts';
import { obligationStatusSql } from '../obligations/evaluate.ts';
import type { ObligationCode, PeriodKind } from '../obligations/types.ts';
import { inTransaction, sendQueueFor } from '../jobs/queue.ts';
import { textFor } from './messages.ts';
import { stepWindows, type ReminderPolicy } from './policy.ts';

const log = createLogger('scheduler.reminders');

/** The text of a reminder for one channel, from what was recorded when it was decided. */
export async function reminderText(c: PoolClient, reminderId: number, channel: 'sms' | 'beidou'): Promise<string | null> {
  const { rows } = await c.query<{
    target: 'secretary' | 'supervisor'; obligation: ObligationCode; period: PeriodKind; period_key: string; period_end: Date;
    done_count: number; required_count: number; branch_name: string; unit_name: string;
  }>(
    `SELECT r.target, r.obligation, bor.period, r.period_key, r.period_end, r.done_count, r.required_count,
            b.name AS branch_name, u.name AS unit_name
       FROM reminders r JOIN branches b ON b.id = r.branch_id JOIN units u ON u.id = b.unit_id
       JOIN branch_obligation_rules bor ON bor.branch_id = r.branch_id AND bor.obligation = r.obligation
      WHERE r.id = $1`,
    [reminderId],
  );
  const r = rows[0];
  if (!r) return null;
  return textFor(channel, {
    target: r.target, branchName: r.branch_name, unitName: r.unit_name, obligation: r.obligation, period: r.period,
    periodKey: r.period_key, periodEnd: r.period_end, done: r.done_count, required: r.required_count,
  });
}

export interface PlanResult {
  reminders: number;
  sends: number;
  unreachable: number;
}

/**
 * Decides which reminders are due at `now` and creates them with their message sends and send jobs,
 * all in one transaction. The UNIQUE (branch, obligation, period, step) constraint makes this
 * idempotent: running it again, concurrently, or after a crash creates nothing twice.
 */
export async function planReminders(
  pool: Pool,
  boss: PgBoss,
  policy: ReminderPolicy,
  now: Date,
  opts: { unitPath?: string; atRiskDays?: number; periodsFrom?: Date } = {},
): Promise<PlanResult> {
  const windows = stepWindows(policy);
  return withTransaction(pool, async (c) => {
    const inserted = await c.query<{ id: number }>(
      `WITH st AS (${obligationStatusSql}),
       steps AS (
         SELECT * FROM unnest($4::text[], $5::text[], $6::text[], $7::float8[], $8::float8[])
                AS s(step, target, level, from_h, until_h)
       ), due AS (
         SELECT st.*, steps.step, steps.target, steps.level,
                st.period_end + make_interval(secs => steps.from_h * 3600) AS due_at
           FROM st JOIN steps ON true
          WHERE st.status NOT IN ('done', 'checking') AND st.period_start >= $9::timestamptz
            AND $1::timestamptz >= st.period_end + make_interval(secs => steps.from_h * 3600)
            AND $1::timestamptz <  st.period_end + make_interval(secs => steps.until_h * 3600)
       )
       INSERT INTO reminders (branch_id, obligation, period_key, period_end, step, target, target_unit_id, due_at,
                              done_count, required_count)
       SELECT due.branch_id, due.obligation, due.period_key, due.period_end, due.step, due.target,
              CASE WHEN due.target = 'supervisor' THEN (
                SELECT t.id FROM unnest(string_to_array(rtrim(due.unit_path, '.'), '.')::bigint[]) AS a(id)
                  JOIN units t ON t.id = a.id
                 WHERE t.id <> due.unit_id AND unit_level_rank(t.level) <= unit_level_rank(due.level)
                   AND EXISTS (SELECT 1 FROM users us WHERE us.unit_id = t.id AND us.role = 'supervisor' AND NOT us.disabled)
                 ORDER BY t.depth DESC LIMIT 1) END,
              due.due_at, due.done_count, due.required_count
         FROM due
       ON CONFLICT (branch_id, obligation, period_key, step) DO NOTHING
       RETURNING id`,
      [
        now,
        opts.unitPath ?? '',
        `${opts.atRiskDays ?? 7} days`,
        windows.map((w) => w.key),
        windows.map((w) => w.target),
        windows.map((w) => w.supervisorLevel),
        windows.map((w) => w.fromH),
        windows.map((w) => w.untilH),
        opts.periodsFrom ?? '-infinity',
      ],
    );
    if (inserted.rows.length === 0) return { reminders: 0, sends: 0, unreachable: 0 };
    const ids = inserted.rows.map((r) => r.id);

    const recipients = await c.query<{
      reminder_id: number;
      target: 'secretary' | 'supervisor';
      obligation: ObligationCode;
      period: PeriodKind;
      period_key: string;
      period_end: Date;
      done_count: number;
      required_count: number;
      branch_name: string;
      unit_name: string;
      kind: 'member' | 'user';
      recipient_id: number;
      mobile: string | null;
      beidou_card: string | null;
      preferred_channel: 'sms' | 'beidou';
    }>(
      `SELECT r.id AS reminder_id, r.target, r.obligation, bor.period, r.period_key, r.period_end, r.done_count,
              r.required_count, b.name AS branch_name, u.name AS unit_name,
              rc.kind, rc.recipient_id, rc.mobile, rc.beidou_card, rc.preferred_channel
         FROM reminders r
         JOIN branches b ON b.id = r.branch_id
         JOIN units u ON u.id = b.unit_id
         JOIN branch_obligation_rules bor ON bor.branch_id = r.branch_id AND bor.obligation = r.obligation
         CROSS JOIN LATERAL (
           SELECT 'member' AS kind, m.id AS recipient_id, m.mobile, m.beidou_card, m.preferred_channel
             FROM members m WHERE r.target = 'secretary' AND m.branch_id = r.branch_id AND m.is_secretary
           UNION ALL
           SELECT 'user', us.id, nc.mobile, nc.beidou_card, coalesce(nc.preferred_channel, 'sms')
             FROM users us LEFT JOIN notification_contacts nc ON nc.user_id = us.id
            WHERE r.target = 'supervisor' AND us.unit_id = r.target_unit_id AND us.role = 'supervisor' AND NOT us.disabled
         ) rc
        WHERE r.id = ANY($1::bigint[])`,
      [ids],
    );
    const reached = new Set(recipients.rows.map((r) => r.reminder_id));
    const unreachable = ids.filter((id) => !reached.has(id));
    if (unreachable.length > 0) log.warn({ reminderIds: unreachable.slice(0, 20), count: unreachable.length }, 'reminders without recipient');

    const cols = {
      reminder: [] as number[], kind: [] as string[], rid: [] as number[], channel: [] as string[],
      address: [] as string[], body: [] as string[], state: [] as string[], reason: [] as (string | null)[],
    };
    for (const r of recipients.rows) {
      // The preferred channel if its address is known, otherwise the other one.
      const channel: 'sms' | 'beidou' =
        r.preferred_channel === 'beidou' ? (r.beidou_card ? 'beidou' : 'sms') : r.mobile ? 'sms' : r.beidou_card ? 'beidou' : 'sms';
      const address = (channel === 'sms' ? r.mobile : r.beidou_card) ?? '';
      const body = textFor(channel, {
        target: r.target, branchName: r.branch_name, unitName: r.unit_name, obligation: r.obligation, period: r.period,
        periodKey: r.period_key, periodEnd: r.period_end, done: r.done_count, required: r.required_count,
      });
      cols.reminder.push(r.reminder_id);
      cols.kind.push(r.kind);
      cols.rid.push(r.recipient_id);
      cols.channel.push(channel);
      cols.address.push(address);
      cols.body.push(body);
      cols.state.push(address ? 'queued' : 'failed');
      cols.reason.push(address ? null : 'no_address');
    }
    const sends = await c.query<{ id: number; channel: 'sms' | 'beidou'; state: string }>(
      `INSERT INTO message_sends (reminder_id, recipient_kind, recipient_id, channel, address, body, state, failure_reason)
       SELECT * FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[])
       ON CONFLICT DO NOTHING
       RETURNING id, channel, state`,
      [cols.reminder, cols.kind, cols.rid, cols.channel, cols.address, cols.body, cols.state, cols.reason],
    );
    await c.query(
      `INSERT INTO message_send_events (send_id, state, detail) SELECT id, state, 'reminder ' || reminder_id
         FROM message_sends WHERE id = ANY($1::bigint[])`,
      [sends.rows.map((s) => s.id)],
    );
    const jobs = sends.rows
      .filter((s) => s.state === 'queued')
      .map((s) => ({ name: sendQueueFor(s.channel), data: { sendId: s.id }, singletonKey: `send-${s.id}` }));
    if (jobs.length > 0) await boss.insert(jobs, inTransaction(c));
    return { reminders: ids.length, sends: jobs.length, unreachable: unreachable.length };
  });
}
