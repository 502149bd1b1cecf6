/**
 * Message capacity of a Beidou RDSS card, in bits per transmission, keyed by communication level AND
 * encryption flag. Figures from a public RDSS 2.1 SDK's card table (unencrypted 110/408/628/848 bits for
 * levels 1-4, encrypted 140/360/580/1680): the common civil card is level 1 unencrypted, 110 bits.
 * Level 0 is reported by BD-3 terminals for cards whose level the terminal does not map (some vendors
 * use it for their own top tier, others for "not provisioned"): we cannot tell which, so it gets the
 * smallest figure we know, level 1's, which never makes a terminal refuse a frame. BD-3 cards also
 * report level 5 (published $BDICP logs); the 2.1 table has no figure for it, so the same rule applies
 * (an operator who knows the card's figure sets it with the 'N5'/'E5' override).
 */
export const capacityTable: Readonly<Record<'plain' | 'encrypted', Readonly<Record<number, number>>>> = {
  plain: { 1: 110, 2: 408, 3: 628, 4: 848 },
  encrypted: { 1: 140, 2: 360, 3: 580, 4: 1680 },
};

export function capacityBitsFor(level: number, encrypted: boolean, overrides?: Readonly<Record<string, number>>): number {
  if (!Number.isInteger(level) || level < 0 || level > 9) throw new Error(`unknown Beidou communication level ${level}`);
  const key = `${encrypted ? 'E' : 'N'}${level}`;
  const o = overrides?.[key];
  if (o !== undefined) return o;
  const effective = level >= 1 && level <= 4 ? level : 1;
  return capacityTable[encrypted ? 'encrypted' : 'plain'][effective]!;
}

/** Mixed-mode payload: one 0xA4 flag byte, then GB2312 bytes; what is left for text. */
export function payloadBytesFor(capacityBits: number): number {
  return Math.floor(capacityBits / 8) - 1;
}
