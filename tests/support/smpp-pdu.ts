// SMPP v3.4 PDU codec for the test SMSC, written from the specification
// (SMPP Protocol Specification v3.4, Issue 1.2, 12-Oct-1999): §3.2 PDU format (16-octet header:
// command_length, command_id, command_status, sequence_number, big-endian), §3.1 C-Octet Strings,
// §4.1.5/4.1.6 bind_transceiver(_resp), §4.2.4 unbind, §4.3.1 generic_nack, §4.4.1/4.4.2
// submit_sm(_resp) (body not returned when command_status != 0), §4.6.1 deliver_sm, §4.11 enquire_link,
// §5.1.2 command ids, §5.1.3 error codes, §5.3 optional parameters (TLV: tag, length, value) with
// receipted_message_id 0x001E and message_state 0x0427, Appendix B delivery receipt text.
// It deliberately does NOT use the `smpp` npm package that the client (scheduler/channels/SmppChannel.ts)
// uses, so a shared misunderstanding of the wire format cannot hide. Byte-level vectors:
// tests/support/smpp-pdu.vectors.test.ts.

export const CMD = {
  generic_nack: 0x80000000,
  bind_receiver: 0x00000001,
  bind_transmitter: 0x00000002,
  submit_sm: 0x00000004,
  submit_sm_resp: 0x80000004,
  deliver_sm: 0x00000005,
  deliver_sm_resp: 0x80000005,
  unbind: 0x00000006,
  unbind_resp: 0x80000006,
  bind_transceiver: 0x00000009,
  bind_transceiver_resp: 0x80000009,
  enquire_link: 0x00000015,
  enquire_link_resp: 0x80000015,
} as const;

export const STATUS = {
  ESME_ROK: 0x00,
  ESME_RINVCMDLEN: 0x02,
  ESME_RINVCMDID: 0x03,
  ESME_RINVDSTADR: 0x0b,
  ESME_RBINDFAIL: 0x0d,
  ESME_RTHROTTLED: 0x58,
  // §5.1.3: invalid source / destination address TON.
  ESME_RINVSRCTON: 0x48,
  ESME_RINVDSTTON: 0x50,
  ESME_RX_T_APPN: 0x64,
} as const;

export const TAG = { receipted_message_id: 0x001e, message_state: 0x0427, sc_interface_version: 0x0210 } as const;

export interface Pdu {
  commandId: number;
  status: number;
  seq: number;
  body: Buffer;
}

export function encodePdu(commandId: number, status: number, seq: number, body: Buffer = Buffer.alloc(0)): Buffer {
  const head = Buffer.alloc(16);
  head.writeUInt32BE(16 + body.length, 0);
  head.writeUInt32BE(commandId >>> 0, 4);
  head.writeUInt32BE(status >>> 0, 8);
  head.writeUInt32BE(seq >>> 0, 12);
  return Buffer.concat([head, body]);
}

/** Splits a byte stream into PDUs; returns the PDUs and the unconsumed rest. */
export function splitPdus(buf: Buffer): { pdus: Pdu[]; rest: Buffer } {
  const pdus: Pdu[] = [];
  let off = 0;
  while (buf.length - off >= 16) {
    const len = buf.readUInt32BE(off);
    if (len < 16 || len > 65536) throw new Error(`invalid command_length ${len}`);
    if (buf.length - off < len) break;
    pdus.push({ commandId: buf.readUInt32BE(off + 4), status: buf.readUInt32BE(off + 8), seq: buf.readUInt32BE(off + 12), body: Buffer.from(buf.subarray(off + 16, off + len)) });
    off += len;
  }
  return { pdus, rest: Buffer.from(buf.subarray(off)) };
}

export const cstr = (s: string): Buffer => Buffer.concat([Buffer.from(s, 'latin1'), Buffer.from([0])]);
export const u8 = (n: number): Buffer => Buffer.from([n & 0xff]);
export function tlv(tag: number, value: Buffer): Buffer {
  const h = Buffer.alloc(4);
  h.writeUInt16BE(tag, 0);
  h.writeUInt16BE(value.length, 2);
  return Buffer.concat([h, value]);
}

class Reader {
  off = 0;
  constructor(private readonly b: Buffer) {}
  cstr(): string {
    const end = this.b.indexOf(0, this.off);
    if (end < 0) throw new Error('unterminated C-Octet String');
    const s = this.b.toString('latin1', this.off, end);
    this.off = end + 1;
    return s;
  }
  u8(): number {
    if (this.off >= this.b.length) throw new Error('PDU body too short');
    return this.b[this.off++]!;
  }
  bytes(n: number): Buffer {
    if (this.off + n > this.b.length) throw new Error('PDU body too short');
    const r = this.b.subarray(this.off, this.off + n);
    this.off += n;
    return Buffer.from(r);
  }
  tlvs(): Map<number, Buffer> {
    const m = new Map<number, Buffer>();
    while (this.b.length - this.off >= 4) {
      const tag = this.b.readUInt16BE(this.off);
      const len = this.b.readUInt16BE(this.off + 2);
      this.off += 4;
      m.set(tag, this.bytes(len));
    }
    return m;
  }
}

export interface BindBody { systemId: string; password: string; systemType: string; interfaceVersion: number; addrTon: number; addrNpi: number; addressRange: string }
/** §4.1.5 bind_transceiver body. */
export function decodeBind(body: Buffer): BindBody {
  const r = new Reader(body);
  return { systemId: r.cstr(), password: r.cstr(), systemType: r.cstr(), interfaceVersion: r.u8(), addrTon: r.u8(), addrNpi: r.u8(), addressRange: r.cstr() };
}
export function encodeBind(b: BindBody): Buffer {
  return Buffer.concat([cstr(b.systemId), cstr(b.password), cstr(b.systemType), u8(b.interfaceVersion), u8(b.addrTon), u8(b.addrNpi), cstr(b.addressRange)]);
}

export interface SmBody {
  serviceType: string; sourceTon: number; sourceNpi: number; source: string; destTon: number; destNpi: number; dest: string;
  esmClass: number; protocolId: number; priority: number; scheduleDeliveryTime: string; validityPeriod: string;
  registeredDelivery: number; replaceIfPresent: number; dataCoding: number; smDefaultMsgId: number; shortMessage: Buffer;
  tlvs: Map<number, Buffer>;
}
/** §4.4.1 submit_sm and §4.6.1 deliver_sm share this body layout. */
export function decodeSm(body: Buffer): SmBody {
  const r = new Reader(body);
  const b = {
    serviceType: r.cstr(), sourceTon: r.u8(), sourceNpi: r.u8(), source: r.cstr(), destTon: r.u8(), destNpi: r.u8(), dest: r.cstr(),
    esmClass: r.u8(), protocolId: r.u8(), priority: r.u8(), scheduleDeliveryTime: r.cstr(), validityPeriod: r.cstr(),
    registeredDelivery: r.u8(), replaceIfPresent: r.u8(), dataCoding: r.u8(), smDefaultMsgId: r.u8(),
  };
  const len = r.u8();
  const shortMessage = r.bytes(len);
  return { ...b, shortMessage, tlvs: r.tlvs() };
}
export function encodeSm(b: Omit<SmBody, 'tlvs'> & { tlvs?: Array<[number, Buffer]> }): Buffer {
  return Buffer.concat([
    cstr(b.serviceType), u8(b.sourceTon), u8(b.sourceNpi), cstr(b.source), u8(b.destTon), u8(b.destNpi), cstr(b.dest),
    u8(b.esmClass), u8(b.protocolId), u8(b.priority), cstr(b.scheduleDeliveryTime), cstr(b.validityPeriod),
    u8(b.registeredDelivery), u8(b.replaceIfPresent), u8(b.dataCoding), u8(b.smDefaultMsgId), u8(b.shortMessage.length), b.shortMessage,
    ...(b.tlvs ?? []).map(([t, v]) => tlv(t, v)),
  ]);
}

/** Splits a short_message with UDHI (esm_class bit 0x40) into its UDH information elements and payload (GSM 03.40 §9.2.3.24). */
export function splitUdh(sm: Buffer): { ies: Array<{ iei: number; data: Buffer }>; payload: Buffer } {
  const udhl = sm[0] ?? 0;
  const ies: Array<{ iei: number; data: Buffer }> = [];
  let off = 1;
  while (off < 1 + udhl) {
    const iei = sm[off]!;
    const l = sm[off + 1]!;
    ies.push({ iei, data: Buffer.from(sm.subarray(off + 2, off + 2 + l)) });
    off += 2 + l;
  }
  return { ies, payload: Buffer.from(sm.subarray(1 + udhl)) };
}

/** UCS-2 (data_coding 0x08) is big-endian UTF-16 without BOM. */
export function decodeUcs2(b: Buffer): string {
  const sw = Buffer.from(b);
  sw.swap16();
  return sw.toString('utf16le');
}

/** Appendix B: "id:IIIIIIIIII sub:SSS dlvrd:DDD submit date:YYMMDDhhmm done date:YYMMDDhhmm stat:DDDDDDD err:E Text: ..." */
export function receiptText(r: { id: string; sub: number; dlvrd: number; submit: Date; done: Date; stat: string; err: number; text: string }): string {
  const d = (t: Date) => {
    const p = (n: number) => String(n).padStart(2, '0');
    return `${p(t.getUTCFullYear() % 100)}${p(t.getUTCMonth() + 1)}${p(t.getUTCDate())}${p(t.getUTCHours())}${p(t.getUTCMinutes())}`;
  };
  const n3 = (n: number) => String(n).padStart(3, '0');
  return `id:${r.id} sub:${n3(r.sub)} dlvrd:${n3(r.dlvrd)} submit date:${d(r.submit)} done date:${d(r.done)} stat:${r.stat} err:${n3(r.err)} Text:${r.text.slice(0, 20)}`;
}
