import PgBoss from 'pg-boss';
import type { Pool, PoolClient } from '../../infra/db/pool.ts';
import { createLogger } from '../../infra/logger.ts';
import type { DeliveryReceipt } from '../channels/types.ts';

const log = createLogger('scheduler.queue');

export const queues = {
  check: 'scheduler-session-check',
  sms: 'scheduler-send-sms',
  beidou: 'scheduler-send-beidou',
  /** Delivery reports pushed by cloud SMS to the API, applied by the scheduler's dispatcher. */
  receipt: 'scheduler-sms-receipt',
} as const;
export type QueueName = (typeof queues)[keyof typeof queues];

export interface SendJob {
  sendId: number;
}
export interface CheckJob {
  sessionId: number;
}
/** One status report from a cloud provider's push; `provider` is the sms_providers row it came to. */
export interface ReceiptJob {
  provider: number;
  receipt: DeliveryReceipt;
}

/** pg-boss on the application's database; jobs live in PostgreSQL and survive restarts. */
export async function startQueue(databaseUrl: string): Promise<PgBoss> {
  const boss = new PgBoss({
    connectionString: databaseUrl,
    max: 4,
    schedule: false,
    application_name: 'scheduler-queue',
  });
  boss.on('error', (err: unknown) => log.error({ err }, 'pg-boss error'));
  await boss.start();
  for (const name of Object.values(queues)) {
    if (!(await boss.getQueue(name))) {
      try {
        await boss.createQueue(name, { name, retryLimit: 5, retryDelay: 5, retryBackoff: true, expireInSeconds: 900 });
      } catch (err) {
        // Another process created it first.
        if (!(await boss.getQueue(name))) throw err;
      }
    }
  }
  return boss;
}

/** Makes pg-boss write its job rows inside the caller's transaction, so a job exists iff its row does. */
export function inTransaction(client: PoolClient): { db: PgBoss.Db } {
  return {
    db: {
      executeSql: async (text: string, values: unknown[]) => {
        const r = await client.query(text, values);
        return { rows: r.rows };
      },
    },
  };
}

export function sendQueueFor(channel: 'sms' | 'beidou'): QueueName {
  return channel === 'sms' ? queues.sms : queues.beidou;
}

// Inserts jobs for a process that does not run the queue (the API): a pg-boss instance that is never
// started (no supervisor, no schedule, no connections of its own) only builds the insert statement,
// which runs on the executor given with each call.
let inserter: PgBoss | null = null;

/**
 * Hands cloud SMS status reports to the scheduler (queue `scheduler-sms-receipt`, created by its
 * startQueue). Throws when the queue does not exist yet (the scheduler has never started): the
 * caller answers 503 and the provider pushes again later.
 */
export async function enqueueReceipts(db: Pool | PoolClient, jobs: ReceiptJob[]): Promise<number> {
  if (jobs.length === 0) return 0;
  inserter ??= new PgBoss({ db: { executeSql: () => Promise.reject(new Error('no default executor')) } });
  await inserter.insert(jobs.map((data) => ({ name: queues.receipt, data })), {
    db: { executeSql: async (text: string, values: unknown[]) => ({ rows: (await db.query(text, values)).rows as unknown[] }) },
  });
  return jobs.length;
}
