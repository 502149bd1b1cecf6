/** One SMS part as sent in submit_sm: UCS-2 payload, with a concatenation UDH when split. */
export interface SmsPart {
  udh: Buffer | null;
  payload: Buffer;
  text: string;
}

export const ucs2SingleChars = 70;
export const ucs2PartChars = 67;

/** Splits into UTF-16 code units without cutting a surrogate pair in two. */
function chunks(text: string, size: number): string[] {
  const out: string[] = [];
  let i = 0;
  while (i < text.length) {
    let end = Math.min(text.length, i + size);
    const last = text.charCodeAt(end - 1);
    if (end < text.length && last >= 0xd800 && last <= 0xdbff) end--;
    out.push(text.slice(i, end));
    i = end;
  }
  return out;
}

function ucs2(text: string): Buffer {
  const b = Buffer.alloc(text.length * 2);
  for (let i = 0; i < text.length; i++) b.writeUInt16BE(text.charCodeAt(i), i * 2);
  return b;
}

/**
 * UCS-2 (data_coding 8): 70 characters in one message, else parts of 67 with the 6-byte UDH
 * 05 00 03 <ref> <total> <seq> (8-bit reference concatenation, 3GPP TS 23.040).
 */
export function splitUcs2(text: string, ref: number): SmsPart[] {
  if (text.length <= ucs2SingleChars) return [{ udh: null, payload: ucs2(text), text }];
  const pieces = chunks(text, ucs2PartChars);
  if (pieces.length > 255) throw new Error('message too long for concatenated SMS');
  return pieces.map((p, i) => ({
    udh: Buffer.from([0x05, 0x00, 0x03, ref & 0xff, pieces.length, i + 1]),
    payload: ucs2(p),
    text: p,
  }));
}
