import { z } from 'zod';

/** One step of the reminder policy, relative to the end of the obligation's period. */
export const ReminderStep = z.object({
  key: z.string().regex(/^[a-z0-9_-]{1,32}$/),
  anchor: z.enum(['before_end', 'after_end']),
  offsetHours: z.number().min(0).max(24 * 366),
  target: z.enum(['secretary', 'supervisor']),
  /** For escalations: the nearest ancestor at this level or above that has a supervisor. */
  supervisorLevel: z.enum(['city', 'county', 'town', 'community']).default('town'),
});
export type ReminderStep = z.infer<typeof ReminderStep>;

export const ReminderPolicy = z.object({
  steps: z.array(ReminderStep).min(1).max(10),
  /** An after-end step not sent within this many hours of its due time is dropped (long outage). */
  lateLimitHours: z.number().min(1).max(24 * 366).default(24 * 30),
});
export type ReminderPolicy = z.infer<typeof ReminderPolicy>;

export const defaultReminderPolicy: ReminderPolicy = ReminderPolicy.parse({
  steps: [
    { key: 'd7', anchor: 'before_end', offsetHours: 7 * 24, target: 'secretary' },
    { key: 'd2', anchor: 'before_end', offsetHours: 2 * 24, target: 'secretary' },
    { key: 'escalate', anchor: 'after_end', offsetHours: 24, target: 'supervisor', supervisorLevel: 'town' },
  ],
});

export interface StepWindow {
  key: string;
  target: 'secretary' | 'supervisor';
  supervisorLevel: string;
  /** Window relative to period end, in hours: fires when end+fromH <= now < end+untilH. */
  fromH: number;
  untilH: number;
}

/**
 * A before-end step is superseded once the next before-end step falls due, so a scheduler that was
 * down for days sends the latest applicable reminder, not a burst of stale ones.
 */
export function stepWindows(policy: ReminderPolicy): StepWindow[] {
  const before = policy.steps.filter((s) => s.anchor === 'before_end').sort((a, b) => b.offsetHours - a.offsetHours);
  const out: StepWindow[] = [];
  before.forEach((s, i) => {
    const next = before[i + 1];
    out.push({ key: s.key, target: s.target, supervisorLevel: s.supervisorLevel, fromH: -s.offsetHours, untilH: next ? -next.offsetHours : 0 });
  });
  for (const s of policy.steps.filter((x) => x.anchor === 'after_end')) {
    out.push({ key: s.key, target: s.target, supervisorLevel: s.supervisorLevel, fromH: s.offsetHours, untilH: s.offsetHours + policy.lateLimitHours });
  }
  return out;
}
