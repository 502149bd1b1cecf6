import iconv from 'iconv-lite';
import { SerialPort, ReadlineParser } from 'serialport';
import { frame, parseSentence } from '../../scheduler/channels/nmea.ts';
import { waitForCondition } from './condition.ts';

// A simulated Beidou RDSS user terminal on the far end of a pty pair. It answers like a real one:
// $CCICA -> $BDICI with the card's number, service frequency and level; $CCTXA -> $BDFKI, refusing
// with "frequency not elapsed" (and the seconds left) when sent to faster than the card allows,
// refusing frames over the card's capacity, and optionally suppressing transmissions (no signal).

export interface SimOptions {
  card?: string;
  intervalS: number;
  level: number;
  capacityBits?: Record<number, number>;
  /** Answer the next N $CCTXA with "transmit suppressed". */
  suppressNext?: number;
}

export interface SimMessage {
  to: string;
  at: number;
  bytes: number;
  text: string;
}

export class BeidouTerminalSim {
  private port: SerialPort | null = null;
  private lastTx = 0;
  readonly accepted: SimMessage[] = [];
  readonly refusedInterval: number[] = [];
  readonly refusedTooLong: number[] = [];
  readonly received: string[] = [];
  private readonly listeners = new Set<() => void>();

  constructor(private readonly path: string, private readonly opts: SimOptions) {}

  async open(): Promise<void> {
    const port = new SerialPort({ path: this.path, baudRate: 115200, autoOpen: false });
    await new Promise<void>((res, rej) => port.open((e) => (e ? rej(e) : res())));
    this.port = port;
    port.pipe(new ReadlineParser({ delimiter: '\r\n', encoding: 'latin1' })).on('data', (l: string) => this.onLine(l));
  }

  /** Writes raw bytes, e.g. a garbled line, to test the driver's robustness. */
  writeRaw(s: string): void {
    this.port?.write(s, 'latin1');
  }

  private reply(body: string): void {
    this.port?.write(frame(body), 'latin1');
  }

  private capacityBytes(): number {
    const bits = (this.opts.capacityBits ?? { 1: 628, 2: 784, 3: 1040, 4: 1680 })[this.opts.level] ?? 628;
    return Math.floor(bits / 8);
  }

  private onLine(line: string): void {
    this.received.push(line);
    const s = parseSentence(line);
    if (!s) return; // a real terminal ignores sentences with bad checksums
    if (s.id === 'CCICA') {
      this.reply(`BDICI,${this.opts.card ?? '0242407'},00000000,2097151,0,${this.opts.intervalS},${this.opts.level},N,0`);
    } else if (s.id === 'CCTXA') {
      const [to, , mode, content] = s.fields;
      const now = Date.now();
      const left = this.lastTx + this.opts.intervalS * 1000 - now;
      if (this.lastTx && left > 0) {
        const secs = Math.ceil(left / 1000);
        this.refusedInterval.push(now);
        this.reply(`BDFKI,TXA,N,N,0,${String(Math.floor(secs / 60)).padStart(2, '0')}${String(secs % 60).padStart(2, '0')}`);
        this.notify();
        return;
      }
      if ((this.opts.suppressNext ?? 0) > 0) {
        this.opts.suppressNext!--;
        this.reply('BDFKI,TXA,N,Y,1,0000');
        this.notify();
        return;
      }
      const bytes = Buffer.from(content ?? '', 'hex');
      if (bytes.length > this.capacityBytes() || mode !== '2' || bytes[0] !== 0xa4) {
        this.refusedTooLong.push(bytes.length);
        this.reply('BDFKI,TXA,N,Y,0,0000');
        this.notify();
        return;
      }
      this.lastTx = now;
      this.accepted.push({ to: to ?? '', at: now, bytes: bytes.length, text: iconv.decode(bytes.subarray(1), 'gb2312') });
      this.reply('BDFKI,TXA,Y,Y,0,0000');
      this.notify();
    }
  }

  private notify(): void {
    for (const l of this.listeners) l();
  }

  waitFor(pred: () => boolean, timeoutMs: number, what: string): Promise<void> {
    return waitForCondition(this.listeners, pred, timeoutMs, () => `Beidou sim: timed out waiting for ${what}`);
  }


  async close(): Promise<void> {
    const p = this.port;
    this.port = null;
    if (p?.isOpen) await new Promise<void>((r) => p.close(() => r()));
  }
}
