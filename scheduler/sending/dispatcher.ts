import type PgBoss from 'pg-boss';
import type { Pool, PoolClient } from '../../infra/db/pool.ts';
import { withTransaction } from '../../infra/db/pool.ts';
import { createLogger } from '../../infra/logger.ts';
import type { Channel, ChannelResult, DeliveryReceipt, SendTracker } from '../channels/types.ts';
import { inTransaction, sendQueueFor } from '../jobs/queue.ts';
import { reminderText } from '../reminders/plan.ts';
import { messageIdVariants } from '../channels/smsEncoding.ts';

const log = createLogger('scheduler.dispatch');

export interface DispatcherOptions {
  maxAttempts: number;
  /** Backoff between attempts: base * 2^(attempt-1), capped. */
  retryBaseMs: number;
  retryMaxMs: number;

  /**
   * A send found mid-flight after a crash may have reached the SMSC. Its receipt (tagged with the
   * send id) is awaited this long before the message is sent again.
   */
  recoveryGraceMs?: number;
  /**
   * A part handed over without an answer (timeout, lost link) is resent no sooner than this: a late
   * submit_sm_resp or a receipt tagged with the send id may still confirm it.
   */
  uncertainGraceMs?: number;
  /**
   * While the channel itself is down (SMSC unreachable, terminal not ready) a send waits without
   * using up its attempts, retried at a delay growing with the outage (capped at retryMaxMs), for
   * at most this long after it was queued; then it fails (and falls back to the other channel).
   */
  outageGiveUpMs?: number;
}

export const defaultDispatcherOptions: DispatcherOptions = {
  maxAttempts: 5, retryBaseMs: 30_000, retryMaxMs: 30 * 60_000, recoveryGraceMs: 10 * 60_000, uncertainGraceMs: 2 * 60_000, outageGiveUpMs: 3 * 86_400_000,
};

interface SendRow {
  id: number;
  reminder_id: number | null;
  recipient_kind: 'member' | 'user';
  recipient_id: number;
  channel: 'sms' | 'beidou';
  address: string;
  body: string;
  attempts: number;
  fallback_of: number | null;
  concat_ref: number | null;
}

const sendColumns = 'id, reminder_id, recipient_kind, recipient_id, channel, address, body, attempts, fallback_of, concat_ref';

/**
 * Carries one message_sends row through its states. The claim (queued -> sending) is a single
 * conditional UPDATE, so a job delivered twice by the queue sends the message once.
 */
export class Dispatcher {
  private readonly pendingReceipts = new Map<string, { receipt: DeliveryReceipt; tries: number }>();
  private static readonly maxPendingReceipts = 10_000;

  constructor(
    private readonly pool: Pool,
    private readonly boss: PgBoss,
    private readonly channels: Partial<Record<'sms' | 'beidou', Channel>>,
    private readonly opts: DispatcherOptions = defaultDispatcherOptions,
  ) {}

  /** Rows left in 'sending' by a killed process go back to 'queued' and get a job again. */
  async recover(): Promise<number> {
    return withTransaction(this.pool, async (c) => {
      const grace = this.opts.recoveryGraceMs ?? 0;
      const { rows } = await c.query<{ id: number; channel: 'sms' | 'beidou' }>(
        `UPDATE message_sends SET state = 'queued', updated_at = now(),
                next_attempt_at = now() + make_interval(secs => $1::float8 / 1000)
          WHERE state = 'sending' RETURNING id, channel`,
        [grace],
      );
      const queued = await c.query<{ id: number; channel: 'sms' | 'beidou'; wait_ms: number }>(
        `SELECT id, channel, greatest(0, extract(epoch FROM next_attempt_at - now()) * 1000)::float8 AS wait_ms
           FROM message_sends WHERE state = 'queued'`,
      );
      if (rows.length > 0) {
        await c.query(`INSERT INTO message_send_events (send_id, state, detail)
                       SELECT unnest($1::bigint[]), 'queued', 'recovered after restart'`, [rows.map((r) => r.id)]);
        log.warn({ count: rows.length }, 'sends interrupted mid-flight re-queued');
      }
      const jobs = queued.rows.map((s) => ({
        name: sendQueueFor(s.channel), data: { sendId: s.id }, startAfter: new Date(Date.now() + (s.wait_ms ?? 0)),
      }));
      if (jobs.length > 0) await this.boss.insert(jobs, inTransaction(c));
      return jobs.length;
    });
  }

  /**
   * Queued sends whose job should have run long ago get a new one: a job lost after the queue's own
   * retries (database outage while processing) would otherwise leave its send queued for ever.
   * Harmless if the old job still runs: the claim lets one of them send.
   */
  async resubmitOrphans(staleMs = 15 * 60_000, limit = 500): Promise<number> {
    return withTransaction(this.pool, async (c) => {
      const { rows } = await c.query<{ id: number; channel: 'sms' | 'beidou' }>(
        `UPDATE message_sends SET updated_at = now()
          WHERE id IN (SELECT id FROM message_sends
                        WHERE state = 'queued' AND updated_at < now() - make_interval(secs => $1::float8 / 1000)
                          AND coalesce(next_attempt_at, created_at) < now() - make_interval(secs => $1::float8 / 1000)
                        ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED)
          RETURNING id, channel`,
        [staleMs, limit],
      );
      if (rows.length === 0) return 0;
      await c.query(`INSERT INTO message_send_events (send_id, state, detail) SELECT unnest($1::bigint[]), 'queued', 'job lost; queued again'`, [rows.map((r) => r.id)]);
      await this.boss.insert(rows.map((r) => ({ name: sendQueueFor(r.channel), data: { sendId: r.id } })), inTransaction(c));
      log.warn({ count: rows.length }, 'queued sends without a job re-submitted');
      return rows.length;
    });
  }

  async process(sendId: number): Promise<void> {
    const claimed = await this.pool.query<SendRow>(
      `UPDATE message_sends SET state = 'sending', attempts = attempts + 1, updated_at = now()
        WHERE id = $1 AND state = 'queued'
        RETURNING ${sendColumns}`,
      [sendId],
    );
    const row = claimed.rows[0];
    if (!row) return; // already handled by an earlier delivery of this job
    const channel = this.channels[row.channel];
    const result: ChannelResult = channel
      ? await channel.send(row.address, row.body, row.id, this.trackerFor(row)).catch((err: unknown) => ({
          ok: false as const, retryable: true, reason: `channel error: ${String(err)}`,
        }))
      : { ok: false as const, retryable: false, reason: `channel ${row.channel} not configured` };

    if (result.ok) {
      await withTransaction(this.pool, async (c) => {
        // Every part is accepted (now or by an earlier attempt); receipts may already have settled some.
        const sent = await c.query(
          `UPDATE message_sends SET state = 'sent', sent_at = now(), updated_at = now(), failure_reason = NULL
            WHERE id = $1 AND state = 'sending'
              AND NOT EXISTS (SELECT 1 FROM message_send_parts p WHERE p.send_id = $1 AND p.state IN ('pending', 'unconfirmed'))`,
          [row.id]);
        if (!sent.rowCount) throw new Error(`send ${row.id}: channel reported success with parts unacknowledged`);
        await c.query(`INSERT INTO message_send_events (send_id, state, detail) VALUES ($1, 'sent', $2)`,
          [row.id, `${result.total ?? result.parts.length} part(s)${result.total !== undefined && result.total !== result.parts.length ? `, ${result.parts.length} in this attempt` : ''}`]);
        await this.settle(c, row.id);
      }).catch(async (err: unknown) => {
        log.error({ err: String(err), sendId: row.id }, 'send not recorded as sent; re-queued');
        await this.requeue(row, 'record after send failed', this.opts.uncertainGraceMs ?? 0);
      });
      return;
    }
    if (result.retryable && result.unavailable) {
      const age = (await this.pool.query<{ ms: number }>(
        `SELECT extract(epoch FROM now() - created_at)::float8 * 1000 AS ms FROM message_sends WHERE id = $1`, [row.id])).rows[0]?.ms ?? 0;
      if (age < (this.opts.outageGiveUpMs ?? defaultDispatcherOptions.outageGiveUpMs!)) {
        const delay = Math.max(result.retryAfterMs ?? 0, Math.min(this.opts.retryMaxMs, Math.max(this.opts.retryBaseMs, age / 4)));
        await this.requeue(row, `channel unavailable, retry in ${Math.round(delay)} ms: ${result.reason}`, delay, true);
        return;
      }
    }
    if (result.retryable && row.attempts < this.opts.maxAttempts) {
      const backoff = Math.min(this.opts.retryMaxMs, this.opts.retryBaseMs * 2 ** (row.attempts - 1));
      const delay = Math.max(result.retryAfterMs ?? 0, backoff, result.uncertain ? (this.opts.uncertainGraceMs ?? 0) : 0);
      await withTransaction(this.pool, async (c) => {
        await c.query(`UPDATE message_sends SET state = 'queued', failure_reason = $2, updated_at = now(),
                         next_attempt_at = now() + make_interval(secs => $3::float8 / 1000) WHERE id = $1`, [row.id, result.reason, delay]);
        await c.query(`INSERT INTO message_send_events (send_id, state, detail) VALUES ($1, 'queued', $2)`,
          [row.id, `retry in ${delay} ms: ${result.reason}`]);
        await this.boss.insert([{ name: sendQueueFor(row.channel), data: { sendId: row.id },
          startAfter: new Date(Date.now() + delay) }], inTransaction(c));
      });
      return;
    }
    await this.fail(row, result.reason);
  }

  /** Back to the queue; `refund` gives the attempt back (the channel was down, the message never tried). */
  private async requeue(row: SendRow, reason: string, delay: number, refund = false): Promise<void> {
    await withTransaction(this.pool, async (c) => {
      const q = await c.query(`UPDATE message_sends SET state = 'queued', failure_reason = $2, updated_at = now(),
                       attempts = attempts - $4::int,
                       next_attempt_at = now() + make_interval(secs => $3::float8 / 1000) WHERE id = $1 AND state = 'sending'`, [row.id, reason, delay, refund ? 1 : 0]);
      if (!q.rowCount) return;
      await c.query(`INSERT INTO message_send_events (send_id, state, detail) VALUES ($1, 'queued', $2)`, [row.id, reason]);
      await this.boss.insert([{ name: sendQueueFor(row.channel), data: { sendId: row.id }, startAfter: new Date(Date.now() + delay) }], inTransaction(c));
    });
  }

  /** Records each part's progress as the channel goes, so the next attempt resumes after the last acknowledged part. */
  private trackerFor(row: SendRow): SendTracker {
    const pool = this.pool;
    return {
      concatRef: row.concat_ref,
      async begin(total, concatRef) {
        return withTransaction(pool, async (c) => {
          const have = await c.query<{ part_no: number; state: string }>(
            `SELECT part_no, state FROM message_send_parts WHERE send_id = $1 FOR UPDATE`, [row.id]);
          const accepted = new Set(have.rows.filter((p) => p.state === 'sent' || p.state === 'delivered').map((p) => p.part_no));
          if (have.rows.length > 0 && have.rows.length !== total) {
            // The text split differently (channel settings changed): parts cannot be matched, start over.
            log.warn({ sendId: row.id, before: have.rows.length, now: total }, 'part count changed; sending every part');
            await c.query(`DELETE FROM message_send_parts WHERE send_id = $1`, [row.id]);
            accepted.clear();
          }
          await c.query(
            `INSERT INTO message_send_parts (send_id, part_no, state) SELECT $1, n, 'pending' FROM generate_series(1, $2::int) n
             ON CONFLICT DO NOTHING`, [row.id, total]);
          await c.query(`UPDATE message_sends SET parts = $2, concat_ref = $3 WHERE id = $1`, [row.id, total, concatRef]);
          return accepted;
        });
      },
      async submitting(partNo) {
        await pool.query(`UPDATE message_send_parts SET state = 'unconfirmed', updated_at = now()
                           WHERE send_id = $1 AND part_no = $2 AND state IN ('pending', 'unconfirmed')`, [row.id, partNo]);
      },
      async accepted(partNo, providerMessageId) {
        // Under the send's row lock, as applyReceipt takes it: a receipt that overtakes this answer either
        // finds the id stored here, or confirms this part itself before it, never the next part.
        // A receipt may have confirmed (and settled) the part already; keep its state then.
        await withTransaction(pool, async (c) => {
          await c.query(`SELECT 1 FROM message_sends WHERE id = $1 FOR UPDATE`, [row.id]);
          await c.query(
            `UPDATE message_send_parts SET provider_message_id = coalesce($3, provider_message_id), updated_at = now(),
                    state = CASE WHEN state IN ('pending', 'unconfirmed') THEN 'sent' ELSE state END
              WHERE send_id = $1 AND part_no = $2 AND (state IN ('pending', 'unconfirmed') OR provider_message_id IS NOT DISTINCT FROM $3)`,
            [row.id, partNo, providerMessageId]);
        });
      },
      async refused(partNo) {
        await pool.query(`UPDATE message_send_parts SET state = 'pending', updated_at = now()
                           WHERE send_id = $1 AND part_no = $2 AND state = 'unconfirmed'`, [row.id, partNo]);
      },
    };
  }

  /**
   * Derives a send's state from its parts: failed as soon as one part finally failed, sent once every
   * part is accepted, delivered once every part is delivered. A send still being sent is settled by
   * its worker when it returns.
   */
  private async settle(c: PoolClient, sendId: number): Promise<void> {
    // Receipts and the worker settle concurrently: the send's row lock orders them, and the count
    // below (a new statement) then sees what the other committed.
    await c.query(`SELECT 1 FROM message_sends WHERE id = $1 FOR UPDATE`, [sendId]);
    const agg = await c.query<{ state: string; total: number; rows: number; accepted: number; delivered: number; failed: number; detail: string | null }>(
      `SELECT s.state, s.parts::int AS total, count(p.*)::int AS rows,
              count(*) FILTER (WHERE p.state IN ('sent', 'delivered', 'failed'))::int AS accepted,
              count(*) FILTER (WHERE p.state = 'delivered')::int AS delivered,
              count(*) FILTER (WHERE p.state = 'failed')::int AS failed,
              max(p.detail) FILTER (WHERE p.state = 'failed') AS detail
         FROM message_sends s LEFT JOIN message_send_parts p ON p.send_id = s.id
        WHERE s.id = $1 GROUP BY s.id`, [sendId]);
    const a = agg.rows[0];
    if (!a || a.rows === 0) return;
    if (a.failed > 0) {
      // The SMSC could not deliver (phone off for too long, unknown number...): failed, then the other channel.
      const failed = await c.query<SendRow>(
        `UPDATE message_sends SET state = 'failed', failure_reason = $2, updated_at = now()
          WHERE id = $1 AND state IN ('sent', 'queued')
          RETURNING ${sendColumns}`,
        [sendId, `receipt ${a.detail ?? ''}`.trim()]);
      const row = failed.rows[0];
      if (row) {
        await c.query(`INSERT INTO message_send_events (send_id, state, detail) VALUES ($1, 'failed', $2)`, [sendId, `receipt ${a.detail ?? ''}`.trim()]);
        await this.fallback(c, row);
      }
      return;
    }
    if (a.accepted === a.total && a.rows === a.total) {
      // Every part confirmed (a send recovered after a crash may learn this from receipts alone).
      const sent = await c.query(`UPDATE message_sends SET state = 'sent', sent_at = now(), updated_at = now(), failure_reason = NULL
                                   WHERE id = $1 AND state = 'queued' AND attempts > 0`, [sendId]);
      if (sent.rowCount) await c.query(`INSERT INTO message_send_events (send_id, state, detail) VALUES ($1, 'sent', 'every part confirmed by receipt')`, [sendId]);
    }
    if (a.delivered === a.total && a.rows === a.total) {
      const d = await c.query(`UPDATE message_sends SET state = 'delivered', delivered_at = now(), updated_at = now()
                      WHERE id = $1 AND state = 'sent'`, [sendId]);
      if (d.rowCount) await c.query(`INSERT INTO message_send_events (send_id, state, detail) VALUES ($1, 'delivered', $2)`, [sendId, `${a.total} part(s)`]);
    }
  }

  /** Final failure; the message then goes out on the other channel if the recipient allows it. */
  private async fail(row: SendRow, reason: string): Promise<void> {
    await withTransaction(this.pool, async (c) => {
      await c.query(`UPDATE message_sends SET state = 'failed', failure_reason = $2, updated_at = now() WHERE id = $1`, [row.id, reason]);
      await c.query(`INSERT INTO message_send_events (send_id, state, detail) VALUES ($1, 'failed', $2)`, [row.id, reason]);
      await this.fallback(c, row);
    });
  }

  /** Queues the message on the recipient's other channel, once, if they have one and allow it. */
  private async fallback(c: PoolClient, row: SendRow): Promise<void> {
    {
      if (row.fallback_of !== null || row.reminder_id === null) return; // no ping-pong between channels
      const other = row.channel === 'sms' ? 'beidou' : 'sms';
      const contact = await c.query<{ address: string | null; fallback: boolean }>(
        row.recipient_kind === 'member'
          ? `SELECT CASE WHEN $2 = 'sms' THEN m.mobile ELSE m.beidou_card END AS address,
                    coalesce(s.fallback_enabled, true) AS fallback
               FROM members m LEFT JOIN member_notification_settings s ON s.member_id = m.id WHERE m.id = $1`
          : `SELECT CASE WHEN $2 = 'sms' THEN mobile ELSE beidou_card END AS address, fallback_enabled AS fallback
               FROM notification_contacts WHERE user_id = $1`,
        [row.recipient_id, other],
      );
      const ct = contact.rows[0];
      if (!ct?.address || !ct.fallback) return;
      // Recomposed for the other channel (Beidou frames hold far less than an SMS).
      const body = (await reminderText(c, row.reminder_id, other)) ?? row.body;
      const ins = await c.query<{ id: number }>(
        `INSERT INTO message_sends (reminder_id, recipient_kind, recipient_id, channel, address, body, fallback_of)
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING RETURNING id`,
        [row.reminder_id, row.recipient_kind, row.recipient_id, other, ct.address, body, row.id],
      );
      const id = ins.rows[0]?.id;
      if (id === undefined) return;
      await c.query(`INSERT INTO message_send_events (send_id, state, detail) VALUES ($1, 'queued', $2)`, [id, `fallback of ${row.id}`]);
      await this.boss.insert([{ name: sendQueueFor(other), data: { sendId: id } }], inTransaction(c));
      log.info({ sendId: row.id, fallbackId: id, channel: other }, 'falling back to the other channel');
    }
  }

  /** Applies a delivery receipt; receipts can overtake the 'sent' commit, so unmatched ones wait briefly. */
  async onReceipt(receipt: DeliveryReceipt): Promise<void> {
    const matched = await this.applyReceipt(receipt);
    if (matched) return;
    // Per message AND state: ACCEPTD and ENROUTE of one part waiting together are two receipts, and the
    // second must not be folded into the first (its state would never be noted).
    const key = pendingKey(receipt);
    const entry = this.pendingReceipts.get(key) ?? { receipt, tries: 0 };
    if (entry.tries >= 20) {
      this.pendingReceipts.delete(key);
      log.warn({ receipt }, 'delivery receipt for an unknown message dropped');
      return;
    }
    if (!this.pendingReceipts.has(key) && this.pendingReceipts.size >= Dispatcher.maxPendingReceipts) return;
    entry.tries++;
    this.pendingReceipts.set(key, entry);
    setTimeout(() => {
      this.pendingReceipts.delete(key);
      // The database may be gone by then (shutdown): a retry that cannot run is logged, never unhandled.
      this.onReceiptRetry(entry).catch((err: unknown) => log.warn({ err: String(err), providerMessageId: key }, 'delivery receipt retry failed'));
    }, 250).unref();
  }

  private async onReceiptRetry(entry: { receipt: DeliveryReceipt; tries: number }): Promise<void> {
    if (await this.applyReceipt(entry.receipt).catch(() => false)) return;
    this.pendingReceipts.set(pendingKey(entry.receipt), entry);
    await this.onReceipt(entry.receipt);
  }

  /** Every receipt state of a part once (ACCEPTD then DELIVRD: two rows, a repeated DELIVRD: none), for the delivery view. */
  private async noteReceipt(c: PoolClient, sendId: number, partNo: number, r: DeliveryReceipt): Promise<void> {
    const ins = await c.query(
      `INSERT INTO message_send_receipts (send_id, part_no, provider_message_id, stat, err) VALUES ($1, $2, $3, $4, $5)
       ON CONFLICT (send_id, part_no, stat) DO NOTHING`, [sendId, partNo, r.providerMessageId, r.stat, r.err]);
    if (ins.rowCount && r.outcome === 'interim') {
      await c.query(`INSERT INTO message_send_events (send_id, state, detail) VALUES ($1, 'receipt', $2)`, [sendId, `part ${partNo}: ${r.stat} (interim)`]);
    }
  }

  private async applyReceipt(r: DeliveryReceipt): Promise<boolean> {
    const partState = r.outcome === 'delivered' ? 'delivered' : r.outcome === 'failed' ? 'failed' : null;
    const detail = `${r.stat} err:${r.err}`;
    return withTransaction(this.pool, async (c) => {
      // A tagged receipt takes its send's row lock before looking: the channel stores a part's id under
      // the same lock (accepted()), so the id is either found below or not stored yet, in which case the
      // part is still the first unconfirmed one (the next is not submitted before this one's answer).
      if (r.sendRef !== undefined) await c.query(`SELECT 1 FROM message_sends WHERE id = $1 FOR UPDATE`, [r.sendRef]);
      // The part whose id this is, in whichever base the SMSC wrote it (hex or decimal); exact first.
      const found = await c.query<{ send_id: number; part_no: number; state: string }>(
        `SELECT send_id, part_no, state FROM message_send_parts
          WHERE ltrim(upper(provider_message_id), '0') = ANY($2::text[]) AND provider_message_id IS NOT NULL
          ORDER BY (provider_message_id = $1) DESC LIMIT 1`,
        [r.providerMessageId, messageIdVariants(r.providerMessageId)],
      );
      let k = found.rows[0];
      let sendId: number | undefined;
      if (k) {
        // The send row first (as settle() does): receipts of several parts of one send queue here
        // instead of deadlocking on the key-share locks their inserts below take on it.
        await c.query(`SELECT 1 FROM message_sends WHERE id = $1 FOR UPDATE`, [k.send_id]);
        k = (await c.query<{ send_id: number; part_no: number; state: string }>(
          `SELECT send_id, part_no, state FROM message_send_parts WHERE send_id = $1 AND part_no = $2`, [k.send_id, k.part_no])).rows[0]!;
        await this.noteReceipt(c, k.send_id, k.part_no, r);
        if (k.state === 'delivered' || k.state === 'failed') return true; // a duplicate of a final receipt already applied
        // Interim receipts (ACCEPTD, ENROUTE, UNKNOWN) only note the state; final ones settle the part once.
        await c.query(
          `UPDATE message_send_parts SET state = coalesce($3, state), detail = $4, updated_at = now()
            WHERE send_id = $1 AND part_no = $2`,
          [k.send_id, k.part_no, partState, detail],
        );
        sendId = k.send_id;
      }
      if (sendId === undefined) {
        if (r.sendRef === undefined) return false;
        await c.query(`SELECT 1 FROM message_sends WHERE id = $1 FOR UPDATE`, [r.sendRef]);
        // No part has this id: it is the part whose submit_sm_resp we never read (timeout, lost link,
        // crash). Parts go out one at a time, so that is the send's first unconfirmed part.
        const confirmed = await c.query<{ send_id: number; part_no: number }>(
          `UPDATE message_send_parts p SET provider_message_id = $2, state = coalesce($3, 'sent'), detail = $4, updated_at = now()
            WHERE p.send_id = $1 AND p.state = 'unconfirmed' AND p.part_no = (SELECT min(part_no) FROM message_send_parts WHERE send_id = $1 AND state = 'unconfirmed')
              AND EXISTS (SELECT 1 FROM message_sends s WHERE s.id = $1 AND s.channel = 'sms' AND ($5::text IS NULL OR right(regexp_replace(s.address, '\\D', '', 'g'), 11) = right(regexp_replace($5, '\\D', '', 'g'), 11)))
            RETURNING p.send_id, p.part_no`,
          [r.sendRef, r.providerMessageId, partState, detail, r.recipient ?? null],
        );
        const hit = confirmed.rows[0];
        if (!hit) return false;
        sendId = hit.send_id;
        await this.noteReceipt(c, hit.send_id, hit.part_no, r);
        await c.query(`INSERT INTO message_send_events (send_id, state, detail) VALUES ($1, 'part', $2)`,
          [sendId, `part ${hit.part_no} confirmed by receipt ${r.stat} (no submit_sm_resp)`]);
      }
      await this.settle(c, sendId);
      return true;
    });
  }
}

function pendingKey(r: DeliveryReceipt): string {
  return `${r.providerMessageId}\u0000${r.stat}`;
}
