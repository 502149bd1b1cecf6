import iconv from 'iconv-lite';
import { SerialPort } from 'serialport';
import { waitForCondition } from './condition.ts';

// Specification followed: BeiDou RDSS user-terminal interface "RDSS 2.1" (北斗 RDSS 通用数据接口协议 2.1,
// NMEA-0183-style sentences; the same sentence set as the BD-3 short-message terminals): a sentence is
// "$" + talker(CC host->terminal, BD terminal->host) + type + "," fields + "*" + two upper-case hex digits
// of the XOR of every byte between "$" and "*" + CR LF. Sentences used: $CCICA (read card) -> $BDICI
// (card, broadcast id, user features, service frequency s, communication level ...), $CCTXA (send:
// recipient, communication type, transfer mode 0 Chinese/1 code/2 mixed, content) -> $BDFKI (TXA,
// executed Y/N, frequency OK Y/N, transmit suppression 0/1, wait time mmss), $BDTXR (received message).
// The framing below is this file's own (NOT scheduler/channels/nmea.ts or BeidouTerminal.ts), checked
// against published terminal logs in tests/support/beidou-terminal-sim.vectors.test.ts:
//   $CCICA,0,00*7B   $BDFKI,TXA,Y,Y,0,0000*13   $BDFKI,TXA,N,Y,0,0000*04   $BDFKI,TXA,Y,Y,0,0040*17
//   $CCTXA,0166166,1,1,3132333433333335*7F   $BDTXR,1,0166166,1,,3132333433333335*46
//   $BDICI,0166166,02097151,0000011,6,40,3,N,000*33   $CCRMO,BSI,2,0*26
// (vendor examples reproduced in many open-source RDSS drivers; the vectors test recomputes each checksum).

/** XOR of the bytes between "$" and "*", as two upper-case hex digits. */
export function rdssChecksum(body: string): string {
  let x = 0;
  for (const b of Buffer.from(body, 'latin1')) x ^= b;
  return x.toString(16).toUpperCase().padStart(2, '0');
}

/** "$" body "*" checksum CR LF. */
export function rdssSentence(body: string): string {
  return `$${body}*${rdssChecksum(body)}\r\n`;
}

/** Parses one line (without CR LF); null when not a sentence or its checksum is wrong. */
export function rdssParse(line: string): { talker: string; type: string; fields: string[] } | null {
  const star = line.lastIndexOf('*');
  if (!line.startsWith('$') || star < 6 || star + 3 !== line.length) return null;
  const body = line.slice(1, star);
  if (line.slice(star + 1).toUpperCase() !== rdssChecksum(body)) return null;
  const [head, ...fields] = body.split(',');
  if (!head || !/^[A-Z]{5}$/.test(head)) return null;
  return { talker: head.slice(0, 2), type: head.slice(2), fields };
}

// ---------------------------------------------------------------------------------------------------
// The simulated terminal speaks ONE dialect, as real terminals do (sources: the RDSS 2.1 sentence set
// above; RDSS 4.0 binary frames as public 4.0 SDK notes describe them: "$" + 4-letter command + 2-byte
// big-endian total length + 3-byte user address + fields + one XOR byte over everything before it,
// $ICJC -> $ICXX (broadcast id 3, user feature 1, service frequency 2, level 1, encryption 1,
// subordinates 2), $TXSQ (category 1, destination 3, length in bits 2, answer 1, content) -> $FKXX
// (flag 1: 0 ok, 1 failed, 2 signal not locked, 3 power low, 4 frequency not reached with the seconds
// left in the 4 additional bytes), $TXXX (category 1, sender 3, hour 1, minute 1, bits 2, content, CRC 1);
// BD-3 terminal interface notes (TD3050-style): $CCICR -> $BDICP (card, broadcast id, ..., encryption
// N/E 6th, service frequency 14th, level 15th field, level 0 possible), $CCTCQ,<to>,<point>,<confirm
// 1 none/2 wanted>,<encoding 1/2/3>,<hex>,<0> -> $BDFKI,<hhmmss.ss>,TCQ,<Y/N>,<reason 0/6/7/8/9/10/11>,
// <seconds>; $BDTCI,<from>,<to>,<point>,<hhmmss>,<encoding>,<0>,<hex> for received messages).
// Capacity per card from a public 2.1 SDK's card table, by level and encryption flag.

export type SimProtocol = '2.1' | '4.0' | 'bd3';

const sdkCapacity: Record<string, number> = { N1: 110, N2: 408, N3: 628, N4: 848, E1: 140, E2: 360, E3: 580, E4: 1680 };

export interface SimOptions {
  protocol?: SimProtocol;
  card?: string;
  intervalS: number;
  level: number;
  encrypted?: boolean;
  /** Bits per message by 'N1'..'E4' (and 'N0'/'E0' for a level-0 card, default 110). */
  capacityBits?: Record<string, number>;
  /** Answer the next N sends with "transmit suppressed". */
  suppressNext?: number;
  /** Transmit the next N sends but never answer them (feedback lost on the line). */
  silentNext?: number;
  /** Recipient cards the terminal refuses (not executed, no suppression = card error / no permission). */
  refuseCards?: string[];
  /** Report a receipt from the recipient after each accepted message where the dialect has them. */
  receipts?: boolean;
}

export interface SimMessage {
  to: string;
  at: number;
  bytes: number;
  text: string;
  receiptRequested: boolean;
  silent: boolean;
}

const binaryCmds = ['ICJC', 'TXSQ', 'XTZJ', 'DWSQ'];

function xor(b: Buffer): number {
  let x = 0;
  for (const v of b) x ^= v;
  return x;
}

function bin(cmd: string, address: number, fields: Buffer): Buffer {
  const head = Buffer.alloc(10);
  head.write(`$${cmd}`, 0, 'latin1');
  head.writeUInt16BE(10 + fields.length + 1, 5);
  head.writeUIntBE(address, 7, 3);
  const body = Buffer.concat([head, fields]);
  return Buffer.concat([body, Buffer.from([xor(body)])]);
}

function clock(d: Date): { hh: string; mm: string; ss: string } {
  const p = (n: number) => String(n).padStart(2, '0');
  return { hh: p(d.getUTCHours()), mm: p(d.getUTCMinutes()), ss: p(d.getUTCSeconds()) };
}

export class BeidouTerminalSim {
  private port: SerialPort | null = null;
  private buf = Buffer.alloc(0);
  private lastTx = 0;
  readonly accepted: SimMessage[] = [];
  readonly refusedInterval: number[] = [];
  readonly refusedTooLong: number[] = [];
  readonly refusedCards: string[] = [];
  /** Every sentence or frame received (ASCII as text, binary as hex). */
  readonly received: string[] = [];
  private readonly listeners = new Set<() => void>();
  private readonly protocol: SimProtocol;

  constructor(private readonly path: string, private readonly opts: SimOptions) {
    this.protocol = opts.protocol ?? '2.1';
  }

  async open(): Promise<void> {
    const port = new SerialPort({ path: this.path, baudRate: 115200, autoOpen: false });
    await new Promise<void>((res, rej) => port.open((e) => (e ? rej(e) : res())));
    this.port = port;
    port.on('data', (d: Buffer) => this.onData(d));
  }

  /** Writes raw bytes, e.g. a garbled line, to test the driver's robustness. */
  writeRaw(s: string | Buffer): void {
    this.port?.write(typeof s === 'string' ? Buffer.from(s, 'latin1') : s);
  }

  private reply(body: string): void {
    this.port?.write(rdssSentence(body), 'latin1');
  }

  private get cardNo(): string {
    return this.opts.card ?? '0242407';
  }

  private capacityBits(): number {
    const key = `${this.opts.encrypted ? 'E' : 'N'}${this.opts.level}`;
    return this.opts.capacityBits?.[key] ?? sdkCapacity[key] ?? 110;
  }

  private onData(d: Buffer): void {
    this.buf = Buffer.concat([this.buf, d]);
    for (;;) {
      if (this.protocol === '4.0') {
        const at = this.buf.indexOf('$');
        if (at < 0) { this.buf = Buffer.alloc(0); return; }
        this.buf = this.buf.subarray(at);
        if (this.buf.length < 7) return;
        const cmd = this.buf.subarray(1, 5).toString('latin1');
        const len = this.buf.readUInt16BE(5);
        if (!binaryCmds.includes(cmd) || len < 11 || len > 1024) { this.buf = this.buf.subarray(1); continue; }
        if (this.buf.length < len) return;
        const f = Buffer.from(this.buf.subarray(0, len));
        this.buf = this.buf.subarray(len);
        this.received.push(f.toString('hex'));
        if (xor(f.subarray(0, len - 1)) === f[len - 1]) this.onBinary(cmd, f);
        continue;
      }
      const nl = this.buf.indexOf('\r\n');
      if (nl < 0) return;
      const raw = this.buf.subarray(0, nl).toString('latin1');
      this.buf = this.buf.subarray(nl + 2);
      const line = raw.slice(Math.max(0, raw.lastIndexOf('$'))); // resynchronise on the last "$"
      this.received.push(line);
      const s = rdssParse(line);
      if (s && s.talker === 'CC') this.onSentence(s.type, s.fields); // bad checksums are ignored
    }
  }

  private onSentence(type: string, v: string[]): void {
    if (this.protocol === '2.1' && type === 'ICA') {
      this.reply(`BDICI,${this.cardNo},00000000,2097151,0,${this.opts.intervalS},${this.opts.level},${this.opts.encrypted ? 'E' : 'N'},0`);
    } else if (this.protocol === 'bd3' && type === 'ICR') {
      this.reply(`BDICP,${this.cardNo},2097151,0,3,0,${this.opts.encrypted ? 'E' : 'N'},2,N,1,0,0,3,1,${this.opts.intervalS},${this.opts.level},0,0,0,0,21,0,0,0`);
    } else if (this.protocol === '2.1' && type === 'TXA') {
      const [to, , mode, content] = v;
      this.transmit(to ?? '', Buffer.from(content ?? '', 'hex'), mode === '2', false);
    } else if (this.protocol === 'bd3' && type === 'TCQ') {
      const [to, , confirm, encoding, content] = v;
      this.transmit(to ?? '', Buffer.from(content ?? '', 'hex'), encoding === '3', confirm === '2');
    }
  }

  private onBinary(cmd: string, f: Buffer): void {
    if (cmd === 'ICJC') {
      const x = Buffer.alloc(11);
      x.writeUIntBE(2097151, 0, 3); // broadcast id
      x[3] = 0; // user feature
      x.writeUInt16BE(this.opts.intervalS, 4);
      x[6] = this.opts.level;
      x[7] = this.opts.encrypted ? 1 : 0;
      x.writeUInt16BE(0, 8);
      this.port?.write(bin('ICXX', Number(this.cardNo), Buffer.concat([Buffer.from([0]), x.subarray(0, 10)])));
    } else if (cmd === 'TXSQ') {
      const to = String(f.readUIntBE(11, 3)).padStart(7, '0');
      const bits = f.readUInt16BE(14);
      const content = f.subarray(17, 17 + Math.ceil(bits / 8));
      this.transmit(to, content, f[10] === 0x46, f[16] === 1);
    }
  }

  /** The terminal's answer to one send instruction, in its own dialect. */
  private feedback(kind: 'ok' | 'interval' | 'suppressed' | 'refused', secs = 0): void {
    const now = clock(new Date());
    if (this.protocol === '2.1') {
      const wait = `${String(Math.floor(secs / 60)).padStart(2, '0')}${String(secs % 60).padStart(2, '0')}`;
      this.reply({ ok: 'BDFKI,TXA,Y,Y,0,0000', interval: `BDFKI,TXA,N,N,0,${wait}`, suppressed: 'BDFKI,TXA,N,Y,1,0000', refused: 'BDFKI,TXA,N,Y,0,0000' }[kind]);
    } else if (this.protocol === 'bd3') {
      const t = `${now.hh}${now.mm}${now.ss}.00`;
      this.reply({ ok: `BDFKI,${t},TCQ,Y,0,0`, interval: `BDFKI,${t},TCQ,N,6,${secs}`, suppressed: `BDFKI,${t},TCQ,N,7,0`, refused: `BDFKI,${t},TCQ,N,11,0` }[kind]);
    } else {
      const x = Buffer.alloc(5);
      x[0] = { ok: 0, interval: 4, suppressed: 2, refused: 1 }[kind];
      if (kind === 'interval') x.writeUInt32BE(secs, 1);
      else x.write('TXSQ', 1, 'latin1');
      this.port?.write(bin('FKXX', Number(this.cardNo), x));
    }
    this.notify();
  }

  private transmit(to: string, bytes: Buffer, mixed: boolean, receiptRequested: boolean): void {
    const now = Date.now();
    const left = this.lastTx + this.opts.intervalS * 1000 - now;
    if (this.lastTx && left > 0) {
      this.refusedInterval.push(now);
      return this.feedback('interval', Math.ceil(left / 1000));
    }
    if ((this.opts.suppressNext ?? 0) > 0) {
      this.opts.suppressNext!--;
      return this.feedback('suppressed');
    }
    if (this.opts.refuseCards?.includes(to)) {
      this.refusedCards.push(to);
      return this.feedback('refused');
    }
    if (bytes.length * 8 > this.capacityBits() || !mixed || bytes[0] !== 0xa4) {
      this.refusedTooLong.push(bytes.length);
      return this.feedback('refused');
    }
    this.lastTx = now;
    const silent = (this.opts.silentNext ?? 0) > 0;
    if (silent) this.opts.silentNext!--;
    this.accepted.push({ to, at: now, bytes: bytes.length, text: iconv.decode(bytes.subarray(1), 'gb2312'), receiptRequested, silent });
    if (silent) return this.notify();
    this.feedback('ok');
    const wantsReceipt = this.opts.receipts && (this.protocol === '2.1' || (this.protocol === 'bd3' && receiptRequested));
    if (wantsReceipt) {
      const c = clock(new Date());
      setTimeout(() => this.reply(`BDHZR,${to},1,${c.hh}${c.mm},${c.hh}${c.mm}`), 50);
    }
  }

  /** A message arriving over the air from `from` (mixed mode: 0xA4 + GB2312), in the terminal's dialect. */
  deliver(from: string, text: string): void {
    const content = Buffer.concat([Buffer.from([0xa4]), iconv.encode(text, 'gb2312')]);
    const c = clock(new Date());
    if (this.protocol === '2.1') this.reply(`BDTXR,1,${from},2,${c.hh}${c.mm},${content.toString('hex').toUpperCase()}`);
    else if (this.protocol === 'bd3') this.reply(`BDTCI,${from},${this.cardNo},2,${c.hh}${c.mm}${c.ss},3,0,${content.toString('hex').toUpperCase()}`);
    else {
      const x = Buffer.alloc(1 + 3 + 2 + 2);
      x[0] = 0x46;
      x.writeUIntBE(Number(from), 1, 3);
      x[4] = Number(c.hh);
      x[5] = Number(c.mm);
      x.writeUInt16BE(content.length * 8, 6);
      this.port?.write(bin('TXXX', Number(this.cardNo), Buffer.concat([x, content, Buffer.from([0])])));
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
