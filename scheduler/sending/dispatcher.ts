import type PgBoss from 'pg-boss';
import type { Pool, PoolClient } from '../../infra/db/pool.ts';
import { withTransaction } from '../../infra/db/pool.ts';
import { createLogger } from '../../infra/logger.ts';
import type { Channel, ChannelResult, DeliveryReceipt } from '../channels/types.ts';
import { inTransaction, sendQueueFor } from '../jobs/queue.ts';
import { reminderText } from '../reminders/plan.ts';

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
}

export const defaultDispatcherOptions: DispatcherOptions = { maxAttempts: 5, retryBaseMs: 30_000, retryMaxMs: 30 * 60_000, recoveryGraceMs: 10 * 60_000 };

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
}

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

  async process(sendId: number): Promise<void> {
    const claimed = await this.pool.query<SendRow>(
      `UPDATE message_sends SET state = 'sending', attempts = attempts + 1, updated_at = now()
        WHERE id = $1 AND state = 'queued'
        RETURNING id, reminder_id, recipient_kind, recipient_id, channel, address, body, attempts, fallback_of`,
      [sendId],
    );
    const row = claimed.rows[0];
    if (!row) return; // already handled by an earlier delivery of this job
    const channel = this.channels[row.channel];
    const result: ChannelResult = channel
      ? await channel.send(row.address, row.body, row.id).catch((err: unknown) => ({
          ok: false as const, retryable: true, reason: `channel error: ${String(err)}`,
        }))
      : { ok: false as const, retryable: false, reason: `channel ${row.channel} not configured` };

    if (result.ok) {
      await withTransaction(this.pool, async (c) => {
        await c.query(`UPDATE message_sends SET state = 'sent', sent_at = now(), updated_at = now(), parts = $2,
                         failure_reason = NULL WHERE id = $1 AND state = 'sending'`, [row.id, result.parts.length]);
        await c.query(
          `INSERT INTO message_send_parts (send_id, part_no, provider_message_id)
           SELECT $1, n, pid FROM unnest($2::text[]) WITH ORDINALITY AS p(pid, n) ON CONFLICT DO NOTHING`,
          [row.id, result.parts.map((p) => p.providerMessageId)],
        );
        await c.query(`INSERT INTO message_send_events (send_id, state, detail) VALUES ($1, 'sent', $2)`,
          [row.id, `${result.parts.length} part(s)`]);
      });
      return;
    }
    if (result.retryable && row.attempts < this.opts.maxAttempts) {
      const delay = Math.max(result.retryAfterMs ?? 0, Math.min(this.opts.retryMaxMs, this.opts.retryBaseMs * 2 ** (row.attempts - 1)));
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
    const key = receipt.providerMessageId;
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
      void this.onReceiptRetry(entry);
    }, 250).unref();
  }

  private async onReceiptRetry(entry: { receipt: DeliveryReceipt; tries: number }): Promise<void> {
    if (await this.applyReceipt(entry.receipt).catch(() => false)) return;
    this.pendingReceipts.set(entry.receipt.providerMessageId, entry);
    await this.onReceipt(entry.receipt);
  }

  private async applyReceipt(r: DeliveryReceipt): Promise<boolean> {
    return withTransaction(this.pool, async (c) => {
      const part = await c.query<{ send_id: number }>(
        `UPDATE message_send_parts SET state = $2, detail = $3, updated_at = now()
          WHERE provider_message_id = $1 AND state = 'sent' RETURNING send_id`,
        [r.providerMessageId, r.delivered ? 'delivered' : 'failed', `${r.stat} err:${r.err}`],
      );
      let sendId = part.rows[0]?.send_id;
      if (sendId === undefined) {
        const known = await c.query<{ state: string }>(`SELECT state FROM message_send_parts WHERE provider_message_id = $1`, [r.providerMessageId]);
        const k = known.rows[0];
        if (k && k.state !== 'sent') return true; // a duplicate receipt counts as handled
        if (k) return false; // the part committed just now, after our UPDATE looked: apply on the retry
        if (r.sendRef === undefined) return false;
        // A send recovered after a crash (queued again, already attempted): the receipt proves the SMSC
        // took it, so it must not be sent again.
        const rec = await c.query<{ id: number }>(
          `UPDATE message_sends SET state = 'sent', sent_at = now(), updated_at = now()
            WHERE id = $1 AND state = 'queued' AND attempts > 0 AND ($2::text IS NULL OR address = $2)
            RETURNING id`,
          [r.sendRef, r.recipient ?? null],
        );
        sendId = rec.rows[0]?.id;
        if (sendId === undefined) return false;
        await c.query(
          `INSERT INTO message_send_parts (send_id, part_no, provider_message_id, state, detail)
           SELECT $1, coalesce(max(part_no), 0) + 1, $2, $3, $4 FROM message_send_parts WHERE send_id = $1
           ON CONFLICT DO NOTHING`,
          [sendId, r.providerMessageId, r.delivered ? 'delivered' : 'failed', `${r.stat} err:${r.err}`],
        );
        await c.query(`INSERT INTO message_send_events (send_id, state, detail) VALUES ($1, 'sent', 'confirmed by receipt after restart')`, [sendId]);
      }
      const agg = await c.query<{ total: number; delivered: number; failed: number }>(
        `SELECT count(*)::int AS total, count(*) FILTER (WHERE state = 'delivered')::int AS delivered,
                count(*) FILTER (WHERE state = 'failed')::int AS failed
           FROM message_send_parts WHERE send_id = $1`, [sendId]);
      const a = agg.rows[0]!;
      if (a.delivered === a.total) {
        await c.query(`UPDATE message_sends SET state = 'delivered', delivered_at = now(), updated_at = now()
                        WHERE id = $1 AND state = 'sent'`, [sendId]);
        await c.query(`INSERT INTO message_send_events (send_id, state, detail) VALUES ($1, 'delivered', $2)`, [sendId, r.stat]);
      } else if (a.failed > 0) {
        // The SMSC could not deliver (phone off for too long, unknown number...): failed, then the other channel.
        const failed = await c.query<SendRow>(
          `UPDATE message_sends SET state = 'failed', failure_reason = $2, updated_at = now()
            WHERE id = $1 AND state = 'sent'
            RETURNING id, reminder_id, recipient_kind, recipient_id, channel, address, body, attempts, fallback_of`,
          [sendId, `receipt ${r.stat} err:${r.err}`]);
        const row = failed.rows[0];
        if (row) {
          await c.query(`INSERT INTO message_send_events (send_id, state, detail) VALUES ($1, 'failed', $2)`, [sendId, `receipt ${r.stat}`]);
          await this.fallback(c, row);
        }
      }
      return true;
    });
  }
}
