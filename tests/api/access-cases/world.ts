import type { Role } from '../../../infra/tokens.ts';
import { hashPassword } from '../../../infra/auth/password.ts';
import type { SystemHarness } from '../../support/system-harness.ts';
import type { AccessWorld, Actor, ApiAnswer, County, Level } from './types.ts';

// Builds the standard two-county fixture of the route-access test on a running system harness
// (demo organisation with >= 2 towns per county): county A = 370702, county B = 370703.

const PASSWORD = 'route-access-pw-2026';

export async function buildWorld(h: SystemHarness): Promise<AccessWorld> {
  const pool = h.db.pool;
  const storage = h.storage!;
  let n = 0;
  const call: AccessWorld['call'] = async (method, path, opts = {}) => {
    const headers: Record<string, string> = {};
    if (opts.token) headers.authorization = `Bearer ${opts.token}`;
    let body: string | Uint8Array | undefined;
    if (opts.raw !== undefined) {
      body = opts.raw;
      headers['content-type'] = opts.contentType ?? 'text/csv';
    } else if (opts.body !== undefined) {
      body = JSON.stringify(opts.body);
      headers['content-type'] = 'application/json';
    }
    const res = await fetch(h.baseUrl + path, { method, headers, body: body as string | undefined });
    const text = await res.text();
    let parsed: unknown = text;
    try {
      parsed = text ? JSON.parse(text) : undefined;
    } catch {
      /* not JSON */
    }
    return { status: res.status, body: parsed, text, headers: res.headers } satisfies ApiAnswer;
  };
  const hash = await hashPassword(PASSWORD);
  const one = async (sql: string, args: unknown[]): Promise<number> => Number((await pool.query<{ id: number }>(sql, args)).rows[0]!.id);

  const counties = { A: '370702', B: '370703' } as const;
  const unitsOf = async (code: string): Promise<Record<Level, number>> => {
    const county = await one('SELECT id FROM units WHERE code = $1', [code]);
    const town = await one('SELECT id FROM units WHERE parent_id = $1 ORDER BY id LIMIT 1', [county]);
    const community = await one('SELECT id FROM units WHERE parent_id = $1 ORDER BY id LIMIT 1', [town]);
    const village = await one('SELECT id FROM units WHERE parent_id = $1 ORDER BY id LIMIT 1', [community]);
    return { county, town, community, village };
  };
  const cache = new Map<string, Actor>();
  const units: Record<'A' | 'B', Record<Level, number>> = { A: await unitsOf(counties.A), B: await unitsOf(counties.B) };
  const actor: AccessWorld['actor'] = async (county, role: Role, level: Level = 'county') => {
    const key = `${county}.${role}.${level}`;
    const hit = cache.get(key);
    if (hit) return hit;
    const unitId = units[county][level];
    const username = `ra.${county}.${level}.${role}`;
    const userId = await one(`INSERT INTO users (username, display_name, unit_id, role, password_hash) VALUES ($1, $2, $3, $4, $5) RETURNING id`, [username, `测试${role}`, unitId, role, hash]);
    const r = await call('POST', '/api/auth/login', { body: { username, password: PASSWORD } });
    if (r.status !== 200) throw new Error(`login ${username}: ${r.status} ${r.text}`);
    const a: Actor = { role, level, unitId, userId, username, token: (r.body as { token: string }).token };
    cache.set(key, a);
    return a;
  };

  const county = async (name: 'A' | 'B'): Promise<County> => {
    const u = units[name];
    const branch = await one(`INSERT INTO branches (unit_id, name) VALUES ($1, $2) RETURNING id`, [u.village, `${name}县测试支部`]);
    const members: number[] = [];
    for (let i = 0; i < 3; i++) members.push(await one(`INSERT INTO members (branch_id, name, mobile) VALUES ($1, $2, $3) RETURNING id`, [branch, `党员${name}${i}`, `1380000${name === 'A' ? 1 : 2}00${i}`]));
    const servicePoint = await one(`INSERT INTO service_points (unit_id, kind, name) VALUES ($1, 'station', $2) RETURNING id`, [u.village, `${name}县测试服务站`]);
    const camera = await one(
      `INSERT INTO cameras (unit_id, service_point_id, name, rtsp_url, username, password) VALUES ($1, $2, $3, 'rtsp://127.0.0.1:9/none', 'camuser', $4) RETURNING id`,
      [u.village, servicePoint, `${name}县测试摄像机`, `campass-${name}-Zr4`],
    );
    const user = await one(`INSERT INTO users (username, display_name, unit_id, role, password_hash) VALUES ($1, '目标用户', $2, 'clerk', $3) RETURNING id`, [`ra.target.${name}`, u.village, hash]);
    const sfuNode = await one('SELECT id FROM sfu_nodes WHERE unit_id = $1', [u.county]);
    const leader = await actor(name, 'leader', 'county');
    const m = await call('POST', '/api/meetings', { token: leader.token, body: { title: `${name}县测试会议`, levels: ['town'] } });
    if (m.status !== 201 && m.status !== 200) throw new Error(`meeting for ${name}: ${m.status} ${m.text}`);
    const secretary = await actor(name, 'secretary', 'village');
    const start = new Date(Date.now() + 24 * 3600_000);
    const s = await call('POST', '/api/sessions', {
      token: secretary.token,
      body: { branchId: branch, kinds: ['member_meeting'], startsAt: start.toISOString(), endsAt: new Date(start.getTime() + 3600_000).toISOString(), topic: '测试党员大会', cameraId: camera },
    });
    if (s.status !== 201) throw new Error(`session for ${name}: ${s.status} ${s.text}`);
    return {
      name,
      units: u,
      branch,
      members,
      servicePoint,
      camera,
      user,
      sfuNode,
      meeting: (m.body as { id: number }).id,
      session: (s.body as { id: number }).id,
    };
  };
  const A = await county('A');
  const B = await county('B');
  return { pool, storage, call, A, B, actor, unique: () => ++n };
}
