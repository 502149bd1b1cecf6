import { EventEmitter } from 'node:events';
import iconv from 'iconv-lite';
import { SerialPort, ReadlineParser } from 'serialport';
import { z } from 'zod';
import { createLogger } from '../../infra/logger.ts';
import { frame, parseSentence, type Sentence } from './nmea.ts';
import type { Channel, ChannelResult, SendTracker } from './types.ts';

const log = createLogger('scheduler.beidou');

/**
 * Message capacity per communication level, in bits. Assumption (no protocol text at hand):
 * BD-2 RDSS civil cards, level 1: 628 bits (78.5 bytes), 2: 784 (98), 3: 1040 (130), 4: 1680 (210).
 * Configurable, since providers publish different figures per card type.
 */
export const defaultCapacityBits: Record<number, number> = { 1: 628, 2: 784, 3: 1040, 4: 1680 };

export const BeidouConfig = z.object({
  path: z.string().min(1),
  baudRate: z.number().int().default(115200),
  feedbackTimeoutMs: z.number().int().min(50).default(5000),
  icTimeoutMs: z.number().int().min(50).default(3000),
  /** Messages waiting for the terminal; beyond this, sends are refused and retried later by the queue. */
  outboxMax: z.number().int().min(1).max(10_000).default(200),
  maxAttempts: z.number().int().min(1).max(50).default(5),
  suppressedBackoffMs: z.number().int().min(10).default(30_000),
  capacityBits: z.record(z.string(), z.number().int().positive()).default({ '1': 628, '2': 784, '3': 1040, '4': 1680 }),
});
export type BeidouConfig = z.input<typeof BeidouConfig>;

export interface CardInfo {
  card: string;
  broadcastId: string;
  /** Service frequency: minimum seconds between two transmissions. */
  intervalS: number;
  level: number;
  /** Usable message bytes per frame in mixed mode (one byte goes to the 0xA4 mode flag). */
  capacityBytes: number;
}

/** Parses $BDICI: user address, serial, broadcast id, user feature, service frequency, level, encryption, subordinates. */
export function parseBdici(s: Sentence, capacityBits: Record<string, number>): Omit<CardInfo, 'capacityBytes'> & { capacityBits: number } {
  const [card, , broadcastId, , freq, level] = s.fields;
  const intervalS = Number(freq);
  const lvl = Number(level);
  if (!card || !/^\d{6,7}$/.test(card) || !Number.isFinite(intervalS) || !Number.isInteger(lvl)) {
    throw new Error(`malformed $BDICI: ${s.fields.join(',')}`);
  }
  const bits = capacityBits[String(lvl)];
  if (!bits) throw new Error(`unknown communication level ${lvl}`);
  return { card, broadcastId: broadcastId ?? '', intervalS, level: lvl, capacityBits: bits };
}

/**
 * Splits text into frames of at most `capacity` GB2312 bytes, on character boundaries, numbering
 * them "(i/n)" when there is more than one. Never cuts a message silently.
 */
export function splitForCapacity(text: string, capacity: number): Buffer[] {
  const whole = iconv.encode(text, 'gb2312');
  if (whole.length <= capacity) return [whole];
  const reserve = 7; // "(10/12)"
  if (capacity <= reserve + 2) throw new Error(`card capacity ${capacity} bytes too small to split`);
  const pieces: string[] = [];
  let cur = '';
  let curLen = 0;
  for (const ch of text) {
    const n = iconv.encode(ch, 'gb2312').length;
    if (curLen + n > capacity - reserve) {
      pieces.push(cur);
      cur = '';
      curLen = 0;
    }
    cur += ch;
    curLen += n;
  }
  if (cur) pieces.push(cur);
  return pieces.map((p, i) => iconv.encode(`(${i + 1}/${pieces.length})${p}`, 'gb2312'));
}

interface OutboxItem {
  card: string;
  frames: Buffer[];
  tracker: SendTracker | undefined;
  resolve: (r: ChannelResult) => void;
}

type Feedback = { ok: true } | { ok: false; kind: 'interval' | 'suppressed' | 'refused'; waitS: number; detail: string; timedOut?: boolean };

/**
 * Beidou RDSS user terminal on a serial port (protocol 2.1/4.0 sentences): $CCICA to read the card,
 * $CCTXA to send in mixed mode (0xA4 + GB2312), $BDFKI feedback. Sends are paced by the card's
 * service frequency and one outstanding $CCTXA at a time; the outbox is bounded.
 */
export class BeidouTerminal extends EventEmitter implements Channel {
  readonly name = 'beidou' as const;
  private readonly cfg: z.infer<typeof BeidouConfig>;
  private port: SerialPort | null = null;
  private cardInfo: CardInfo | null = null;
  private readonly outbox: OutboxItem[] = [];
  private pumping = false;
  private nextTxAt = 0;
  private waiting: { id: string; resolve: (s: Sentence | null) => void } | null = null;
  private closed = false;
  badLines = 0;
  readonly txLog: Array<{ at: number; card: string; bytes: number }> = [];

  constructor(config: BeidouConfig) {
    super();
    this.cfg = BeidouConfig.parse(config);
  }

  get card(): CardInfo | null {
    return this.cardInfo;
  }

  async open(): Promise<CardInfo> {
    const port = new SerialPort({ path: this.cfg.path, baudRate: this.cfg.baudRate, autoOpen: false });
    await new Promise<void>((resolve, reject) => port.open((err) => (err ? reject(err) : resolve())));
    this.port = port;
    port.on('error', (err) => log.warn({ err: err.message }, 'serial error'));
    const parser = port.pipe(new ReadlineParser({ delimiter: '\r\n', encoding: 'latin1' }));
    parser.on('data', (line: string) => this.onLine(line));
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.queryCard();
      } catch (err) {
        if (attempt >= 3) throw err;
      }
    }
  }

  private onLine(line: string): void {
    const s = parseSentence(line);
    if (!s) {
      if (line.trim()) this.badLines++;
      return; // garbled or foreign line: ignore, never crash
    }
    if (this.waiting && s.id === this.waiting.id && (s.id !== 'BDFKI' || s.fields[0] === 'TXA')) {
      const w = this.waiting;
      this.waiting = null;
      w.resolve(s);
      return;
    }
    if (s.id === 'BDTXR') this.emit('message', { from: s.fields[1] ?? '', fields: s.fields });
  }

  private request(body: string, replyId: string, timeoutMs: number): Promise<Sentence | null> {
    const port = this.port;
    if (!port) return Promise.resolve(null);
    return new Promise<Sentence | null>((resolve) => {
      const timer = setTimeout(() => {
        if (this.waiting?.resolve === done) this.waiting = null;
        resolve(null);
      }, timeoutMs);
      const done = (s: Sentence | null) => {
        clearTimeout(timer);
        resolve(s);
      };
      this.waiting = { id: replyId, resolve: done };
      port.write(frame(body), 'latin1');
    });
  }

  private async queryCard(): Promise<CardInfo> {
    const s = await this.request('CCICA,0,00', 'BDICI', this.cfg.icTimeoutMs);
    if (!s) throw new Error('no $BDICI answer from the terminal');
    const p = parseBdici(s, this.cfg.capacityBits);
    this.cardInfo = { card: p.card, broadcastId: p.broadcastId, intervalS: p.intervalS, level: p.level, capacityBytes: Math.floor(p.capacityBits / 8) - 1 };
    log.info(this.cardInfo, 'beidou card');
    return this.cardInfo;
  }

  send(address: string, body: string, _ref?: number, tracker?: SendTracker): Promise<ChannelResult> {
    const info = this.cardInfo;
    if (this.closed || !info) return Promise.resolve({ ok: false, retryable: true, unavailable: true, reason: 'beidou terminal not ready' });
    if (!/^\d{6,7}$/.test(address)) return Promise.resolve({ ok: false, retryable: false, reason: `invalid card number ${address}` });
    if (this.outbox.length >= this.cfg.outboxMax) return Promise.resolve({ ok: false, retryable: true, unavailable: true, reason: 'beidou outbox full' });
    let frames: Buffer[];
    try {
      frames = splitForCapacity(body, info.capacityBytes);
    } catch (err) {
      return Promise.resolve({ ok: false, retryable: false, reason: String(err) });
    }
    return new Promise<ChannelResult>((resolve) => {
      this.outbox.push({ card: address.padStart(7, '0'), frames, tracker, resolve });
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
    const parts: Array<{ providerMessageId: string | null }> = [];
    const tracker = item.tracker;
    // Frames a previous attempt got out are not sent again (the recipient would see "(1/3)" twice).
    const done = tracker ? await tracker.begin(item.frames.length, null) : new Set<number>();
    for (const [i, f] of item.frames.entries()) {
      if (done.has(i + 1)) continue;
      await tracker?.submitting(i + 1);
      let attempts = 0;
      for (;;) {
        const wait = this.nextTxAt - Date.now();
        if (wait > 0) await new Promise((r) => setTimeout(r, wait));
        if (this.closed) {
          await tracker?.refused(i + 1);
          return { ok: false, retryable: tracker !== undefined || parts.length === 0, reason: 'terminal closed' };
        }
        const fb = await this.sendFrame(item.card, f);
        const intervalMs = (this.cardInfo?.intervalS ?? 60) * 1000;
        if (fb.ok) {
          this.nextTxAt = Date.now() + intervalMs;
          this.txLog.push({ at: Date.now(), card: item.card, bytes: f.length });
          await tracker?.accepted(i + 1, null);
          parts.push({ providerMessageId: null });
          break;
        }
        attempts++;
        // "Interval not elapsed" is the terminal pacing us: wait as told, not an error of the message.
        if (fb.kind === 'interval' && attempts <= this.cfg.maxAttempts * 4) {
          this.nextTxAt = Date.now() + Math.max(fb.waitS * 1000, 200);
          continue;
        }
        if (fb.kind === 'suppressed' && attempts < this.cfg.maxAttempts) {
          this.nextTxAt = Date.now() + this.cfg.suppressedBackoffMs;
          continue;
        }
        const sentSome = i > 0;
        // A frame that timed out may have gone out (no receipts on Beidou): it stays unconfirmed and is
        // sent again on resume; a frame the terminal answered is known not sent.
        if (!fb.timedOut) await tracker?.refused(i + 1);
        return {
          ok: false,
          // Without a tracker a retry would repeat the frames already out; with one it resumes after them.
          retryable: fb.kind !== 'refused' && (tracker !== undefined || !sentSome),
          reason: `beidou ${fb.detail}${sentSome ? ` after ${i} of ${item.frames.length} frames` : ''}`,
        };
      }
    }
    return { ok: true, parts };
  }

  private async sendFrame(card: string, payload: Buffer): Promise<Feedback> {
    // Transmission mode 2 (mixed): the content starts with the 0xA4 flag, then GB2312 bytes as hex.
    const body = `CCTXA,${card},1,2,A4${payload.toString('hex').toUpperCase()}`;
    const s = await this.request(body, 'BDFKI', this.cfg.feedbackTimeoutMs);
    if (!s) return { ok: false, kind: 'suppressed', waitS: 0, detail: 'no $BDFKI feedback (timeout)', timedOut: true };
    // $BDFKI,TXA,<executed Y/N>,<frequency ok Y/N>,<suppression 0..3>,<wait mmss>
    const [, exec, freqOk, suppress, waitField] = s.fields;
    if (exec === 'Y') return { ok: true };
    const w = waitField && /^\d{4}$/.test(waitField) ? Number(waitField.slice(0, 2)) * 60 + Number(waitField.slice(2)) : 0;
    if (freqOk === 'N') return { ok: false, kind: 'interval', waitS: w, detail: 'interval not elapsed' };
    const code = Number(suppress ?? '0');
    if (code !== 0) {
      const why = code === 1 ? 'transmit suppressed (no signal / beam)' : code === 2 ? 'radio silence' : 'transmitter power not locked';
      return { ok: false, kind: 'suppressed', waitS: w, detail: why };
    }
    return { ok: false, kind: 'refused', waitS: 0, detail: 'terminal refused the message (card error or no permission)' };
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const item of this.outbox.splice(0)) item.resolve({ ok: false, retryable: true, unavailable: true, reason: 'terminal closed' });
    const port = this.port;
    this.port = null;
    if (port?.isOpen) await new Promise<void>((r) => port.close(() => r()));
  }
}
