/** Outcome of handing one message to a channel. */
export type ChannelResult =
  | { ok: true; parts: Array<{ providerMessageId: string | null }>; total?: number }
  | {
      ok: false;
      retryable: boolean;
      reason: string;
      retryAfterMs?: number;
      /** A part was handed over without an answer (timeout, disconnect): the channel may have taken it. */
      uncertain?: boolean;
      /** The channel itself is down (no link, not bound, queue full): says nothing about this message. */
      unavailable?: boolean;
    };

/**
 * Where a channel records, part by part, how far a message got, so that a later attempt (after a
 * timeout, a disconnect or a crash) resumes at the first part not acknowledged instead of part 1.
 */
export interface SendTracker {
  /** Concatenation reference (SMS UDH) of an earlier attempt of this send; null when none. */
  readonly concatRef: number | null;
  /** The text splits into `total` parts; returns the part numbers (1-based) already accepted. */
  begin(total: number, concatRef: number | null): Promise<ReadonlySet<number>>;
  /** Before the part is handed over: if we die now, it is "unconfirmed", not "not sent". */
  submitting(partNo: number): Promise<void>;
  accepted(partNo: number, providerMessageId: string | null): Promise<void>;
  /** The channel answered that it did not take the part: it may be sent again. */
  refused(partNo: number): Promise<void>;
}

/** A way of getting a text to a person: SMS over SMPP, Beidou RDSS short message. */
export interface Channel {
  readonly name: 'sms' | 'beidou';
  /** `ref` identifies the send (our message_sends id); channels that can carry it do (SMPP source extension). */
  send(address: string, body: string, ref?: number, tracker?: SendTracker): Promise<ChannelResult>;
}

/**
 * How a receipt settles a part: DELIVRD is delivered; UNDELIV/REJECTD/EXPIRED/DELETED are final
 * failures; ACCEPTD/ENROUTE/UNKNOWN (and anything else) are interim and settle nothing.
 */
export type ReceiptOutcome = 'delivered' | 'failed' | 'interim';

/** A delivery receipt for one part, reported asynchronously by a channel that has them (SMPP). */
export interface DeliveryReceipt {
  providerMessageId: string;
  delivered: boolean;
  outcome: ReceiptOutcome;
  stat: string;
  err: string;
  /** The send this receipt belongs to, when the channel could tag it (survives a crash before submit_sm_resp). */
  sendRef?: number;
  recipient?: string;
}

/** A mobile-originated SMS (a secretary's reply), from any provider. */
export interface MobileOriginatedSms {
  from: string;
  to: string;
  text: string;
  receivedAt: Date;
  providerMessageId?: string;
}

/**
 * One SMS provider (SMPP, CMPP, Alibaba Cloud, Tencent Cloud): sends like a Channel; receipts and
 * mobile-originated replies come back through the callbacks given at construction.
 */
export interface SmsProvider extends Channel {
  readonly name: 'sms';
  readonly kind: 'smpp' | 'cmpp' | 'aliyun' | 'tencent';
  close(): Promise<void>;
}

export interface SmsProviderEvents {
  onReceipt: (r: DeliveryReceipt) => unknown;
  onMo?: (mo: MobileOriginatedSms) => unknown;
}
