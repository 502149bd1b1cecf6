import { createHash } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { SerialPort } from 'serialport';
import { z } from 'zod';
import { createLogger } from '../../infra/logger.ts';
import { capacityBitsFor, payloadBytesFor } from './beidou/capacity.ts';
import { Codec21 } from './beidou/Codec21.ts';
import { Codec40 } from './beidou/Codec40.ts';
import { CodecBd3 } from './beidou/CodecBd3.ts';
import { compose, mixedPayload } from './beidou/compose.ts';
import { FrameReader } from './beidou/FrameReader.ts';
import { normaliseCard, type BeidouCodec, type BeidouProtocol, type CardReport, type Feedback, type Inbound } from './beidou/types.ts';
import type { Channel, ChannelResult, DeliveryReceipt, SendTracker } from './types.ts';

export { splitForCapacity } from './beidou/compose.ts';

const log = createLogger('scheduler.beidou');

export const BeidouConfig = z.object({
  path: z.string().min(1),
  baudRate: z.number().int().default(115200),
  /** 'auto' asks in all three dialects at open and takes the one that answers (BD-3 first, then 2.1, then 4.0). */
  protocol: z.enum(['auto', '2.1', '4.0', 'bd3']).default('auto'),
  /** How long to wait for the card's feedback before the frame is "uncertain" (never resent blind). */
  feedbackTimeoutMs: z.number().int().min(50).default(10_000),
  icTimeoutMs: z.number().int().min(50).default(3000),
  /** After the first card answer, how long other dialects may still answer (a BD-3 terminal may speak 2.1 too). */
  detectGraceMs: z.number().int().min(0).default(300),
  /** Messages waiting for the terminal; beyond this, sends are refused and retried later by the queue. */
  outboxMax: z.number().int().min(1).max(10_000).default(200),
  maxAttempts: z.number().int().min(1).max(50).default(5),
  suppressedBackoffMs: z.number().int().min(10).default(30_000),
  /** Overrides of the capacity table, keyed 'N1'..'N4' (plain) and 'E1'..'E4' (encrypted), in bits. */
  capacityBits: z.record(z.string().regex(/^[NE][0-9]$/), z.number().int().min(24).max(8000)).default({}),
  /** A long form that does not fit one frame: send the short form ('short') or numbered frames ('split'). */
  tooLong: z.enum(['short', 'split']).default('short'),
  /** Ask for receipts where the protocol has them (2.1 $BDHZR, BD-3 confirm flag). */
  receipts: z.boolean().default(true),
});
export type BeidouConfig = z.input<typeof BeidouConfig>;

export interface CardInfo {
  protocol: BeidouProtocol;
  card: string;
  broadcastId: string;
  /** Service frequency: minimum seconds between two transmissions. */
  intervalS: number;
  level: number;
  encrypted: boolean;
  capacityBits: number;
  /** Usable text bytes per frame in mixed mode (one byte goes to the 0xA4 mode flag). */
  capacityBytes: number;
}

export interface IncomingMessage {
  from: string;
  text: string;
  receivedAt: Date;
}

export interface BeidouHooks {
  /** A message received by the terminal ($BDTXR, $TXXX, $BDTCI); e.g. a secretary's reply. */
  onMessage?: (m: IncomingMessage) => Promise<unknown> | unknown;
  onReceipt?: (r: DeliveryReceipt) => Promise<unknown> | unknown;
}

interface OutboxItem {
  card: string;
  body: string;
  tracker: SendTracker | undefined;
  resolve: (r: ChannelResult) => void;
}

const codecs: Record<BeidouProtocol, BeidouCodec> = { '2.1': new Codec21(), '4.0': new Codec40(), bd3: new CodecBd3() };
const preference: BeidouProtocol[] = ['bd3', '2.1', '4.0'];

/**
 * Beidou RDSS user terminal on a serial port, speaking RDSS 2.1, 4.0 (binary) or BD-3, detected at open
 * with the card (level, encryption flag, interval). Sends are paced by the card's interval, one
 * outstanding at a time, bounded outbox. A frame without feedback is never sent again blind.
 */
export class BeidouTerminal extends EventEmitter implements Channel {
  readonly name = 'beidou' as const;
  private readonly cfg: z.infer<typeof BeidouConfig>;
  private port: SerialPort | null = null;
  private codec: BeidouCodec | null = null;
  private cardInfo: CardInfo | null = null;
  private readonly reader = new FrameReader();
  private readonly outbox: OutboxItem[] = [];
  private pumping = false;
  private nextTxAt = 0;
  private feedbackWaiter: ((fb: Feedback) => void) | null = null;
  private cardAnswers: Array<{ protocol: BeidouProtocol; card: CardReport }> = [];
  private cardListener: (() => void) | null = null;
  /** Frames sent without feedback: never transmitted again by this terminal (key: card + payload hash). */
  private readonly uncertain = new Map<string, number>();
  /** Receipts expected per recipient card, oldest first (a receipt names the card, not the message). */
  private readonly awaitingReceipt = new Map<string, string[]>();
  private readonly inbox: IncomingMessage[] = [];
  private inboxBusy = false;
  private seq = 0;
  private closed = false;
  readonly txLog: Array<{ at: number; card: string; bytes: number }> = [];

  constructor(config: BeidouConfig, private readonly hooks: BeidouHooks = {}) {
    super();
    this.cfg = BeidouConfig.parse(config);
  }

  get card(): CardInfo | null {
    return this.cardInfo;
  }

  get badLines(): number {
    return this.reader.badFrames;
  }

  async open(): Promise<CardInfo> {
    const port = new SerialPort({ path: this.cfg.path, baudRate: this.cfg.baudRate, autoOpen: false });
    await new Promise<void>((resolve, reject) => port.open((err) => (err ? reject(err) : resolve())));
    this.port = port;
    port.on('error', (err) => log.warn({ err: err.message }, 'serial error'));
    port.on('data', (chunk: Buffer) => {
      for (const f of this.reader.push(chunk)) this.onFrame(f);
    });
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.detect();
      } catch (err) {
        if (attempt >= 3) throw err;
      }
    }
  }

  private onFrame(f: Parameters<BeidouCodec['decode']>[0]): void {
    const candidates = this.codec ? [this.codec] : Object.values(codecs);
    for (const c of candidates) {
      let m: Inbound | null = null;
      try {
        m = c.decode(f);
      } catch {
        m = null; // a malformed frame from one client never stops the driver
      }
      if (!m) continue;
      this.onInbound(c.protocol, m);
      return;
    }
  }

  private onInbound(protocol: BeidouProtocol, m: Inbound): void {
    if (m.kind === 'card') {
      this.cardAnswers.push({ protocol, card: m.card });
      this.cardListener?.();
    } else if (m.kind === 'feedback') {
      const w = this.feedbackWaiter;
      this.feedbackWaiter = null;
      if (w) w(m.feedback);
      else log.warn({ feedback: m.feedback }, 'feedback with nothing outstanding');
    } else if (m.kind === 'message') {
      if (this.inbox.length >= 1000) return void log.warn({ from: m.from }, 'beidou inbox full; message dropped');
      this.inbox.push({ from: m.from, text: m.text, receivedAt: new Date() });
      void this.drainInbox();
    } else if (m.kind === 'receipt') {
      const key = normaliseCard(m.card);
      const ids = this.awaitingReceipt.get(key);
      const id = ids?.shift();
      if (!id) return;
      const r: DeliveryReceipt = { providerMessageId: id, delivered: true, outcome: 'delivered', stat: 'DELIVRD', err: '000', recipient: m.card };
      this.emit('receipt', r);
      Promise.resolve(this.hooks.onReceipt?.(r)).catch((err: unknown) => log.error({ err: String(err) }, 'receipt not recorded'));
    }
  }

  private async drainInbox(): Promise<void> {
    if (this.inboxBusy) return;
    this.inboxBusy = true;
    try {
      for (let m = this.inbox.shift(); m; m = this.inbox.shift()) {
        this.emit('message', m);
        await Promise.resolve(this.hooks.onMessage?.(m)).catch((err: unknown) => log.error({ err: String(err), from: m!.from }, 'incoming Beidou message not recorded'));
      }
    } finally {
      this.inboxBusy = false;
    }
  }

  private write(b: Buffer): void {
    this.port?.write(b);
  }

  /** Asks for the card in every dialect (or the configured one); the dialect that answers is the terminal's. */
  private async detect(): Promise<CardInfo> {
    this.cardAnswers = [];
    const asked = this.cfg.protocol === 'auto' ? preference : [this.cfg.protocol];
    await new Promise<void>((resolve, reject) => {
      let grace: NodeJS.Timeout | null = null;
      const timer = setTimeout(() => {
        this.cardListener = null;
        reject(new Error('no card answer from the Beidou terminal ($BDICI / $BDICP / $ICXX)'));
      }, this.cfg.icTimeoutMs);
      this.cardListener = () => {
        if (grace) return;
        clearTimeout(timer);
        grace = setTimeout(() => {
          this.cardListener = null;
          resolve();
        }, asked.length > 1 ? this.cfg.detectGraceMs : 0);
      };
      for (const p of asked) this.write(codecs[p].cardQuery());
    });
    const chosen = preference.map((p) => this.cardAnswers.find((a) => a.protocol === p)).find((a) => a !== undefined)!;
    const c = chosen.card;
    const bits = capacityBitsFor(c.level, c.encrypted, this.cfg.capacityBits);
    this.codec = codecs[chosen.protocol];
    this.cardInfo = {
      protocol: chosen.protocol, card: c.card, broadcastId: c.broadcastId, intervalS: c.intervalS, level: c.level,
      encrypted: c.encrypted, capacityBits: bits, capacityBytes: payloadBytesFor(bits),
    };
    log.info(this.cardInfo, 'beidou terminal detected');
    return this.cardInfo;
  }

  send(address: string, body: string, _ref?: number, tracker?: SendTracker): Promise<ChannelResult> {
    const info = this.cardInfo;
    if (this.closed || !info) return Promise.resolve({ ok: false, retryable: true, unavailable: true, reason: 'beidou terminal not ready' });
    if (!/^\d{6,8}$/.test(address) || Number(address) > 0xffffff) return Promise.resolve({ ok: false, retryable: false, reason: `invalid card number ${address}` });
    if (this.outbox.length >= this.cfg.outboxMax) return Promise.resolve({ ok: false, retryable: true, unavailable: true, reason: 'beidou outbox full' });
    return new Promise<ChannelResult>((resolve) => {
      this.outbox.push({ card: address, body, tracker, resolve });
      void this.pump();
    });
  }

  private async pump(): Promise<void> {
    if (this.pumping) return;
    this.pumping = true;
    try {
      while (this.outbox.length > 0 && !this.closed) {
        const item = this.outbox[0]!;
        // Recording progress can fail (database): the send is retried later, the terminal goes on.
        item.resolve(await this.transmit(item).catch((err: unknown) => ({ ok: false as const, retryable: true, reason: `beidou: ${String(err)}` })));
        this.outbox.shift();
      }
    } finally {
      this.pumping = false;
    }
  }

  private async transmit(item: OutboxItem): Promise<ChannelResult> {
    const info = this.cardInfo!;
    const codec = this.codec!;
    const composed = compose(item.body, info.capacityBytes, this.cfg.tooLong);
    if (!composed.ok) return { ok: false, retryable: false, reason: composed.reason };
    const frames = composed.frames.map(mixedPayload);
    const parts: Array<{ providerMessageId: string | null }> = [];
    const tracker = item.tracker;
    const wantReceipt = this.cfg.receipts && codec.protocol !== '4.0';
    // Frames a previous attempt got out are not sent again (the recipient would see "(1/3)" twice).
    const done = tracker ? await tracker.begin(frames.length, null) : new Set<number>();
    for (const [i, f] of frames.entries()) {
      if (done.has(i + 1)) continue;
      const key = `${normaliseCard(item.card)}:${createHash('sha256').update(f).digest('hex')}`;
      if (this.uncertain.has(key)) {
        return { ok: false, retryable: false, uncertain: true, reason: `beidou: frame ${i + 1}/${frames.length} went out earlier without feedback; not transmitted again` };
      }
      await tracker?.submitting(i + 1);
      let attempts = 0;
      for (;;) {
        const wait = this.nextTxAt - Date.now();
        if (wait > 0) await new Promise((r) => setTimeout(r, wait));
        if (this.closed) {
          await tracker?.refused(i + 1);
          return { ok: false, retryable: tracker !== undefined || parts.length === 0, reason: 'terminal closed' };
        }
        const fb = await this.sendFrame(codec.send(info.card, item.card, f, wantReceipt));
        const intervalMs = info.intervalS * 1000;
        if (fb === null) {
          // No feedback: the terminal may have transmitted. Resending could deliver it twice and cost
          // another interval; the part stays "unconfirmed" and the dispatcher decides (e.g. SMS).
          this.nextTxAt = Date.now() + intervalMs;
          this.rememberUncertain(key);
          return {
            ok: false, retryable: false, uncertain: true,
            reason: `beidou: no feedback for frame ${i + 1}/${frames.length} within ${this.cfg.feedbackTimeoutMs} ms; it may have been transmitted (uncertain), not resent`,
          };
        }
        if (fb.kind === 'ok') {
          this.nextTxAt = Date.now() + intervalMs;
          this.txLog.push({ at: Date.now(), card: item.card, bytes: f.length });
          const id = wantReceipt ? `bd:${info.card}:${Date.now().toString(36)}:${++this.seq}` : null;
          if (id) this.expectReceipt(item.card, id);
          await tracker?.accepted(i + 1, id);
          parts.push({ providerMessageId: id });
          break;
        }
        attempts++;
        // "Interval not elapsed" is the terminal pacing us: wait as told, not an error of the message.
        if (fb.kind === 'interval' && attempts <= this.cfg.maxAttempts * 4) {
          this.nextTxAt = Date.now() + Math.max(fb.waitS * 1000, 200);
          continue;
        }
        if (fb.kind === 'suppressed' && attempts < this.cfg.maxAttempts) {
          this.nextTxAt = Date.now() + Math.max(this.cfg.suppressedBackoffMs, fb.waitS * 1000);
          continue;
        }
        const sentSome = i > 0;
        await tracker?.refused(i + 1);
        return {
          ok: false,
          // Without a tracker a retry would repeat the frames already out; with one it resumes after them.
          retryable: fb.kind !== 'refused' && (tracker !== undefined || !sentSome),
          reason: `beidou ${fb.detail}${sentSome ? ` after ${i} of ${frames.length} frames` : ''}`,
        };
      }
    }
    return { ok: true, parts };
  }

  private rememberUncertain(key: string): void {
    const now = Date.now();
    for (const [k, at] of this.uncertain) if (now - at > 7 * 86_400_000 || this.uncertain.size > 10_000) this.uncertain.delete(k);
    this.uncertain.set(key, now);
  }

  private expectReceipt(card: string, id: string): void {
    const key = normaliseCard(card);
    const ids = this.awaitingReceipt.get(key) ?? [];
    ids.push(id);
    if (ids.length > 50) ids.shift();
    this.awaitingReceipt.set(key, ids);
    if (this.awaitingReceipt.size > 5000) this.awaitingReceipt.delete(this.awaitingReceipt.keys().next().value!);
  }

  /** Writes one send instruction and waits for its feedback; null when none came in time. */
  private sendFrame(bytes: Buffer): Promise<Feedback | null> {
    return new Promise<Feedback | null>((resolve) => {
      const timer = setTimeout(() => {
        if (this.feedbackWaiter === done) this.feedbackWaiter = null;
        resolve(null);
      }, this.cfg.feedbackTimeoutMs);
      const done = (fb: Feedback) => {
        clearTimeout(timer);
        resolve(fb);
      };
      this.feedbackWaiter = done;
      this.write(bytes);
    });
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const item of this.outbox.splice(0)) item.resolve({ ok: false, retryable: true, unavailable: true, reason: 'terminal closed' });
    const port = this.port;
    this.port = null;
    if (port?.isOpen) await new Promise<void>((r) => port.close(() => r()));
  }
}
