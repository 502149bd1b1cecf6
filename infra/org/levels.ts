import { z } from 'zod';

// The five administrative levels, top to bottom. A child must sit at a lower level than its parent
// (the database trigger enforces the same rule; checking here gives import errors a line number).

export const unitLevels = ['city', 'county', 'town', 'community', 'village'] as const;
export const unitLevelSchema = z.enum(unitLevels);
export type UnitLevel = z.infer<typeof unitLevelSchema>;

export function levelRank(level: UnitLevel): number {
  return unitLevels.indexOf(level) + 1;
}

/** Chinese names accepted in imports as well as the English keys. */
const aliases: Record<string, UnitLevel> = {
  市: 'city',
  地级市: 'city',
  县: 'county',
  区: 'county',
  县区: 'county',
  县级市: 'county',
  镇: 'town',
  乡: 'town',
  街道: 'town',
  乡镇: 'town',
  镇街: 'town',
  社区: 'community',
  村: 'village',
  村居: 'village',
};

export function parseLevel(raw: string): UnitLevel | undefined {
  const s = raw.trim();
  const lower = s.toLowerCase();
  if ((unitLevels as readonly string[]).includes(lower)) return lower as UnitLevel;
  return aliases[s];
}
