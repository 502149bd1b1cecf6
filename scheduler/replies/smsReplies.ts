import type { Pool } from '../../infra/db/pool.ts';
import type { Clock } from '../clock.ts';
import type { MobileOriginatedSms } from '../channels/types.ts';
import { recordReply } from './ReplyInbox.ts';

/** The MO handler every SMS provider gets: the reply lands on its reminder (stamped with the scheduler's clock). */
export function smsReplies(pool: Pool, clock: Clock): (mo: MobileOriginatedSms) => Promise<void> {
  return async (mo) => {
    await recordReply(pool, {
      channel: 'sms', from: mo.from, text: mo.text, receivedAt: clock.now(),
      ...(mo.providerMessageId ? { providerMessageId: mo.providerMessageId } : {}),
    });
  };
}
