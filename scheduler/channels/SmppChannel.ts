import smpp, { type PDU, type Session } from 'smpp';
import { z } from 'zod';
import { createLogger } from '../../infra/logger.ts';
import type { ChannelResult, DeliveryReceipt, MobileOriginatedSms, ReceiptOutcome, SendTracker, SmsProvider } from './types.ts';
import { partsToSend } from './smsEncoding.ts';
import { AnswerWrites } from './AnswerWrites.ts';

const log = createLogger('scheduler.smpp');

export const SmppConfig = z.object({
  host: z.string().default('127.0.0.1'),
  port: z.number().int().min(1).max(65535),
  // SMPP 3.4 §4.1.5 / §4.4.1: the sizes (16, 9, 21) include the terminating NUL, so 15, 8 and 20 usable characters.
  systemId: z.string().min(1).max(15),
  password: z.string().max(8),
  sourceAddr: z.string().min(1).max(20).default('10690000'),
  /**
   * How handset numbers are addressed. 'national' (default): the 11-digit national number with
   * TON 2 (national) / NPI 1 (ISDN E.164), as Chinese SMSCs and 106 gateways that speak SMPP expect;
   * 'international': TON 1 / NPI 1 with the country code 86 prepended. A national number with TON 1
   * would be read as country code 1. destTon/destNpi override the pair for an SMSC that wants others (e.g. 0/1).
   */
  numbering: z.enum(['national', 'international']).default('national'),
  destTon: z.number().int().min(0).max(6).optional(),
  destNpi: z.number().int().min(0).max(18).optional(),
  /**
   * Source TON/NPI. Default: 5/0 (alphanumeric) only for a sender with letters; a numeric 106 service
   * code (with its extension) is not alphanumeric and goes as 0/1 (unknown, ISDN), which the
   * gateways route on the digits. Override per provider when the SMSC says otherwise (e.g. 3/0).
   */
  sourceTon: z.number().int().min(0).max(6).optional(),
  sourceNpi: z.number().int().min(0).max(18).optional(),
  /** Submits outstanding at once (SMPP window). */
  window: z.number().int().min(1).max(100).default(10),
  /** Callers waiting for the window beyond this are refused (retried later through the job queue). */
  maxWaiting: z.number().int().min(1).max(10_000).default(1000),
  /** Quick retries of one part on throttling before the send is handed back to the job queue. */
  throttleRetries: z.number().int().min(0).max(20).default(5),
  throttleBackoffMs: z.number().int().min(1).max(60_000).default(200),
  responseTimeoutMs: z.number().int().min(100).max(120_000).default(10_000),
  /** A receipt not stored within this time is answered with a temporary error, so the SMSC sends it again. */
  receiptAckTimeoutMs: z.number().int().min(100).max(120_000).default(10_000),
  enquireLinkMs: z.number().int().min(1000).max(600_000).default(30_000),
  reconnectMs: z.number().int().min(50).max(600_000).default(2000),
});
export type SmppConfig = z.input<typeof SmppConfig>;

// SMPP 3.4 command_status values this client distinguishes.
const ESME_ROK = 0x00;
const ESME_RMSGQFUL = 0x14;
const ESME_RTHROTTLED = 0x58;
const ESME_RSYSERR = 0x08;
const retryableStatus = new Set([ESME_RMSGQFUL, ESME_RTHROTTLED, ESME_RSYSERR]);

// deliver_sm_resp status asking the SMSC to retry the receipt later (ESME_RX_T_APPN).
const ESME_RX_T_APPN = 0x64;

const receiptRe = /id:(\S+)\s.*?stat:(\w+)(?:\s+err:(\w+))?/i;
const finalFailures = new Set(['UNDELIV', 'REJECTD', 'EXPIRED', 'DELETED']);

/** Final states only settle a part; ACCEPTD / ENROUTE / UNKNOWN are interim. */
export function receiptOutcome(stat: string): ReceiptOutcome {
  if (stat === 'DELIVRD') return 'delivered';
  return finalFailures.has(stat) ? 'failed' : 'interim';
}

/** Parses the text of an SMPP 3.4 Appendix B delivery receipt. */
export function parseReceipt(text: string, tlvId?: string): DeliveryReceipt | null {
  const m = receiptRe.exec(text);
  const id = tlvId ?? m?.[1];
  if (!id || !m) return null;
  const stat = m[2]!.toUpperCase();
  const outcome = receiptOutcome(stat);
  return { providerMessageId: id, delivered: outcome === 'delivered', outcome, stat, err: m[3] ?? '000' };
}

/** Why a submit got no response: `uncertain` when the SMSC may have taken the part. */
class SubmitError extends Error {
  constructor(message: string, readonly uncertain: boolean) {
    super(message);
  }
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** A mobile-originated message (a secretary's reply) received over SMPP deliver_sm. */
export type MobileOriginated = MobileOriginatedSms;

/** The TON/NPI pair and the address as sent for a handset number (see SmppConfig.numbering). */
export function destinationFor(cfg: { numbering: 'national' | 'international'; destTon?: number | undefined; destNpi?: number | undefined }, address: string): { ton: number; npi: number; addr: string } {
  const digits = address.replace(/^\+/, '');
  const national = /^(0086|86)(1\d{10})$/.exec(digits)?.[2] ?? digits;
  if (cfg.numbering === 'international') {
    const intl = /^1\d{10}$/.test(national) ? `86${national}` : digits;
    return { ton: cfg.destTon ?? 1, npi: cfg.destNpi ?? 1, addr: intl };
  }
  return { ton: cfg.destTon ?? 2, npi: cfg.destNpi ?? 1, addr: national };
}

/** Source TON/NPI: alphanumeric only when the sender has letters (see SmppConfig.sourceTon). */
export function sourceNumbering(cfg: { sourceTon?: number | undefined; sourceNpi?: number | undefined }, source: string): { ton: number; npi: number } {
  const alpha = /[^0-9+]/.test(source);
  return { ton: cfg.sourceTon ?? (alpha ? 5 : 0), npi: cfg.sourceNpi ?? (alpha ? 0 : 1) };
}

/** Decodes an MO short_message by its data_coding: 8 UCS-2, 15 GBK (Chinese SMSCs), else 8-bit/ASCII. */
export function decodeMoText(dataCoding: number, payload: Buffer): string {
  if (dataCoding === 0x08) {
    const b = Buffer.from(payload.subarray(0, payload.length - (payload.length % 2)));
    b.swap16();
    return b.toString('utf16le');
  }
  if (dataCoding === 0x0f) return new TextDecoder('gbk').decode(payload);
  return payload.toString('latin1');
}

/** SMS over SMPP 3.4 as a transceiver: submits UCS-2 messages and receives delivery receipts. */
export class SmppChannel implements SmsProvider {
  readonly name = 'sms' as const;
  readonly kind = 'smpp' as const;
  private readonly cfg: z.infer<typeof SmppConfig>;
  private session: Session | null = null;
  private bound: Promise<void> | null = null;
  private closed = false;
  private inFlight = 0;
  private readonly waiters: Array<() => void> = [];
  private enquireTimer: NodeJS.Timeout | null = null;
  private ref = Math.floor(Math.random() * 256);
  private readonly answers = new AnswerWrites();

  constructor(
    config: SmppConfig,
    private readonly onReceipt: (r: DeliveryReceipt) => unknown,
    private readonly onMo?: (mo: MobileOriginated) => unknown,
  ) {
    this.cfg = SmppConfig.parse(config);
  }

  /**
   * Binds now and keeps the bind up: receipts queued at the SMSC while we were away (including
   * those that settle sends interrupted by a crash) arrive as soon as we are bound.
   */
  start(): void {
    this.keepBound = true;
    this.connect().catch(() => this.scheduleReconnect());
  }

  private keepBound = false;
  private reconnectTimer: NodeJS.Timeout | null = null;

  private scheduleReconnect(): void {
    if (!this.keepBound || this.closed || this.reconnectTimer) return;
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = null;
      if (!this.session) this.connect().catch(() => this.scheduleReconnect());
    }, this.cfg.reconnectMs);
    this.reconnectTimer.unref();
  }

  private connect(): Promise<void> {
    if (this.bound) return this.bound;
    this.bound = new Promise<void>((resolve, reject) => {
      const session = smpp.connect({ host: this.cfg.host, port: this.cfg.port });
      this.session = session;
      // Each outstanding submit watches for the link dropping.
      session.setMaxListeners(this.cfg.window + 10);
      let settled = false;
      const drop = (why: string) => {
        if (this.session === session) {
          this.session = null;
          this.bound = null;
          if (this.enquireTimer) clearInterval(this.enquireTimer);
          this.enquireTimer = null;
          this.scheduleReconnect();
        }
        if (!settled) {
          settled = true;
          reject(new Error(why));
        }
      };
      session.on('error', (err: Error) => {
        log.warn({ err: err.message }, 'smpp session error');
        drop(err.message);
        session.destroy();
      });
      session.on('close', () => drop('connection closed'));
      session.on('connect', () => {
        session.bind_transceiver({ system_id: this.cfg.systemId, password: this.cfg.password }, (pdu: PDU) => {
          if (pdu.command_status !== ESME_ROK) {
            drop(`bind failed: status 0x${pdu.command_status.toString(16)}`);
            session.destroy();
            return;
          }
          settled = true;
          this.enquireTimer = setInterval(() => session.enquire_link(), this.cfg.enquireLinkMs);
          this.enquireTimer.unref();
          resolve();
        });
      });
      session.on('pdu', (pdu: PDU) => this.onPdu(session, pdu));
    });
    this.bound.catch(() => undefined);
    return this.bound;
  }

  private onPdu(session: Session, pdu: PDU): void {
    try {
      if (pdu.command === 'deliver_sm') {
        const esm = typeof pdu.esm_class === 'number' ? pdu.esm_class : 0;
        if ((esm & 0x3c) !== 0x04) {
          this.onMobileOriginated(session, pdu, esm);
          return;
        }
        const sm = pdu.short_message as { message?: unknown } | undefined;
        const text = typeof sm?.message === 'string' ? sm.message : Buffer.isBuffer(sm?.message) ? sm.message.toString('latin1') : '';
        const tlvId = typeof pdu.receipted_message_id === 'string' ? pdu.receipted_message_id : undefined;
        const receipt = parseReceipt(text, tlvId);
        if (!receipt) {
          log.warn({ text }, 'unparseable delivery receipt');
          session.send(pdu.response());
          return;
        }
        const sendRef = this.refFrom(pdu.destination_addr);
        if (sendRef !== undefined) receipt.sendRef = sendRef;
        if (typeof pdu.source_addr === 'string') receipt.recipient = pdu.source_addr;
        // Acknowledged only once stored: a receipt lost to a crash would let a confirmed part be sent again.
        this.ackAfter(session, pdu, receipt);
      } else if (pdu.command === 'enquire_link') {
        session.send(pdu.response());
      } else if (pdu.command === 'unbind') {
        session.send(pdu.response());
        session.close();
      } else if (pdu.command === 'unknown') {
        session.send(pdu.response());
      }
    } catch (err) {
      log.warn({ err: String(err), command: pdu.command }, 'unexpected PDU ignored');
    }
  }

  /**
   * A secretary's reply. Acknowledged once stored (else ESME_RX_T_APPN: the SMSC redelivers it);
   * a concatenated reply is passed on when its last part arrives.
   */
  private onMobileOriginated(session: Session, pdu: PDU, esm: number): void {
    const sm = pdu.short_message as { message?: unknown; udh?: unknown } | Buffer | undefined;
    const raw = Buffer.isBuffer(sm) ? sm : Buffer.isBuffer(sm?.message) ? sm.message : typeof sm?.message === 'string' ? null : Buffer.alloc(0);
    const dc = typeof pdu.data_coding === 'number' ? pdu.data_coding : 0;
    let text = raw ? decodeMoText(dc, raw) : String((sm as { message: string }).message);
    const udh = !Buffer.isBuffer(sm) && Array.isArray(sm?.udh) ? (sm.udh as unknown[]) : [];
    const from = typeof pdu.source_addr === 'string' ? pdu.source_addr : '';
    const to = typeof pdu.destination_addr === 'string' ? pdu.destination_addr : '';
    const concat = udh.find((ie): ie is Buffer => Buffer.isBuffer(ie) && ie[0] === 0x00 && ie.length >= 5);
    if ((esm & 0x40) !== 0 && concat) {
      const key = `${from}|${concat[2]}`;
      const entry = this.moParts.get(key) ?? { total: concat[3]!, got: new Map<number, string>() };
      entry.got.set(concat[4]!, text);
      if (!this.moParts.has(key) && this.moParts.size >= 200) this.moParts.delete(this.moParts.keys().next().value!);
      this.moParts.set(key, entry);
      if (entry.got.size < entry.total) {
        session.send(pdu.response());
        return;
      }
      this.moParts.delete(key);
      text = [...entry.got.entries()].sort((a, b) => a[0] - b[0]).map((e) => e[1]).join('');
    }
    if (!this.onMo) {
      session.send(pdu.response());
      return;
    }
    const mo: MobileOriginated = { from, to, text, receivedAt: new Date() };
    const id = typeof pdu.receipted_message_id === 'string' ? pdu.receipted_message_id : undefined;
    if (id) mo.providerMessageId = id;
    this.ackWhenStored(session, pdu, () => this.onMo!(mo), `mo from ${from}`);
  }

  private readonly moParts = new Map<string, { total: number; got: Map<number, string> }>();

  private ackAfter(session: Session, pdu: PDU, receipt: DeliveryReceipt): void {
    this.ackWhenStored(session, pdu, async () => {
      await this.answers.settled();
      return this.onReceipt(receipt);
    }, receipt.providerMessageId);
  }

  private ackWhenStored(session: Session, pdu: PDU, store: () => unknown, what: string): void {
    let answered = false;
    const answer = (status: number) => {
      if (answered) return;
      answered = true;
      clearTimeout(timer);
      try {
        session.send(pdu.response({ command_status: status }));
      } catch {
        // session gone: the SMSC keeps the unacknowledged receipt for the next bind
      }
    };
    const timer = setTimeout(() => answer(ESME_RX_T_APPN), this.cfg.receiptAckTimeoutMs);
    Promise.resolve()
      .then(store)
      .then(() => answer(ESME_ROK), (err: unknown) => {
        log.warn({ err: String(err), what }, 'deliver_sm not stored; the SMSC will resend it');
        answer(ESME_RX_T_APPN);
      });
  }

  /**
   * Extended source number (扩展码): service number + send id. The receipt comes back addressed to
   * it, so a receipt identifies its send even if we died before reading submit_sm_resp.
   */
  private sourceFor(ref: number | undefined): string {
    const ext = ref === undefined ? '' : String(ref);
    return this.cfg.sourceAddr.length + ext.length <= 20 ? this.cfg.sourceAddr + ext : this.cfg.sourceAddr;
  }

  private refFrom(destination: unknown): number | undefined {
    if (typeof destination !== 'string' || !destination.startsWith(this.cfg.sourceAddr)) return undefined;
    const ext = destination.slice(this.cfg.sourceAddr.length);
    return /^\d{1,12}$/.test(ext) ? Number(ext) : undefined;
  }

  private async acquire(): Promise<boolean> {
    if (this.inFlight < this.cfg.window) {
      this.inFlight++;
      return true;
    }
    if (this.waiters.length >= this.cfg.maxWaiting) return false;
    await new Promise<void>((r) => this.waiters.push(r));
    this.inFlight++;
    return true;
  }

  private release(): void {
    this.inFlight--;
    this.waiters.shift()?.();
  }

  /**
   * One submit_sm. No answer within the timeout, or the link dropping while waiting, leaves the part
   * uncertain; a response arriving after the timeout is still reported through `late`.
   */
  private submit(options: Record<string, unknown>, late?: (pdu: PDU) => void): Promise<PDU> {
    return new Promise<PDU>((resolve, reject) => {
      const session = this.session;
      if (!session) return reject(new SubmitError('not connected', false));
      let waiting = true;
      const finish = () => {
        waiting = false;
        clearTimeout(timer);
        session.off('close', onClose);
      };
      const onClose = () => {
        if (!waiting) return;
        finish();
        reject(new SubmitError('connection lost before submit_sm_resp', true));
      };
      const timer = setTimeout(() => {
        finish();
        reject(new SubmitError('submit_sm_resp timeout', true));
      }, this.cfg.responseTimeoutMs);
      session.on('close', onClose);
      const ok = session.submit_sm(options, (pdu: PDU) => {
        if (waiting) {
          finish();
          resolve(pdu);
        } else {
          late?.(pdu);
        }
      });
      if (!ok) {
        finish();
        reject(new SubmitError('socket not writable', false));
      }
    });
  }

  /**
   * Sends the parts not yet accepted, in order, one outstanding at a time. With a tracker, each part's
   * progress is recorded before and after its submit, so an attempt cut short (no answer, lost link,
   * crash) is resumed by the next one at the first unacknowledged part, in the same concatenated message.
   */
  async send(address: string, body: string, ref?: number, tracker?: SendTracker): Promise<ChannelResult> {
    if (this.closed) return { ok: false, retryable: true, unavailable: true, reason: 'channel closed' };
    if (!(await this.acquire())) return { ok: false, retryable: true, unavailable: true, reason: 'sms queue full' };
    try {
      try {
        await this.connect();
      } catch (err) {
        return { ok: false, retryable: true, unavailable: true, reason: `smpp: ${(err as Error).message}` };
      }
      const dest = destinationFor(this.cfg, address);
      const src = this.sourceFor(ref);
      const srcNum = sourceNumbering(this.cfg, src);
      const { parts, done } = await partsToSend(body, tracker, () => (this.ref = (this.ref + 1) & 0xff));
      const ids: Array<{ providerMessageId: string | null }> = [];
      for (const [i, part] of parts.entries()) {
        const partNo = i + 1;
        if (done.has(partNo)) continue;
        await tracker?.submitting(partNo);
        let attempt = 0;
        for (;;) {
          let resp: PDU;
          try {
            resp = await this.submit({
              source_addr_ton: srcNum.ton,
              source_addr_npi: srcNum.npi,
              source_addr: src,
              dest_addr_ton: dest.ton,
              dest_addr_npi: dest.npi,
              destination_addr: dest.addr,
              esm_class: part.udh ? 0x40 : 0x00,
              data_coding: 0x08,
              registered_delivery: 0x01,
              short_message: part.udh ? Buffer.concat([part.udh, part.payload]) : part.payload,
            }, (lateResp) => {
              if (lateResp.command_status !== ESME_ROK || !tracker) return;
              const id = typeof lateResp.message_id === 'string' ? lateResp.message_id : null;
              this.answers.track(tracker.accepted(partNo, id)).catch((err: unknown) => log.warn({ err: String(err), partNo }, 'late submit_sm_resp not recorded'));
            });
          } catch (err) {
            const uncertain = err instanceof SubmitError && err.uncertain;
            if (!uncertain) await tracker?.refused(partNo);
            const reason = `smpp: ${(err as Error).message} at part ${partNo}/${parts.length}`;
            return { ok: false, retryable: true, uncertain, unavailable: !uncertain, reason };
          }
          if (resp.command_status === ESME_ROK) {
            const id = typeof resp.message_id === 'string' ? resp.message_id : null;
            if (tracker) await this.answers.track(tracker.accepted(partNo, id));
            ids.push({ providerMessageId: id });
            break;
          }
          const status = resp.command_status;
          if (retryableStatus.has(status) && attempt < this.cfg.throttleRetries) {
            attempt++;
            await sleep(this.cfg.throttleBackoffMs * 2 ** (attempt - 1));
            continue;
          }
          await tracker?.refused(partNo);
          const reason = `submit_sm status 0x${status.toString(16).padStart(4, '0')} at part ${partNo}/${parts.length}`;
          // Without a tracker a retry would repeat the parts already accepted.
          return { ok: false, retryable: retryableStatus.has(status) && (tracker !== undefined || ids.length === 0), reason };
        }
      }
      return { ok: true, parts: ids, total: parts.length };
    } catch (err) {
      // Recording a part's progress failed (database): the part may be at the SMSC unrecorded, so a
      // retry waits for its receipt like after a missing answer.
      return { ok: false, retryable: true, uncertain: true, reason: `smpp: ${(err as Error).message}` };
    } finally {
      this.release();
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.enquireTimer) clearInterval(this.enquireTimer);
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    const s = this.session;
    this.session = null;
    if (!s) return;
    await new Promise<void>((resolve) => {
      const t = setTimeout(() => {
        s.destroy();
        resolve();
      }, 1000);
      try {
        s.unbind(() => {
          clearTimeout(t);
          s.destroy(() => resolve());
        });
      } catch {
        clearTimeout(t);
        s.destroy();
        resolve();
      }
    });
  }
}
