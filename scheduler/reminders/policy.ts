import { z } from 'zod';
import type { Pool, PoolClient } from '../../infra/db/pool.ts';

/**
 * One step of the escalation ladder, relative to the end of the obligation's period.
 * level: whom a supervisor step reaches — 'direct' = the nearest ancestor unit that has a supervisor
 * user (the community party committee or the town); otherwise the nearest ancestor at this level or
 * above that has one. minConsecutiveMissed: the step applies only when the branch also missed this many
 * periods immediately before (repeated failure goes to the county).
 */
export const ReminderStep = z.object({
  key: z.string().regex(/^[a-z0-9_-]{1,32}$/),
  anchor: z.enum(['before_end', 'after_end']),
  offsetHours: z.number().min(0).max(24 * 366),
  target: z.enum(['secretary', 'supervisor']),
  level: z.enum(['direct', 'community', 'town', 'county', 'city']).default('direct'),
  minConsecutiveMissed: z.number().int().min(0).max(12).default(0),
});
export type ReminderStep = z.infer<typeof ReminderStep>;
export type ReminderStepInput = z.input<typeof ReminderStep>;

/** A ladder: step keys are unique, secretary steps come before the end, supervisor steps after it. */
export const LadderSteps = z.array(ReminderStep).min(1).max(10)
  .refine((s) => new Set(s.map((x) => x.key)).size === s.length, { message: '步骤键重复 / duplicate step keys' })
  .refine((s) => s.every((x) => x.target === 'secretary' || x.anchor === 'after_end'), {
    message: '督办步骤须在期满之后 / supervisor steps must be after the end of the period',
  });

export const ReminderPolicy = z.object({
  /** Used only where no ladder is stored (escalation_ladders holds the default and each city's own). */
  steps: LadderSteps,
  /** An after-end step not sent within this many hours of its due time is dropped (long outage). */
  lateLimitHours: z.number().min(1).max(24 * 366).default(24 * 30),
});
export type ReminderPolicy = z.infer<typeof ReminderPolicy>;

/** Same steps as the default ladder seeded by migration 0060. */
export const defaultLadderSteps: ReminderStep[] = LadderSteps.parse([
  { key: 'd7', anchor: 'before_end', offsetHours: 7 * 24, target: 'secretary' },
  { key: 'd2', anchor: 'before_end', offsetHours: 2 * 24, target: 'secretary' },
  { key: 'escalate', anchor: 'after_end', offsetHours: 24, target: 'supervisor', level: 'direct' },
  { key: 'county', anchor: 'after_end', offsetHours: 72, target: 'supervisor', level: 'county', minConsecutiveMissed: 2 },
]);

export const defaultReminderPolicy: ReminderPolicy = ReminderPolicy.parse({ steps: defaultLadderSteps });

export interface StepWindow {
  key: string;
  target: 'secretary' | 'supervisor';
  level: ReminderStep['level'];
  minConsecutiveMissed: number;
  /** Window relative to period end, in hours: fires when end+fromH <= now < end+untilH. */
  fromH: number;
  untilH: number;
}

/**
 * A before-end step is superseded once the next before-end step falls due, so a scheduler that was
 * down for days sends the latest applicable reminder, not a burst of stale ones.
 */
export function stepWindows(policy: { steps: ReminderStep[]; lateLimitHours: number }): StepWindow[] {
  const before = policy.steps.filter((s) => s.anchor === 'before_end').sort((a, b) => b.offsetHours - a.offsetHours);
  const out: StepWindow[] = [];
  before.forEach((s, i) => {
    const next = before[i + 1];
    out.push({ key: s.key, target: s.target, level: s.level, minConsecutiveMissed: s.minConsecutiveMissed, fromH: -s.offsetHours, untilH: next ? -next.offsetHours : 0 });
  });
  for (const s of policy.steps.filter((x) => x.anchor === 'after_end')) {
    out.push({ key: s.key, target: s.target, level: s.level, minConsecutiveMissed: s.minConsecutiveMissed, fromH: s.offsetHours, untilH: s.offsetHours + policy.lateLimitHours });
  }
  return out;
}

export interface Ladder {
  /** null = the default ladder; otherwise the city whose own ladder this is. */
  unitId: number | null;
  steps: ReminderStep[];
  updatedAt: Date | null;
}

/** Every stored ladder (the default and the cities' own); the policy's steps stand in for a missing default. */
export async function loadLadders(db: Pool | PoolClient, policy: ReminderPolicy): Promise<Ladder[]> {
  const { rows } = await db.query<{ unit_id: number | null; steps: unknown; updated_at: Date }>(
    `SELECT unit_id, steps, updated_at FROM escalation_ladders`,
  );
  const out: Ladder[] = [];
  for (const r of rows) {
    const parsed = LadderSteps.safeParse(r.steps);
    // A stored ladder is validated when written; one that does not parse any more falls back to the default.
    if (parsed.success) out.push({ unitId: r.unit_id === null ? null : Number(r.unit_id), steps: parsed.data, updatedAt: r.updated_at });
  }
  if (!out.some((l) => l.unitId === null)) out.push({ unitId: null, steps: policy.steps, updatedAt: null });
  return out;
}

/** The ladder in force for a unit: its city's own, else the default. */
export async function ladderFor(db: Pool | PoolClient, unitId: number, policy: ReminderPolicy = defaultReminderPolicy): Promise<Ladder & { cityUnitId: number | null }> {
  const u = await db.query<{ city: string }>(`SELECT split_part(path, '.', 1) AS city FROM units WHERE id = $1`, [unitId]);
  const city = u.rows[0] ? Number(u.rows[0].city) : null;
  const ladders = await loadLadders(db, policy);
  const own = ladders.find((l) => l.unitId !== null && l.unitId === city);
  return { ...(own ?? ladders.find((l) => l.unitId === null)!), cityUnitId: city };
}
