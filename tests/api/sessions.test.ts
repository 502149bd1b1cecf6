import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { verifyJoinToken } from '../../infra/tokens.ts';
import { startSessionWorld, type SessionWorld } from './sessions-fixture.ts';

// The secretary's sessions through the API over a real PostgreSQL: planning (several kinds, what
// applies, whose camera, whose branch), start-now and end (the capture job follows), claiming from a
// recording, the town's view of its branches' plans, quorum from attendance, phone sign-in with the
// mobile's last 4 digits, and a remote member's link whose join token admits to that meeting only.

let w: SessionWorld;
before(async () => {
  w = await startSessionWorld();
});
after(async () => {
  await w?.h.close();
});

interface Session {
  id: number;
  branchId: number;
  obligation: string;
  kinds: string[];
  state: string;
  origin: string;
  startsAt: string;
  endsAt: string;
  captureJobId: number | null;
  meetingId: number | null;
}
interface Detail {
  session: Session;
  kinds: Array<{ obligation: string }>;
  expected: Array<{ memberId: number; membership: string }>;
  attendance: Array<{ memberId: number; status: string; source: string; reason: string | null }>;
  quorum: Array<{ obligation: string; rule: string; expected: number; present: number; passed: boolean; message?: string }>;
}

const inMinutes = (m: number) => new Date(Date.now() + m * 60_000).toISOString();
const call = (method: string, path: string, token: string | undefined, body?: unknown) => w.h.call(method, path, { ...(token ? { token } : {}), ...(body === undefined ? {} : { body }) });
const code = (r: { body: unknown }) => (r.body as { error?: { code?: string } }).error?.code;

async function plan(token: string, body: Record<string, unknown>): Promise<Session> {
  const r = await call('POST', '/api/sessions', token, body);
  assert.equal(r.status, 201, r.text);
  return r.body as Session;
}

async function startNow(kinds: string[], extra: Record<string, unknown> = {}): Promise<Session> {
  const r = await call('POST', '/api/sessions/start-now', w.tokens.secretaryA, { branchId: w.branchA, kinds, topic: '学习党章', plannedMinutes: 90, ...extra });
  assert.equal(r.status, 201, r.text);
  return r.body as Session;
}

async function detail(id: number, token = w.tokens.secretaryA): Promise<Detail> {
  const r = await call('GET', `/api/sessions/${id}`, token);
  assert.equal(r.status, 200, r.text);
  return r.body as Detail;
}

test('a secretary plans a session of several kinds; the first is the session\'s obligation, each counts', async () => {
  const s = await plan(w.tokens.secretaryA, {
    branchId: w.branchA, kinds: ['theme_day', 'member_meeting'], startsAt: inMinutes(60), endsAt: inMinutes(150),
    topic: '主题党日：学习贯彻全会精神', agenda: '一、学习；二、讨论', cameraId: w.cameraA, chairMemberId: w.fullA[0],
  });
  assert.equal(s.obligation, 'theme_day');
  assert.deepEqual(s.kinds, ['theme_day', 'member_meeting']);
  assert.equal(s.state, 'planned');
  assert.equal(s.origin, 'planned');
  const { rows } = await w.h.db.pool.query<{ obligation: string }>('SELECT obligation FROM session_obligations WHERE session_id = $1 ORDER BY obligation', [s.id]);
  assert.deepEqual(rows.map((r) => r.obligation), ['member_meeting', 'theme_day']);
  const d = await detail(s.id);
  assert.equal(d.expected.length, 12, 'a member meeting expects every active member');
  // A committee meeting expects only the committee.
  const c = await plan(w.tokens.secretaryA, { branchId: w.branchA, kinds: ['committee_meeting'], startsAt: inMinutes(60 * 24), endsAt: inMinutes(60 * 25), topic: '支委会' });
  assert.equal((await detail(c.id)).expected.length, 5);
});

test('planning is refused for kinds that do not apply, another unit\'s camera, another county\'s branch, a past start, and non-secretaries', async () => {
  const base = { branchId: w.branchA, kinds: ['member_meeting'], startsAt: inMinutes(30), endsAt: inMinutes(90), topic: '党员大会' };
  // Branch A has no party group; branch B has no committee.
  let r = await call('POST', '/api/sessions', w.tokens.secretaryA, { ...base, kinds: ['group_meeting'] });
  assert.equal(r.status, 422, r.text);
  assert.equal(code(r), 'kind_not_applicable');
  assert.match((r.body as { error: { message: string } }).error.message, /不适用.* \/ kinds that do not apply/);
  r = await call('POST', '/api/sessions', w.tokens.secretaryB, { ...base, branchId: w.branchB, kinds: ['committee_meeting'] });
  assert.equal(r.status, 422);
  assert.equal(code(r), 'kind_not_applicable');
  // 阳光议事日 is off nationally: a city switches it on.
  r = await call('POST', '/api/sessions', w.tokens.secretaryA, { ...base, kinds: ['sunshine_day'] });
  assert.equal(code(r), 'kind_not_applicable');
  // The camera of the neighbouring village (visible to an operator of the county) is not the branch's.
  r = await call('POST', '/api/sessions', w.tokens.operator, { ...base, cameraId: w.cameraB });
  assert.equal(r.status, 422, r.text);
  assert.equal(code(r), 'camera_other_unit');
  // Another county's camera and branch are simply not there.
  r = await call('POST', '/api/sessions', w.tokens.operator, { ...base, cameraId: w.otherCamera });
  assert.equal(r.status, 404);
  r = await call('POST', '/api/sessions', w.tokens.secretaryA, { ...base, branchId: w.otherBranch });
  assert.equal(r.status, 404);
  r = await call('POST', '/api/sessions', w.tokens.secretaryA, { ...base, startsAt: inMinutes(-60), endsAt: inMinutes(-10) });
  assert.equal(code(r), 'in_the_past');
  r = await call('POST', '/api/sessions', w.tokens.secretaryA, { ...base, endsAt: inMinutes(20) });
  assert.equal(code(r), 'bad_window');
  r = await call('POST', '/api/sessions', w.tokens.secretaryA, { ...base, kinds: [] });
  assert.equal(r.status, 400);
  r = await call('POST', '/api/sessions', w.tokens.townSupervisor, base);
  assert.equal(r.status, 403);
  const { rows } = await w.h.db.pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM meeting_sessions WHERE topic = '党员大会'`);
  assert.equal(rows[0]!.n, 0, 'nothing refused was written');
});

test('start now asks for the capture at once; ending it early shortens the capture job to match', async () => {
  const s = await startNow(['party_lesson'], { cameraId: w.cameraA, lecturerMemberId: w.fullA[1] });
  assert.equal(s.state, 'running');
  assert.equal(s.origin, 'started_now');
  assert.ok(s.captureJobId, 'a capture job was asked for');
  const job0 = (await w.h.db.pool.query<{ ends_at: Date; session_id: number; camera_id: number; evidence: boolean }>('SELECT ends_at, session_id, camera_id, evidence FROM capture_jobs WHERE id = $1', [s.captureJobId])).rows[0]!;
  assert.equal(Number(job0.session_id), s.id);
  assert.equal(Number(job0.camera_id), w.cameraA);
  assert.equal(job0.evidence, true);
  assert.equal(job0.ends_at.getTime(), new Date(s.endsAt).getTime(), 'the job runs to the planned end');

  const r = await call('POST', `/api/sessions/${s.id}/end`, w.tokens.secretaryA);
  assert.equal(r.status, 200, r.text);
  const ended = r.body as Session;
  assert.equal(ended.state, 'ended');
  assert.ok(new Date(ended.endsAt).getTime() < new Date(s.endsAt).getTime() - 60 * 60_000, 'the end moved to now');
  const job = (await w.h.db.pool.query<{ ends_at: Date; post_roll_s: number }>('SELECT ends_at, post_roll_s FROM capture_jobs WHERE id = $1', [s.captureJobId])).rows[0]!;
  assert.equal(job.ends_at.getTime(), new Date(ended.endsAt).getTime(), 'the capture job ends with the session');
  assert.ok(job.post_roll_s <= 10, "a short post-roll: the end is known");
  // Ending twice, or cancelling what is over, is refused.
  assert.equal((await call('POST', `/api/sessions/${s.id}/end`, w.tokens.secretaryA)).status, 409);
  assert.equal((await call('POST', `/api/sessions/${s.id}/cancel`, w.tokens.secretaryA, { reason: '停电' })).status, 409);

  // A planned session cancelled: state and the legacy flag agree, and the reason is kept.
  const p = await plan(w.tokens.secretaryA, { branchId: w.branchA, kinds: ['member_meeting'], startsAt: inMinutes(120), endsAt: inMinutes(180), topic: '换届', cameraId: w.cameraA });
  const c = await call('POST', `/api/sessions/${p.id}/cancel`, w.tokens.secretaryA, { reason: '书记外出学习' });
  assert.equal(c.status, 200, c.text);
  const row = (await w.h.db.pool.query<{ state: string; cancelled: boolean; ledger_note: string }>('SELECT state, cancelled, ledger_note FROM meeting_sessions WHERE id = $1', [p.id])).rows[0]!;
  assert.deepEqual(row, { state: 'cancelled', cancelled: true, ledger_note: '书记外出学习' });
});

test('a session held without a plan is claimed only where the camera recorded that window', async () => {
  const startsAt = new Date(Date.now() - 3 * 3_600_000);
  const endsAt = new Date(startsAt.getTime() + 40 * 60_000);
  const body = { branchId: w.branchA, kinds: ['party_lesson'], cameraId: w.cameraA, startsAt: startsAt.toISOString(), endsAt: endsAt.toISOString(), topic: '补登：党课' };
  let r = await call('POST', '/api/sessions/claim', w.tokens.secretaryA, body);
  assert.equal(r.status, 422, r.text);
  assert.equal(code(r), 'no_recording');
  // The camera recorded the window in 10-minute segments (the recorder's index rows).
  for (let t = startsAt.getTime() - 60_000; t < endsAt.getTime(); t += 10 * 60_000) {
    await w.h.db.pool.query(
      `INSERT INTO recording_segments (camera_id, started_at, ended_at, bytes, video_codec, bucket, object_key) VALUES ($1, $2, $3, 1000, 'h264', 'recordings', $4)`,
      [w.cameraA, new Date(t), new Date(t + 10 * 60_000), `claim/${t}.mp4`],
    );
  }
  r = await call('POST', '/api/sessions/claim', w.tokens.secretaryA, body);
  assert.equal(r.status, 201, r.text);
  const s = r.body as Session;
  assert.equal(s.origin, 'claimed');
  assert.equal(s.state, 'ended');
  assert.equal(s.captureJobId, null, 'nothing to capture: it is over');
  const row = (await w.h.db.pool.query<{ check_queued_at: Date | null; capture_requested_at: Date | null }>('SELECT check_queued_at, capture_requested_at FROM meeting_sessions WHERE id = $1', [s.id])).rows[0]!;
  assert.equal(row.check_queued_at, null, 'the scheduler queues its check on its next tick');
  assert.notEqual(row.capture_requested_at, null);
  // Another village's camera cannot be claimed for this branch.
  r = await call('POST', '/api/sessions/claim', w.tokens.operator, { ...body, cameraId: w.cameraB });
  assert.equal(code(r), 'camera_other_unit');
});

test('the town sees its branches\' plans; another county sees nothing of them', async () => {
  const b = await plan(w.tokens.secretaryB, { branchId: w.branchB, kinds: ['party_lesson'], startsAt: inMinutes(60 * 48), endsAt: inMinutes(60 * 49), topic: '西村党课' });
  const r = await call('GET', `/api/sessions?under=${w.units.town}&state=planned`, w.tokens.townSupervisor);
  assert.equal(r.status, 200, r.text);
  const items = (r.body as { items: Session[] }).items;
  const branches = new Set(items.map((i) => i.branchId));
  assert.ok(branches.has(w.branchA) && branches.has(w.branchB), 'both villages\' plans');
  assert.ok(items.every((i) => i.state === 'planned'));
  // The west village's secretary sees only its own branch.
  const own = (await call('GET', '/api/sessions', w.tokens.secretaryB)).body as { items: Session[] };
  assert.ok(own.items.length > 0 && own.items.every((i) => i.branchId === w.branchB));
  const other = (await call('GET', '/api/sessions', w.tokens.otherSecretary)).body as { items: Session[] };
  assert.equal(other.items.length, 0);
  assert.equal((await call('GET', `/api/sessions/${b.id}`, w.tokens.otherSecretary)).status, 404);
  assert.equal((await call('GET', `/api/sessions?under=${w.units.town}`, w.tokens.otherSecretary)).status, 404);
  assert.equal((await call('POST', `/api/sessions/${b.id}/cancel`, w.tokens.otherSecretary, { reason: 'x' })).status, 404);
});

test('quorum of a member meeting: 4 of 10 fails with the reason, 6 of 10 passes; probationary members are not counted', async () => {
  const s = await startNow(['member_meeting', 'party_lesson']);
  const mark = async (memberId: number, status: string, reason?: string) => {
    const r = await call('PUT', `/api/sessions/${s.id}/attendance/${memberId}`, w.tokens.secretaryA, { status, ...(reason ? { reason } : {}) });
    assert.equal(r.status, 200, r.text);
    return r.body as { source: string };
  };
  for (const m of w.fullA.slice(0, 4)) assert.equal((await mark(m, 'present')).source, 'kiosk');
  // Both probationary members attend: they have no vote.
  for (const m of w.probationaryA) await mark(m, 'present');
  await mark(w.fullA[9]!, 'leave', '外出务工');
  let d = await detail(s.id);
  const mm = () => d.quorum.find((q) => q.obligation === 'member_meeting')!;
  assert.equal(mm().rule, 'full_members');
  assert.equal(mm().expected, 10);
  assert.equal(mm().present, 4);
  assert.equal(mm().passed, false);
  assert.equal(mm().message, '到会4人，应到10人，未超过半数');
  const lesson = d.quorum.find((q) => q.obligation === 'party_lesson')!;
  assert.deepEqual([lesson.rule, lesson.passed], ['none', true]);
  // Exactly half is not more than half.
  await mark(w.fullA[4]!, 'present');
  d = await detail(s.id);
  assert.deepEqual([mm().present, mm().passed], [5, false]);
  await mark(w.fullA[5]!, 'present');
  d = await detail(s.id);
  assert.deepEqual([mm().present, mm().expected, mm().passed], [6, 10, true]);
  assert.equal(mm().message, '到会6人，应到10人，超过半数');
  assert.equal(d.attendance.find((a) => a.memberId === w.fullA[9])!.reason, '外出务工');
  // An operator of the county records attendance as 'secretary', not 'kiosk'; another branch's member is refused.
  const r = await call('PUT', `/api/sessions/${s.id}/attendance/${w.fullA[6]}`, w.tokens.operator, { status: 'absent' });
  assert.equal((r.body as { source: string }).source, 'secretary');
  const { rows } = await w.h.db.pool.query<{ id: number }>('SELECT id FROM members WHERE branch_id = $1 LIMIT 1', [w.branchB]);
  assert.equal((await call('PUT', `/api/sessions/${s.id}/attendance/${rows[0]!.id}`, w.tokens.secretaryA, { status: 'present' })).status, 422);
});

test('phone sign-in: a signed code for the session, the right last 4 digits mark present, wrong ones are refused and throttled', async () => {
  const s = await startNow(['theme_day']);
  const r = await call('POST', `/api/sessions/${s.id}/sign-in-code`, w.tokens.secretaryA);
  assert.equal(r.status, 201, r.text);
  const { code: c, url, expiresAt } = r.body as { code: string; url: string; expiresAt: string };
  assert.equal(url, `/#/sign-in/${c}`);
  assert.ok(new Date(expiresAt).getTime() > new Date(s.endsAt).getTime());
  // Public: no token needed.
  const page = await call('GET', `/api/attend/sign-in/${c}`, undefined);
  assert.equal(page.status, 200, page.text);
  const info = page.body as { branchName: string; topic: string; members: Array<{ id: number; name: string }> };
  assert.equal(info.branchName, '东村党支部');
  assert.equal(info.members.length, 12);
  assert.ok(!page.text.includes('1380000'), 'no mobile numbers on the public page');

  const member = w.fullA[2]!;
  const last4 = w.mobiles.get(member)!.slice(-4);
  const wrong = last4 === '0000' ? '1111' : '0000';
  let a = await call('POST', '/api/attend/sign-in', undefined, { code: c, memberId: member, mobileLast4: wrong });
  assert.equal(a.status, 403, a.text);
  assert.equal(code(a), 'wrong_mobile');
  assert.match((a.body as { error: { message: string } }).error.message, /后四位.* \/ /);
  let d = await detail(s.id);
  assert.equal(d.attendance.length, 0, 'a wrong answer records nothing');
  a = await call('POST', '/api/attend/sign-in', undefined, { code: c, memberId: member, mobileLast4: last4 });
  assert.equal(a.status, 200, a.text);
  d = await detail(s.id);
  assert.deepEqual(d.attendance.map((x) => [x.memberId, x.status, x.source]), [[member, 'present', 'phone']]);

  // A forged or altered code is refused; so is a code of one session used for another.
  const forged = c.replace(/\.(\d+)\./, (_m, sid: string) => `.${Number(sid) + 1}.`);
  assert.equal((await call('POST', '/api/attend/sign-in', undefined, { code: forged, memberId: member, mobileLast4: last4 })).status, 403);
  assert.equal((await call('GET', `/api/attend/sign-in/${c.slice(0, -2)}xx`, undefined)).status, 403);
  // Guessing is throttled: after 5 wrong answers for a member even the right one waits.
  const target = w.fullA[3]!;
  for (let i = 0; i < 5; i++) {
    const g = await call('POST', '/api/attend/sign-in', undefined, { code: c, memberId: target, mobileLast4: String(1000 + i) === w.mobiles.get(target)!.slice(-4) ? '9999' : String(1000 + i) });
    assert.equal(g.status, 403);
  }
  const locked = await call('POST', '/api/attend/sign-in', undefined, { code: c, memberId: target, mobileLast4: w.mobiles.get(target)!.slice(-4) });
  assert.equal(locked.status, 429, locked.text);
});

test('a remote member\'s link marks them present (remote) and its join token admits to the session\'s meeting only', async () => {
  const s = await startNow(['party_lesson']);
  const member = w.fullA[7]!;
  const r = await call('POST', `/api/sessions/${s.id}/remote-links`, w.tokens.secretaryA, { memberId: member });
  assert.equal(r.status, 201, r.text);
  const { token, url } = r.body as { token: string; url: string };
  assert.equal(url, `/#/attend/${token}`);
  const a = await call('POST', '/api/attend/remote', undefined, { token });
  assert.equal(a.status, 200, a.text);
  const join = a.body as { meetingId: number; room: string; joinToken: string; role: string; sfu: string };
  assert.equal(join.room, `m-${join.meetingId}`);
  const d = await detail(s.id);
  assert.equal(d.session.meetingId, join.meetingId);
  assert.deepEqual(d.attendance.map((x) => [x.memberId, x.status, x.source]), [[member, 'present', 'remote']]);
  const claims = await verifyJoinToken(w.keys.publicKey, join.joinToken);
  assert.equal(claims.room, `m-${join.meetingId}`, 'the token names the session\'s room and no other');
  assert.equal(claims.role, 'participant');
  // The branch's kiosk account chairs the online meeting.
  const m = (await w.h.db.pool.query<{ chair_user_id: number; chair_unit_id: number }>('SELECT chair_user_id, chair_unit_id FROM meetings WHERE id = $1', [join.meetingId])).rows[0]!;
  assert.equal(Number(m.chair_user_id), w.userIds['v.east.secretary']);
  assert.equal(Number(m.chair_unit_id), w.units.villageA);

  // Another session gets its own meeting; this member's token names only the first room.
  const other = await startNow(['theme_day']);
  const link2 = (await call('POST', `/api/sessions/${other.id}/remote-links`, w.tokens.secretaryA, { memberId: w.fullA[8] })).body as { token: string };
  const join2 = (await call('POST', '/api/attend/remote', undefined, { token: link2.token })).body as { meetingId: number; joinToken: string };
  assert.notEqual(join2.meetingId, join.meetingId);
  assert.notEqual((await verifyJoinToken(w.keys.publicKey, join.joinToken)).room, `m-${join2.meetingId}`);
  // A join token is no API credential: it opens no other meeting's token, nor anything else.
  const refused = await call('POST', `/api/meetings/${join2.meetingId}/join-token`, join.joinToken);
  assert.equal(refused.status, 401, refused.text);
  assert.equal((await call('GET', `/api/sessions/${other.id}`, join.joinToken)).status, 401);
  // A sign-in code is not a remote link, and an altered link is refused.
  assert.equal((await call('POST', '/api/attend/remote', undefined, { token: token.replace(/^r\./, 's.') })).status, 403);
  // Once the session has ended the link gives no more tokens.
  await call('POST', `/api/sessions/${s.id}/end`, w.tokens.secretaryA);
  assert.equal((await call('POST', '/api/attend/remote', undefined, { token })).status, 409);
});

test('a group meeting names an active group of the branch; it expects and counts that group only', async () => {
  const pool = w.h.db.pool;
  const group = Number((await pool.query<{ id: number }>(`INSERT INTO party_groups (branch_id, name) VALUES ($1, '第一党小组') RETURNING id`, [w.branchA])).rows[0]!.id);
  const otherGroup = Number((await pool.query<{ id: number }>(`INSERT INTO party_groups (branch_id, name) VALUES ($1, '西村党小组') RETURNING id`, [w.branchB])).rows[0]!.id);
  await pool.query('UPDATE members SET party_group_id = $1 WHERE id = ANY($2::bigint[])', [group, w.fullA.slice(0, 4)]);
  const base = { branchId: w.branchA, kinds: ['group_meeting'], topic: '党小组学习', plannedMinutes: 60 };
  let r = await call('POST', '/api/sessions/start-now', w.tokens.secretaryA, base);
  assert.equal(code(r), 'group_required');
  r = await call('POST', '/api/sessions/start-now', w.tokens.secretaryA, { ...base, partyGroupId: otherGroup });
  assert.equal(code(r), 'group_not_active');
  r = await call('POST', '/api/sessions/start-now', w.tokens.secretaryA, { ...base, kinds: ['party_lesson'], partyGroupId: group });
  assert.equal(code(r), 'group_not_expected');
  r = await call('POST', '/api/sessions/start-now', w.tokens.secretaryA, { ...base, partyGroupId: group });
  assert.equal(r.status, 201, r.text);
  const s = r.body as Session;
  await call('PUT', `/api/sessions/${s.id}/attendance/${w.fullA[0]}`, w.tokens.secretaryA, { status: 'present' });
  await call('PUT', `/api/sessions/${s.id}/attendance/${w.fullA[1]}`, w.tokens.secretaryA, { status: 'present' });
  // A member of the branch outside the group attending does not change the group's quorum.
  await call('PUT', `/api/sessions/${s.id}/attendance/${w.fullA[8]}`, w.tokens.secretaryA, { status: 'present' });
  let d = await detail(s.id);
  assert.deepEqual(d.expected.map((e) => e.memberId).sort((a, b) => a - b), w.fullA.slice(0, 4).sort((a, b) => a - b));
  assert.deepEqual(d.quorum.map((q) => [q.rule, q.expected, q.present, q.passed]), [['group', 4, 2, false]]);
  await call('PUT', `/api/sessions/${s.id}/attendance/${w.fullA[2]}`, w.tokens.secretaryA, { status: 'present' });
  d = await detail(s.id);
  assert.deepEqual(d.quorum.map((q) => [q.rule, q.expected, q.present, q.passed]), [['group', 4, 3, true]]);
  const so = (await pool.query<{ party_group_id: number }>(`SELECT party_group_id FROM session_obligations WHERE session_id = $1`, [s.id])).rows;
  assert.deepEqual(so.map((x) => Number(x.party_group_id)), [group]);
});

test('a planned session is rescheduled before it starts (a capture already asked for is withdrawn), not after', async () => {
  const s = await plan(w.tokens.secretaryA, { branchId: w.branchA, kinds: ['party_lesson'], startsAt: inMinutes(10), endsAt: inMinutes(70), topic: '党课', cameraId: w.cameraA });
  // The scheduler has asked for the capture already (its lead is 15 minutes).
  const job = Number((await w.h.db.pool.query<{ id: number }>(
    `INSERT INTO capture_jobs (camera_id, session_id, starts_at, ends_at, pre_roll_s, post_roll_s, evidence) VALUES ($1, $2, $3, $4, 300, 300, true) RETURNING id`,
    [w.cameraA, s.id, s.startsAt, s.endsAt],
  )).rows[0]!.id);
  await w.h.db.pool.query('UPDATE meeting_sessions SET capture_job_id = $2, capture_requested_at = now() WHERE id = $1', [s.id, job]);
  const r = await call('PATCH', `/api/sessions/${s.id}`, w.tokens.secretaryA, { startsAt: inMinutes(60 * 24), endsAt: inMinutes(60 * 25) });
  assert.equal(r.status, 200, r.text);
  const moved = r.body as Session;
  assert.equal(moved.captureJobId, null);
  assert.equal((await w.h.db.pool.query<{ state: string }>('SELECT state FROM capture_jobs WHERE id = $1', [job])).rows[0]!.state, 'cancelled');
  assert.equal((await w.h.db.pool.query<{ r: Date | null }>('SELECT capture_requested_at AS r FROM meeting_sessions WHERE id = $1', [s.id])).rows[0]!.r, null, 'asked again for the new window');
  assert.equal(code(await call('PATCH', `/api/sessions/${s.id}`, w.tokens.secretaryA, { cameraId: w.cameraB })), 'not_found', 'the neighbour\'s camera is not in the village');
  assert.equal(code(await call('PATCH', `/api/sessions/${s.id}`, w.tokens.operator, { cameraId: w.cameraB })), 'camera_other_unit');
  const running = await startNow(['theme_day']);
  assert.equal(code(await call('PATCH', `/api/sessions/${running.id}`, w.tokens.secretaryA, { endsAt: inMinutes(300) })), 'already_started');
});
