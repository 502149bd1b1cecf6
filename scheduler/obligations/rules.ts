import type { Pool } from '../../infra/db/pool.ts';
import { withTransaction } from '../../infra/db/pool.ts';
import {
  ObligationRuleInput,
  obligationCodes,
  periodRank,
  type ObligationCode,
  type ObligationRule,
  type PeriodKind,
} from './types.ts';

export type RuleErrorCode = 'level_not_allowed' | 'not_tighter' | 'looser_than_statute' | 'unit_not_found';

export class RuleError extends Error {
  constructor(readonly code: RuleErrorCode, message: string, readonly looser: string[] = []) {
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
  due_from_month: number | null;
}

const toRule = (r: RuleRow): ObligationRule => ({
  obligation: r.obligation,
  period: r.period,
  requiredCount: r.required_count,
  minDurationS: r.min_duration_s,
  enabled: r.enabled,
  dueFromMonth: r.due_from_month,
});

const ruleCols = `r.obligation, r.period, r.required_count, r.min_duration_s, r.enabled, r.due_from_month`;

/** The rule a unit inherits for an obligation: the deepest ancestor rule (excluding the unit), else the default. */
async function inheritedRule(pool: Pool, unitPath: string, excludeUnitId: number | null, obligation: ObligationCode): Promise<ObligationRule> {
  const { rows } = await pool.query<RuleRow>(
    `SELECT ${ruleCols}
       FROM obligation_rules r LEFT JOIN units ru ON ru.id = r.unit_id
      WHERE r.obligation = $1 AND (r.unit_id IS NULL OR ($2 LIKE ru.path || '%' AND ru.id IS DISTINCT FROM $3::bigint))
      ORDER BY coalesce(ru.depth, -1) DESC LIMIT 1`,
    [obligation, unitPath, excludeUnitId],
  );
  if (!rows[0]) throw new Error(`no default rule for ${obligation}`);
  return toRule(rows[0]);
}

/** The national default (the 条例's floor for statutory items). */
export async function nationalRule(pool: Pool, obligation: ObligationCode): Promise<ObligationRule> {
  const { rows } = await pool.query<RuleRow>(`SELECT ${ruleCols} FROM obligation_rules r WHERE r.unit_id IS NULL AND r.obligation = $1`, [obligation]);
  if (!rows[0]) throw new Error(`no default rule for ${obligation}`);
  return toRule(rows[0]);
}

/** The rule that applies at a unit (its own if set, else inherited). */
export async function effectiveRule(pool: Pool, unitId: number, obligation: ObligationCode): Promise<ObligationRule> {
  const { rows } = await pool.query<{ path: string }>(`SELECT path FROM units WHERE id = $1`, [unitId]);
  if (!rows[0]) throw new RuleError('unit_not_found', `unit ${unitId} not found`);
  return inheritedRule(pool, rows[0].path, null, obligation);
}

/** Which fields of `rule` are looser than `floor` (longer period, fewer sessions, switched off; optionally shorter). */
export function looserFields(rule: ObligationRule, floor: ObligationRule, withDuration: boolean): string[] {
  const looser: string[] = [];
  if (periodRank[rule.period] > periodRank[floor.period]) looser.push('period');
  if (rule.requiredCount < floor.requiredCount) looser.push('requiredCount');
  if (withDuration && rule.minDurationS < floor.minDurationS) looser.push('minDurationS');
  if (floor.enabled && !rule.enabled) looser.push('enabled');
  return looser;
}

export interface UnitRuleView extends ObligationRule {
  statutory: boolean;
  /** The unit that set the rule in force here (null = national default). */
  setByUnitId: number | null;
  /** True when the unit itself set it. */
  own: boolean;
  /** National default (the 条例's floor when statutory). */
  national: ObligationRule;
}

/** Every obligation's rule in force at a unit, where it comes from, and the national floor. */
export async function rulesAt(pool: Pool, unitId: number): Promise<UnitRuleView[]> {
  const u = await pool.query<{ path: string }>(`SELECT path FROM units WHERE id = $1`, [unitId]);
  if (!u.rows[0]) throw new RuleError('unit_not_found', `unit ${unitId} not found`);
  const { rows } = await pool.query<RuleRow & { unit_id: number | null; statutory: boolean; sort: number }>(
    `SELECT DISTINCT ON (r.obligation) ${ruleCols}, r.unit_id, t.statutory, t.sort
       FROM obligation_rules r JOIN obligation_types t ON t.code = r.obligation LEFT JOIN units ru ON ru.id = r.unit_id
      WHERE r.unit_id IS NULL OR $1 LIKE ru.path || '%'
      ORDER BY r.obligation, coalesce(ru.depth, -1) DESC`,
    [u.rows[0].path],
  );
  const nat = await pool.query<RuleRow>(`SELECT ${ruleCols} FROM obligation_rules r WHERE r.unit_id IS NULL`);
  const natBy = new Map(nat.rows.map((r) => [r.obligation, toRule(r)]));
  return rows
    .filter((r) => (obligationCodes as readonly string[]).includes(r.obligation))
    .sort((a, b) => a.sort - b.sort)
    .map((r) => ({
      ...toRule(r), statutory: r.statutory, setByUnitId: r.unit_id === null ? null : Number(r.unit_id),
      own: r.unit_id !== null && Number(r.unit_id) === unitId, national: natBy.get(r.obligation)!,
    }));
}

/**
 * Sets a unit's rule for one obligation (2018 条例: its frequencies are a floor).
 * - A city may tighten a statutory rule but not loosen it below the national default (longer period,
 *   fewer sessions, switched off -> 'looser_than_statute'); the minimum duration is not set by the
 *   条例 and is the city's choice. Non-statutory items (主题党日, 阳光议事日) a city sets freely,
 *   including switching 阳光议事日 on.
 * - A county may only tighten what it inherits (shorter or equal period, at least as many sessions, at
 *   least as long, not disabled) -> 'not_tighter'.
 * dueFromMonth, when omitted, is inherited.
 */
export async function setUnitRule(pool: Pool, unitId: number, input: ObligationRuleInput): Promise<ObligationRule> {
  const parsed = ObligationRuleInput.parse(input);
  const { rows } = await pool.query<{ level: string; path: string }>(`SELECT level, path FROM units WHERE id = $1`, [unitId]);
  const unit = rows[0];
  if (!unit) throw new RuleError('unit_not_found', `unit ${unitId} not found`);
  if (unit.level !== 'city' && unit.level !== 'county') {
    throw new RuleError('level_not_allowed', `obligation rules are set by a city or county, not a ${unit.level}`);
  }
  const parent = await inheritedRule(pool, unit.path, unitId, parsed.obligation);
  const rule: ObligationRule = {
    obligation: parsed.obligation, period: parsed.period, requiredCount: parsed.requiredCount,
    minDurationS: parsed.minDurationS, enabled: parsed.enabled,
    dueFromMonth: parsed.dueFromMonth === undefined ? parent.dueFromMonth : parsed.dueFromMonth,
  };
  if (unit.level === 'county') {
    // What a county inherits is at least the statute, so tightening it keeps the floor.
    const looser = looserFields(rule, parent, true);
    if (looser.length > 0) {
      throw new RuleError('not_tighter', `a county may only tighten the inherited rule (looser: ${looser.join(', ')})`, looser);
    }
  } else {
    const t = await pool.query<{ statutory: boolean }>(`SELECT statutory FROM obligation_types WHERE code = $1`, [rule.obligation]);
    if (t.rows[0]?.statutory ?? true) {
      const looser = looserFields(rule, await nationalRule(pool, rule.obligation), false);
      if (looser.length > 0) {
        throw new RuleError('looser_than_statute', `the 2018 条例 sets a floor that may be tightened, not loosened (looser: ${looser.join(', ')})`, looser);
      }
    }
  }
  await withTransaction(pool, async (c) => {
    await c.query(
      `INSERT INTO obligation_rules (unit_id, obligation, period, required_count, min_duration_s, enabled, due_from_month)
       VALUES ($1, $2, $3, $4, $5, $6, $7)
       ON CONFLICT (unit_id, obligation) WHERE unit_id IS NOT NULL
       DO UPDATE SET period = EXCLUDED.period, required_count = EXCLUDED.required_count,
                     min_duration_s = EXCLUDED.min_duration_s, enabled = EXCLUDED.enabled,
                     due_from_month = EXCLUDED.due_from_month, updated_at = now()`,
      [unitId, rule.obligation, rule.period, rule.requiredCount, rule.minDurationS, rule.enabled, rule.dueFromMonth],
    );
  });
  return rule;
}
