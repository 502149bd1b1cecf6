import { z } from 'zod';
import type { Pool } from '../infra/db/pool.ts';
import type { Logger } from '../infra/logger.ts';
import { ScaledClock, systemClock, type Clock } from './clock.ts';
import { SmppChannel } from './channels/SmppChannel.ts';
import { SmsRouter } from './channels/sms/SmsRouter.ts';
import { smsReplies } from './replies/smsReplies.ts';
import { BeidouTerminal } from './channels/BeidouTerminal.ts';
import { beidouHooks } from './channels/beidou/replies.ts';
import type { Channel } from './channels/types.ts';
import { defaultReminderPolicy } from './reminders/policy.ts';
import { SchedulerService } from './service.ts';
import { CompletionChecker } from './checks/completionCheck.ts';
import { ObjectStorageSegmentSource, type BucketPresigner } from './checks/segmentSource.ts';

// Builds and starts the scheduler with its channels from settings; shared by the scheduler's own
// process (scheduler/main.ts) and the all-in-one `npm start` (infra/system.ts).

export const schedulerSettingsSchema = z.object({
  /** SMS centre; without SMPP_PORT no SMS channel is opened (reminders wait as queued). */
  SMPP_HOST: z.string().default('127.0.0.1'),
  SMPP_PORT: z.coerce.number().int().optional(),
  SMPP_SYSTEM_ID: z.string().default('sched'),
  SMPP_PASSWORD: z.string().default(''),
  /** Serial device of the Beidou RDSS terminal; without it no Beidou channel. */
  BEIDOU_SERIAL: z.string().optional(),
  BEIDOU_BAUD: z.coerce.number().int().default(115200),
  /** 'auto' detects 2.1 / 4.0 / BD-3 at open. */
  BEIDOU_PROTOCOL: z.enum(['auto', '2.1', '4.0', 'bd3']).default('auto'),
  /** A reminder too long for one frame: its short form ('short') or numbered frames ('split'). */
  BEIDOU_TOO_LONG: z.enum(['short', 'split']).default('short'),
  TICK_MS: z.coerce.number().int().min(10).default(60_000),
  // Simulated time (tests, drills): sim = CLOCK_SIM_START + (real - CLOCK_REAL_EPOCH) * CLOCK_SCALE.
  CLOCK_SIM_START: z.string().datetime().optional(),
  CLOCK_REAL_EPOCH: z.coerce.number().optional(),
  CLOCK_SCALE: z.coerce.number().positive().default(1),
  PERIODS_FROM: z.string().datetime().optional(),
  SEND_RETRY_BASE_MS: z.coerce.number().int().min(10).default(30_000),
  SEND_RECOVERY_GRACE_MS: z.coerce.number().int().min(0).default(10 * 60_000),
  /** An SMS part sent without an answer is resent no sooner than this (a receipt may confirm it). */
  SEND_UNCERTAIN_GRACE_MS: z.coerce.number().int().min(0).default(2 * 60_000),
  /** While the SMSC / terminal is down a send waits (attempts not used) at most this long after it was queued. */
  SEND_OUTAGE_GIVE_UP_MS: z.coerce.number().int().min(0).default(3 * 86_400_000),
  // Completion checks (when the recordings' store is given): a check that cannot run is retried with
  // backoff from CHECK_RETRY_BASE_MS to CHECK_RETRY_MAX_MS; a window not fully indexed is not judged
  // before CHECK_UPLOAD_WAIT_MS after the session (recorder spool backlog).
  CHECK_FFMPEG_PATH: z.string().min(1).default('ffmpeg'),
  CHECK_RETRY_BASE_MS: z.coerce.number().int().min(1000).default(5 * 60_000),
  CHECK_RETRY_MAX_MS: z.coerce.number().int().min(1000).default(6 * 3_600_000),
  CHECK_UPLOAD_WAIT_MS: z.coerce.number().int().min(0).default(48 * 3_600_000),
  CHECK_MAX_PROBE_FAILURES: z.coerce.number().int().min(1).max(100).default(8),
});
export type SchedulerSettings = z.infer<typeof schedulerSettingsSchema>;

export interface RunningScheduler {
  service: SchedulerService;
  stop(): Promise<void>;
}

export async function startScheduler(
  settings: SchedulerSettings, pool: Pool, databaseUrl: string, log: Logger,
  /** The recordings' store; with it, sessions are judged from their recordings (completion checks). */
  deps: { storage?: BucketPresigner } = {},
): Promise<RunningScheduler> {
  const clock: Clock =
    settings.CLOCK_SIM_START && settings.CLOCK_REAL_EPOCH !== undefined
      ? new ScaledClock(new Date(settings.CLOCK_SIM_START), settings.CLOCK_REAL_EPOCH, settings.CLOCK_SCALE)
      : systemClock;
  const channels: Partial<Record<'sms' | 'beidou', Channel>> = {};
  let service: SchedulerService | null = null;
  const onReceipt = (r: Parameters<SchedulerService['onReceipt']>[0]) => service?.onReceipt(r);
  const sms = settings.SMPP_PORT
    ? new SmppChannel({ host: settings.SMPP_HOST, port: settings.SMPP_PORT, systemId: settings.SMPP_SYSTEM_ID, password: settings.SMPP_PASSWORD }, onReceipt, smsReplies(pool, clock))
    : null;
  // Per-unit providers (sms_providers) first; the SMPP_* link where a unit has none.
  const smsRouter = new SmsRouter(pool, { onReceipt, onMo: smsReplies(pool, clock) }, sms ? { fallback: sms } : {});
  channels.sms = smsRouter;
  const beidou = settings.BEIDOU_SERIAL ? new BeidouTerminal({ path: settings.BEIDOU_SERIAL, baudRate: settings.BEIDOU_BAUD, protocol: settings.BEIDOU_PROTOCOL, tooLong: settings.BEIDOU_TOO_LONG }, beidouHooks(pool, onReceipt, clock)) : null;
  if (beidou) {
    await beidou.open();
    channels.beidou = beidou;
  }
  service = new SchedulerService({
    pool,
    databaseUrl,
    clock,
    policy: defaultReminderPolicy,
    channels,
    ...(deps.storage ? {
      checker: new CompletionChecker(pool, new ObjectStorageSegmentSource(deps.storage), {}, {
        ffmpegPath: settings.CHECK_FFMPEG_PATH, retryBaseMs: settings.CHECK_RETRY_BASE_MS, retryMaxMs: settings.CHECK_RETRY_MAX_MS,
        uploadWaitMs: settings.CHECK_UPLOAD_WAIT_MS, maxProbeFailures: settings.CHECK_MAX_PROBE_FAILURES,
      }),
    } : {}),
    tickMs: settings.TICK_MS,
    dispatcher: { maxAttempts: 5, retryBaseMs: settings.SEND_RETRY_BASE_MS, retryMaxMs: 30 * 60_000, recoveryGraceMs: settings.SEND_RECOVERY_GRACE_MS, uncertainGraceMs: settings.SEND_UNCERTAIN_GRACE_MS, outageGiveUpMs: settings.SEND_OUTAGE_GIVE_UP_MS },
    ...(settings.PERIODS_FROM ? { periodsFrom: new Date(settings.PERIODS_FROM) } : {}),
  });
  await service.start();
  // Bind only after recovery has re-queued interrupted sends, so their receipts find them.
  sms?.start();
  log.info({ tickMs: settings.TICK_MS, sms: Boolean(sms), beidou: Boolean(beidou), checks: Boolean(deps.storage) }, 'scheduler started');
  const running = service;
  return {
    service: running,
    async stop() {
      await running.stop();
      await sms?.close();
      await smsRouter.close();
      await beidou?.close();
    },
  };
}
