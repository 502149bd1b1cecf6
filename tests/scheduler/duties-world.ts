import type { Pool } from '../../infra/db/pool.ts';
import { hashPassword } from '../../infra/auth/password.ts';
import type { Harness } from '../api/harness.ts';

// A small organisation for the 2018 条例 tests, with real users signed in through the real API:
//   city 潍坊市 > county 昌乐县 > town 宝城街道 (supervisor) > community 新城社区 (supervisor)
//     > villages 东村 (branch of 5) and 西村 (branch of 12) under the community; 南村 directly under the town;
//   another county 寿光市 with village 北村 and its branch, for "outside the subtree".
// Contacts: every supervisor and secretary has a mobile so reminders reach them.

export const PASSWORD = 'duties-pass-0123';

export interface DutiesWorld {
  cityId: number; countyId: number; townId: number; communityId: number; otherCountyId: number;
  villages: { east: number; west: number; south: number; north: number };
  branches: { five: number; twelve: number; south: number; north: number };
  /** Member ids per branch, the secretary first. */
  members: { five: number[]; twelve: number[]; south: number[]; north: number[] };
  tokens: {
    cityLeader: string; cityAdmin: string; countyLeader: string; townSupervisor: string; communitySupervisor: string;
    secretaryFive: string; secretaryTwelve: string; secretarySouth: string; otherCountyAdmin: string; clerkTown: string;
  };
  userIds: Record<string, number>;
  mobiles: { townSupervisor: string; communitySupervisor: string; countySupervisor: string };
}

export async function buildDutiesWorld(h: Harness, pool: Pool = h.db.pool): Promise<DutiesWorld> {
  const q = async (sql: string, params: unknown[] = []) => Number((await pool.query<{ id: number }>(sql, params)).rows[0]!.id);
  const unit = (parent: number | null, level: string, name: string) =>
    parent === null ? q(`INSERT INTO units (level, name) VALUES ($1, $2) RETURNING id`, [level, name])
      : q(`INSERT INTO units (parent_id, level, name) VALUES ($1, $2, $3) RETURNING id`, [parent, level, name]);
  const cityId = await unit(null, 'city', '潍坊市');
  const countyId = await unit(cityId, 'county', '昌乐县');
  const townId = await unit(countyId, 'town', '宝城街道');
  const communityId = await unit(townId, 'community', '新城社区');
  const east = await unit(communityId, 'village', '东村');
  const west = await unit(communityId, 'village', '西村');
  const south = await unit(townId, 'village', '南村');
  const otherCountyId = await unit(cityId, 'county', '寿光市');
  const otherTown = await unit(otherCountyId, 'town', '洛城街道');
  const north = await unit(otherTown, 'village', '北村');

  let phone = 0;
  const mobile = () => `1380000${String(++phone).padStart(4, '0')}`;
  const branch = async (unitId: number, name: string, n: number) => {
    const id = await q(`INSERT INTO branches (unit_id, name) VALUES ($1, $2) RETURNING id`, [unitId, name]);
    const ids: number[] = [];
    for (let i = 0; i < n; i++) {
      ids.push(await q(`INSERT INTO members (branch_id, name, is_secretary, mobile) VALUES ($1, $2, $3, $4) RETURNING id`,
        [id, i === 0 ? `${name}书记` : `${name}党员${i}`, i === 0, mobile()]));
    }
    return { id, ids };
  };
  const b5 = await branch(east, '东村党支部', 5);
  const b12 = await branch(west, '西村党支部', 12);
  const bs = await branch(south, '南村党支部', 3);
  const bn = await branch(north, '北村党支部', 3);

  const hash = await hashPassword(PASSWORD);
  const userIds: Record<string, number> = {};
  const mobiles = { townSupervisor: mobile(), communitySupervisor: mobile(), countySupervisor: mobile() };
  const user = async (username: string, unitId: number, role: string, contact?: string) => {
    const id = await q(`INSERT INTO users (username, display_name, unit_id, role, password_hash) VALUES ($1, $1, $2, $3, $4) RETURNING id`,
      [username, unitId, role, hash]);
    userIds[username] = id;
    if (contact) await pool.query(`INSERT INTO notification_contacts (user_id, mobile) VALUES ($1, $2)`, [id, contact]);
    return h.login(username, PASSWORD);
  };
  const tokens = {
    cityLeader: await user('city.leader', cityId, 'leader'),
    cityAdmin: await user('city.admin', cityId, 'admin'),
    countyLeader: await user('county.leader', countyId, 'leader'),
    townSupervisor: await user('town.supervisor', townId, 'supervisor', mobiles.townSupervisor),
    communitySupervisor: await user('community.supervisor', communityId, 'supervisor', mobiles.communitySupervisor),
    secretaryFive: await user('east.secretary', east, 'secretary'),
    secretaryTwelve: await user('west.secretary', west, 'secretary'),
    secretarySouth: await user('south.secretary', south, 'secretary'),
    otherCountyAdmin: await user('other.admin', otherCountyId, 'admin'),
    clerkTown: await user('town.clerk', townId, 'clerk'),
  };
  await user('county.supervisor', countyId, 'supervisor', mobiles.countySupervisor);
  return {
    cityId, countyId, townId, communityId, otherCountyId,
    villages: { east, west, south, north },
    branches: { five: b5.id, twelve: b12.id, south: bs.id, north: bn.id },
    members: { five: b5.ids, twelve: b12.ids, south: bs.ids, north: bn.ids },
    tokens, userIds, mobiles,
  };
}
