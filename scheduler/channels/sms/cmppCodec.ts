import { createHash } from 'node:crypto';

// CMPP 2.0 / 3.0 (China Mobile Peer to Peer, 中国移动通信互联网短信网关接口协议) messages the
// client uses, from the specification: 12-octet header (Total_Length, Command_Id, Sequence_Id, big
// endian), Octet Strings fixed-length and NUL-padded. 3.0 widens terminal ids to 32 octets, adds
// terminal types and LinkID, and makes Status/Result 4 octets; 2.0 has 21-octet ids and 1-octet results.

export const CMPP = {
  CONNECT: 0x00000001, CONNECT_RESP: 0x80000001, TERMINATE: 0x00000002, TERMINATE_RESP: 0x80000002,
  SUBMIT: 0x00000004, SUBMIT_RESP: 0x80000004, DELIVER: 0x00000005, DELIVER_RESP: 0x80000005,
  ACTIVE_TEST: 0x00000008, ACTIVE_TEST_RESP: 0x80000008,
} as const;

export type CmppVersion = '2.0' | '3.0';
export const versionByte = (v: CmppVersion) => (v === '3.0' ? 0x30 : 0x20);

export interface CmppFrame { commandId: number; seq: number; body: Buffer }

export function frame(commandId: number, seq: number, body: Buffer = Buffer.alloc(0)): Buffer {
  const h = Buffer.alloc(12);
  h.writeUInt32BE(12 + body.length, 0);
  h.writeUInt32BE(commandId, 4);
  h.writeUInt32BE(seq, 8);
  return Buffer.concat([h, body]);
}

/** Splits a byte stream into frames; throws on a length no valid frame has (the link is then dropped). */
export function readFrames(buf: Buffer): { frames: CmppFrame[]; rest: Buffer } {
  const frames: CmppFrame[] = [];
  let off = 0;
  while (buf.length - off >= 12) {
    const len = buf.readUInt32BE(off);
    if (len < 12 || len > 4096) throw new Error(`bad CMPP Total_Length ${len}`);
    if (buf.length - off < len) break;
    frames.push({ commandId: buf.readUInt32BE(off + 4), seq: buf.readUInt32BE(off + 8), body: Buffer.from(buf.subarray(off + 12, off + len)) });
    off += len;
  }
  return { frames, rest: Buffer.from(buf.subarray(off)) };
}

/** Fixed-length Octet String, NUL-padded (and cut) to `n`. */
export function octets(s: string | Buffer, n: number): Buffer {
  const b = Buffer.alloc(n);
  (typeof s === 'string' ? Buffer.from(s, 'latin1') : s).copy(b, 0, 0, n);
  return b;
}
export const readOctets = (b: Buffer, off: number, n: number) => b.toString('latin1', off, off + n).replace(/\0+$/, '');

/** MMDDHHMMSS of an instant in China time, as the CONNECT Timestamp. */
export function cmppTimestamp(d: Date): number {
  const t = new Date(d.getTime() + 8 * 3_600_000);
  const p = (n: number) => String(n).padStart(2, '0');
  return Number(`${p(t.getUTCMonth() + 1)}${p(t.getUTCDate())}${p(t.getUTCHours())}${p(t.getUTCMinutes())}${p(t.getUTCSeconds())}`);
}

/** AuthenticatorSource = MD5(Source_Addr + 9 octets 0 + shared secret + timestamp as 10 digits). */
export function authenticatorSource(sourceAddr: string, secret: string, timestamp: number): Buffer {
  return createHash('md5').update(Buffer.concat([
    Buffer.from(sourceAddr, 'latin1'), Buffer.alloc(9), Buffer.from(secret, 'latin1'), Buffer.from(String(timestamp).padStart(10, '0'), 'latin1'),
  ])).digest();
}

/** AuthenticatorISMG = MD5(Status + AuthenticatorSource + shared secret): the gateway proves it knows the secret. */
export function authenticatorIsmg(status: number, authSource: Buffer, secret: string, version: CmppVersion): Buffer {
  const st = version === '3.0' ? Buffer.alloc(4) : Buffer.alloc(1);
  if (version === '3.0') st.writeUInt32BE(status); else st.writeUInt8(status);
  return createHash('md5').update(Buffer.concat([st, authSource, Buffer.from(secret, 'latin1')])).digest();
}

export function connectBody(sourceAddr: string, secret: string, version: CmppVersion, now: Date): { body: Buffer; auth: Buffer } {
  const ts = cmppTimestamp(now);
  const auth = authenticatorSource(sourceAddr, secret, ts);
  const t = Buffer.alloc(4);
  t.writeUInt32BE(ts);
  return { body: Buffer.concat([octets(sourceAddr, 6), auth, Buffer.from([versionByte(version)]), t]), auth };
}

export function readConnectResp(b: Buffer, version: CmppVersion): { status: number; authIsmg: Buffer } {
  const w = version === '3.0' ? 4 : 1;
  const status = w === 4 ? b.readUInt32BE(0) : b.readUInt8(0);
  return { status, authIsmg: Buffer.from(b.subarray(w, w + 16)) };
}

export interface SubmitFields {
  pkTotal: number; pkNumber: number; registeredDelivery: number; serviceId: string; udhi: boolean; msgFmt: number;
  msgSrc: string; srcId: string; dest: string; content: Buffer;
}

export function submitBody(f: SubmitFields, version: CmppVersion): Buffer {
  const v3 = version === '3.0';
  const u8 = (n: number) => Buffer.from([n]);
  return Buffer.concat([
    Buffer.alloc(8), u8(f.pkTotal), u8(f.pkNumber), u8(f.registeredDelivery), u8(1), octets(f.serviceId, 10),
    u8(0) /* Fee_UserType: charge the destination */, octets('', v3 ? 32 : 21), ...(v3 ? [u8(0)] : []),
    u8(0) /* TP_pId */, u8(f.udhi ? 1 : 0), u8(f.msgFmt), octets(f.msgSrc, 6), octets('01', 2) /* FeeType: free */,
    octets('000000', 6), octets('', 17), octets('', 17), octets(f.srcId, 21), u8(1), octets(f.dest, v3 ? 32 : 21),
    ...(v3 ? [u8(0)] : []), u8(f.content.length), f.content, octets('', v3 ? 20 : 8),
  ]);
}

/** Msg_Id is 64 bits; written as its unsigned decimal value (how gateways and their receipts print it). */
export const msgIdString = (b: Buffer, off = 0) => b.readBigUInt64BE(off).toString(10);

export function readSubmitResp(b: Buffer, version: CmppVersion): { msgId: string; result: number } {
  return { msgId: msgIdString(b, 0), result: version === '3.0' ? b.readUInt32BE(8) : b.readUInt8(8) };
}

export interface Deliver {
  msgId: string; destId: string; msgFmt: number; udhi: boolean; src: string; registeredDelivery: number; content: Buffer;
  report?: { msgId: string; stat: string; dest: string };
}

export function readDeliver(b: Buffer, version: CmppVersion): Deliver {
  const v3 = version === '3.0';
  let o = 0;
  const msgId = msgIdString(b, o); o += 8;
  const destId = readOctets(b, o, 21); o += 21;
  o += 10 + 1; // Service_Id, TP_pid
  const udhi = b.readUInt8(o++) === 1;
  const msgFmt = b.readUInt8(o++);
  const src = readOctets(b, o, v3 ? 32 : 21); o += v3 ? 32 : 21;
  if (v3) o += 1; // Src_terminal_type
  const registeredDelivery = b.readUInt8(o++);
  const len = b.readUInt8(o++);
  const content = Buffer.from(b.subarray(o, o + len));
  const d: Deliver = { msgId, destId, msgFmt, udhi, src, registeredDelivery, content };
  if (registeredDelivery === 1 && content.length >= 8 + 7) {
    d.report = { msgId: msgIdString(content, 0), stat: readOctets(content, 8, 7), dest: readOctets(content, 8 + 7 + 20, v3 ? 32 : 21) };
  }
  return d;
}

export function deliverResp(msgIdRaw: Buffer, result: number, version: CmppVersion): Buffer {
  const r = version === '3.0' ? Buffer.alloc(4) : Buffer.alloc(1);
  if (version === '3.0') r.writeUInt32BE(result); else r.writeUInt8(result);
  return Buffer.concat([msgIdRaw, r]);
}
