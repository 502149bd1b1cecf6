import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { waitForCondition } from './condition.ts';
import {
  CMD, STATUS, TAG, cstr, decodeBind, decodeSm, decodeUcs2, encodePdu, encodeSm, receiptText, splitPdus, splitUdh, tlv, type Pdu,
} from './smpp-pdu.ts';

// A test SMSC speaking SMPP v3.4 over TCP, written from the specification (SMPP Protocol Specification
// v3.4 Issue 1.2): §2.2/§4.1.5 bind_transceiver (the only bind it accepts), §4.4 submit_sm, §4.6 deliver_sm
// carrying delivery receipts (esm_class 0x04, short_message in the Appendix B format with "Text:", TLVs
// receipted_message_id 0x001E and message_state 0x0427 per §5.3.2.12/§5.3.2.35), §4.11 enquire_link,
// §4.2 unbind, §4.3 generic_nack for unknown commands / an unbound ESME (§2.3 session states),
// §5.1.3 error codes. Its PDU codec is tests/support/smpp-pdu.ts (byte vectors in
// tests/support/smpp-pdu.vectors.test.ts); it does NOT use the `smpp` npm package the client uses.
// Concatenated messages are reassembled from the GSM 03.40 UDH (IEI 0x00, 8-bit reference).
// Message ids are 10 decimal digits as in Appendix B's example ("id:IIIIIIIIII").

export interface ReceivedMessage {
  to: string;
  text: string;
  parts: number;
  messageIds: string[];
  at: number;
}

/** A fault injected on the submit_sm of one part (UDH sequence number; 1 for a single message). */
export interface SubmitFault {
  part: number;
  /** Only for this destination (default: any). */
  to?: string;
  /** How many matching submits it applies to (default 1). */
  times?: number;
  /** drop: never answer; delay: answer after `delayMs`; disconnect: close the connection instead of answering. */
  action: 'drop' | 'delay' | 'disconnect';
  /** Whether the SMSC took the part despite the missing answer (it is then delivered and receipted). */
  accept: boolean;
  delayMs?: number;
}

export interface AcceptedPart {
  to: string;
  /** Concatenation reference, -1 for a single message. */
  ref: number;
  seq: number;
  total: number;
  id: string;
  from: string;
}

export interface SmscOptions {
  faults?: SubmitFault[];
  /** Destinations whose receipts say ENROUTE (interim) until releaseFinalReceipts(). */
  interimOnly?: string[];
  systemId?: string;
  password?: string;
  /** Answer ESME_RTHROTTLED to this many submit_sm before accepting (per destination, per part). */
  throttleFirst?: number;
  /** Destinations the SMSC rejects with ESME_RINVDSTADR. */
  rejectDestinations?: string[];
  /** Destinations accepted but never delivered: their receipt says UNDELIV. */
  undeliverable?: string[];
  respondDelayMs?: number;
  receiptDelayMs?: number;
  /**
   * Like many operator SMSCs: the submitted source address (e.g. an extended 扩展码 number) is replaced by
   * this service number, so the receipt's destination_addr is this number, not what the ESME sent.
   */
  rewriteSourceTo?: string;
  /**
   * Like a Chinese SMSC routing only domestic numbers (§5.2.5 TON, §5.2.6 NPI): a destination with
   * TON 1 (international) must carry the country code 86 (13 digits), with TON 2 (national) it is the
   * 11-digit number; anything else is ESME_RINVDSTADR. A numeric source with TON 5 (alphanumeric) is
   * ESME_RINVSRCTON. On by default; false accepts any numbering.
   */
  strictNumbering?: boolean;
  /**
   * How message ids are written: in submit_sm_resp, in the receipt text's "id:", and whether the
   * receipted_message_id TLV is sent (many SMPP 3.4 SMSCs omit it). SMSCs differ: some answer the
   * submit in hex and write receipts in decimal. Default: decimal everywhere, TLV sent.
   */
  idFormat?: { resp: 'dec' | 'hex'; receipt: 'dec' | 'hex'; tlv: boolean };
  /** Interim receipts sent before the final one, in order (e.g. ['ACCEPTD', 'ENROUTE']). */
  interimFirst?: string[];
  /** The final receipt is sent twice (an SMSC retrying a receipt it believes lost). */
  duplicateFinal?: boolean;
}

interface Conn {
  sock: net.Socket;
  bound: boolean;
  seq: number;
  pendingResp: Map<number, (p: Pdu) => void>;
}

interface Receipt { id: string; to: string; from: string; submitted: Date }

export class SmscSimulator {
  private server: net.Server | null = null;
  private readonly conns = new Set<Conn>();
  readonly messages: ReceivedMessage[] = [];
  readonly submits: Array<{ to: string; status: number; dataCoding: number; esmClass: number; udh: boolean; destTon: number; destNpi: number; source: string; sourceTon: number; sourceNpi: number }> = [];
  /** Mobile-originated messages written to the ESME and the deliver_sm_resp status it answered. */
  readonly moAnswers: Array<{ from: string; text: string; status: number }> = [];
  /** Ids of the receipts sent (deliver_sm written to a bound session). */
  readonly receiptsSent: string[] = [];
  /** The deliver_sm receipt bodies as sent, for tests that check the wire format. */
  readonly receiptPdus: Array<{ source: string; dest: string; text: string; receiptedId: string; state: number }> = [];
  /** Every part the SMSC took, in order (duplicates included). `from` is the source address as submitted. */
  readonly partLog: AcceptedPart[] = [];
  /** PDUs answered with generic_nack (unknown command, or a command before bind). */
  readonly nacks: Array<{ commandId: number; status: number }> = [];
  private readonly faultUses = new Map<SubmitFault, number>();
  private readonly heldFinal: Receipt[] = [];
  private nextId = 1_000_000_001;
  private readonly undelivered: Receipt[] = [];
  private readonly unacked = new Map<Conn, Map<string, Receipt>>();
  private readonly partial = new Map<string, { total: number; got: Map<number, string>; ids: string[] }>();
  private readonly throttled = new Map<string, number>();
  private readonly listeners = new Set<() => void>();
  port = 0;

  constructor(private readonly opts: SmscOptions = {}) {}

  async start(port = 0): Promise<number> {
    const server = net.createServer((sock) => this.onConnection(sock));
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => resolve());
    });
    this.port = (server.address() as AddressInfo).port;
    return this.port;
  }

  private notify(): void {
    for (const l of this.listeners) l();
  }

  private boundConns(): Conn[] {
    return [...this.conns].filter((c) => c.bound && !c.sock.destroyed);
  }

  private write(c: Conn, buf: Buffer): void {
    if (!c.sock.destroyed) c.sock.write(buf);
  }

  private onConnection(sock: net.Socket): void {
    const c: Conn = { sock, bound: false, seq: 1, pendingResp: new Map() };
    this.conns.add(c);
    let buf: Buffer = Buffer.alloc(0);
    sock.on('error', () => undefined);
    sock.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      let r: ReturnType<typeof splitPdus>;
      try {
        r = splitPdus(buf);
      } catch {
        this.write(c, encodePdu(CMD.generic_nack, STATUS.ESME_RINVCMDLEN, 0));
        sock.destroy();
        return;
      }
      buf = r.rest;
      for (const p of r.pdus) this.onPdu(c, p);
    });
    sock.on('close', () => this.onClose(c));
  }

  private onClose(c: Conn): void {
    this.conns.delete(c);
    const unacked = this.unacked.get(c);
    this.unacked.delete(c);
    if (unacked) for (const r of unacked.values()) this.undelivered.push(r);
    const next = this.boundConns()[0];
    if (next) for (const r of this.undelivered.splice(0)) this.sendReceipt(next, r);
    this.notify();
  }

  private onPdu(c: Conn, p: Pdu): void {
    if (p.commandId & 0x80000000) {
      const cb = c.pendingResp.get(p.seq);
      c.pendingResp.delete(p.seq);
      cb?.(p);
      return;
    }
    switch (p.commandId) {
      case CMD.bind_transceiver: {
        let ok = false;
        try {
          const b = decodeBind(p.body);
          ok = (this.opts.systemId ?? 'sched') === b.systemId && (this.opts.password ?? 'secret') === b.password;
        } catch { /* malformed body: bind fails */ }
        this.write(c, encodePdu(CMD.bind_transceiver_resp, ok ? STATUS.ESME_ROK : STATUS.ESME_RBINDFAIL, p.seq,
          Buffer.concat([cstr('SIMSC'), ok ? tlv(TAG.sc_interface_version, Buffer.from([0x34])) : Buffer.alloc(0)])));
        if (!ok) return;
        c.bound = true;
        // Receipts that could not be delivered wait for the next bind of the account.
        for (const r of this.undelivered.splice(0)) this.sendReceipt(c, r);
        return;
      }
      case CMD.enquire_link:
        this.write(c, encodePdu(CMD.enquire_link_resp, 0, p.seq));
        return;
      case CMD.unbind:
        this.write(c, encodePdu(CMD.unbind_resp, 0, p.seq));
        c.bound = false;
        c.sock.end();
        return;
      case CMD.submit_sm: {
        if (!c.bound) {
          this.nacks.push({ commandId: p.commandId, status: 0x04 });
          this.write(c, encodePdu(CMD.submit_sm_resp, 0x04 /* ESME_RINVBNDSTS */, p.seq));
          return;
        }
        const respond = () => this.onSubmit(c, p);
        if (this.opts.respondDelayMs) setTimeout(respond, this.opts.respondDelayMs);
        else respond();
        return;
      }
      default:
        this.nacks.push({ commandId: p.commandId, status: STATUS.ESME_RINVCMDID });
        this.write(c, encodePdu(CMD.generic_nack, STATUS.ESME_RINVCMDID, p.seq));
    }
  }

  private submitResp(c: Conn, seq: number, status: number, id?: string): void {
    // §4.4.2: the body (message_id) is not returned when command_status is non-zero.
    this.write(c, encodePdu(CMD.submit_sm_resp, status, seq, status === 0 ? cstr(id ?? '') : Buffer.alloc(0)));
  }

  private onSubmit(c: Conn, p: Pdu): void {
    const sm = decodeSm(p.body);
    const to = sm.dest;
    const udhi = (sm.esmClass & 0x40) !== 0;
    const { ies, payload } = udhi ? splitUdh(sm.shortMessage) : { ies: [], payload: sm.shortMessage };
    const concat = ies.find((ie) => ie.iei === 0x00)?.data; // ref, total, seq
    const seq = concat ? concat[2]! : 1;
    const key = `${to}|${concat ? concat[0] : 'single'}|${seq}`;
    const rec = (status: number) => this.submits.push({
      to, status, dataCoding: sm.dataCoding, esmClass: sm.esmClass, udh: !!concat,
      destTon: sm.destTon, destNpi: sm.destNpi, source: sm.source, sourceTon: sm.sourceTon, sourceNpi: sm.sourceNpi,
    });
    if (this.opts.strictNumbering !== false) {
      const badDest = (sm.destTon === 1 && !/^861\d{10}$/.test(to)) || (sm.destTon === 2 && !/^1\d{10}$/.test(to));
      const badSrc = sm.sourceTon === 5 && /^\d+$/.test(sm.source);
      const status = badSrc ? STATUS.ESME_RINVSRCTON : badDest ? STATUS.ESME_RINVDSTADR : 0;
      if (status) {
        rec(status);
        this.submitResp(c, p.seq, status);
        this.notify();
        return;
      }
    }
    if (this.opts.rejectDestinations?.includes(to)) {
      rec(STATUS.ESME_RINVDSTADR);
      this.submitResp(c, p.seq, STATUS.ESME_RINVDSTADR);
      this.notify();
      return;
    }
    const throttledSoFar = this.throttled.get(key) ?? 0;
    if (throttledSoFar < (this.opts.throttleFirst ?? 0)) {
      this.throttled.set(key, throttledSoFar + 1);
      rec(STATUS.ESME_RTHROTTLED);
      this.submitResp(c, p.seq, STATUS.ESME_RTHROTTLED);
      this.notify();
      return;
    }
    const fault = this.opts.faults?.find((f) => f.part === seq && (f.to === undefined || f.to === to) && (this.faultUses.get(f) ?? 0) < (f.times ?? 1));
    if (fault) this.faultUses.set(fault, (this.faultUses.get(fault) ?? 0) + 1);
    if (fault && !fault.accept) {
      rec(-1);
      if (fault.action === 'disconnect') c.sock.destroy();
      this.notify();
      return; // lost: no answer, nothing taken
    }
    const id = String(this.nextId++);
    rec(0);
    this.partLog.push({ to, ref: concat ? concat[0]! : -1, seq, total: concat ? concat[1]! : 1, id, from: sm.source });
    const respId = this.formatId(id, this.opts.idFormat?.resp ?? 'dec');
    if (!fault) this.submitResp(c, p.seq, 0, respId);
    else if (fault.action === 'delay') setTimeout(() => this.submitResp(c, p.seq, 0, respId), fault.delayMs ?? 1000);
    else if (fault.action === 'disconnect') c.sock.destroy();
    const text = sm.dataCoding === 0x08 ? decodeUcs2(payload) : payload.toString('latin1');
    if (concat) {
      const ref = `${to}|${concat[0]}`;
      const entry = this.partial.get(ref) ?? { total: concat[1]!, got: new Map<number, string>(), ids: [] };
      entry.got.set(seq, text);
      entry.ids.push(id);
      this.partial.set(ref, entry);
      if (entry.got.size === entry.total) {
        this.partial.delete(ref);
        const full = [...entry.got.entries()].sort((a, b) => a[0] - b[0]).map((e) => e[1]).join('');
        this.messages.push({ to, text: full, parts: entry.total, messageIds: entry.ids, at: Date.now() });
      }
    } else {
      this.messages.push({ to, text, parts: 1, messageIds: [id], at: Date.now() });
    }
    this.notify();
    if ((sm.registeredDelivery & 0x03) === 0) return; // §5.2.17: no receipt requested
    const from = this.opts.rewriteSourceTo ?? sm.source;
    const r: Receipt = { id, to, from, submitted: new Date() };
    setTimeout(() => {
      for (const stat of this.opts.interimFirst ?? []) this.sendReceipt(c, r, false, stat);
      this.sendReceipt(c, r);
      if (this.opts.duplicateFinal) this.sendReceipt(c, r);
    }, this.opts.receiptDelayMs ?? 20);
  }

  /** Ids are kept decimal inside; written in hex (upper case, as SMSCs that use hex do) when configured. */
  private formatId(id: string, f: 'dec' | 'hex'): string {
    return f === 'hex' ? BigInt(id).toString(16).toUpperCase() : id;
  }

  /**
   * Sends a mobile-originated message (a handset's reply) as §4.6.1 deliver_sm with esm_class 0 to a
   * bound session and resolves with the ESME's deliver_sm_resp command_status. UCS-2 (data_coding 8)
   * unless `dataCoding` says 0 (ASCII) or 15 (GBK, common on Chinese SMSCs: the caller passes GBK bytes).
   */
  sendMo(from: string, to: string, text: string | Buffer, opts: { dataCoding?: number; messageId?: string } = {}): Promise<number> {
    const target = this.boundConns()[0];
    if (!target) return Promise.reject(new Error('SMSC: no bound session for the MO'));
    const dc = opts.dataCoding ?? 8;
    const payload = Buffer.isBuffer(text) ? text : dc === 8 ? (() => { const b = Buffer.from(text, 'utf16le'); b.swap16(); return b; })() : Buffer.from(text, 'latin1');
    const body = encodeSm({
      serviceType: '', sourceTon: 2, sourceNpi: 1, source: from, destTon: 0, destNpi: 1, dest: to,
      esmClass: 0x00, protocolId: 0, priority: 0, scheduleDeliveryTime: '', validityPeriod: '',
      registeredDelivery: 0, replaceIfPresent: 0, dataCoding: dc, smDefaultMsgId: 0, shortMessage: payload,
      tlvs: opts.messageId ? [[TAG.receipted_message_id, cstr(opts.messageId)]] : [],
    });
    const seq = target.seq++;
    return new Promise<number>((resolve) => {
      target.pendingResp.set(seq, (resp) => {
        this.moAnswers.push({ from, text: Buffer.isBuffer(text) ? text.toString('hex') : text, status: resp.status });
        this.notify();
        resolve(resp.status);
      });
      this.write(target, encodePdu(CMD.deliver_sm, 0, seq, body));
    });
  }

  /** Sends the final DELIVRD receipts held back for `interimOnly` destinations. */
  releaseFinalReceipts(): void {
    for (const r of this.heldFinal.splice(0)) {
      const target = this.boundConns()[0];
      if (target) this.sendReceipt(target, r, true);
      else this.undelivered.push(r);
    }
  }

  private sendReceipt(c: Conn, r: Receipt, final = false, interimStat?: string): void {
    const interim = interimStat !== undefined || (!final && !!this.opts.interimOnly?.includes(r.to));
    if (interim && interimStat === undefined) this.heldFinal.push(r);
    const target = c.bound && !c.sock.destroyed ? c : this.boundConns()[0];
    if (!target) {
      this.undelivered.push(r);
      return;
    }
    const undeliv = this.opts.undeliverable?.includes(r.to);
    // message_state values §5.2.28: 1 ENROUTE, 2 DELIVERED, 5 UNDELIVERABLE, 6 ACCEPTED, 7 UNKNOWN.
    const interimState: Record<string, number> = { ENROUTE: 1, ACCEPTD: 6, UNKNOWN: 7 };
    const [stat, state, dlvrd, err] = interim ? [interimStat ?? 'ENROUTE', interimState[interimStat ?? 'ENROUTE'] ?? 1, 0, 0] : undeliv ? ['UNDELIV', 5, 0, 1] : ['DELIVRD', 2, 1, 0];
    const idf = this.opts.idFormat ?? { resp: 'dec', receipt: 'dec', tlv: true };
    const text = receiptText({ id: this.formatId(r.id, idf.receipt), sub: 1, dlvrd, submit: r.submitted, done: new Date(), stat, err, text: '' });
    const pending = this.unacked.get(target) ?? new Map<string, Receipt>();
    this.unacked.set(target, pending);
    pending.set(r.id, r);
    const seq = target.seq++;
    target.pendingResp.set(seq, (resp) => {
      if (resp.status === 0) pending.delete(r.id);
      this.notify();
    });
    // §4.6.1 deliver_sm as a receipt: source = the handset (original destination), destination = the
    // original source (or the rewritten service number), esm_class 0x04 (SMSC Delivery Receipt).
    const body = encodeSm({
      serviceType: '', sourceTon: 1, sourceNpi: 1, source: r.to, destTon: 5, destNpi: 0, dest: r.from,
      esmClass: 0x04, protocolId: 0, priority: 0, scheduleDeliveryTime: '', validityPeriod: '',
      registeredDelivery: 0, replaceIfPresent: 0, dataCoding: 0, smDefaultMsgId: 0, shortMessage: Buffer.from(text, 'latin1'),
      // §5.3.2.12: receipted_message_id is the id as given in submit_sm_resp.
      tlvs: idf.tlv ? [[TAG.receipted_message_id, cstr(this.formatId(r.id, idf.resp))], [TAG.message_state, Buffer.from([state])]] : [],
    });
    this.write(target, encodePdu(CMD.deliver_sm, 0, seq, body));
    this.receiptPdus.push({ source: r.to, dest: r.from, text, receiptedId: idf.tlv ? this.formatId(r.id, idf.resp) : '', state });
    this.receiptsSent.push(r.id);
  }

  /** Writes an SMSC-originated PDU (e.g. alert_notification, a mobile-originated deliver_sm) to every bound session. */
  injectToBound(commandId: number, body: Buffer): number {
    const bound = this.boundConns();
    for (const c of bound) this.write(c, encodePdu(commandId, 0, c.seq++, body));
    return bound.length;
  }

  /** Waits until `pred` holds, re-checked whenever a PDU arrives. */
  waitFor(pred: () => boolean, timeoutMs: number, what = 'condition'): Promise<void> {
    return waitForCondition(this.listeners, pred, timeoutMs, () => `SMSC: timed out waiting for ${what} (${this.messages.length} messages)`);
  }

  async stop(): Promise<void> {
    const s = this.server;
    if (!s) return;
    for (const c of [...this.conns]) c.sock.destroy();
    await new Promise<void>((resolve) => s.close(() => resolve()));
    this.server = null;
  }
}
