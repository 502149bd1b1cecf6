import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { verifyJoinToken } from '../../infra/tokens.ts';
import { startSystemHarness, type SystemHarness } from '../support/system-harness.ts';
import { TEST_SECRET } from '../support/sfu-harness.ts';
import { TEST_JOIN_KEYS } from '../support/join-keys.ts';

// Meetings follow the tree: a town leader invites the villages of the town; only those sites (and
// leaders/supervisors above the chair) get tokens, each scoped to the meeting's room and role.

interface Meeting {
  id: number;
  room: string;
  site_count: number;
  state: string;
  layout: 'open' | 'venue';
  rotation_seconds: number;
  can_rotate?: boolean;
  your_role?: string;
  error?: { code: string };
}
interface Token {
  token: string;
  role: string;
  room: string;
  error?: { code: string };
}

let h: SystemHarness;
before(async () => {
  h = await startSystemHarness({ towns: 2, communities: 4, villages: 40 });
});
after(async () => h?.close());

const q = async <T>(sql: string, args: unknown[] = []) => (await h.db.pool.query(sql, args)).rows as T[];

test('a town leader opens a meeting of its villages; sites, watchers and outsiders get what they should', async () => {
  const [town, otherTown] = await q<{ id: number; path: string }>(`SELECT id, path FROM units WHERE level = 'town' ORDER BY id`);
  const leaderName = h.demo.users.find((u) => u.role === 'leader' && u.unitId === town!.id)!.username;
  const leader = await h.login(leaderName);

  const villages = await q<{ id: number }>(`SELECT id FROM units WHERE level = 'village' AND path LIKE $1`, [`${town!.path}%`]);
  const created = await h.call<Meeting>(leader, 'POST', '/api/meetings', { title: '全镇党建工作部署会', levels: ['village'] });
  assert.equal(created.status, 201, JSON.stringify(created.body));
  assert.equal(created.body.site_count, villages.length);
  assert.equal(created.body.room, `m-${created.body.id}`);
  // More sites than MEETING_OPEN_MAX_SITES (default 8): held as main venue / branch venues.
  assert.deepEqual([created.body.layout, created.body.rotation_seconds], ['venue', 10]);

  const chairToken = await h.call<Token>(leader, 'POST', `/api/meetings/${created.body.id}/join-token`);
  const chairClaims = await verifyJoinToken(TEST_JOIN_KEYS.publicKey, chairToken.body.token);
  assert.deepEqual([chairClaims.role, chairClaims.room, chairClaims.layout, chairClaims.rotate], ['chair', created.body.room, 'venue', true]);

  // A village secretary of this town is a site; one of the other town is not, and cannot tell it exists.
  const secretaries = h.demo.users.filter((u) => u.role === 'secretary' && u.level === 'village');
  const inside: string[] = [];
  const outside: string[] = [];
  for (const s of secretaries) {
    const [p] = await q<{ path: string }>('SELECT path FROM units WHERE id = $1', [s.unitId]);
    (p!.path.startsWith(town!.path) ? inside : outside).push(s.username);
  }
  assert.ok(inside.length > 0 && outside.length > 0, `fixture has secretaries on both sides: ${inside.length}/${outside.length}`);
  const site = await h.login(inside[0]!);
  const siteToken = await h.call<Token>(site, 'POST', `/api/meetings/${created.body.id}/join-token`);
  assert.equal(siteToken.status, 201);
  const siteClaims = await verifyJoinToken(TEST_JOIN_KEYS.publicKey, siteToken.body.token);
  assert.deepEqual([siteClaims.role, siteClaims.layout, siteClaims.rotate], ['participant', 'venue', undefined], 'a site may not rotate');
  const listed = await h.call<{ items: Meeting[] }>(site, 'GET', '/api/meetings?state=live');
  assert.deepEqual(listed.body.items.map((m) => m.id), [created.body.id]);

  const stranger = await h.login(outside[0]!);
  assert.equal((await h.call(stranger, 'GET', `/api/meetings/${created.body.id}`)).status, 404);
  assert.equal((await h.call(stranger, 'POST', `/api/meetings/${created.body.id}/join-token`)).status, 404);
  assert.equal((await h.call<{ items: Meeting[] }>(stranger, 'GET', '/api/meetings')).body.items.length, 0);

  // A county supervisor above the chair may watch; the city leader too.
  // The supervisor of the town's own county (not whichever comes first): the check always runs.
  const countySupervisors = h.demo.users.filter((u) => u.role === 'supervisor' && u.level === 'county');
  const countyOf = await Promise.all(countySupervisors.map(async (u) => (await q<{ path: string }>('SELECT path FROM units WHERE id = $1', [u.unitId]))[0]!.path));
  const countySupervisor = countySupervisors.find((_, i) => town!.path.startsWith(countyOf[i]!));
  assert.ok(countySupervisor, 'the fixture has a supervisor in the town\'s county');
  const sup = await h.login(countySupervisor.username);
  const seen = await h.call<Meeting>(sup, 'GET', `/api/meetings/${created.body.id}`);
  assert.deepEqual([seen.body.your_role, seen.body.can_rotate], ['viewer', true]);
  const city = await h.login('wf.leader');
  const watch = await h.call<Token>(city, 'POST', `/api/meetings/${created.body.id}/join-token`);
  const watchClaims = await verifyJoinToken(TEST_JOIN_KEYS.publicKey, watch.body.token);
  assert.deepEqual([watchClaims.role, watchClaims.rotate], ['viewer', true], 'leaders above watch and may rotate');

  // Hand-picked sites must all lie in the chair's subtree.
  const otherVillage = (await q<{ id: number }>(`SELECT id FROM units WHERE level = 'village' AND path LIKE $1 LIMIT 1`, [`${otherTown!.path}%`]))[0]!;
  const bad = await h.call<Meeting>(leader, 'POST', '/api/meetings', { title: '越权', unitIds: [villages[0]!.id, otherVillage.id] });
  assert.equal(bad.status, 404);
  assert.equal((await q<{ n: number }>('SELECT count(*)::int AS n FROM meetings'))[0]!.n, 1, 'nothing written');
  const picked = await h.call<Meeting>(leader, 'POST', '/api/meetings', { title: '点名', unitIds: [villages[0]!.id, villages[1]!.id] });
  assert.deepEqual([picked.body.site_count, picked.body.layout], [2, 'open'], 'a small meeting: everyone sees everyone');

  assert.equal((await h.call(leader, 'POST', '/api/meetings', { title: 'x' })).status, 400, 'neither levels nor unitIds');
  assert.equal((await h.call(leader, 'POST', '/api/meetings', { title: 'x', levels: ['hamlet'] })).status, 400);
  assert.equal((await h.call(site, 'POST', '/api/meetings', { title: 'x', levels: ['village'] })).status, 403, 'only leaders open meetings');
  assert.equal((await h.call(site, 'POST', `/api/meetings/${created.body.id}/end`)).status, 403);

  const ended = await h.call<Meeting>(leader, 'POST', `/api/meetings/${created.body.id}/end`);
  assert.equal(ended.body.state, 'ended');
  const late = await h.call<Token>(site, 'POST', `/api/meetings/${created.body.id}/join-token`);
  assert.equal(late.status, 409);
  assert.equal(late.body.error?.code, 'ended');
});
