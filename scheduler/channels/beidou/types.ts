/** What every protocol codec (2.1 ASCII, 4.0 binary, BD-3 ASCII) reports, in protocol-neutral terms. */
export type BeidouProtocol = '2.1' | '4.0' | 'bd3';

export interface CardReport {
  card: string;
  broadcastId: string;
  level: number;
  encrypted: boolean;
  /** Service frequency: minimum seconds between two transmissions. */
  intervalS: number;
}

export type Feedback =
  | { kind: 'ok' }
  | { kind: 'interval'; waitS: number; detail: string }
  | { kind: 'suppressed'; waitS: number; detail: string }
  | { kind: 'refused'; detail: string };

export type Inbound =
  | { kind: 'card'; card: CardReport }
  | { kind: 'feedback'; feedback: Feedback }
  | { kind: 'message'; from: string; text: string }
  | { kind: 'receipt'; card: string };

/** One unit off the wire: an ASCII sentence with a good checksum or a 4.0 binary frame with a good XOR. */
export type WireFrame =
  | { kind: 'ascii'; id: string; fields: string[] }
  | { kind: 'binary'; cmd: string; bytes: Buffer };

export interface BeidouCodec {
  readonly protocol: BeidouProtocol;
  cardQuery(): Buffer;
  /** `payload` is the message content as carried (mixed mode: 0xA4 then GB2312). */
  send(ownCard: string, to: string, payload: Buffer, wantReceipt: boolean): Buffer;
  decode(frame: WireFrame): Inbound | null;
}

/** Card numbers as digits without padding, compared numerically (2.1 pads to 7, 4.0 carries 24 bits). */
export function normaliseCard(card: string): string {
  return String(Number(card));
}

/** The form replies and sends use: at least 7 digits (as members.beidou_card stores 7-digit cards), 8 kept. */
export function displayCard(card: string | number): string {
  return String(Number(card)).padStart(7, '0');
}

export function decodeContent(bytes: Buffer, gb: (b: Buffer) => string): string {
  // Mixed mode carries a leading 0xA4 flag; Chinese and code modes do not.
  return gb(bytes[0] === 0xa4 ? bytes.subarray(1) : bytes);
}
