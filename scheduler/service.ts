import type PgBoss from 'pg-boss';
import type { Pool } from '../infra/db/pool.ts';
import { withTransaction } from '../infra/db/pool.ts';
import { createLogger } from '../infra/logger.ts';
import type { Clock } from './clock.ts';
import type { Channel, DeliveryReceipt } from './channels/types.ts';
import { queues, startQueue, inTransaction, type CheckJob, type ReceiptJob, type SendJob } from './jobs/queue.ts';
import { planReminders, type PlanResult } from './reminders/plan.ts';
import type { ReminderPolicy } from './reminders/policy.ts';
import { Dispatcher, defaultDispatcherOptions, type DispatcherOptions } from './sending/dispatcher.ts';

const log = createLogger('scheduler');

/** Judges one session from its recording and stores the result. */
export interface SessionChecker {
  check(sessionId: number, now: Date): Promise<void>;
}

export interface SchedulerOptions {
  pool: Pool;
  databaseUrl: string;
  clock: Clock;
  policy: ReminderPolicy;
  channels: Partial<Record<'sms' | 'beidou', Channel>>;
  checker?: SessionChecker;
  /** Ask the recorder this long before a session starts. */
  captureLeadMs?: number;
  /** Judge a session this long after it ends (segments still uploading). */
  checkGraceMs?: number;
  /** A check job that left no result (lost, worker died) is queued again after this long. */
  checkStaleMs?: number;
  /** A failed verdict is checked again when segments of its session are indexed after it, for this long. */
  lateRecheckDays?: number;
  /** At most this many check jobs are queued per tick (a backlog drains over ticks, not at once). */
  checkBatchMax?: number;
  /** A queued send whose job should have run this long ago is given a new job (default 15 min). */
  orphanSendMs?: number;
  /** Real-time interval of the planning tick; 0 = the caller ticks. */
  tickMs?: number;
  dispatcher?: DispatcherOptions;
  atRiskDays?: number;
  /** Obligations are tracked for periods starting at or after this instant (deployment date). */
  periodsFrom?: Date;
}

export interface TickResult extends PlanResult {
  captures: number;
  checks: number;
}

/**
 * The scheduler: a planning tick decides by the scheduler's clock what is due (captures, checks,
 * reminders) and writes it, with pg-boss jobs, in transactions; pg-boss workers then do the work.
 */
export class SchedulerService {
  private boss: PgBoss | null = null;
  private dispatcher: Dispatcher | null = null;
  private timer: NodeJS.Timeout | null = null;
  private ticking: Promise<TickResult> | null = null;
  private workerIds: string[] = [];
  private stopped = false;

  constructor(private readonly o: SchedulerOptions) {}

  get queue(): PgBoss {
    if (!this.boss) throw new Error('scheduler not started');
    return this.boss;
  }

  /** Receipts from channels arrive here (SMPP deliver_sm); a rejection makes the channel ask for it again. */
  readonly onReceipt = async (r: DeliveryReceipt): Promise<void> => {
    if (!this.dispatcher) throw new Error('scheduler not started');
    await this.dispatcher.onReceipt(r);
  };

  async start(): Promise<void> {
    const boss = await startQueue(this.o.databaseUrl);
    this.boss = boss;
    const dispatcher = new Dispatcher(this.o.pool, boss, this.o.channels, this.o.dispatcher ?? defaultDispatcherOptions);
    this.dispatcher = dispatcher;
    await dispatcher.recover();
    // pg-boss sleeps a polling interval between batches; while there is work (and after a send may
    // have queued a retry or a fallback) the workers are woken so a backlog drains without pauses.
    const wakeAll = () => {
      for (const id of this.workerIds) boss.notifyWorker(id);
    };
    const handleSends = async (jobs: PgBoss.Job<SendJob>[]) => {
      await Promise.all(jobs.map((j) => dispatcher.process(j.data.sendId)));
      if (jobs.length > 0) wakeAll();
    };
    // The SMPP channel bounds concurrency with its window; a batch only feeds it.
    this.workerIds.push(await boss.work<SendJob>(queues.sms, { batchSize: 20, pollingIntervalSeconds: 0.5 }, handleSends));
    // One at a time: the terminal paces sends by the card's interval anyway.
    this.workerIds.push(await boss.work<SendJob>(queues.beidou, { batchSize: 1, pollingIntervalSeconds: 0.5 }, handleSends));
    // Status reports pushed by cloud SMS to the API: applied like SMPP/CMPP receipts. One after the
    // other (reports of one send would only queue on its row lock); a database error fails the batch
    // and pg-boss retries it, and applying a report twice changes nothing.
    this.workerIds.push(
      await boss.work<ReceiptJob>(queues.receipt, { batchSize: 50, pollingIntervalSeconds: 0.5 }, async (jobs) => {
        for (const j of jobs) {
          const r = j.data?.receipt;
          if (!r || typeof r.providerMessageId !== 'string') {
            log.warn({ job: j.id }, 'malformed status report job ignored');
            continue;
          }
          await dispatcher.onReceipt(r);
        }
        if (jobs.length > 0) wakeAll();
      }),
    );
    const checker = this.o.checker;
    if (checker) {
      // Two ffmpeg analyses at a time on a small machine.
      this.workerIds.push(
        await boss.work<CheckJob>(queues.check, { batchSize: 2, pollingIntervalSeconds: 0.5 }, async (jobs) => {
          await Promise.all(jobs.map((j) => checker.check(j.data.sessionId, this.o.clock.now())));
          if (jobs.length > 0) wakeAll();
        }),
      );
    }
    if (this.o.tickMs) {
      const loop = () => {
        if (this.stopped) return;
        this.tick()
          .catch((err: unknown) => log.error({ err: String(err) }, 'tick failed'))
          .finally(() => {
            if (!this.stopped) this.timer = setTimeout(loop, this.o.tickMs);
          });
      };
      loop();
    }
  }

  /** One planning pass at the clock's current time. Concurrent calls share one pass. */
  tick(): Promise<TickResult> {
    this.ticking ??= this.runTick().finally(() => {
      this.ticking = null;
    });
    return this.ticking;
  }

  private async runTick(): Promise<TickResult> {
    const boss = this.queue;
    const now = this.o.clock.now();
    const captures = await this.requestCaptures(now);
    const checks = await this.queueChecks(boss, now);
    await this.dispatcher?.resubmitOrphans(this.o.orphanSendMs);
    const plan = await planReminders(this.o.pool, boss, this.o.policy, now, { atRiskDays: this.o.atRiskDays ?? 7, ...(this.o.periodsFrom ? { periodsFrom: this.o.periodsFrom } : {}) });
    // Wake the workers instead of waiting for their next poll.
    if (checks > 0 || plan.sends > 0) for (const id of this.workerIds) boss.notifyWorker(id);
    if (captures || checks || plan.reminders) log.info({ at: now.toISOString(), captures, checks, ...plan }, 'tick');
    return { captures, checks, ...plan };
  }

  /** Capture requests for the recorder (capture_jobs rows), once per session. */
  private async requestCaptures(now: Date): Promise<number> {
    const { rowCount } = await this.o.pool.query(
      `WITH due AS (
         SELECT id, camera_id, starts_at, ends_at FROM meeting_sessions
          WHERE capture_requested_at IS NULL AND NOT cancelled AND camera_id IS NOT NULL
            AND starts_at - make_interval(secs => $2::float8 / 1000) <= $1 AND ends_at > $1
          FOR UPDATE SKIP LOCKED
       ), jobs AS (
         INSERT INTO capture_jobs (camera_id, session_id, starts_at, ends_at, pre_roll_s, post_roll_s, evidence)
         SELECT camera_id, id, starts_at, ends_at, 300, 300, true FROM due
         RETURNING id, session_id
       )
       UPDATE meeting_sessions s SET capture_job_id = jobs.id, capture_requested_at = $1
         FROM jobs WHERE s.id = jobs.session_id`,
      [now, this.o.captureLeadMs ?? 15 * 60_000],
    );
    return rowCount ?? 0;
  }

  /**
   * Completion-check jobs: once per session after it ends; again when a pending check is due
   * (storage or ffmpeg fault, upload not complete), when a job left no result, and when segments
   * of a failed session are indexed after its verdict (late upload).
   */
  private async queueChecks(boss: PgBoss, now: Date): Promise<number> {
    if (!this.o.checker) return 0;
    const staleMs = this.o.checkStaleMs ?? 2 * 3_600_000;
    const limit = this.o.checkBatchMax ?? 500;
    return withTransaction(this.o.pool, async (c) => {
      const first = await c.query<{ id: number }>(
        `UPDATE meeting_sessions SET check_queued_at = $1
          WHERE id IN (SELECT s.id FROM meeting_sessions s
                        WHERE NOT s.cancelled AND EXISTS (SELECT 1 FROM branch_obligation_rules bor
                                                           WHERE bor.branch_id = s.branch_id AND bor.obligation = s.obligation)
                          AND (
                          (s.check_queued_at IS NULL AND s.ends_at + make_interval(secs => $2::float8 / 1000) <= $1)
                          OR (s.check_queued_at + make_interval(secs => $3::float8 / 1000) <= $1
                              AND NOT EXISTS (SELECT 1 FROM completion_checks c WHERE c.session_id = s.id)))
                        ORDER BY s.ends_at LIMIT $4
                        FOR UPDATE SKIP LOCKED)
          RETURNING id`,
        [now, this.o.checkGraceMs ?? 30 * 60_000, staleMs, limit],
      );
      const again = await c.query<{ id: number }>(
        `UPDATE completion_checks SET requeued_at = now()
          WHERE session_id IN (
            SELECT c.session_id FROM completion_checks c JOIN meeting_sessions s ON s.id = c.session_id
             WHERE NOT s.cancelled
               -- A session without an applicable rule (its branch retired) cannot be judged: not retried.
               AND EXISTS (SELECT 1 FROM branch_obligation_rules bor WHERE bor.branch_id = s.branch_id AND bor.obligation = s.obligation)
               AND (c.requeued_at IS NULL OR c.requeued_at <= now() - make_interval(secs => $2::float8 / 1000))
               AND ((c.pending AND c.next_check_at <= $1)
                    OR (NOT c.pending AND NOT c.passed AND c.checked_at > now() - make_interval(days => $3::int)
                        AND EXISTS (SELECT 1 FROM recording_segments r
                                     WHERE r.camera_id = s.camera_id AND r.ended_at > s.starts_at AND r.started_at < s.ends_at
                                       AND r.created_at > c.checked_at)))
             ORDER BY c.next_check_at NULLS LAST LIMIT $4
             FOR UPDATE OF c SKIP LOCKED)
          RETURNING session_id AS id`,
        [now, staleMs, this.o.lateRecheckDays ?? 30, limit],
      );
      const ids = [...first.rows, ...again.rows].map((r) => r.id);
      if (ids.length > 0) {
        await boss.insert(ids.map((id) => ({ name: queues.check, data: { sessionId: id } })), inTransaction(c));
      }
      return ids.length;
    });
  }

  /** Waits until no check job and no send is outstanding (tests and the simulated quarter). */
  async drain(timeoutMs = 30_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const { rows } = await this.o.pool.query<{ sends: number; checks: number }>(
        `SELECT (SELECT count(*) FROM message_sends WHERE state IN ('queued', 'sending'))::int AS sends,
                (SELECT count(*) FROM meeting_sessions s WHERE s.check_queued_at IS NOT NULL
                   AND NOT EXISTS (SELECT 1 FROM completion_checks c WHERE c.session_id = s.id))::int
                + (SELECT count(*) FROM completion_checks WHERE requeued_at IS NOT NULL)::int AS checks`,
      );
      const r = rows[0]!;
      if (r.sends === 0 && (r.checks === 0 || !this.o.checker)) return;
      if (Date.now() > deadline) throw new Error(`drain timed out: ${r.sends} sends, ${r.checks} checks outstanding`);
      await new Promise((res) => setTimeout(res, 50));
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    await this.ticking?.catch(() => undefined);
    await this.boss?.stop({ graceful: true, timeout: 5000, wait: true }).catch(() => undefined);
    this.boss = null;
  }
}
