import PgBoss from 'pg-boss';
import type { PoolClient } from '../../infra/db/pool.ts';
import { createLogger } from '../../infra/logger.ts';

const log = createLogger('scheduler.queue');

export const queues = {
  check: 'scheduler-session-check',
  sms: 'scheduler-send-sms',
  beidou: 'scheduler-send-beidou',
} as const;
export type QueueName = (typeof queues)[keyof typeof queues];

export interface SendJob {
  sendId: number;
}
export interface CheckJob {
  sessionId: number;
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
