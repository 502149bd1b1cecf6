import iconv from 'iconv-lite';

/**
 * Strict GB2312: iconv-lite's "gb2312" is really GBK (cp936) and would happily encode rare characters
 * many Beidou handsets cannot show, and turns everything else into '?'. A character is accepted only
 * when it is ASCII or encodes to two bytes in the GB2312 rows (lead 0xA1-0xF7, trail 0xA1-0xFE).
 */
export function outsideGb2312(text: string): string[] {
  const bad: string[] = [];
  for (const ch of text) {
    const cp = ch.codePointAt(0)!;
    if (cp < 0x80) {
      if (cp < 0x20) bad.push(ch);
      continue;
    }
    const b = iconv.encode(ch, 'gb2312');
    const ok = b.length === 2 && b[0]! >= 0xa1 && b[0]! <= 0xf7 && b[1]! >= 0xa1 && b[1]! <= 0xfe && iconv.decode(b, 'gb2312') === ch;
    if (!ok && !bad.includes(ch)) bad.push(ch);
  }
  return bad;
}

export function describeChars(chars: string[]): string {
  return chars.map((c) => `「${c}」U+${c.codePointAt(0)!.toString(16).toUpperCase().padStart(4, '0')}`).join('、');
}

export function encodeGb2312(text: string): Buffer {
  const bad = outsideGb2312(text);
  if (bad.length) throw new Error(`outside GB2312: ${describeChars(bad)}`);
  return iconv.encode(text, 'gb2312');
}

export function decodeGb2312(b: Buffer): string {
  return iconv.decode(b, 'gb2312');
}
