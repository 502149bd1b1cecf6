import { z } from 'zod';
import type { Pool } from '../../../infra/db/pool.ts';
import { RuleError, rulesAt, setUnitRule } from '../../../scheduler/obligations/rules.ts';
import { ObligationCode, PeriodKind, obligationNamesEn, obligationNamesZh, type ObligationRule } from '../../../scheduler/obligations/types.ts';
import { LadderSteps, ladderFor } from '../../../scheduler/reminders/policy.ts';
import { HttpError } from '../auth-context.ts';
import { audit } from '../audit.ts';
import { type ApiRoutes } from '../route-registry.ts';
import { requireUnitInScope } from '../scope.ts';
import { idQuery } from '../schemas.ts';

// Obligation rules per the 2018 条例 (a floor: a city may tighten, not loosen; local items are a
// city's choice; a county only tightens) and the escalation ladder of a city, both as data.

/** Who sets rules and ladders for a city or county: its administrators and leaders (组织部). */
const ruleRoles = ['admin', 'leader'] as const;

const ruleOut = (r: ObligationRule) => ({
  obligation: r.obligation, period: r.period, requiredCount: r.requiredCount, minDurationS: r.minDurationS,
  enabled: r.enabled, dueFromMonth: r.dueFromMonth,
});

const ruleErrorText: Record<RuleError['code'], string> = {
  level_not_allowed: '规则只能由市或县设定 / rules are set by a city or a county',
  not_tighter: '县只能在上级规则基础上从严 / a county may only tighten the rule it inherits',
  looser_than_statute: '不得低于《中国共产党支部工作条例（试行）》规定的频次 / may not be looser than the 2018 branch work regulations (条例)',
  unit_not_found: '单位不存在 / unit not found',
};

export function registerObligationRuleRoutes(routes: ApiRoutes, pool: Pool): void {
  const tag = 'obligation-rules';

  routes.add(
    {
      method: 'get', path: '/obligation-rules', summary: 'Rules in force at a unit (own or inherited) with the national floor', tag,
      query: z.strictObject({ unitId: idQuery.optional() }),
    },
    async ({ query, user }) => {
      const unit = await requireUnitInScope(pool, user, query.unitId ?? user.unitId, 'unitId');
      const rules = await rulesAt(pool, unit.id);
      return {
        unitId: unit.id,
        level: unit.level,
        rules: rules.map((r) => ({
          ...ruleOut(r), nameZh: obligationNamesZh[r.obligation], nameEn: obligationNamesEn[r.obligation],
          statutory: r.statutory, own: r.own, setByUnitId: r.setByUnitId, national: ruleOut(r.national),
        })),
      };
    },
  );

  routes.add(
    {
      method: 'put', path: '/obligation-rules/:unitId/:obligation', summary: 'Set a city\'s or county\'s rule for one obligation', tag,
      roles: ruleRoles,
      params: z.object({ unitId: idQuery, obligation: ObligationCode }),
      body: z.strictObject({
        period: PeriodKind,
        requiredCount: z.number().int().min(0).max(31),
        minDurationS: z.number().int().min(1).max(86_400),
        enabled: z.boolean().default(true),
        dueFromMonth: z.number().int().min(1).max(12).nullable().optional(),
      }),
    },
    async ({ params, body, user, req }) => {
      const unit = await requireUnitInScope(pool, user, params.unitId, 'unitId');
      try {
        const rule = await setUnitRule(pool, unit.id, { obligation: params.obligation, ...body });
        await audit(pool, { user, action: 'obligation_rule.set', objectType: 'obligation_rule', objectId: `${unit.id}:${params.obligation}`, unitId: unit.id, ip: req.ip, detail: body });
        return { unitId: unit.id, ...ruleOut(rule) };
      } catch (e) {
        if (e instanceof RuleError) throw new HttpError(422, e.code, ruleErrorText[e.code], { looser: e.looser });
        throw e;
      }
    },
  );

  routes.add(
    {
      method: 'get', path: '/escalation-ladder', summary: 'The escalation ladder in force for a unit (its city\'s own, else the default)', tag,
      query: z.strictObject({ unitId: idQuery.optional() }),
    },
    async ({ query, user }) => {
      const unit = await requireUnitInScope(pool, user, query.unitId ?? user.unitId, 'unitId');
      const l = await ladderFor(pool, unit.id);
      return { unitId: unit.id, cityUnitId: l.cityUnitId, own: l.unitId !== null, steps: l.steps, updatedAt: l.updatedAt };
    },
  );

  routes.add(
    {
      method: 'put', path: '/escalation-ladder/:cityUnitId', summary: 'Set a city\'s own escalation ladder', tag, roles: ruleRoles,
      params: z.object({ cityUnitId: idQuery }), body: z.strictObject({ steps: LadderSteps }),
    },
    async ({ params, body, user, req }) => {
      const unit = await requireUnitInScope(pool, user, params.cityUnitId, 'cityUnitId');
      if (unit.level !== 'city') throw new HttpError(422, 'level_not_allowed', '升级阶梯由市设定 / an escalation ladder is set by a city');
      const { rows } = await pool.query<{ updated_at: Date }>(
        `INSERT INTO escalation_ladders (unit_id, steps) VALUES ($1, $2::jsonb)
         ON CONFLICT (unit_id) DO UPDATE SET steps = EXCLUDED.steps, updated_at = now() RETURNING updated_at`,
        [unit.id, JSON.stringify(body.steps)],
      );
      await audit(pool, { user, action: 'escalation_ladder.set', objectType: 'escalation_ladder', objectId: unit.id, unitId: unit.id, ip: req.ip, detail: { steps: body.steps } });
      return { unitId: unit.id, cityUnitId: unit.id, own: true, steps: body.steps, updatedAt: rows[0]!.updated_at };
    },
  );
}
