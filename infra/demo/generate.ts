import { withTransaction, type Pool, type PoolClient } from '../db/pool.ts';
import { hashPassword } from '../auth/password.ts';
import { allocateIds, insertRows, insertUnits, type NewUnit } from '../org/bulk-insert.ts';
import type { UnitLevel } from '../org/levels.ts';
import type { Role } from '../tokens.ts';
import { Random, spread } from './random.ts';
import { CITY, COUNTIES, SERVICES, communityName, personName, townName, uniqueName, villageName } from './names.ts';

// Fills an empty database with a Weifang-sized demo organisation (1 city, 12 counties, ~120 towns,
// ~1,000 communities, ~9,000 villages) with branches, secretaries, stations, cameras, SFU nodes and
// users at every level. Deterministic for a seed; written with a handful of bulk statements.

export const DEMO_PASSWORD = 'Weifang@2026';

export interface DemoOptions {
  seed?: number;
  towns?: number;
  communities?: number;
  villages?: number;
  password?: string;
}

export interface DemoUser {
  username: string;
  role: Role;
  unitId: number;
  level: UnitLevel;
}

export interface DemoSummary {
  units: Record<UnitLevel, number>;
  branches: number;
  members: number;
  servicePoints: number;
  cameras: number;
  sfuNodes: number;
  users: DemoUser[];
  password: string;
  /** ids of the units per level, in generation order, for tests and benchmarks. */
  unitIds: Record<UnitLevel, number[]>;
}

// Mountain counties where some villages lack cellular coverage and rely on Beidou short messages.
const REMOTE_COUNTIES = new Set(['370724', '370781']);

function mobile(rng: Random): string {
  return '1' + rng.pick(['35', '36', '37', '38', '39', '50', '51', '52', '58', '59', '70', '76', '77', '78', '86', '87', '88', '89']) + rng.digits(8);
}

export async function generateDemoOrganisation(pool: Pool, opts: DemoOptions = {}): Promise<DemoSummary> {
  return withTransaction(pool, (client) => generateIn(client, opts));
}

async function generateIn(client: PoolClient, opts: DemoOptions): Promise<DemoSummary> {
  const rng = new Random(opts.seed ?? 370700);
  const nTowns = opts.towns ?? 120;
  const nCommunities = opts.communities ?? 1000;
  const nVillages = opts.villages ?? 9000;
  const password = opts.password ?? DEMO_PASSWORD;

  const { rows: present } = await client.query<{ n: number }>('SELECT count(*)::int AS n FROM units');
  if ((present[0]?.n ?? 0) > 0) throw new Error('demo organisation needs an empty units table');

  // ---- units -------------------------------------------------------------------------------
  const units: Array<NewUnit & { code: string }> = [];
  const unitIds: Record<UnitLevel, number[]> = { city: [], county: [], town: [], community: [], village: [] };
  const total = 1 + COUNTIES.length + nTowns + nCommunities + nVillages;
  const ids = await allocateIds(client, 'units', total);
  let next = 0;
  const add = (parentId: number | null, level: UnitLevel, name: string, code: string): NewUnit & { code: string } => {
    const u = { id: ids[next++]!, parentId, level, name, code };
    units.push(u);
    unitIds[level].push(u.id);
    return u;
  };
  const city = add(null, 'city', CITY.name, CITY.code);
  const counties = COUNTIES.map((c) => add(city.id, 'county', c.name, c.code));
  const towns: Array<NewUnit & { code: string; county: string }> = [];
  const townNames = new Set<string>();
  let townIndex = 0;
  spread(nTowns, counties.length).forEach((n, ci) => {
    for (let i = 0; i < n; i++) {
      const name = uniqueName(townNames, () => townName(rng, townIndex));
      townIndex++;
      towns.push({ ...add(counties[ci]!.id, 'town', name, `${counties[ci]!.code}${String(i + 1).padStart(3, '0')}`), county: counties[ci]!.code });
    }
  });
  const communities: Array<NewUnit & { code: string; county: string }> = [];
  spread(nCommunities, towns.length).forEach((n, ti) => {
    const used = new Set<string>();
    for (let i = 0; i < n; i++) {
      const t = towns[ti]!;
      communities.push({ ...add(t.id, 'community', uniqueName(used, () => communityName(rng)), `${t.code}${String(i + 1).padStart(3, '0')}`), county: t.county });
    }
  });
  const villages: Array<NewUnit & { code: string; county: string }> = [];
  spread(nVillages, communities.length).forEach((n, mi) => {
    const used = new Set<string>();
    for (let i = 0; i < n; i++) {
      const m = communities[mi]!;
      villages.push({ ...add(m.id, 'village', uniqueName(used, () => villageName(rng)), `${m.code}${String(i + 1).padStart(2, '0')}`), county: m.county });
    }
  });
  await insertUnits(client, units);

  // ---- party branches and members ------------------------------------------------------------
  const branchUnits = [...communities, ...villages];
  const branchIds = await allocateIds(client, 'branches', branchUnits.length);
  await insertRows(
    client,
    'branches',
    { id: 'bigint[]', unit_id: 'bigint[]', name: 'text[]' },
    branchUnits.map((u, i) => ({ id: branchIds[i], unit_id: u.id, name: `${u.name}党支部` })),
    { overridingSystemValue: true },
  );
  // Branch facts (中国共产党支部工作条例（试行）2018): membership mix (about one in eight probationary),
  // a branch committee (支委会) where a branch has >= 7 full members (most of them set one up; a few
  // small branches of 7-9 have only a secretary), party groups (党小组) in large branches.
  const members: Array<Record<string, unknown>> = [];
  const groups: Array<{ id?: number; branch_id: number; name: string }> = [];
  const committees: number[] = [];
  const plans = branchUnits.map((u, i) => {
    const size = u.level === 'community' ? rng.int(12, 45) : rng.int(4, 28);
    const probationary = Math.min(size - 3, Math.round(size * rng.int(0, 25) / 100));
    const full = size - probationary;
    const committee = full >= 7 && (full >= 10 || rng.chance(0.6));
    const nGroups = size >= 16 && rng.chance(0.7) ? rng.int(2, size >= 30 ? 4 : 3) : 0;
    if (committee) committees.push(branchIds[i]!);
    for (let g = 0; g < nGroups; g++) groups.push({ branch_id: branchIds[i]!, name: `第${'一二三四'[g]}党小组` });
    return { size, full, committee, nGroups };
  });
  const groupIds = await allocateIds(client, 'party_groups', groups.length);
  groups.forEach((g, k) => { g.id = groupIds[k]; });
  let gNext = 0;
  branchUnits.forEach((u, i) => {
    const plan = plans[i]!;
    const myGroups = groups.slice(gNext, gNext + plan.nGroups).map((g) => g.id!);
    gNext += plan.nGroups;
    const remote = REMOTE_COUNTIES.has(u.county) && u.level === 'village' && rng.chance(0.3);
    const card = remote || rng.chance(0.03) ? String(rng.int(100000, 9999999)) : null;
    const committeeSize = plan.full >= 15 ? 5 : 3;
    for (let k = 0; k < plan.size; k++) {
      const secretary = k === 0;
      members.push({
        branch_id: branchIds[i],
        name: personName(rng),
        is_secretary: secretary,
        mobile: secretary ? (remote && rng.chance(0.5) ? null : mobile(rng)) : mobile(rng),
        beidou_card: secretary ? card : null,
        preferred_channel: secretary && remote && card ? 'beidou' : 'sms',
        // full members first (the secretary and the committee are full members)
        membership: k < plan.full ? 'full' : 'probationary',
        committee_role: !plan.committee || k >= committeeSize ? null : k === 0 ? 'secretary' : k === 1 ? 'deputy_secretary' : 'member',
        party_group_id: myGroups.length > 0 && k > 0 ? myGroups[k % myGroups.length] : null,
      });
    }
  });
  if (groups.length > 0) {
    await insertRows(client, 'party_groups', { id: 'bigint[]', branch_id: 'bigint[]', name: 'text[]' }, groups, { overridingSystemValue: true });
  }
  await insertRows(
    client,
    'members',
    { branch_id: 'bigint[]', name: 'text[]', is_secretary: 'boolean[]', mobile: 'text[]', beidou_card: 'text[]', preferred_channel: 'text[]', membership: 'text[]', committee_role: 'text[]', party_group_id: 'bigint[]' },
    members,
  );
  if (committees.length > 0) await client.query(`UPDATE branches SET has_committee = true WHERE id = ANY($1::bigint[])`, [committees]);
  // Each group's leader: its first member.
  await client.query(
    `UPDATE party_groups g SET leader_member_id = x.first
       FROM (SELECT party_group_id, min(id) AS first FROM members WHERE party_group_id = ANY($1::bigint[]) GROUP BY 1) x
      WHERE x.party_group_id = g.id`, [groupIds]);

  // ---- service stations / centres and their cameras -----------------------------------------
  const points: Array<{ unit: NewUnit; kind: 'station' | 'centre'; name: string }> = [
    { unit: city, kind: 'centre', name: '潍坊市政务服务中心' },
    ...counties.map((c) => ({ unit: c, kind: 'centre' as const, name: `${c.name}政务服务中心` })),
    ...towns.map((t) => ({ unit: t, kind: 'centre' as const, name: `${t.name}便民服务中心` })),
    ...villages.map((v) => ({ unit: v, kind: 'station' as const, name: `${v.name}党群服务站` })),
  ];
  const pointIds = await allocateIds(client, 'service_points', points.length);
  await insertRows(
    client,
    'service_points',
    { id: 'bigint[]', unit_id: 'bigint[]', kind: 'text[]', name: 'text[]', services: 'text[]|text[]' },
    points.map((p, i) => {
      const services = SERVICES.filter(() => rng.chance(p.kind === 'centre' ? 0.9 : 0.45));
      return { id: pointIds[i], unit_id: p.unit.id, kind: p.kind, name: p.name, services: `{${services.join(',')}}` };
    }),
    { overridingSystemValue: true },
  );
  const cameras = points.map((p, i) => ({
    unit_id: p.unit.id,
    service_point_id: pointIds[i],
    name: `${p.name}${p.kind === 'station' ? '会议室' : '大厅'}摄像机`,
    rtsp_url: `rtsp://10.${20 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}:554/Streaming/Channels/101`,
    username: 'admin',
    password: `Hk${rng.digits(4)}${rng.pick(['!', '#', '@'])}${rng.digits(4)}`,
    location: p.kind === 'station' ? '村党群服务站会议室' : '服务大厅',
  }));
  await insertRows(
    client,
    'cameras',
    { unit_id: 'bigint[]', service_point_id: 'bigint[]', name: 'text[]', rtsp_url: 'text[]', username: 'text[]', password: 'text[]', location: 'text[]' },
    cameras,
  );

  // ---- SFU nodes: a control centre at the city, each county and each town ----------------------
  const nodeUnits = [city, ...counties, ...towns];
  const nodeIds = await allocateIds(client, 'sfu_nodes', nodeUnits.length);
  const nodeOfUnit = new Map(nodeUnits.map((u, i) => [u.id, nodeIds[i]!]));
  await insertRows(
    client,
    'sfu_nodes',
    { id: 'bigint[]', unit_id: 'bigint[]', parent_node_id: 'bigint[]', name: 'text[]', signalling_url: 'text[]' },
    nodeUnits.map((u, i) => ({
      id: nodeIds[i],
      unit_id: u.id,
      parent_node_id: u.parentId === null ? null : nodeOfUnit.get(u.parentId),
      name: `${u.name}指挥中心`,
      signalling_url: `wss://sfu-${u.code}.wf.example/ws`,
    })),
    { overridingSystemValue: true },
  );

  // ---- users: one hash for the shared, published demo password (hashing thousands would take minutes)
  const hash = await hashPassword(password);
  const users: DemoUser[] = [];
  const userRows: Array<Record<string, unknown>> = [];
  const addUser = (username: string, role: Role, unit: NewUnit): void => {
    users.push({ username, role, unitId: unit.id, level: unit.level });
    userRows.push({ username, display_name: personName(rng), unit_id: unit.id, role, password_hash: hash });
  };
  for (const role of ['admin', 'leader', 'supervisor', 'operator', 'clerk'] as const) addUser(`wf.${role}`, role, city);
  for (const c of counties) for (const role of ['leader', 'admin', 'supervisor', 'operator'] as const) addUser(`c${c.code}.${role}`, role, c);
  for (const t of towns) for (const role of ['leader', 'clerk', 'admin'] as const) addUser(`t${t.code}.${role}`, role, t);
  for (const m of communities) addUser(`m${m.code}.secretary`, 'secretary', m);
  villages.forEach((v, i) => {
    if (i % 9 === 0) addUser(`v${v.code}.secretary`, 'secretary', v);
  });
  await insertRows(
    client,
    'users',
    { username: 'text[]', display_name: 'text[]', unit_id: 'bigint[]', role: 'text[]', password_hash: 'text[]' },
    userRows,
  );

  return {
    units: { city: 1, county: counties.length, town: towns.length, community: communities.length, village: villages.length },
    branches: branchUnits.length,
    members: members.length,
    servicePoints: points.length,
    cameras: cameras.length,
    sfuNodes: nodeUnits.length,
    users,
    password,
    unitIds,
  };
}
