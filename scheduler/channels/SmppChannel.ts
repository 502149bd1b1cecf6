import smpp, { type PDU, type Session } from 'smpp';
import { z } from 'zod';
import { createLogger } from '../../infra/logger.ts';
import type { Channel, ChannelResult, DeliveryReceipt } from './types.ts';
import { splitUcs2 } from './smsEncoding.ts';

const log = createLogger('scheduler.smpp');

export const SmppConfig = z.object({
  host: z.string().default('127.0.0.1'),
  port: z.number().int().min(1).max(65535),
  systemId: z.string().min(1).max(16),
  password: z.string().max(9),
  sourceAddr: z.string().max(21).default('10690000'),
  /** Submits outstanding at once (SMPP window). */
  window: z.number().int().min(1).max(100).default(10),
  /** Callers waiting for the window beyond this are refused (retried later through the job queue). */
  maxWaiting: z.number().int().min(1).max(10_000).default(1000),
  /** Quick retries of one part on throttling before the send is handed back to the job queue. */
  throttleRetries: z.number().int().min(0).max(20).default(5),
  throttleBackoffMs: z.number().int().min(1).max(60_000).default(200),
  responseTimeoutMs: z.number().int().min(100).max(120_000).default(10_000),
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

const receiptRe = /id:(\S+)\s.*?stat:(\w+)(?:\s+err:(\w+))?/i;

/** Parses the text of an SMPP 3.4 Appendix B delivery receipt. */
export function parseReceipt(text: string, tlvId?: string): DeliveryReceipt | null {
  const m = receiptRe.exec(text);
  const id = tlvId ?? m?.[1];
  if (!id || !m) return null;
  const stat = m[2]!.toUpperCase();
  return { providerMessageId: id, delivered: stat === 'DELIVRD', stat, err: m[3] ?? '000' };
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** SMS over SMPP 3.4 as a transceiver: submits UCS-2 messages and receives delivery receipts. */
export class SmppChannel implements Channel {
  readonly name = 'sms' as const;
  private readonly cfg: z.infer<typeof SmppConfig>;
  private session: Session | null = null;
  private bound: Promise<void> | null = null;
  private closed = false;
  private inFlight = 0;
  private readonly waiters: Array<() => void> = [];
  private enquireTimer: NodeJS.Timeout | null = null;
  private ref = Math.floor(Math.random() * 256);

  constructor(config: SmppConfig, private readonly onReceipt: (r: DeliveryReceipt) => void) {
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
        session.send(pdu.response());
        const esm = typeof pdu.esm_class === 'number' ? pdu.esm_class : 0;
        if ((esm & 0x3c) !== 0x04) return; // a mobile-originated message, not a receipt
        const sm = pdu.short_message as { message?: unknown } | undefined;
        const text = typeof sm?.message === 'string' ? sm.message : Buffer.isBuffer(sm?.message) ? sm.message.toString('latin1') : '';
        const tlvId = typeof pdu.receipted_message_id === 'string' ? pdu.receipted_message_id : undefined;
        const receipt = parseReceipt(text, tlvId);
        const sendRef = this.refFrom(pdu.destination_addr);
        if (receipt) {
          if (sendRef !== undefined) receipt.sendRef = sendRef;
          if (typeof pdu.source_addr === 'string') receipt.recipient = pdu.source_addr;
          this.onReceipt(receipt);
        }
        else log.warn({ text }, 'unparseable delivery receipt');
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

  private submit(options: Record<string, unknown>): Promise<PDU> {
    return new Promise<PDU>((resolve, reject) => {
      const session = this.session;
      if (!session) return reject(new Error('not connected'));
      const timer = setTimeout(() => reject(new Error('submit_sm_resp timeout')), this.cfg.responseTimeoutMs);
      const ok = session.submit_sm(options, (pdu: PDU) => {
        clearTimeout(timer);
        resolve(pdu);
      });
      if (!ok) {
        clearTimeout(timer);
        reject(new Error('socket not writable'));
      }
    });
  }

  async send(address: string, body: string, ref?: number): Promise<ChannelResult> {
    if (this.closed) return { ok: false, retryable: true, reason: 'channel closed' };
    if (!(await this.acquire())) return { ok: false, retryable: true, reason: 'sms queue full' };
    try {
      await this.connect();
      this.ref = (this.ref + 1) & 0xff;
      const parts = splitUcs2(body, this.ref);
      const ids: Array<{ providerMessageId: string | null }> = [];
      for (const part of parts) {
        let attempt = 0;
        for (;;) {
          const resp = await this.submit({
            source_addr_ton: 5,
            source_addr_npi: 0,
            source_addr: this.sourceFor(ref),
            dest_addr_ton: 1,
            dest_addr_npi: 1,
            destination_addr: address,
            esm_class: part.udh ? 0x40 : 0x00,
            data_coding: 0x08,
            registered_delivery: 0x01,
            short_message: part.udh ? Buffer.concat([part.udh, part.payload]) : part.payload,
          });
          if (resp.command_status === ESME_ROK) {
            ids.push({ providerMessageId: typeof resp.message_id === 'string' ? resp.message_id : null });
            break;
          }
          const status = resp.command_status;
          if (retryableStatus.has(status) && attempt < this.cfg.throttleRetries) {
            attempt++;
            await sleep(this.cfg.throttleBackoffMs * 2 ** (attempt - 1));
            continue;
          }
          const reason = `submit_sm status 0x${status.toString(16).padStart(4, '0')}${ids.length ? ` after ${ids.length} part(s)` : ''}`;
          return { ok: false, retryable: retryableStatus.has(status) && ids.length === 0, reason };
        }
      }
      return { ok: true, parts: ids };
    } catch (err) {
      return { ok: false, retryable: true, reason: `smpp: ${(err as Error).message}` };
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
