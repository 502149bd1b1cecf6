/** Outcome of handing one message to a channel. */
export type ChannelResult =
  | { ok: true; parts: Array<{ providerMessageId: string | null }> }
  | { ok: false; retryable: boolean; reason: string; retryAfterMs?: number };

/** A way of getting a text to a person: SMS over SMPP, Beidou RDSS short message. */
export interface Channel {
  readonly name: 'sms' | 'beidou';
  /** `ref` identifies the send (our message_sends id); channels that can carry it do (SMPP source extension). */
  send(address: string, body: string, ref?: number): Promise<ChannelResult>;
}

/** A delivery receipt for one part, reported asynchronously by a channel that has them (SMPP). */
export interface DeliveryReceipt {
  providerMessageId: string;
  delivered: boolean;
  stat: string;
  err: string;
  /** The send this receipt belongs to, when the channel could tag it (survives a crash before submit_sm_resp). */
  sendRef?: number;
  recipient?: string;
}
