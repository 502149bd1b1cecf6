/** NMEA-0183-style framing used by Beidou RDSS terminals: `$BODY*HH\r\n`, HH = XOR of BODY's bytes. */

export function checksum(body: string): string {
  let x = 0;
  for (let i = 0; i < body.length; i++) x ^= body.charCodeAt(i) & 0xff;
  return x.toString(16).toUpperCase().padStart(2, '0');
}

export function frame(body: string): string {
  return `$${body}*${checksum(body)}\r\n`;
}

export interface Sentence {
  /** e.g. 'BDFKI', 'CCTXA' */
  id: string;
  fields: string[];
}

/** Parses one line; null when it is not a well-formed sentence with a correct checksum. */
export function parseSentence(raw: string): Sentence | null {
  const line = raw.trim();
  const m = /^\$([A-Z0-9]{5}),?([\x20-\x29\x2B-\x7E]*)\*([0-9A-Fa-f]{2})$/.exec(line);
  if (!m) return null;
  const body = line.slice(1, line.lastIndexOf('*'));
  if (checksum(body) !== m[3]!.toUpperCase()) return null;
  return { id: m[1]!, fields: m[2] === '' ? [] : m[2]!.split(',') };
}
