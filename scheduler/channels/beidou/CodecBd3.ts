import { frame } from '../nmea.ts';
import { decodeGb2312 } from './gb2312.ts';
import { decodeContent, displayCard, type BeidouCodec, type Feedback, type Inbound, type WireFrame } from './types.ts';

/** BD-3 $BDFKI failure reasons (TD3050-style interface notes): 6 frequency, 7 suppressed, 8 silence, 9 power, 10 no IC, 11 no permission. */
export const reasonsBd3: Record<string, { kind: 'interval' | 'suppressed' | 'refused'; detail: string }> = {
  '6': { kind: 'interval', detail: 'interval not elapsed (frequency)' },
  '7': { kind: 'suppressed', detail: 'transmit suppressed' },
  '8': { kind: 'suppressed', detail: 'radio silence set on the terminal' },
  '9': { kind: 'suppressed', detail: 'transmitter power not locked' },
  '10': { kind: 'refused', detail: 'no IC card detected in the terminal' },
  '11': { kind: 'refused', detail: 'card has no permission for this message' },
};

/**
 * BD-3 short-message sentences: $CCICR,0,00 -> $BDICP (card, broadcast id, ..., encryption N/E at 6,
 * service frequency at 14, level at 15 — level 0 occurs); $CCTCQ,<to>,<frequency point 2>,<confirm
 * 1 none/2 wanted>,<encoding 3 mixed>,<hex>,<0 single> -> $BDFKI,<hhmmss[.ss]>,TCQ,<Y/N>,<reason>,<wait s>;
 * $BDTCI,<from>,<to>,<point>,<hhmmss>,<encoding>,<confirm>,<hex>; $BDHZR as 2.1 for confirmations.
 */
export class CodecBd3 implements BeidouCodec {
  readonly protocol = 'bd3' as const;

  cardQuery(): Buffer {
    return Buffer.from(frame('CCICR,0,00'), 'latin1');
  }

  send(_own: string, to: string, payload: Buffer, wantReceipt: boolean): Buffer {
    return Buffer.from(frame(`CCTCQ,${displayCard(to)},2,${wantReceipt ? 2 : 1},3,${payload.toString('hex').toUpperCase()},0`), 'latin1');
  }

  decode(f: WireFrame): Inbound | null {
    if (f.kind !== 'ascii') return null;
    const v = f.fields;
    if (f.id === 'BDICP') {
      const card = v[0] ?? '';
      const freq = v[13] ?? '';
      const level = v[14] ?? '';
      if (!/^\d{6,8}$/.test(card) || !/^\d+$/.test(freq) || !/^\d$/.test(level)) return null;
      return { kind: 'card', card: { card: displayCard(card), broadcastId: v[1] ?? '', level: Number(level), encrypted: v[5] === 'E', intervalS: Number(freq) } };
    }
    if (f.id === 'BDFKI' && v[1] === 'TCQ') return { kind: 'feedback', feedback: feedbackBd3(v) };
    if (f.id === 'BDTCI') {
      const from = v[0] ?? '';
      const hex = v[6] ?? '';
      if (!/^\d{6,8}$/.test(from) || !/^([0-9A-Fa-f]{2})*$/.test(hex)) return null;
      return { kind: 'message', from: displayCard(from), text: decodeContent(Buffer.from(hex, 'hex'), decodeGb2312) };
    }
    if (f.id === 'BDHZR' && /^\d{6,8}$/.test(v[0] ?? '')) return { kind: 'receipt', card: displayCard(v[0]!) };
    return null;
  }
}

function feedbackBd3(v: string[]): Feedback {
  // v[0] is the leading time field (hhmmss.ss); the instruction is v[1].
  const [, , ok, reason, wait] = v;
  if (ok === 'Y') return { kind: 'ok' };
  const waitS = /^\d+$/.test(wait ?? '') ? Number(wait) : 0;
  const r = reasonsBd3[reason ?? ''];
  if (!r) return { kind: 'refused', detail: `terminal refused the message (reason ${reason ?? '?'})` };
  return r.kind === 'refused' ? { kind: 'refused', detail: r.detail } : { kind: r.kind, waitS, detail: r.detail };
}
