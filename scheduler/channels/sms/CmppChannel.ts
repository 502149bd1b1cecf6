import net from 'node:net';
import { z } from 'zod';
import { createLogger } from '../../../infra/logger.ts';
import type { ChannelResult, DeliveryReceipt, SendTracker, SmsProvider, SmsProviderEvents } from '../types.ts';
import { partsToSend } from '../smsEncoding.ts';
import { AnswerWrites } from '../AnswerWrites.ts';
import { receiptOutcome } from '../SmppChannel.ts';
import {
  CMPP, authenticatorIsmg, connectBody, deliverResp, frame, readConnectResp, readDeliver, readFrames, readSubmitResp, submitBody,
  type CmppFrame, type CmppVersion,
} from './cmppCodec.ts';

// SMS through a China Mobile 106 gateway (ISMG) over CMPP 2.0 / 3.0, written from the specification
// (no npm CMPP library is well kept). One long-lived TCP link: CONNECT authenticated both ways, SUBMIT
// of UCS-2 parts (TP_udhi with the 6-octet concatenation header for long text), status reports and
// replies arriving as DELIVER (Registered_Delivery 1 / 0), ACTIVE_TEST both ways.

const log = createLogger('scheduler.cmpp');

export const CmppConfig = z.object({
  host: z.string().default('127.0.0.1'),
  port: z.number().int().min(1).max(65535),
  version: z.enum(['2.0', '3.0']).default('3.0'),
  /** Source_Addr: the SP's enterprise code (企业代码), 6 characters. */
  sourceAddr: z.string().min(1).max(6),
  sharedSecret: z.string().min(1).max(64),
  /** Service_Id agreed with the carrier. */
  serviceId: z.string().max(10).default(''),
  /** Src_Id: the 106 service number; the send id is appended as an extension when it fits 21 digits. */
  srcId: z.string().regex(/^\d{1,21}$/),
  responseTimeoutMs: z.number().int().min(100).max(120_000).default(10_000),
  activeTestMs: z.number().int().min(1000).max(600_000).default(60_000),
});
export type CmppConfig = z.input<typeof CmppConfig>;

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** CMPP SUBMIT_RESP results the gateway may clear (8: flow control, too fast). */
const retryableResult = new Set([8]);

export class CmppChannel implements SmsProvider {
  readonly name = 'sms' as const;
  readonly kind = 'cmpp' as const;
  private readonly cfg: z.infer<typeof CmppConfig>;
  private sock: net.Socket | null = null;
  private ready: Promise<void> | null = null;
  private seq = 1;
  private readonly answers = new AnswerWrites();
  private readonly pending = new Map<number, (f: CmppFrame) => void>();
  private closed = false;
  private ref = Math.floor(Math.random() * 256);
  private busy: Promise<unknown> = Promise.resolve();
  private activeTimer: NodeJS.Timeout | null = null;
  private readonly moParts = new Map<string, { total: number; got: Map<number, Buffer>; fmt: number }>();

  constructor(config: CmppConfig, private readonly events: SmsProviderEvents) {
    this.cfg = CmppConfig.parse(config);
  }

  private get version(): CmppVersion {
    return this.cfg.version;
  }

  private nextSeq(): number {
    this.seq = this.seq >= 0x7fffffff ? 1 : this.seq + 1;
    return this.seq;
  }

  private connect(): Promise<void> {
    if (this.ready) return this.ready;
    this.ready = new Promise<void>((resolve, reject) => {
      const sock = net.connect({ host: this.cfg.host, port: this.cfg.port });
      this.sock = sock;
      let buf: Buffer = Buffer.alloc(0);
      let authed = false;
      const drop = (why: string) => {
        if (this.sock === sock) {
          this.sock = null;
          this.ready = null;
          if (this.activeTimer) clearInterval(this.activeTimer);
          this.activeTimer = null;
        }
        for (const [k, cb] of this.pending) {
          this.pending.delete(k);
          cb({ commandId: -1, seq: k, body: Buffer.alloc(0) });
        }
        if (!authed) reject(new Error(why));
      };
      sock.on('error', (err) => {
        log.warn({ err: err.message }, 'cmpp link error');
        sock.destroy();
        drop(err.message);
      });
      sock.on('close', () => drop('connection closed'));
      sock.on('data', (d) => {
        buf = Buffer.concat([buf, d]);
        let r: ReturnType<typeof readFrames>;
        try {
          r = readFrames(buf);
        } catch (err) {
          log.warn({ err: String(err) }, 'cmpp framing error; link dropped');
          sock.destroy();
          return;
        }
        buf = r.rest;
        for (const f of r.frames) this.onFrame(sock, f);
      });
      sock.on('connect', () => {
        const { body, auth } = connectBody(this.cfg.sourceAddr, this.cfg.sharedSecret, this.version, new Date());
        const seq = this.nextSeq();
        this.pending.set(seq, (f) => {
          if (f.commandId !== CMPP.CONNECT_RESP) return drop('no CONNECT_RESP');
          const resp = readConnectResp(f.body, this.version);
          if (resp.status !== 0) {
            sock.destroy();
            return drop(`CONNECT refused: status ${resp.status}`);
          }
          // The gateway answers with MD5(Status + AuthenticatorSource + secret): it knows our secret too.
          if (!authenticatorIsmg(0, auth, this.cfg.sharedSecret, this.version).equals(resp.authIsmg)) {
            sock.destroy();
            return drop('AuthenticatorISMG does not match: not our gateway');
          }
          authed = true;
          this.activeTimer = setInterval(() => this.write(sock, CMPP.ACTIVE_TEST, this.nextSeq()), this.cfg.activeTestMs);
          this.activeTimer.unref();
          resolve();
        });
        sock.write(frame(CMPP.CONNECT, seq, body));
      });
    });
    this.ready.catch(() => undefined);
    return this.ready;
  }

  private write(sock: net.Socket, cmd: number, seq: number, body?: Buffer): void {
    if (!sock.destroyed) sock.write(frame(cmd, seq, body));
  }

  private onFrame(sock: net.Socket, f: CmppFrame): void {
    try {
      if (f.commandId & 0x80000000) {
        const cb = this.pending.get(f.seq);
        this.pending.delete(f.seq);
        cb?.(f);
        return;
      }
      if (f.commandId === CMPP.ACTIVE_TEST) return this.write(sock, CMPP.ACTIVE_TEST_RESP, f.seq, Buffer.from([0]));
      if (f.commandId === CMPP.TERMINATE) {
        this.write(sock, CMPP.TERMINATE_RESP, f.seq);
        sock.end();
        return;
      }
      if (f.commandId === CMPP.DELIVER) return this.onDeliver(sock, f);
    } catch (err) {
      log.warn({ err: String(err), command: f.commandId }, 'bad CMPP frame ignored');
    }
  }

  /** Status reports and replies; DELIVER_RESP only once stored (result 9 otherwise, so the gateway resends). */
  private onDeliver(sock: net.Socket, f: CmppFrame): void {
    const d = readDeliver(f.body, this.version);
    const rawId = Buffer.from(f.body.subarray(0, 8));
    const answer = (result: number) => this.write(sock, CMPP.DELIVER_RESP, f.seq, deliverResp(rawId, result, this.version));
    let store: (() => unknown) | null = null;
    if (d.report) {
      const outcome = receiptOutcome(d.report.stat);
      const receipt: DeliveryReceipt = {
        providerMessageId: d.report.msgId, delivered: outcome === 'delivered', outcome, stat: d.report.stat, err: '000', recipient: d.report.dest,
      };
      const ext = d.destId.startsWith(this.cfg.srcId) ? d.destId.slice(this.cfg.srcId.length) : '';
      if (/^\d{1,12}$/.test(ext)) receipt.sendRef = Number(ext);
      store = async () => {
        await this.answers.settled();
        return this.events.onReceipt(receipt);
      };
    } else {
      let content = d.content;
      let fmt = d.msgFmt;
      if (d.udhi && content.length > 6 && content[0] === 5 && content[1] === 0) {
        const key = `${d.src}|${content[3]}`;
        const entry = this.moParts.get(key) ?? { total: content[4]!, got: new Map<number, Buffer>(), fmt };
        entry.got.set(content[5]!, Buffer.from(content.subarray(6)));
        if (!this.moParts.has(key) && this.moParts.size >= 200) this.moParts.delete(this.moParts.keys().next().value!);
        this.moParts.set(key, entry);
        if (entry.got.size < entry.total) return answer(0);
        this.moParts.delete(key);
        content = Buffer.concat([...entry.got.entries()].sort((a, b) => a[0] - b[0]).map((e) => e[1]));
        fmt = entry.fmt;
      }
      const text = fmt === 8 ? (() => { const b = Buffer.from(content.subarray(0, content.length & ~1)); b.swap16(); return b.toString('utf16le'); })()
        : fmt === 15 ? new TextDecoder('gbk').decode(content) : content.toString('latin1');
      const onMo = this.events.onMo;
      if (onMo) store = () => onMo({ from: d.src, to: d.destId, text, receivedAt: new Date(), providerMessageId: d.msgId });
    }
    if (!store) return answer(0);
    Promise.resolve().then(store).then(() => answer(0), (err: unknown) => {
      log.warn({ err: String(err) }, 'DELIVER not stored; the gateway will resend it');
      answer(9);
    });
  }

  private request(cmd: number, body: Buffer): Promise<CmppFrame> {
    return new Promise<CmppFrame>((resolve, reject) => {
      const sock = this.sock;
      if (!sock) return reject(Object.assign(new Error('not connected'), { uncertain: false }));
      const seq = this.nextSeq();
      const timer = setTimeout(() => {
        this.pending.delete(seq);
        reject(Object.assign(new Error('SUBMIT_RESP timeout'), { uncertain: true }));
      }, this.cfg.responseTimeoutMs);
      this.pending.set(seq, (f) => {
        clearTimeout(timer);
        if (f.commandId === -1) reject(Object.assign(new Error('connection lost before SUBMIT_RESP'), { uncertain: true }));
        else resolve(f);
      });
      sock.write(frame(cmd, seq, body));
    });
  }

  private srcIdFor(ref: number | undefined): string {
    const ext = ref === undefined ? '' : String(ref);
    return this.cfg.srcId.length + ext.length <= 21 ? this.cfg.srcId + ext : this.cfg.srcId;
  }

  /** Parts go out one at a time, each recorded in the tracker, like SMPP (resume at the first unacknowledged part). */
  async send(address: string, body: string, ref?: number, tracker?: SendTracker): Promise<ChannelResult> {
    if (this.closed) return { ok: false, retryable: true, unavailable: true, reason: 'channel closed' };
    const run = this.busy.then(() => this.sendNow(address, body, ref, tracker));
    this.busy = run.catch(() => undefined);
    return run;
  }

  private async sendNow(address: string, body: string, ref: number | undefined, tracker: SendTracker | undefined): Promise<ChannelResult> {
    try {
      await this.connect();
    } catch (err) {
      return { ok: false, retryable: true, unavailable: true, reason: `cmpp: ${(err as Error).message}` };
    }
    const dest = address.replace(/^(\+?86|0086)(?=1\d{10}$)/, '');
    try {
      const { parts, done } = await partsToSend(body, tracker, () => (this.ref = (this.ref + 1) & 0xff));
      const ids: Array<{ providerMessageId: string | null }> = [];
      for (const [i, part] of parts.entries()) {
        const partNo = i + 1;
        if (done.has(partNo)) continue;
        await tracker?.submitting(partNo);
        for (let attempt = 0; ; attempt++) {
          let resp: CmppFrame;
          try {
            resp = await this.request(CMPP.SUBMIT, submitBody({
              pkTotal: parts.length, pkNumber: partNo, registeredDelivery: 1, serviceId: this.cfg.serviceId, udhi: part.udh !== null,
              msgFmt: 8, msgSrc: this.cfg.sourceAddr, srcId: this.srcIdFor(ref), dest,
              content: part.udh ? Buffer.concat([part.udh, part.payload]) : part.payload,
            }, this.version));
          } catch (err) {
            const uncertain = (err as { uncertain?: boolean }).uncertain === true;
            if (!uncertain) await tracker?.refused(partNo);
            return { ok: false, retryable: true, uncertain, unavailable: !uncertain, reason: `cmpp: ${(err as Error).message} at part ${partNo}/${parts.length}` };
          }
          const r = readSubmitResp(resp.body, this.version);
          if (r.result === 0) {
            if (tracker) await this.answers.track(tracker.accepted(partNo, r.msgId));
            ids.push({ providerMessageId: r.msgId });
            break;
          }
          if (retryableResult.has(r.result) && attempt < 5) {
            await sleep(200 * 2 ** attempt);
            continue;
          }
          await tracker?.refused(partNo);
          return { ok: false, retryable: retryableResult.has(r.result), reason: `cmpp SUBMIT result ${r.result} at part ${partNo}/${parts.length}` };
        }
      }
      return { ok: true, parts: ids, total: parts.length };
    } catch (err) {
      return { ok: false, retryable: true, uncertain: true, reason: `cmpp: ${(err as Error).message}` };
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.activeTimer) clearInterval(this.activeTimer);
    const sock = this.sock;
    this.sock = null;
    if (!sock) return;
    sock.write(frame(CMPP.TERMINATE, this.nextSeq()));
    await new Promise<void>((resolve) => {
      const t = setTimeout(() => { sock.destroy(); resolve(); }, 500);
      sock.once('close', () => { clearTimeout(t); resolve(); });
      sock.end();
    });
  }
}
