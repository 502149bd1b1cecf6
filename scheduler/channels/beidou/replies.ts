import type { Pool } from '../../../infra/db/pool.ts';
import { createLogger } from '../../../infra/logger.ts';
import { systemClock, type Clock } from '../../clock.ts';
import { recordReply } from '../../replies/ReplyInbox.ts';
import type { BeidouHooks } from '../BeidouTerminal.ts';
import type { DeliveryReceipt } from '../types.ts';

const log = createLogger('scheduler.beidou');

/**
 * What the scheduler does with what the terminal hears: a received message is a secretary's reply
 * ("1 <date>" / "2 <reason>") and lands on their reminder; a receipt settles the part it belongs to.
 * The reply is dated by the scheduler's clock (simulated runs do not live on the wall clock).
 */
export function beidouHooks(pool: Pool, onReceipt: (r: DeliveryReceipt) => Promise<unknown> | unknown, clock: Clock = systemClock): BeidouHooks {
  return {
    onMessage: async (m) => {
      const r = await recordReply(pool, { channel: 'beidou', from: m.from, text: m.text, receivedAt: clock.now() });
      log.info({ from: m.from, outcome: r.outcome, reminderId: r.reminderId }, 'beidou reply');
      return r;
    },
    onReceipt,
  };
}
