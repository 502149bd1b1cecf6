import { frame } from '../nmea.ts';
import { decodeGb2312 } from './gb2312.ts';
import { decodeContent, displayCard, type BeidouCodec, type Feedback, type Inbound, type WireFrame } from './types.ts';

/** 2.1 $BDFKI suppression indication (发射抑制指示): 0 none, 1 suppression command received, 2 low battery, 3 radio silence. */
export const suppression21: Record<string, string> = {
  '1': 'transmit suppressed by the network (suppression command received)',
  '2': 'transmit suppressed: terminal battery low',
  '3': 'radio silence set on the terminal',
};

/**
 * RDSS 2.1 ASCII sentences: $CCICA -> $BDICI (card, serial, broadcast id, user feature, service
 * frequency s, level, encryption E/N, subordinates); $CCTXA,<to>,1,2,<A4+GB2312 hex> (mode 2 = mixed)
 * -> $BDFKI,TXA,<executed>,<frequency ok>,<suppression>,<wait mmss>; $BDTXR,<type>,<from>,<mode>,<hhmm>,
 * <hex>; $BDHZR,<card>,<count>,... receipt from the recipient's card.
 */
export class Codec21 implements BeidouCodec {
  readonly protocol = '2.1' as const;

  cardQuery(): Buffer {
    return Buffer.from(frame('CCICA,0,00'), 'latin1');
  }

  send(_own: string, to: string, payload: Buffer): Buffer {
    return Buffer.from(frame(`CCTXA,${displayCard(to)},1,2,${payload.toString('hex').toUpperCase()}`), 'latin1');
  }

  decode(f: WireFrame): Inbound | null {
    if (f.kind !== 'ascii') return null;
    const v = f.fields;
    if (f.id === 'BDICI') {
      const [card, , broadcastId, , freq, level, enc] = v;
      if (!card || !/^\d{6,8}$/.test(card) || !/^\d+$/.test(freq ?? '') || !/^\d$/.test(level ?? '')) return null;
      return { kind: 'card', card: { card: displayCard(card), broadcastId: broadcastId ?? '', level: Number(level), encrypted: enc === 'E', intervalS: Number(freq) } };
    }
    if (f.id === 'BDFKI' && v[0] === 'TXA') return { kind: 'feedback', feedback: feedback21(v) };
    if (f.id === 'BDTXR') {
      const from = v[1] ?? '';
      const hex = v[4] ?? '';
      if (!/^\d{6,8}$/.test(from) || !/^([0-9A-Fa-f]{2})*$/.test(hex)) return null;
      return { kind: 'message', from: displayCard(from), text: decodeContent(Buffer.from(hex, 'hex'), decodeGb2312) };
    }
    if (f.id === 'BDHZR' && /^\d{6,8}$/.test(v[0] ?? '')) return { kind: 'receipt', card: displayCard(v[0]!) };
    return null;
  }
}

function feedback21(v: string[]): Feedback {
  const [, exec, freqOk, suppress, wait] = v;
  if (exec === 'Y') return { kind: 'ok' };
  const waitS = wait && /^\d{4}$/.test(wait) ? Number(wait.slice(0, 2)) * 60 + Number(wait.slice(2)) : 0;
  if (freqOk === 'N') return { kind: 'interval', waitS, detail: 'interval not elapsed (frequency)' };
  const why = suppression21[suppress ?? '0'];
  if (why) return { kind: 'suppressed', waitS, detail: why };
  return { kind: 'refused', detail: 'terminal refused the message (card error or no permission)' };
}
