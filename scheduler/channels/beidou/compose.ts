import { capacityBitsFor } from './capacity.ts';
import { describeChars, encodeGb2312, outsideGb2312 } from './gb2312.ts';
import { splitBeidouBody } from './shortForms.ts';

export type TooLongPolicy = 'short' | 'split';

export type Composed =
  | { ok: true; frames: Buffer[]; form: 'long' | 'short' | 'split' }
  | { ok: false; reason: string };

/**
 * Splits text into frames of at most `capacity` GB2312 bytes on character boundaries, numbered "(i/n)"
 * when there is more than one; the number's width is what n needs. Never cuts a message silently.
 */
export function splitForCapacity(text: string, capacity: number): Buffer[] {
  const whole = encodeGb2312(text);
  if (whole.length <= capacity) return [whole];
  for (let digits = 1; digits <= 3; digits++) {
    const reserve = 2 * digits + 3; // "(" n "/" n ")"
    const room = capacity - reserve;
    if (room < 2) break;
    const pieces: string[] = [];
    let cur = '';
    let curLen = 0;
    for (const ch of text) {
      const n = ch.codePointAt(0)! < 0x80 ? 1 : 2;
      if (curLen + n > room) {
        pieces.push(cur);
        cur = '';
        curLen = 0;
      }
      cur += ch;
      curLen += n;
    }
    if (cur) pieces.push(cur);
    if (pieces.length < 10 ** digits) return pieces.map((p, i) => encodeGb2312(`(${i + 1}/${pieces.length})${p}`));
  }
  throw new Error(`card capacity ${capacity} bytes too small to split`);
}

/** Mixed mode: the 0xA4 flag, then GB2312. */
export function mixedPayload(gb: Buffer): Buffer {
  return Buffer.concat([Buffer.from([0xa4]), gb]);
}

/**
 * Chooses what goes out for a body (long form, optionally with a short form, see shortForms.ts) on a
 * card with `payloadBytes` of text: the long form when it fits; the short form when it does not and
 * the policy is 'short'; numbered frames of the long form otherwise. Characters outside GB2312 are
 * refused with the reason (the short form, which carries no names, is used instead when there is one).
 */
export function compose(body: string, payloadBytes: number, policy: TooLongPolicy): Composed {
  const { long, short } = splitBeidouBody(body);
  const badLong = outsideGb2312(long);
  const shortFits = short !== null && outsideGb2312(short).length === 0 && encodeGb2312(short).length <= payloadBytes;
  if (badLong.length) {
    if (shortFits) return { ok: true, frames: [encodeGb2312(short!)], form: 'short' };
    return {
      ok: false,
      reason: `北斗短报文只能承载 GB2312 字符，本消息含 ${describeChars(badLong)}，未发送 / Beidou messages carry GB2312 only; the text contains ${describeChars(badLong)} and was not sent`,
    };
  }
  const whole = encodeGb2312(long);
  if (whole.length <= payloadBytes) return { ok: true, frames: [whole], form: 'long' };
  if (policy === 'short' && shortFits) return { ok: true, frames: [encodeGb2312(short!)], form: 'short' };
  try {
    return { ok: true, frames: splitForCapacity(long, payloadBytes), form: 'split' };
  } catch (err) {
    return { ok: false, reason: String(err instanceof Error ? err.message : err) };
  }
}

export { capacityBitsFor };
