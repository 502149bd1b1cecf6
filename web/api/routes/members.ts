import { z } from 'zod';
import type { Pool } from '../../../infra/db/pool.ts';
import { HttpError } from '../auth-context.ts';
import { permissions } from '../permissions.ts';
import type { ApiRoutes } from '../route-registry.ts';
import { registerScopedResource } from '../scoped-resource.ts';
import { beidouCard, boolQuery, channel, id, idQuery, mobile, name } from '../schemas.ts';

// Branch members and secretaries with the contact details reminders are sent to.
export function registerMemberRoutes(routes: ApiRoutes, pool: Pool): void {
  const fields = {
    name,
    is_secretary: z.boolean().optional(),
    mobile: mobile.nullable().optional(),
    beidou_card: beidouCard.nullable().optional(),
    preferred_channel: channel.optional(),
  };
  registerScopedResource(routes, pool, {
    path: '/members',
    tag: 'members',
    objectType: 'member',
    zh: '党员',
    en: 'member',
    table: 'members',
    alias: 'm',
    from: 'members m JOIN branches b ON b.id = m.branch_id JOIN units u ON u.id = b.unit_id',
    select: 'm.id, m.branch_id, b.unit_id, m.name, m.is_secretary, m.mobile, m.beidou_card, m.preferred_channel, m.membership, m.committee_role, m.party_group_id, m.left_at, m.created_at',
    filters: {
      branch_id: { schema: idQuery, sql: 'm.branch_id = ?' },
      unit_id: { schema: idQuery, sql: 'b.unit_id = ?' },
      is_secretary: { schema: boolQuery, sql: 'm.is_secretary = ?' },
    },
    create: z.strictObject({ branch_id: id, ...fields }),
    update: z.strictObject({ ...fields, name: name.optional() }),
    refs: {
      branch_id: { sql: 'SELECT u.path FROM branches b JOIN units u ON u.id = b.unit_id WHERE b.id = $1 AND b.retired_at IS NULL', zh: '党支部', en: 'branch' },
    },
    writeRoles: permissions.writeMembers,
    // A reminder by Beidou needs a card; checked after the write so PATCHes of either field are covered.
    afterWrite: async (client, memberId) => {
      const { rows } = await client.query<{ ok: boolean }>(
        `SELECT (preferred_channel <> 'beidou' OR beidou_card IS NOT NULL) AND (preferred_channel <> 'sms' OR mobile IS NOT NULL OR NOT is_secretary) AS ok
         FROM members WHERE id = $1`,
        [memberId],
      );
      if (rows[0] && !rows[0].ok) {
        throw new HttpError(422, 'contact_missing', '首选渠道缺少对应号码（北斗卡号或手机号） / the preferred channel needs its number (Beidou card or mobile)', {
          field: 'preferred_channel',
        });
      }
    },
  });
}
