import type PgBoss from 'pg-boss';
import type { Pool, PoolClient } from '../../infra/db/pool.ts';
import { withTransaction } from '../../infra/db/pool.ts';
import { createLogger } from '../../infra/logger.ts';
import { obligationStatusSql } from '../obligations/evaluate.ts';
import type { ObligationCode, PeriodKind } from '../obligations/types.ts';
import { inTransaction, sendQueueFor } from '../jobs/queue.ts';
import { textFor, todoTitles } from './messages.ts';
import { loadLadders, stepWindows, type ReminderPolicy } from './policy.ts';
import { answeredSql } from '../replies/ReplyInbox.ts';

const log = createLogger('scheduler.reminders');

/** The period kind of a reminder, from its key (stable even if the branch's rule changed since). */
export const periodOf = (r: string) => `(CASE WHEN ${r}.period_key ~ '^[0-9]{4}-[0-9]{2}$' THEN 'month'
  WHEN ${r}.period_key ~ '-Q' THEN 'quarter' WHEN ${r}.period_key ~ '-H' THEN 'half_year' ELSE 'year' END)`;

/** The text of a reminder for one channel, from what was recorded when it was decided. */
export async function reminderText(c: PoolClient, reminderId: number, channel: 'sms' | 'beidou'): Promise<string | null> {
  const { rows } = await c.query<{
    target: 'secretary' | 'supervisor'; obligation: ObligationCode; period: PeriodKind; period_key: string; period_end: Date;
    done_count: number; required_count: number; branch_name: string; unit_name: string; group_name: string | null;
  }>(
    `SELECT r.target, r.obligation, ${periodOf('r')} AS period, r.period_key, r.period_end, r.done_count, r.required_count,
            b.name AS branch_name, u.name AS unit_name, g.name AS group_name
       FROM reminders r JOIN branches b ON b.id = r.branch_id JOIN units u ON u.id = b.unit_id
       LEFT JOIN party_groups g ON g.id = r.party_group_id
      WHERE r.id = $1`,
    [reminderId],
  );
  const r = rows[0];
  if (!r) return null;
  return textFor(channel, {
    target: r.target, branchName: r.branch_name, unitName: r.unit_name, obligation: r.obligation, period: r.period,
    periodKey: r.period_key, periodEnd: r.period_end, done: r.done_count, required: r.required_count, groupName: r.group_name,
  });
}

export interface PlanResult {
  reminders: number;
  sends: number;
  unreachable: number;
}

/**
 * Decides which reminders are due at `now` and creates them with their message sends, their to-dos
 * and send jobs, all in one transaction. The steps are the escalation ladder of each branch's city
 * (escalation_ladders: the city's own, else the default; `policy.steps` only where none is stored).
 * The unique index on (branch, obligation, period, step, party group) makes this idempotent: running
 * it again, concurrently, or after a crash creates nothing twice.
 */
export async function planReminders(
  pool: Pool,
  boss: PgBoss,
  policy: ReminderPolicy,
  now: Date,
  opts: { unitPath?: string; atRiskDays?: number; periodsFrom?: Date } = {},
): Promise<PlanResult> {
  return withTransaction(pool, async (c) => {
    const ladders = await loadLadders(c, policy);
    const ladderCols = { ladder: [] as number[], key: [] as string[], target: [] as string[], level: [] as string[], min: [] as number[], from: [] as number[], until: [] as number[] };
    for (const l of ladders) {
      for (const w of stepWindows({ steps: l.steps, lateLimitHours: policy.lateLimitHours })) {
        ladderCols.ladder.push(l.unitId ?? 0);
        ladderCols.key.push(w.key);
        ladderCols.target.push(w.target);
        ladderCols.level.push(w.level);
        ladderCols.min.push(w.minConsecutiveMissed);
        ladderCols.from.push(w.fromH);
        ladderCols.until.push(w.untilH);
      }
    }
    const inserted = await c.query<{ id: number }>(
      `WITH st AS (${obligationStatusSql}),
       steps AS (
         SELECT * FROM unnest($4::bigint[], $5::text[], $6::text[], $7::text[], $8::int[], $9::float8[], $10::float8[])
                AS s(ladder, step, target, level, min_missed, from_h, until_h)
       ), own AS (SELECT unit_id FROM escalation_ladders WHERE unit_id IS NOT NULL AND unit_id = ANY($4::bigint[])),
       due AS (
         SELECT st.*, steps.step, steps.target, steps.level, steps.min_missed,
                st.period_end + make_interval(secs => steps.from_h * 3600) AS due_at
           FROM st
           JOIN steps ON steps.ladder = coalesce((SELECT own.unit_id FROM own WHERE own.unit_id = split_part(st.unit_path, '.', 1)::bigint), 0)
          WHERE st.status NOT IN ('done', 'checking', 'postponed') AND st.period_start >= $11::timestamptz
            -- answered by the secretary (reply "1 <date>" not yet passed, or "2" asking to postpone): no further step
            AND NOT ${answeredSql('st', '$1::timestamptz')}
            AND $1::timestamptz >= st.period_end + make_interval(secs => steps.from_h * 3600)
            AND $1::timestamptz <  st.period_end + make_interval(secs => steps.until_h * 3600)
       ), ready AS (
         -- A step with minConsecutiveMissed applies only when the branch also missed that many periods
         -- just before (it existed for the whole period, did not pass a session for it, no approved
         -- postponement).
         SELECT due.* FROM due
          WHERE due.min_missed = 0 OR due.min_missed = (
            SELECT count(*) FROM generate_series(1, due.min_missed) i
             CROSS JOIN LATERAL (
               SELECT ((due.period_start AT TIME ZONE 'Asia/Shanghai') - obligation_period_length(due.period) * i)
                        AT TIME ZONE 'Asia/Shanghai' AS ps) p
             CROSS JOIN LATERAL (SELECT obligation_period_end(due.period, p.ps) AS pe, obligation_period_key(due.period, p.ps) AS pk) q
             JOIN branches b ON b.id = due.branch_id AND b.created_at <= p.ps
            WHERE (SELECT count(*) FROM meeting_sessions s JOIN session_obligations so ON so.session_id = s.id
                     LEFT JOIN completion_checks cc ON cc.session_id = s.id
                    WHERE s.branch_id = due.branch_id AND so.obligation = due.obligation AND NOT s.cancelled
                      AND (due.party_group_id IS NULL OR so.party_group_id = due.party_group_id)
                      AND s.starts_at >= p.ps AND s.starts_at < q.pe AND coalesce(so.passed, cc.passed, false)) < due.required_count
              AND NOT EXISTS (SELECT 1 FROM obligation_postponements op
                               WHERE op.branch_id = due.branch_id AND op.obligation = due.obligation
                                 AND coalesce(op.party_group_id, 0) = coalesce(due.party_group_id, 0)
                                 AND op.period_key = q.pk AND op.state = 'approved'))
       )
       INSERT INTO reminders (branch_id, obligation, party_group_id, period_key, period_end, step, target, target_unit_id, due_at,
                              done_count, required_count)
       SELECT ready.branch_id, ready.obligation, ready.party_group_id, ready.period_key, ready.period_end, ready.step, ready.target,
              CASE WHEN ready.target = 'supervisor' THEN (
                -- 'direct': the nearest ancestor with a supervisor (community party committee or town);
                -- a level: the nearest ancestor at that level or above with a supervisor.
                SELECT t.id FROM unnest(string_to_array(rtrim(ready.unit_path, '.'), '.')::bigint[]) AS a(id)
                  JOIN units t ON t.id = a.id
                 WHERE t.id <> ready.unit_id
                   AND unit_level_rank(t.level) <= CASE WHEN ready.level = 'direct' THEN 5 ELSE unit_level_rank(ready.level) END
                   AND EXISTS (SELECT 1 FROM users us WHERE us.unit_id = t.id AND us.role = 'supervisor' AND NOT us.disabled)
                 ORDER BY t.depth DESC LIMIT 1) END,
              ready.due_at, ready.done_count, ready.required_count
         FROM ready
       ON CONFLICT (branch_id, obligation, period_key, step, coalesce(party_group_id, 0)) DO NOTHING
       RETURNING id`,
      [
        now,
        opts.unitPath ?? '',
        `${opts.atRiskDays ?? 7} days`,
        ladderCols.ladder, ladderCols.key, ladderCols.target, ladderCols.level, ladderCols.min, ladderCols.from, ladderCols.until,
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
      group_name: string | null;
      kind: 'member' | 'user';
      recipient_id: number;
      mobile: string | null;
      beidou_card: string | null;
      preferred_channel: 'sms' | 'beidou';
    }>(
      `SELECT r.id AS reminder_id, r.target, r.obligation, ${periodOf('r')} AS period, r.period_key, r.period_end, r.done_count,
              r.required_count, b.name AS branch_name, u.name AS unit_name, g.name AS group_name,
              rc.kind, rc.recipient_id, rc.mobile, rc.beidou_card, rc.preferred_channel
         FROM reminders r
         JOIN branches b ON b.id = r.branch_id
         JOIN units u ON u.id = b.unit_id
         LEFT JOIN party_groups g ON g.id = r.party_group_id
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
    await insertReminderTodos(c, ids);
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
        periodKey: r.period_key, periodEnd: r.period_end, done: r.done_count, required: r.required_count, groupName: r.group_name,
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

/**
 * The in-app to-do of each new reminder, for its target: the branch's unit and role secretary, or the
 * supervising unit and role supervisor (none where no supervising unit was found). Same transaction
 * as the reminder, and at most one per reminder (unique index), so exactly once like the reminder.
 */
async function insertReminderTodos(c: PoolClient, reminderIds: number[]): Promise<void> {
  const { rows } = await c.query<{
    id: number; target: 'secretary' | 'supervisor'; obligation: ObligationCode; period: PeriodKind; period_key: string;
    period_end: Date; due_at: Date; done_count: number; required_count: number; branch_id: number; branch_name: string;
    unit_name: string; group_name: string | null; party_group_id: number | null; todo_unit_id: number | null;
  }>(
    `SELECT r.id, r.target, r.obligation, ${periodOf('r')} AS period, r.period_key, r.period_end, r.due_at, r.done_count,
            r.required_count, r.branch_id, b.name AS branch_name, u.name AS unit_name, g.name AS group_name, r.party_group_id,
            CASE WHEN r.target = 'secretary' THEN b.unit_id ELSE r.target_unit_id END AS todo_unit_id
       FROM reminders r JOIN branches b ON b.id = r.branch_id JOIN units u ON u.id = b.unit_id
       LEFT JOIN party_groups g ON g.id = r.party_group_id
      WHERE r.id = ANY($1::bigint[])`,
    [reminderIds],
  );
  const t = { unit: [] as number[], role: [] as string[], zh: [] as string[], en: [] as string[], oid: [] as string[], due: [] as Date[], rid: [] as number[] };
  for (const r of rows) {
    if (r.todo_unit_id === null) continue;
    const titles = todoTitles({
      target: r.target, branchName: r.branch_name, unitName: r.unit_name, obligation: r.obligation, period: r.period,
      periodKey: r.period_key, periodEnd: r.period_end, done: r.done_count, required: r.required_count, groupName: r.group_name,
    });
    t.unit.push(r.todo_unit_id);
    t.role.push(r.target);
    t.zh.push(titles.zh);
    t.en.push(titles.en);
    t.oid.push([r.branch_id, r.obligation, r.period_key, ...(r.party_group_id ? [r.party_group_id] : [])].join(':'));
    t.due.push(r.target === 'secretary' ? r.period_end : r.due_at);
    t.rid.push(r.id);
  }
  if (t.rid.length === 0) return;
  await c.query(
    `INSERT INTO todos (unit_id, role, kind, title_zh, title_en, object_type, object_id, due_at, reminder_id)
     SELECT u, r, 'obligation_reminder', zh, en, 'branch_obligation', oid, due, rid
       FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::timestamptz[], $7::bigint[]) AS x(u, r, zh, en, oid, due, rid)
     ON CONFLICT (reminder_id) WHERE reminder_id IS NOT NULL DO NOTHING`,
    [t.unit, t.role, t.zh, t.en, t.oid, t.due, t.rid],
  );
}
