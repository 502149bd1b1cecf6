import net from 'node:net';
import { createHash } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { waitForCondition } from './condition.ts';

// A test China Mobile gateway (ISMG) speaking CMPP 3.0 or 2.0 over TCP, written from the CMPP 3.0
// specification (中国移动通信互联网短信网关接口协议 v3.0.0) and its 2.0 predecessor — NOT from the client
// (scheduler/channels/sms/): its own byte layout below. §6.2: 12-octet header; §7.4.1 CMPP_CONNECT
// (Source_Addr 6, AuthenticatorSource 16 = MD5(Source_Addr + 9 zero octets + secret + Timestamp
// "MMDDHHMMSS"), Version 1, Timestamp 4) and CONNECT_RESP (Status 4 [2.0: 1], AuthenticatorISMG 16 =
// MD5(Status + AuthenticatorSource + secret), Version 1); §7.4.3 CMPP_SUBMIT and SUBMIT_RESP (Msg_Id 8,
// Result 4 [2.0: 1]); §7.4.5 CMPP_DELIVER with Registered_Delivery 1 carrying the status report
// (Msg_Id 8, Stat 7, Submit_time 10, Done_time 10, Dest_terminal_Id 32 [2.0: 21], SMSC_sequence 4) or 0
// for a handset's message; §7.4.8 ACTIVE_TEST (RESP: Reserved 1). Long messages: TP_udhi 1 and the
// GSM 03.40 header 05 00 03 ref total seq, with Pk_total / Pk_number.

const C = {
  CONNECT: 0x00000001, CONNECT_RESP: 0x80000001, TERMINATE: 0x00000002, TERMINATE_RESP: 0x80000002,
  SUBMIT: 0x00000004, SUBMIT_RESP: 0x80000004, DELIVER: 0x00000005, DELIVER_RESP: 0x80000005,
  ACTIVE_TEST: 0x00000008, ACTIVE_TEST_RESP: 0x80000008,
};

export interface IsmgSubmit {
  msgId: string; pkTotal: number; pkNumber: number; registeredDelivery: number; udhi: boolean; msgFmt: number;
  msgSrc: string; srcId: string; dests: string[]; content: Buffer;
}

export interface IsmgOptions {
  version?: '2.0' | '3.0';
  sourceAddr?: string;
  secret?: string;
  /** Report stat for every message (default DELIVRD); per destination in `stats`. */
  stats?: Record<string, string>;
  /** SUBMIT_RESP Result 8 (flow control) this many times per part before accepting. */
  flowControlFirst?: number;
}

interface Conn { sock: net.Socket; authed: boolean; seq: number; resp: Map<number, (cmd: number, body: Buffer) => void> }

const fixed = (s: string, n: number) => {
  const b = Buffer.alloc(n);
  Buffer.from(s, 'latin1').copy(b, 0, 0, n);
  return b;
};
const str = (b: Buffer, off: number, n: number) => b.toString('latin1', off, off + n).replace(/\0+$/, '');

export class CmppIsmgSimulator {
  private server: net.Server | null = null;
  private readonly conns = new Set<Conn>();
  private readonly listeners = new Set<() => void>();
  private msgSeq = 0;
  private readonly flow = new Map<string, number>();
  readonly connects: Array<{ sourceAddr: string; version: number; ok: boolean; status: number }> = [];
  readonly submits: IsmgSubmit[] = [];
  /** Complete messages reassembled from their parts (UCS-2 decoded). */
  readonly messages: Array<{ to: string; text: string; parts: number; msgIds: string[] }> = [];
  readonly deliverResults: Array<{ kind: 'report' | 'mo'; result: number }> = [];
  readonly activeTestAnswered: number[] = [];
  private readonly partial = new Map<string, Map<number, { text: string; id: string }>>();
  port = 0;

  constructor(private readonly opts: IsmgOptions = {}) {}

  private get v3(): boolean {
    return (this.opts.version ?? '3.0') === '3.0';
  }

  async start(): Promise<number> {
    const server = net.createServer((s) => this.onConn(s));
    this.server = server;
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
    this.port = (server.address() as AddressInfo).port;
    return this.port;
  }

  private notify(): void {
    for (const l of this.listeners) l();
  }

  waitFor(pred: () => boolean, timeoutMs: number, what: string): Promise<void> {
    return waitForCondition(this.listeners, pred, timeoutMs, () => `ISMG: timed out waiting for ${what}`);
  }

  private send(c: Conn, cmd: number, seq: number, body: Buffer = Buffer.alloc(0)): void {
    const h = Buffer.alloc(12);
    h.writeUInt32BE(12 + body.length, 0);
    h.writeUInt32BE(cmd, 4);
    h.writeUInt32BE(seq, 8);
    if (!c.sock.destroyed) c.sock.write(Buffer.concat([h, body]));
  }

  private onConn(sock: net.Socket): void {
    const c: Conn = { sock, authed: false, seq: 0x10000, resp: new Map() };
    this.conns.add(c);
    let buf: Buffer = Buffer.alloc(0);
    sock.on('error', () => undefined);
    sock.on('close', () => this.conns.delete(c));
    sock.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      while (buf.length >= 12) {
        const len = buf.readUInt32BE(0);
        if (len < 12 || len > 4096) return sock.destroy();
        if (buf.length < len) break;
        const cmd = buf.readUInt32BE(4);
        const seq = buf.readUInt32BE(8);
        const body = Buffer.from(buf.subarray(12, len));
        buf = Buffer.from(buf.subarray(len));
        this.onMessage(c, cmd, seq, body);
      }
    });
  }

  private onMessage(c: Conn, cmd: number, seq: number, body: Buffer): void {
    if (cmd & 0x80000000) {
      const cb = c.resp.get(seq);
      c.resp.delete(seq);
      cb?.(cmd, body);
      if (cmd === C.ACTIVE_TEST_RESP) this.activeTestAnswered.push(seq);
      this.notify();
      return;
    }
    if (cmd === C.CONNECT) return this.onConnect(c, seq, body);
    if (!c.authed) return void c.sock.destroy(); // nothing before CONNECT
    if (cmd === C.SUBMIT) return this.onSubmit(c, seq, body);
    if (cmd === C.ACTIVE_TEST) return this.send(c, C.ACTIVE_TEST_RESP, seq, Buffer.from([0]));
    if (cmd === C.TERMINATE) {
      this.send(c, C.TERMINATE_RESP, seq);
      c.sock.end();
    }
  }

  private onConnect(c: Conn, seq: number, b: Buffer): void {
    const sourceAddr = str(b, 0, 6);
    const authSource = b.subarray(6, 22);
    const version = b.readUInt8(22);
    const ts = String(b.readUInt32BE(23)).padStart(10, '0');
    const secret = this.opts.secret ?? 'cmpp-secret';
    const expected = createHash('md5').update(Buffer.concat([
      Buffer.from(sourceAddr, 'latin1'), Buffer.alloc(9), Buffer.from(secret, 'latin1'), Buffer.from(ts, 'latin1'),
    ])).digest();
    // Status: 0 ok, 2 wrong source address, 3 authentication failed, 4 version too high.
    const wantVersion = this.v3 ? 0x30 : 0x20;
    const status = sourceAddr !== (this.opts.sourceAddr ?? '901234') ? 2 : !expected.equals(authSource) ? 3 : version > wantVersion ? 4 : 0;
    this.connects.push({ sourceAddr, version, ok: status === 0, status });
    const st = this.v3 ? Buffer.alloc(4) : Buffer.alloc(1);
    if (this.v3) st.writeUInt32BE(status); else st.writeUInt8(status);
    const authIsmg = status === 0 ? createHash('md5').update(Buffer.concat([st, authSource, Buffer.from(secret, 'latin1')])).digest() : Buffer.alloc(16);
    this.send(c, C.CONNECT_RESP, seq, Buffer.concat([st, authIsmg, Buffer.from([wantVersion])]));
    if (status !== 0) {
      c.sock.end();
      this.notify();
      return;
    }
    c.authed = true;
    // The gateway checks the link too.
    this.send(c, C.ACTIVE_TEST, c.seq++);
    this.notify();
  }

  /** §7.4.3.1 Msg_Id: month 4 bits, day 5, hour 5, minute 6, second 6, gateway code 22, sequence 16. */
  private newMsgId(): Buffer {
    const t = new Date(Date.now() + 8 * 3_600_000);
    let v = BigInt(t.getUTCMonth() + 1);
    v = (v << 5n) | BigInt(t.getUTCDate());
    v = (v << 5n) | BigInt(t.getUTCHours());
    v = (v << 6n) | BigInt(t.getUTCMinutes());
    v = (v << 6n) | BigInt(t.getUTCSeconds());
    v = (v << 22n) | 123456n;
    v = (v << 16n) | BigInt(++this.msgSeq & 0xffff);
    const b = Buffer.alloc(8);
    b.writeBigUInt64BE(v);
    return b;
  }

  private onSubmit(c: Conn, seq: number, b: Buffer): void {
    const idW = this.v3 ? 32 : 21;
    let o = 8;
    const pkTotal = b.readUInt8(o++);
    const pkNumber = b.readUInt8(o++);
    const registeredDelivery = b.readUInt8(o++);
    o += 1 + 10 + 1 + idW + (this.v3 ? 1 : 0) + 1; // Msg_level, Service_Id, Fee_UserType, Fee_terminal_Id(/type), TP_pId
    const udhi = b.readUInt8(o++) === 1;
    const msgFmt = b.readUInt8(o++);
    const msgSrc = str(b, o, 6); o += 6;
    o += 2 + 6 + 17 + 17; // FeeType, FeeCode, ValId_Time, At_Time
    const srcId = str(b, o, 21); o += 21;
    const n = b.readUInt8(o++);
    const dests: string[] = [];
    for (let i = 0; i < n; i++) { dests.push(str(b, o, idW)); o += idW; }
    if (this.v3) o += 1; // Dest_terminal_type
    const len = b.readUInt8(o++);
    const content = Buffer.from(b.subarray(o, o + len));
    const key = `${dests[0]}|${udhi ? content[3] : 's'}|${pkNumber}`;
    const flowed = this.flow.get(key) ?? 0;
    const res = (msgId: Buffer, result: number) => {
      const r = this.v3 ? Buffer.alloc(4) : Buffer.alloc(1);
      if (this.v3) r.writeUInt32BE(result); else r.writeUInt8(result);
      this.send(c, C.SUBMIT_RESP, seq, Buffer.concat([msgId, r]));
    };
    if (flowed < (this.opts.flowControlFirst ?? 0)) {
      this.flow.set(key, flowed + 1);
      res(Buffer.alloc(8), 8);
      this.notify();
      return;
    }
    const idBuf = this.newMsgId();
    const msgId = idBuf.readBigUInt64BE().toString(10);
    this.submits.push({ msgId, pkTotal, pkNumber, registeredDelivery, udhi, msgFmt, msgSrc, srcId, dests, content });
    res(idBuf, 0);
    const payload = udhi ? content.subarray(content[0]! + 1) : content;
    const text = msgFmt === 8 ? (() => { const x = Buffer.from(payload); x.swap16(); return x.toString('utf16le'); })() : payload.toString('latin1');
    const pkey = `${dests[0]}|${udhi ? content[3] : msgId}`;
    const got = this.partial.get(pkey) ?? new Map<number, { text: string; id: string }>();
    got.set(pkNumber, { text, id: msgId });
    this.partial.set(pkey, got);
    if (got.size === pkTotal) {
      this.partial.delete(pkey);
      const ordered = [...got.entries()].sort((a, b2) => a[0] - b2[0]);
      this.messages.push({ to: dests[0]!, text: ordered.map((e) => e[1].text).join(''), parts: pkTotal, msgIds: ordered.map((e) => e[1].id) });
    }
    this.notify();
    if (registeredDelivery === 1) setTimeout(() => this.report(c, idBuf, dests[0]!, srcId), 20);
  }

  private stamp(): string {
    const t = new Date(Date.now() + 8 * 3_600_000);
    const p = (x: number) => String(x).padStart(2, '0');
    return `${p(t.getUTCFullYear() % 100)}${p(t.getUTCMonth() + 1)}${p(t.getUTCDate())}${p(t.getUTCHours())}${p(t.getUTCMinutes())}`;
  }

  /** DELIVER to the SP: Msg_Id, Dest_Id (the SP's number), Service_Id, TP_pid, TP_udhi, Msg_Fmt, Src_terminal_Id(/type), Registered_Delivery, content, LinkID/Reserved. */
  private deliver(c: Conn, destId: string, src: string, registered: number, fmt: number, content: Buffer, kind: 'report' | 'mo', udhi = false): Promise<number> {
    const idW = this.v3 ? 32 : 21;
    const body = Buffer.concat([
      this.newMsgId(), fixed(destId, 21), fixed('', 10), Buffer.from([0, udhi ? 1 : 0, fmt]), fixed(src, idW),
      ...(this.v3 ? [Buffer.from([0])] : []), Buffer.from([registered, content.length]), content, fixed('', this.v3 ? 20 : 8),
    ]);
    const seq = c.seq++;
    return new Promise<number>((resolve) => {
      c.resp.set(seq, (_cmd, b) => {
        const result = this.v3 ? b.readUInt32BE(8) : b.readUInt8(8);
        this.deliverResults.push({ kind, result });
        resolve(result);
      });
      this.send(c, C.DELIVER, seq, body);
    });
  }

  private report(c: Conn, msgId: Buffer, dest: string, srcId: string): void {
    const stat = this.opts.stats?.[dest] ?? 'DELIVRD';
    const sn = Buffer.alloc(4);
    sn.writeUInt32BE(this.msgSeq);
    const content = Buffer.concat([msgId, fixed(stat, 7), fixed(this.stamp(), 10), fixed(this.stamp(), 10), fixed(dest, this.v3 ? 32 : 21), sn]);
    const target = c.authed && !c.sock.destroyed ? c : [...this.conns].find((x) => x.authed && !x.sock.destroyed);
    if (target) void this.deliver(target, srcId, dest, 1, 0, content, 'report');
  }

  /** A handset's message to the SP's number, UCS-2 (or GBK bytes with fmt 15); long text in parts with TP_udhi. */
  async sendMo(from: string, to: string, text: string, opts: { partChars?: number } = {}): Promise<number[]> {
    const c = [...this.conns].find((x) => x.authed && !x.sock.destroyed);
    if (!c) throw new Error('ISMG: no connected SP');
    const per = opts.partChars ?? 70;
    const chunks: string[] = [];
    for (let i = 0; i < text.length; i += per) chunks.push(text.slice(i, i + per));
    const ucs2 = (s: string) => { const b = Buffer.from(s, 'utf16le'); b.swap16(); return b; };
    const results: number[] = [];
    for (const [i, ch] of chunks.entries()) {
      const udh = chunks.length > 1 ? Buffer.from([5, 0, 3, 0x42, chunks.length, i + 1]) : Buffer.alloc(0);
      results.push(await this.deliver(c, to, from, 0, 8, Buffer.concat([udh, ucs2(ch)]), 'mo', chunks.length > 1));
    }
    this.notify();
    return results;
  }

  async stop(): Promise<void> {
    for (const c of this.conns) c.sock.destroy();
    await new Promise<void>((r) => (this.server ? this.server.close(() => r()) : r()));
  }
}
