import { decodeGb2312 } from './gb2312.ts';
import { decodeContent, displayCard, type BeidouCodec, type Feedback, type Inbound, type WireFrame } from './types.ts';

/** $FKXX feedback flags (4.0): 0 success, 1 failure, 2 signal not locked, 3 power low, 4 frequency not reached, 5 crypto error, 6 CRC error. */
export const flags40: Record<number, { kind: 'ok' | 'interval' | 'suppressed' | 'refused'; detail: string }> = {
  0: { kind: 'ok', detail: 'ok' },
  1: { kind: 'refused', detail: 'terminal refused the message (failure)' },
  2: { kind: 'suppressed', detail: 'signal not locked' },
  3: { kind: 'suppressed', detail: 'terminal power low' },
  4: { kind: 'interval', detail: 'interval not elapsed (frequency)' },
  5: { kind: 'refused', detail: 'encryption/decryption error' },
  6: { kind: 'refused', detail: 'terminal reports a checksum error in our frame' },
};

/** "$" + 4-char command + 2-byte total length + 3-byte user address + payload + XOR of all bytes before it. */
export function frame40(cmd: string, address: number, payload: Buffer): Buffer {
  const len = 5 + 2 + 3 + payload.length + 1;
  const b = Buffer.alloc(len);
  b.write(`$${cmd}`, 0, 'latin1');
  b.writeUInt16BE(len, 5);
  b.writeUIntBE(address & 0xffffff, 7, 3);
  payload.copy(b, 10);
  let x = 0;
  for (let i = 0; i < len - 1; i++) x ^= b[i]!;
  b[len - 1] = x;
  return b;
}

/**
 * RDSS 4.0 binary frames: $ICJC (frame no. 0) -> $ICXX (broadcast id 3, user feature 1, service
 * frequency 2 (s), level 1, encryption flag 1, subordinates 2); $TXSQ (category 0x46 = communication,
 * code; mixed content starts 0xA4; destination 3; length in bits 2; answer flag 1) -> $FKXX (flag 1,
 * additional 4: for flag 4 the seconds left); $TXXX (category 1, sender 3, hh mm, length in bits 2, content, CRC flag 1).
 */
export class Codec40 implements BeidouCodec {
  readonly protocol = '4.0' as const;

  cardQuery(): Buffer {
    return frame40('ICJC', 0, Buffer.from([0]));
  }

  send(own: string, to: string, payload: Buffer, wantReceipt: boolean): Buffer {
    const p = Buffer.alloc(1 + 3 + 2 + 1 + payload.length);
    p[0] = 0x46;
    p.writeUIntBE(Number(to), 1, 3);
    p.writeUInt16BE(payload.length * 8, 4);
    p[6] = wantReceipt ? 1 : 0;
    payload.copy(p, 7);
    return frame40('TXSQ', Number(own), p);
  }

  decode(f: WireFrame): Inbound | null {
    if (f.kind !== 'binary') return null;
    const b = f.bytes;
    const addr = b.readUIntBE(7, 3);
    if (f.cmd === 'ICXX' && b.length >= 22) {
      return { kind: 'card', card: { card: displayCard(addr), broadcastId: String(b.readUIntBE(11, 3)), intervalS: b.readUInt16BE(15), level: b[17]!, encrypted: b[18] !== 0 } };
    }
    if (f.cmd === 'FKXX' && b.length >= 16) {
      const flag = b[10]!;
      const f4 = flags40[flag] ?? { kind: 'refused' as const, detail: `terminal feedback flag ${flag}` };
      const fb: Feedback = f4.kind === 'ok' ? { kind: 'ok' }
        : f4.kind === 'refused' ? { kind: 'refused', detail: f4.detail }
        : { kind: f4.kind, waitS: f4.kind === 'interval' ? b.readUInt32BE(11) : 0, detail: f4.detail };
      return { kind: 'feedback', feedback: fb };
    }
    if (f.cmd === 'TXXX' && b.length >= 19) {
      const from = b.readUIntBE(11, 3);
      const bits = b.readUInt16BE(16);
      const content = b.subarray(18, Math.min(18 + Math.ceil(bits / 8), b.length - 2));
      return { kind: 'message', from: displayCard(from), text: decodeContent(content, decodeGb2312) };
    }
    return null;
  }
}
