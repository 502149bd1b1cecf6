import type { SendTracker } from './types.ts';

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

/** A message id in the form ids are compared in: upper case, without leading zeros. */
export function normaliseMessageId(id: string): string {
  return id.toUpperCase().replace(/^0+/, '');
}

/**
 * The forms one SMSC message id may take, normalised: SMSCs differ in whether submit_sm_resp and the
 * receipt give it in hex or in decimal (SMPP 3.4 Appendix B leaves the receipt's "id:" format to the
 * SMSC), so a receipt is matched on its id as given, then read in the other base.
 */
export function messageIdVariants(id: string): string[] {
  const out = new Set<string>([normaliseMessageId(id)]);
  if (/^[0-9a-f]{1,30}$/i.test(id)) out.add(normaliseMessageId(BigInt(`0x${id}`).toString(10)));
  if (/^[0-9]{1,36}$/.test(id)) out.add(normaliseMessageId(BigInt(id).toString(16)));
  return [...out];
}

/**
 * The parts of a send, and those an earlier attempt already had accepted: a retry keeps the first
 * attempt's concatenation reference (so the handset joins the parts) and resumes at the first part
 * not accepted. `nextRef` gives a fresh reference when there was no earlier attempt.
 */
export async function partsToSend(body: string, tracker: SendTracker | undefined, nextRef: () => number): Promise<{ parts: SmsPart[]; done: ReadonlySet<number> }> {
  const concatRef = tracker?.concatRef ?? nextRef();
  const parts = splitUcs2(body, concatRef);
  const done = tracker ? await tracker.begin(parts.length, parts.length > 1 ? concatRef : null) : new Set<number>();
  return { parts, done };
}
