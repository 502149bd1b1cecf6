import type { Pool } from '../../infra/db/pool.ts';
import { withTransaction } from '../../infra/db/pool.ts';
import {
  ObligationRuleInput,
  periodRank,
  type ObligationCode,
  type ObligationRule,
  type PeriodKind,
} from './types.ts';

export class RuleError extends Error {
  constructor(readonly code: 'level_not_allowed' | 'not_tighter' | 'unit_not_found', message: string) {
    super(message);
    this.name = 'RuleError';
  }
}

interface RuleRow {
  obligation: ObligationCode;
  period: PeriodKind;
  required_count: number;
  min_duration_s: number;
  enabled: boolean;
}

const toRule = (r: RuleRow): ObligationRule => ({
  obligation: r.obligation,
  period: r.period,
  requiredCount: r.required_count,
  minDurationS: r.min_duration_s,
  enabled: r.enabled,
});

/** The rule a unit inherits for an obligation: the deepest ancestor rule (excluding the unit), else the default. */
async function inheritedRule(pool: Pool, unitPath: string, excludeUnitId: number | null, obligation: ObligationCode): Promise<ObligationRule> {
  const { rows } = await pool.query<RuleRow>(
    `SELECT r.obligation, r.period, r.required_count, r.min_duration_s, r.enabled
       FROM obligation_rules r LEFT JOIN units ru ON ru.id = r.unit_id
      WHERE r.obligation = $1 AND (r.unit_id IS NULL OR ($2 LIKE ru.path || '%' AND ru.id IS DISTINCT FROM $3::bigint))
      ORDER BY coalesce(ru.depth, -1) DESC LIMIT 1`,
    [obligation, unitPath, excludeUnitId],
  );
  if (!rows[0]) throw new Error(`no default rule for ${obligation}`);
  return toRule(rows[0]);
}

/** The rule that applies at a unit (its own if set, else inherited). */
export async function effectiveRule(pool: Pool, unitId: number, obligation: ObligationCode): Promise<ObligationRule> {
  const { rows } = await pool.query<{ path: string }>(`SELECT path FROM units WHERE id = $1`, [unitId]);
  if (!rows[0]) throw new RuleError('unit_not_found', `unit ${unitId} not found`);
  return inheritedRule(pool, rows[0].path, null, obligation);
}

/**
 * Sets a unit's rule for one obligation. A city may change anything; a county may only tighten what
 * it inherits (shorter or equal period, at least as many sessions, at least as long, not disabled).
 */
export async function setUnitRule(pool: Pool, unitId: number, input: ObligationRuleInput): Promise<ObligationRule> {
  const rule = ObligationRuleInput.parse(input);
  const { rows } = await pool.query<{ level: string; path: string }>(`SELECT level, path FROM units WHERE id = $1`, [unitId]);
  const unit = rows[0];
  if (!unit) throw new RuleError('unit_not_found', `unit ${unitId} not found`);
  if (unit.level !== 'city' && unit.level !== 'county') {
    throw new RuleError('level_not_allowed', `obligation rules are set by a city or county, not a ${unit.level}`);
  }
  if (unit.level === 'county') {
    const parent = await inheritedRule(pool, unit.path, unitId, rule.obligation);
    const looser: string[] = [];
    if (periodRank[rule.period] > periodRank[parent.period]) looser.push('period');
    if (rule.requiredCount < parent.requiredCount) looser.push('requiredCount');
    if (rule.minDurationS < parent.minDurationS) looser.push('minDurationS');
    if (parent.enabled && !rule.enabled) looser.push('enabled');
    if (looser.length > 0) {
      throw new RuleError('not_tighter', `a county may only tighten the inherited rule (looser: ${looser.join(', ')})`);
    }
  }
  await withTransaction(pool, async (c) => {
    await c.query(
      `INSERT INTO obligation_rules (unit_id, obligation, period, required_count, min_duration_s, enabled)
       VALUES ($1, $2, $3, $4, $5, $6)
       ON CONFLICT (unit_id, obligation) WHERE unit_id IS NOT NULL
       DO UPDATE SET period = EXCLUDED.period, required_count = EXCLUDED.required_count,
                     min_duration_s = EXCLUDED.min_duration_s, enabled = EXCLUDED.enabled, updated_at = now()`,
      [unitId, rule.obligation, rule.period, rule.requiredCount, rule.minDurationS, rule.enabled],
    );
  });
  return { ...rule };
}
