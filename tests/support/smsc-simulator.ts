import smpp, { type PDU, type Session, type Server } from 'smpp';
import type { AddressInfo } from 'node:net';
import { waitForCondition } from './condition.ts';

// A real SMPP 3.4 endpoint for tests: binds transceivers, answers submit_sm with a message id,
// reassembles concatenated UCS-2 messages and sends delivery receipts (deliver_sm, esm_class 0x04).

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
  /**
   * drop: never answer; delay: answer after `delayMs`; disconnect: close the connection instead of answering.
   */
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
  /** Faults on chosen parts: missing / late answers and dropped links in the middle of a message. */
  faults?: SubmitFault[];
  /** Destinations whose receipts say ENROUTE (interim) until releaseFinalReceipts(). */
  interimOnly?: string[];
  systemId?: string;
  password?: string;
  /** Answer ESME_RTHROTTLED to this many submit_sm before accepting (per destination, per message). */
  throttleFirst?: number;
  /** Destinations the SMSC rejects with ESME_RINVDSTADR. */
  rejectDestinations?: string[];
  /** Destinations accepted but never delivered: their receipt says UNDELIV. */
  undeliverable?: string[];
  /** Delay before each submit_sm_resp, to make a run last long enough to be interrupted. */
  respondDelayMs?: number;
  receiptDelayMs?: number;
}

export class SmscSimulator {
  private server: Server | null = null;
  readonly messages: ReceivedMessage[] = [];
  readonly submits: Array<{ to: string; status: number; dataCoding: number; esmClass: number; udh: boolean }> = [];
  readonly receiptsSent: string[] = [];
  /** Every part the SMSC took, in order (duplicates included: tests assert there are none). */
  readonly partLog: AcceptedPart[] = [];
  private readonly faultUses = new Map<SubmitFault, number>();
  private readonly heldFinal: Array<{ id: string; to: string; from: string }> = [];
  private nextId = 1;
  private readonly bound = new Set<Session>();
  private readonly undelivered: Array<{ id: string; to: string; from: string }> = [];
  private readonly unacked = new Map<Session, Map<string, { id: string; to: string; from: string }>>();
  private readonly partial = new Map<string, { total: number; got: Map<number, string>; ids: string[] }>();
  private readonly throttled = new Map<string, number>();
  private readonly listeners = new Set<() => void>();
  port = 0;

  constructor(private readonly opts: SmscOptions = {}) {}

  /** Listens on `port` (0: any; a stopped simulator can be started again on its old port). */
  async start(port = 0): Promise<number> {
    const server = smpp.createServer({}, (session: Session) => this.onSession(session));
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

  private onSession(session: Session): void {
    session.on('error', () => undefined);
    session.on('bind_transceiver', (pdu: PDU) => {
      const ok = (this.opts.systemId ?? 'sched') === pdu.system_id && (this.opts.password ?? 'secret') === pdu.password;
      session.send(pdu.response({ command_status: ok ? 0 : 0x0d, system_id: 'SIMSC' }));
      if (!ok) return;
      this.bound.add(session);
      // Like a real SMSC: receipts that could not be delivered wait for the next bind of the account.
      for (const r of this.undelivered.splice(0)) this.sendReceipt(session, r.id, r.to, r.from);
    });
    session.on('close', () => {
      this.bound.delete(session);
      // Receipts never acknowledged with deliver_sm_resp are kept for the next bind.
      const unacked = this.unacked.get(session);
      this.unacked.delete(session);
      if (unacked) for (const r of unacked.values()) this.undelivered.push(r);
      const next = [...this.bound][0];
      if (next) for (const r of this.undelivered.splice(0)) this.sendReceipt(next, r.id, r.to, r.from);
    });
    session.on('enquire_link', (pdu: PDU) => session.send(pdu.response()));
    session.on('unbind', (pdu: PDU) => {
      session.send(pdu.response());
      session.close();
    });
    session.on('submit_sm', (pdu: PDU) => {
      const respond = () => this.onSubmit(session, pdu);
      if (this.opts.respondDelayMs) setTimeout(respond, this.opts.respondDelayMs);
      else respond();
    });
  }

  private onSubmit(session: Session, pdu: PDU): void {
    const to = String(pdu.destination_addr);
    const esmClass = Number(pdu.esm_class);
    const dataCoding = Number(pdu.data_coding);
    const sm = pdu.short_message as { udh?: Buffer[]; message?: string };
    const udh = sm.udh?.find((u) => u[0] === 0x00);
    const key = `${to}|${udh ? udh[2] : 'single'}|${udh ? udh[4] : 1}`;
    if (this.opts.rejectDestinations?.includes(to)) {
      this.submits.push({ to, status: 0x0b, dataCoding, esmClass, udh: !!udh });
      session.send(pdu.response({ command_status: 0x0b }));
      this.notify();
      return;
    }
    const throttledSoFar = this.throttled.get(key) ?? 0;
    if (throttledSoFar < (this.opts.throttleFirst ?? 0)) {
      this.throttled.set(key, throttledSoFar + 1);
      this.submits.push({ to, status: 0x58, dataCoding, esmClass, udh: !!udh });
      session.send(pdu.response({ command_status: 0x58 }));
      this.notify();
      return;
    }
    const seq = udh ? udh[4]! : 1;
    const fault = this.opts.faults?.find((f) => f.part === seq && (f.to === undefined || f.to === to) && (this.faultUses.get(f) ?? 0) < (f.times ?? 1));
    if (fault) this.faultUses.set(fault, (this.faultUses.get(fault) ?? 0) + 1);
    if (fault && !fault.accept) {
      this.submits.push({ to, status: -1, dataCoding, esmClass, udh: !!udh });
      if (fault.action === 'disconnect') session.destroy();
      this.notify();
      return; // lost: no answer, nothing taken
    }
    const id = `M${(this.nextId++).toString(16).padStart(8, '0')}`;
    this.submits.push({ to, status: 0, dataCoding, esmClass, udh: !!udh });
    this.partLog.push({ to, ref: udh ? udh[2]! : -1, seq, total: udh ? udh[3]! : 1, id, from: String(pdu.source_addr) });
    if (!fault) session.send(pdu.response({ message_id: id }));
    else if (fault.action === 'delay') setTimeout(() => session.send(pdu.response({ message_id: id })), fault.delayMs ?? 1000);
    else if (fault.action === 'disconnect') session.destroy();
    const text = typeof sm.message === 'string' ? sm.message : '';
    if (udh) {
      const ref = `${to}|${udh[2]}`;
      const entry = this.partial.get(ref) ?? { total: udh[3]!, got: new Map<number, string>(), ids: [] };
      entry.got.set(udh[4]!, text);
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
    const from = String(pdu.source_addr);
    setTimeout(() => this.sendReceipt(session, id, to, from), this.opts.receiptDelayMs ?? 20);
  }

  /** Sends the final DELIVRD receipts held back for `interimOnly` destinations. */
  releaseFinalReceipts(): void {
    for (const r of this.heldFinal.splice(0)) {
      const target = [...this.bound][0];
      if (target) this.sendReceipt(target, r.id, r.to, r.from, true);
      else this.undelivered.push(r);
    }
  }

  private sendReceipt(session: Session, id: string, to: string, from: string, final = false): void {
    const d = new Date().toISOString().replace(/\D/g, '').slice(2, 12);
    const interim = !final && this.opts.interimOnly?.includes(to);
    if (interim) this.heldFinal.push({ id, to, from });
    const target = this.bound.has(session) ? session : [...this.bound][0];
    if (!target) {
      this.undelivered.push({ id, to, from });
      return;
    }
    const pending = this.unacked.get(target) ?? new Map<string, { id: string; to: string; from: string }>();
    this.unacked.set(target, pending);
    pending.set(id, { id, to, from });
    try {
      target.deliver_sm({
        source_addr: to,
        destination_addr: from,
        esm_class: 0x04,
        short_message: interim
          ? `id:${id} sub:001 dlvrd:000 submit date:${d} done date:${d} stat:ENROUTE err:000 text:`
          : this.opts.undeliverable?.includes(to)
            ? `id:${id} sub:001 dlvrd:000 submit date:${d} done date:${d} stat:UNDELIV err:001 text:`
            : `id:${id} sub:001 dlvrd:001 submit date:${d} done date:${d} stat:DELIVRD err:000 text:`,
        receipted_message_id: id,
        message_state: interim ? 1 : this.opts.undeliverable?.includes(to) ? 5 : 2,
      }, (resp: PDU) => {
        if (resp.command_status === 0) pending.delete(id);
        this.notify();
      });
      this.receiptsSent.push(id);
    } catch {
      // session gone: the real SMSC would retry; tests that care wait for receipts explicitly
    }
  }

  /** Waits until `pred` holds, re-checked whenever a PDU arrives. */
  waitFor(pred: () => boolean, timeoutMs: number, what = 'condition'): Promise<void> {
    return waitForCondition(this.listeners, pred, timeoutMs, () => `SMSC: timed out waiting for ${what} (${this.messages.length} messages)`);
  }


  async stop(): Promise<void> {
    const s = this.server;
    if (!s) return;
    for (const sess of [...s.sessions]) sess.destroy();
    await new Promise<void>((resolve) => s.close(() => resolve()));
    this.server = null;
  }
}
