import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startHarness, type Harness } from './harness.ts';
import { buildDutiesWorld, type DutiesWorld } from '../scheduler/duties-world.ts';

// Branch duties, obligation rules, ladders, postponements and to-dos: input validation with
// bilingual errors, roles, and the organisation tree (another county sees 404, as for a missing object).

let h: Harness;
let w: DutiesWorld;

before(async () => {
  h = await startHarness();
  w = await buildDutiesWorld(h);
});
after(async () => {
  await h?.close();
});

type Err = { error: { code: string; message: string; details?: unknown } };
const code = (r: { body: unknown }) => (r.body as Err).error.code;
const bilingual = (r: { body: unknown }) => assert.match((r.body as Err).error.message, /[\u4e00-\u9fff].* \/ [A-Za-z]/);

test('branch facts: read and change within the subtree; another county gets 404; a read-only role 403', async () => {
  const s = w.tokens.secretaryTwelve;
  const facts = await h.call('GET', `/api/branches/${w.branches.twelve}/facts`, { token: s });
  assert.equal(facts.status, 200);
  const f = facts.body as { hasCommittee: boolean; members: Array<{ id: number; membership: string }>; fullMembers: number; probationaryMembers: number; groups: unknown[] };
  assert.deepEqual([f.hasCommittee, f.members.length, f.fullMembers, f.probationaryMembers, f.groups.length], [false, 12, 12, 0, 0]);

  for (const path of [`/api/branches/${w.branches.twelve}/facts`, `/api/branches/${w.branches.twelve}/obligations`]) {
    const other = await h.call('GET', path, { token: w.tokens.otherCountyAdmin });
    assert.equal(other.status, 404, path);
    bilingual(other);
  }
  assert.equal((await h.call('GET', `/api/branches/${w.branches.twelve}/facts`, { token: w.tokens.secretaryFive })).status, 404, 'a neighbouring village');
  assert.equal((await h.call('PATCH', `/api/branches/${w.branches.twelve}/facts`, { token: w.tokens.clerkTown, body: { hasCommittee: true } })).status, 403);
  const empty = await h.call('PATCH', `/api/branches/${w.branches.twelve}/facts`, { token: s, body: {} });
  assert.equal(empty.status, 400);
  bilingual(empty);
  assert.equal((await h.call('PATCH', `/api/branches/${w.branches.twelve}/facts`, { token: s, body: { hasCommittee: 'yes' } })).status, 400);

  // Six full members left: the committee is refused; with seven it is accepted.
  const m = w.members.twelve;
  for (const id of m.slice(6)) assert.equal((await h.call('PATCH', `/api/members/${id}/duties`, { token: s, body: { membership: 'probationary' } })).status, 200);
  const six = await h.call('PATCH', `/api/branches/${w.branches.twelve}/facts`, { token: s, body: { hasCommittee: true } });
  assert.equal(six.status, 422);
  assert.equal(code(six), 'committee_needs_seven');
  bilingual(six);
  assert.equal((await h.call('PATCH', `/api/members/${m[6]}/duties`, { token: s, body: { membership: 'full' } })).status, 200);
  const seven = await h.call('PATCH', `/api/branches/${w.branches.twelve}/facts`, { token: s, body: { hasCommittee: true } });
  assert.equal(seven.status, 200, seven.text);
  // A member leaving would take the committee below seven: refused while the committee exists.
  const leave = await h.call('PATCH', `/api/members/${m[1]}/duties`, { token: s, body: { leftAt: '2026-01-01T00:00:00+08:00' } });
  assert.equal(leave.status, 422);
  assert.equal(code(leave), 'committee_needs_seven');
  const role = await h.call('PATCH', `/api/members/${m[1]}/duties`, { token: s, body: { committeeRole: 'deputy_secretary' } });
  assert.equal(role.status, 200, role.text);
  assert.equal((role.body as { members: Array<{ id: number; committeeRole: string | null }> }).members.find((x) => x.id === m[1])!.committeeRole, 'deputy_secretary');
  assert.equal((await h.call('PATCH', `/api/members/${m[1]}/duties`, { token: s, body: { committeeRole: 'chair' } })).status, 400);
  assert.equal((await h.call('PATCH', `/api/members/${m[1]}/duties`, { token: w.tokens.otherCountyAdmin, body: { membership: 'full' } })).status, 404);
});

test('party groups: create, rename, retire; members only from the branch; out of subtree 404', async () => {
  const s = w.tokens.secretaryFive;
  const b = w.branches.five;
  assert.equal((await h.call('POST', `/api/branches/${b}/groups`, { token: s, body: { name: '' } })).status, 400);
  const foreign = await h.call('POST', `/api/branches/${b}/groups`, { token: s, body: { name: '第一党小组', leaderMemberId: w.members.twelve[0] } });
  assert.equal(foreign.status, 422);
  assert.equal(code(foreign), 'member_not_in_branch');
  assert.equal((await h.call('POST', `/api/branches/${w.branches.north}/groups`, { token: w.tokens.cityAdmin, body: { name: '北组' } })).status, 201, 'the city reaches every county');
  assert.equal((await h.call('POST', `/api/branches/${b}/groups`, { token: w.tokens.otherCountyAdmin, body: { name: 'x' } })).status, 404);
  const g = await h.call('POST', `/api/branches/${b}/groups`, { token: s, body: { name: '第一党小组', leaderMemberId: w.members.five[1] } });
  assert.equal(g.status, 201, g.text);
  const gid = (g.body as { id: number }).id;
  // Another branch's group cannot be given to this branch's member.
  const other = await h.call('POST', `/api/branches/${w.branches.south}/groups`, { token: w.tokens.secretarySouth, body: { name: '南组' } });
  const wrong = await h.call('PATCH', `/api/members/${w.members.five[2]}/duties`, { token: s, body: { partyGroupId: (other.body as { id: number }).id } });
  assert.equal(wrong.status, 422);
  assert.equal(code(wrong), 'group_not_in_branch');
  assert.equal((await h.call('PATCH', `/api/members/${w.members.five[2]}/duties`, { token: s, body: { partyGroupId: gid } })).status, 200);

  const ren = await h.call('PATCH', `/api/party-groups/${gid}`, { token: s, body: { name: '东村第一党小组' } });
  assert.equal(ren.status, 200);
  assert.equal((ren.body as { name: string }).name, '东村第一党小组');
  assert.equal((await h.call('PATCH', `/api/party-groups/${gid}`, { token: w.tokens.otherCountyAdmin, body: { name: 'x' } })).status, 404);
  assert.equal((await h.call('DELETE', `/api/party-groups/${gid}`, { token: w.tokens.otherCountyAdmin })).status, 404);
  const facts = (await h.call('GET', `/api/branches/${b}/facts`, { token: s })).body as { groups: Array<{ id: number; members: number[] }> };
  assert.deepEqual(facts.groups.map((x) => [x.id, x.members.length]), [[gid, 2]]);
  const obl = (await h.call('GET', `/api/branches/${b}/obligations?at=2026-05-15T00:00:00Z`, { token: s })).body as { rows: Array<{ obligation: string; partyGroupName: string | null }> };
  assert.ok(obl.rows.some((r) => r.obligation === 'group_meeting' && r.partyGroupName === '东村第一党小组'));
  const kinds = (obl as unknown as { kinds: Array<{ obligation: string; quorum: string }> }).kinds;
  assert.deepEqual(kinds.map((k) => k.obligation), ['member_meeting', 'group_meeting', 'party_lesson', 'theme_day', 'org_life_meeting', 'member_review', 'secretary_lesson']);
  assert.equal(kinds[0]!.quorum, 'full_members');
  const del = await h.call('DELETE', `/api/party-groups/${gid}`, { token: s });
  assert.equal(del.status, 200, del.text);
  const after = (await h.call('GET', `/api/branches/${b}/facts`, { token: s })).body as { groups: unknown[]; members: Array<{ partyGroupId: number | null }> };
  assert.deepEqual(after.groups, []);
  assert.ok(after.members.every((x) => x.partyGroupId === null), 'members leave a retired group');
  const obl2 = (await h.call('GET', `/api/branches/${b}/obligations?at=2026-05-15T00:00:00Z`, { token: s })).body as { rows: Array<{ obligation: string }> };
  assert.ok(!obl2.rows.some((r) => r.obligation === 'group_meeting'), 'no group, no group meeting');
  assert.equal((await h.call('PATCH', `/api/party-groups/${gid}`, { token: s, body: { name: 'again' } })).status, 404, 'retired');
  assert.equal((await h.call('GET', `/api/branches/${b}/obligations?at=yesterday`, { token: s })).status, 400);
});

test('obligation rules and ladders: levels, roles, subtree, validation', async () => {
  const body = { period: 'month', requiredCount: 1, minDurationS: 3600 };
  const town = await h.call('PUT', `/api/obligation-rules/${w.townId}/member_meeting`, { token: w.tokens.cityAdmin, body });
  assert.equal(town.status, 422);
  assert.equal(code(town), 'level_not_allowed');
  bilingual(town);
  assert.equal((await h.call('PUT', `/api/obligation-rules/${w.cityId}/member_meeting`, { token: w.tokens.townSupervisor, body })).status, 403);
  assert.equal((await h.call('PUT', `/api/obligation-rules/${w.countyId}/member_meeting`, { token: w.tokens.otherCountyAdmin, body })).status, 404);
  assert.equal((await h.call('PUT', `/api/obligation-rules/${w.cityId}/tea_party`, { token: w.tokens.cityAdmin, body })).status, 400);
  assert.equal((await h.call('PUT', `/api/obligation-rules/${w.cityId}/member_meeting`, { token: w.tokens.cityAdmin, body: { ...body, requiredCount: -1 } })).status, 400);
  assert.equal((await h.call('GET', `/api/obligation-rules?unitId=${w.countyId}`, { token: w.tokens.otherCountyAdmin })).status, 404);
  const list = await h.call('GET', '/api/obligation-rules', { token: w.tokens.secretaryFive });
  assert.equal(list.status, 200);
  const rules = (list.body as { rules: Array<{ obligation: string; enabled: boolean; statutory: boolean; dueFromMonth: number | null }> }).rules;
  assert.equal(rules.length, 9);
  assert.deepEqual(rules.filter((r) => !r.statutory).map((r) => r.obligation).sort(), ['sunshine_day', 'theme_day']);
  assert.equal(rules.find((r) => r.obligation === 'sunshine_day')!.enabled, false);
  assert.equal(rules.find((r) => r.obligation === 'org_life_meeting')!.dueFromMonth, 10);

  const steps = [{ key: 'd3', anchor: 'before_end', offsetHours: 72, target: 'secretary' }];
  assert.equal((await h.call('PUT', `/api/escalation-ladder/${w.countyId}`, { token: w.tokens.cityAdmin, body: { steps } })).status, 422);
  assert.equal((await h.call('PUT', `/api/escalation-ladder/${w.cityId}`, { token: w.tokens.countyLeader, body: { steps } })).status, 404, 'the city is above a county user');
  assert.equal((await h.call('PUT', `/api/escalation-ladder/${w.cityId}`, { token: w.tokens.cityAdmin, body: { steps: [...steps, ...steps] } })).status, 400, 'duplicate keys');
  assert.equal((await h.call('PUT', `/api/escalation-ladder/${w.cityId}`, { token: w.tokens.cityAdmin, body: { steps: [{ ...steps[0], level: 'galaxy' }] } })).status, 400);
  const def = await h.call('GET', `/api/escalation-ladder?unitId=${w.villages.east}`, { token: w.tokens.townSupervisor });
  assert.equal(def.status, 200);
  assert.deepEqual((def.body as { own: boolean; steps: Array<{ key: string }> }).steps.map((s) => s.key), ['d7', 'd2', 'escalate', 'county']);
  assert.equal((await h.call('GET', `/api/escalation-ladder?unitId=${w.villages.east}`, { token: w.tokens.otherCountyAdmin })).status, 404);
});

test('postponements: who may ask, who decides (strictly above), once', async () => {
  const ask = { branchId: w.branches.south, obligation: 'party_lesson', periodKey: '2026-Q3', reason: '村两委换届' };
  assert.equal((await h.call('POST', '/api/postponements', { token: w.tokens.townSupervisor, body: ask })).status, 403);
  assert.equal((await h.call('POST', '/api/postponements', { token: w.tokens.otherCountyAdmin, body: ask })).status, 404);
  const badKey = await h.call('POST', '/api/postponements', { token: w.tokens.secretarySouth, body: { ...ask, periodKey: '2026-07' } });
  assert.equal(badKey.status, 422);
  assert.equal(code(badKey), 'bad_period');
  assert.equal((await h.call('POST', '/api/postponements', { token: w.tokens.secretarySouth, body: { ...ask, reason: '' } })).status, 400);
  const notApplicable = await h.call('POST', '/api/postponements', { token: w.tokens.secretarySouth, body: { ...ask, obligation: 'committee_meeting', periodKey: '2026-07' } });
  assert.equal(code(notApplicable), 'not_applicable');
  const p = await h.call('POST', '/api/postponements', { token: w.tokens.secretarySouth, body: ask });
  assert.equal(p.status, 201, p.text);
  const again = await h.call('POST', '/api/postponements', { token: w.tokens.secretarySouth, body: ask });
  assert.equal(again.status, 409);
  const id = (p.body as { id: number }).id;
  const decide = (token: string, body: unknown) => h.call('POST', `/api/postponements/${id}/decision`, { token, body });
  assert.equal((await decide(w.tokens.secretarySouth, { decision: 'approve' })).status, 403, 'a secretary does not decide');
  assert.equal((await decide(w.tokens.communitySupervisor, { decision: 'approve' })).status, 404, 'the community is not above 南村');
  assert.equal((await decide(w.tokens.otherCountyAdmin, { decision: 'approve' })).status, 403);
  assert.equal((await decide(w.tokens.townSupervisor, { decision: 'refuse' })).status, 400, 'a refusal needs a note');
  assert.equal((await decide(w.tokens.townSupervisor, { decision: 'maybe', note: 'x' })).status, 400);
  const ok = await decide(w.tokens.townSupervisor, { decision: 'refuse', note: '请按期召开' });
  assert.equal(ok.status, 200, ok.text);
  assert.equal((await decide(w.tokens.countyLeader, { decision: 'approve' })).status, 409, 'decided once');
  // After a refusal the branch may ask again with a new reason.
  const second = await h.call('POST', '/api/postponements', { token: w.tokens.secretarySouth, body: { ...ask, reason: '书记住院' } });
  assert.equal(second.status, 201, second.text);
  assert.equal((second.body as { state: string }).state, 'requested');
  assert.equal((await h.call('GET', `/api/postponements?under=${w.townId}`, { token: w.tokens.otherCountyAdmin })).status, 404);
  assert.equal((await h.call('POST', '/api/todos/999999/done', { token: w.tokens.townSupervisor })).status, 404);
});
