import { generateKeyPair, signAccessToken, type KeyPair, type Role } from '../../infra/tokens.ts';
import { createTestDatabase } from '../support/database.ts';
import type { ObjectStorage } from '../../infra/storage/ObjectStorage.ts';
import { createSessionRoutes } from '../../web/api/routes/sessions.ts';
import { apiExtra } from '../../web/server.ts';
import { startHarness, TEST_SECRET, type Harness } from './harness.ts';

// The organisation the sessions and ledger tests share: a county with a town of two villages (branch A
// with a committee, 10 full and 2 probationary members, a camera; branch B with 3 members and its own
// camera), and another county with a branch and a camera. Users sign in with tokens the API itself
// checks (signed with the harness's secret).

export interface SessionWorld {
  h: Harness;
  keys: KeyPair;
  units: { city: number; county: number; town: number; villageA: number; villageB: number; otherCounty: number; otherVillage: number };
  branchA: number;
  branchB: number;
  otherBranch: number;
  cameraA: number;
  cameraB: number;
  otherCamera: number;
  /** Branch A: 10 full members (the first is the secretary), then 2 probationary ones. */
  fullA: number[];
  probationaryA: number[];
  /** Mobile numbers of branch A's members by id. */
  mobiles: Map<number, string>;
  tokens: { secretaryA: string; secretaryB: string; townSupervisor: string; countySupervisor: string; countyLeader: string; otherSecretary: string; operator: string };
  userIds: Record<string, number>;
}

export async function startSessionWorld(opts: { storage?: ObjectStorage; photoCount?: number } = {}): Promise<SessionWorld> {
  const keys = generateKeyPair();
  const db = await createTestDatabase();
  const h = await startHarness(
    {
      extraRouters: [
        apiExtra(
          createSessionRoutes({
            pool: db.pool,
            tokenSecret: TEST_SECRET,
            joinKey: keys.privateKey,
            ...(opts.storage ? { storage: opts.storage } : {}),
            ...(opts.photoCount ? { photoCount: opts.photoCount } : {}),
          }),
        ),
      ],
    },
    db,
  );
  return seed(h, keys);
}

async function seed(h: Harness, keys: KeyPair): Promise<SessionWorld> {
  const pool = h.db.pool;
  const q = async (sql: string, args: unknown[]) => Number((await pool.query<{ id: number }>(sql, args)).rows[0]!.id);
  const unit = (parent: number | null, level: string, name: string) => q('INSERT INTO units (parent_id, level, name) VALUES ($1, $2, $3) RETURNING id', [parent, level, name]);
  const city = await unit(null, 'city', '潍坊市');
  const county = await unit(city, 'county', '青州市');
  const town = await unit(county, 'town', '王府街道');
  const villageA = await unit(town, 'village', '东村');
  const villageB = await unit(town, 'village', '西村');
  const otherCounty = await unit(city, 'county', '临朐县');
  const otherTown = await unit(otherCounty, 'town', '城关街道');
  const otherVillage = await unit(otherTown, 'village', '南村');
  const branch = (unitId: number, name: string, committee: boolean) =>
    q('INSERT INTO branches (unit_id, name, has_committee) VALUES ($1, $2, $3) RETURNING id', [unitId, name, committee]);
  const branchA = await branch(villageA, '东村党支部', true);
  const branchB = await branch(villageB, '西村党支部', false);
  const otherBranch = await branch(otherVillage, '南村党支部', false);
  const camera = (unitId: number, name: string) => q(`INSERT INTO cameras (unit_id, name, rtsp_url) VALUES ($1, $2, 'rtsp://127.0.0.1:9/cam') RETURNING id`, [unitId, name]);
  const cameraA = await camera(villageA, '东村会议室');
  const cameraB = await camera(villageB, '西村会议室');
  const otherCamera = await camera(otherVillage, '南村会议室');

  const mobiles = new Map<number, string>();
  const fullA: number[] = [];
  const probationaryA: number[] = [];
  for (let i = 0; i < 12; i++) {
    const mobile = `1380000${String(1000 + i * 37).padStart(4, '0')}`;
    const membership = i < 10 ? 'full' : 'probationary';
    const committee = i === 0 ? 'secretary' : i < 5 ? 'member' : null;
    const id = await q(
      `INSERT INTO members (branch_id, name, is_secretary, mobile, membership, committee_role) VALUES ($1, $2, $3, $4, $5, $6) RETURNING id`,
      [branchA, `东村党员${i + 1}`, i === 0, mobile, membership, committee],
    );
    mobiles.set(id, mobile);
    (i < 10 ? fullA : probationaryA).push(id);
  }
  for (let i = 0; i < 3; i++) await q(`INSERT INTO members (branch_id, name, is_secretary, mobile) VALUES ($1, $2, $3, '13900000000') RETURNING id`, [branchB, `西村党员${i + 1}`, i === 0]);
  await q(`INSERT INTO members (branch_id, name, is_secretary, mobile) VALUES ($1, '南村党员', true, '13700000000') RETURNING id`, [otherBranch]);

  const userIds: Record<string, number> = {};
  const user = async (username: string, role: Role, unitId: number): Promise<string> => {
    const id = await q(`INSERT INTO users (username, display_name, unit_id, role, password_hash) VALUES ($1, $1, $2, $3, 'scrypt$x') RETURNING id`, [username, unitId, role]);
    userIds[username] = id;
    return signAccessToken(TEST_SECRET, { userId: id, username, role, unitId }, 3600);
  };
  const tokens = {
    secretaryA: await user('v.east.secretary', 'secretary', villageA),
    secretaryB: await user('v.west.secretary', 'secretary', villageB),
    townSupervisor: await user('t.wangfu.supervisor', 'supervisor', town),
    countySupervisor: await user('c.qingzhou.supervisor', 'supervisor', county),
    countyLeader: await user('c.qingzhou.leader', 'leader', county),
    otherSecretary: await user('v.south.secretary', 'secretary', otherVillage),
    operator: await user('c.qingzhou.operator', 'operator', county),
  };
  return {
    h,
    keys,
    units: { city, county, town, villageA, villageB, otherCounty, otherVillage },
    branchA,
    branchB,
    otherBranch,
    cameraA,
    cameraB,
    otherCamera,
    fullA,
    probationaryA,
    mobiles,
    tokens,
    userIds,
  };
}
