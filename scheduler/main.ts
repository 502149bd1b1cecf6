import { z } from 'zod';
import { createPool } from '../infra/db/pool.ts';
import { migrateUp } from '../infra/db/migrate.ts';
import { createLogger } from '../infra/logger.ts';
import { ScaledClock, systemClock, type Clock } from './clock.ts';
import { SmppChannel } from './channels/SmppChannel.ts';
import { BeidouTerminal } from './channels/BeidouTerminal.ts';
import type { Channel } from './channels/types.ts';
import { defaultReminderPolicy } from './reminders/policy.ts';
import { SchedulerService } from './service.ts';

// Scheduler process entry: `node --import tsx scheduler/main.ts`. Settings come from the environment.
const log = createLogger('scheduler.main');

const Env = z.object({
  DATABASE_URL: z.string().url(),
  SMPP_HOST: z.string().default('127.0.0.1'),
  SMPP_PORT: z.coerce.number().int().optional(),
  SMPP_SYSTEM_ID: z.string().default('sched'),
  SMPP_PASSWORD: z.string().default(''),
  BEIDOU_SERIAL: z.string().optional(),
  BEIDOU_BAUD: z.coerce.number().int().default(115200),
  TICK_MS: z.coerce.number().int().min(10).default(60_000),
  // Simulated time (tests, drills): sim = CLOCK_SIM_START + (real - CLOCK_REAL_EPOCH) * CLOCK_SCALE.
  CLOCK_SIM_START: z.string().datetime().optional(),
  CLOCK_REAL_EPOCH: z.coerce.number().optional(),
  CLOCK_SCALE: z.coerce.number().positive().default(1),
  PERIODS_FROM: z.string().datetime().optional(),
  SEND_RETRY_BASE_MS: z.coerce.number().int().min(10).default(30_000),
  SEND_RECOVERY_GRACE_MS: z.coerce.number().int().min(0).default(10 * 60_000),
});

async function main(): Promise<void> {
  const env = Env.parse(process.env);
  await migrateUp(env.DATABASE_URL);
  const pool = createPool(env.DATABASE_URL);
  const clock: Clock =
    env.CLOCK_SIM_START && env.CLOCK_REAL_EPOCH !== undefined
      ? new ScaledClock(new Date(env.CLOCK_SIM_START), env.CLOCK_REAL_EPOCH, env.CLOCK_SCALE)
      : systemClock;
  const channels: Partial<Record<'sms' | 'beidou', Channel>> = {};
  let service: SchedulerService | null = null;
  const onReceipt = (r: Parameters<SchedulerService['onReceipt']>[0]) => service?.onReceipt(r);
  const smsChannel = env.SMPP_PORT
    ? new SmppChannel({ host: env.SMPP_HOST, port: env.SMPP_PORT, systemId: env.SMPP_SYSTEM_ID, password: env.SMPP_PASSWORD }, onReceipt)
    : null;
  if (smsChannel) channels.sms = smsChannel;
  const beidou = env.BEIDOU_SERIAL ? new BeidouTerminal({ path: env.BEIDOU_SERIAL, baudRate: env.BEIDOU_BAUD }) : null;
  if (beidou) {
    await beidou.open();
    channels.beidou = beidou;
  }
  service = new SchedulerService({
    pool, databaseUrl: env.DATABASE_URL, clock, policy: defaultReminderPolicy, channels, tickMs: env.TICK_MS,
    dispatcher: { maxAttempts: 5, retryBaseMs: env.SEND_RETRY_BASE_MS, retryMaxMs: 30 * 60_000, recoveryGraceMs: env.SEND_RECOVERY_GRACE_MS },
    ...(env.PERIODS_FROM ? { periodsFrom: new Date(env.PERIODS_FROM) } : {}),
  });
  await service.start();
  // Bind only after recovery has re-queued interrupted sends, so their receipts find them.
  smsChannel?.start();
  log.info({ tickMs: env.TICK_MS }, 'scheduler started');
  process.send?.({ type: 'ready' });

  let stopping = false;
  const stop = async () => {
    if (stopping) return;
    stopping = true;
    await service?.stop();
    await smsChannel?.close();
    await beidou?.close();
    await pool.end();
    process.exit(0);
  };
  process.on('SIGTERM', () => void stop());
  process.on('SIGINT', () => void stop());
}

main().catch((err: unknown) => {
  log.fatal({ err: String(err) }, 'scheduler failed to start');
  process.exit(1);
});
