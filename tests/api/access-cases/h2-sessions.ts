import assert from 'node:assert/strict';
import type { AccessCase, AccessWorld } from './types.ts';

// H2 (issue 16): the secretary's sessions, attendance, sign-in codes, remote links and the ledger
// (web/api/routes/sessions.ts, session-attendance.ts, ledger.ts). Every object is county A's branch's:
// the outsider (same role and level in county B) gets 404. Writes are the village secretary's; reads
// and reviews the town supervisor's.

const day = 24 * 3600_000;
const iso = (ms: number) => new Date(ms).toISOString();

const secretaryA = async (w: AccessWorld) => (await w.actor('A', 'secretary', 'village')).token;

/** A session of county A's branch started now (no camera), optionally ended and submitted. */
async function runningSessionOfA(w: AccessWorld, opts: { end?: boolean; submit?: boolean } = {}): Promise<number> {
  const token = await secretaryA(w);
  const r = await w.call('POST', '/api/sessions/start-now', { token, body: { branchId: w.A.branch, kinds: ['theme_day'], topic: `主题党日${w.unique()}`, plannedMinutes: 60 } });
  assert.equal(r.status, 201, r.text);
  const id = (r.body as { id: number }).id;
  if (opts.end || opts.submit) assert.equal((await w.call('POST', `/api/sessions/${id}/end`, { token })).status, 200);
  if (opts.submit) assert.equal((await w.call('POST', `/api/sessions/${id}/submit`, { token })).status, 200);
  return id;
}

async function plannedSessionOfA(w: AccessWorld): Promise<number> {
  const start = Date.now() + 3 * day + w.unique() * 3600_000;
  const r = await w.call('POST', '/api/sessions', {
    token: await secretaryA(w),
    body: { branchId: w.A.branch, kinds: ['party_lesson'], startsAt: iso(start), endsAt: iso(start + 3600_000), topic: '党课' },
  });
  assert.equal(r.status, 201, r.text);
  return (r.body as { id: number }).id;
}

async function signInCodeOfA(w: AccessWorld): Promise<string> {
  const r = await w.call('POST', `/api/sessions/${w.A.session}/sign-in-code`, { token: await secretaryA(w) });
  assert.equal(r.status, 201, r.text);
  return (r.body as { code: string }).code;
}

const period = () => `from=${encodeURIComponent(iso(Date.now() - 30 * day))}&to=${encodeURIComponent(iso(Date.now() + 30 * day))}`;

export const cases: AccessCase[] = [
  {
    method: 'POST', route: '/api/sessions',
    allowed: { role: 'secretary', level: 'village' },
    build: (w) => {
      const start = Date.now() + 2 * day;
      return { path: '/api/sessions', body: { branchId: w.A.branch, kinds: ['party_lesson', 'theme_day'], startsAt: iso(start), endsAt: iso(start + 3600_000), topic: '访问测试党课', cameraId: w.A.camera } };
    },
    allowedStatus: [201],
    check: (r, w) => {
      const s = r.body as { branchId: number; kinds: string[] };
      assert.equal(s.branchId, w.A.branch);
      assert.deepEqual(s.kinds, ['party_lesson', 'theme_day']);
    },
  },
  {
    method: 'POST', route: '/api/sessions/start-now',
    allowed: { role: 'secretary', level: 'village' },
    build: (w) => ({ path: '/api/sessions/start-now', body: { branchId: w.A.branch, kinds: ['theme_day'], topic: '现在开始', plannedMinutes: 30 } }),
    allowedStatus: [201],
    check: (r) => assert.equal((r.body as { state: string }).state, 'running'),
  },
  {
    method: 'POST', route: '/api/sessions/claim',
    allowed: { role: 'secretary', level: 'village' },
    build: async (w) => {
      const start = Date.now() - 2 * 3600_000 - w.unique() * 60_000;
      await w.pool.query(
        `INSERT INTO recording_segments (camera_id, started_at, ended_at, bytes, bucket, object_key) VALUES ($1, $2, $3, 1000, 'recordings', $4)`,
        [w.A.camera, new Date(start - 60_000), new Date(start + 31 * 60_000), `access/claim-${start}.mp4`],
      );
      return { path: '/api/sessions/claim', body: { branchId: w.A.branch, kinds: ['party_lesson'], cameraId: w.A.camera, startsAt: iso(start), endsAt: iso(start + 30 * 60_000), topic: '补登党课' } };
    },
    allowedStatus: [201],
    check: (r) => assert.equal((r.body as { origin: string }).origin, 'claimed'),
  },
  {
    method: 'GET', route: '/api/sessions',
    allowed: { role: 'supervisor', level: 'town' },
    build: (w) => ({ path: `/api/sessions?under=${w.A.units.town}` }),
    allowedStatus: [200],
    check: (r, w) => assert.ok((r.body as { items: Array<{ id: number }> }).items.some((i) => i.id === w.A.session), 'the town sees the branch\'s plan'),
  },
  {
    method: 'GET', route: '/api/sessions/{id}',
    allowed: { role: 'supervisor', level: 'town' },
    build: (w) => ({ path: `/api/sessions/${w.A.session}` }),
    allowedStatus: [200],
    check: (r, w) => {
      const b = r.body as { session: { id: number }; expected: unknown[]; quorum: unknown[] };
      assert.equal(b.session.id, w.A.session);
      assert.equal(b.expected.length, w.A.members.length);
    },
  },
  {
    method: 'PATCH', route: '/api/sessions/{id}',
    allowed: { role: 'secretary', level: 'village' },
    build: (w) => ({ path: `/api/sessions/${w.A.session}`, body: { agenda: '一、学习；二、讨论' } }),
    allowedStatus: [200],
    check: (r) => assert.equal((r.body as { agenda: string }).agenda, '一、学习；二、讨论'),
  },
  {
    method: 'POST', route: '/api/sessions/{id}/end',
    allowed: { role: 'secretary', level: 'village' },
    build: async (w) => ({ path: `/api/sessions/${await runningSessionOfA(w)}/end` }),
    allowedStatus: [200],
    check: (r) => assert.equal((r.body as { state: string }).state, 'ended'),
  },
  {
    method: 'POST', route: '/api/sessions/{id}/cancel',
    allowed: { role: 'secretary', level: 'village' },
    build: async (w) => ({ path: `/api/sessions/${await plannedSessionOfA(w)}/cancel`, body: { reason: '汛期' } }),
    allowedStatus: [200],
    check: (r) => assert.equal((r.body as { state: string }).state, 'cancelled'),
  },
  {
    method: 'POST', route: '/api/sessions/{id}/photos',
    allowed: { role: 'secretary', level: 'village' },
    build: async (w) => ({ path: `/api/sessions/${await runningSessionOfA(w, { end: true })}/photos` }),
    allowedStatus: [200],
    check: (r) => assert.ok(Array.isArray((r.body as { photos: unknown[] }).photos)),
  },
  {
    method: 'PUT', route: '/api/sessions/{id}/attendance/{memberId}',
    allowed: { role: 'secretary', level: 'village' },
    build: (w) => ({ path: `/api/sessions/${w.A.session}/attendance/${w.A.members[1]}`, body: { status: 'leave', reason: '外出务工' } }),
    allowedStatus: [200],
    check: async (r, w) => {
      const { rows } = await w.pool.query<{ status: string }>('SELECT status FROM session_attendance WHERE session_id = $1 AND member_id = $2', [w.A.session, w.A.members[1]]);
      assert.equal(rows[0]?.status, 'leave');
    },
  },
  {
    method: 'POST', route: '/api/sessions/{id}/sign-in-code',
    allowed: { role: 'secretary', level: 'village' },
    build: (w) => ({ path: `/api/sessions/${w.A.session}/sign-in-code` }),
    allowedStatus: [201],
    check: (r) => assert.match((r.body as { url: string }).url, /^\/#\/sign-in\//),
  },
  {
    method: 'GET', route: '/api/attend/sign-in/{code}',
    public: 'a member\'s phone scanning the QR code: the signed, session-scoped, expiring code is the credential',
    allowed: { role: 'secretary', level: 'village' },
    build: async (w) => ({ path: `/api/attend/sign-in/${await signInCodeOfA(w)}` }),
  },
  {
    method: 'POST', route: '/api/attend/sign-in',
    public: 'a member signs in by phone with the signed code and the last 4 digits of their mobile (throttled)',
    allowed: { role: 'secretary', level: 'village' },
    build: async (w) => ({ path: '/api/attend/sign-in', body: { code: await signInCodeOfA(w), memberId: w.A.members[0], mobileLast4: '0000' } }),
  },
  {
    method: 'POST', route: '/api/sessions/{id}/remote-links',
    allowed: { role: 'secretary', level: 'village' },
    build: (w) => ({ path: `/api/sessions/${w.A.session}/remote-links`, body: { memberId: w.A.members[2] } }),
    allowedStatus: [201],
    check: (r) => assert.match((r.body as { url: string }).url, /^\/#\/attend\//),
  },
  {
    method: 'POST', route: '/api/attend/remote',
    public: 'a member away from home (流动党员) opens their personal signed link; it admits to the session\'s online meeting only',
    allowed: { role: 'secretary', level: 'village' },
    build: async (w) => {
      const r = await w.call('POST', `/api/sessions/${w.A.session}/remote-links`, { token: await secretaryA(w), body: { memberId: w.A.members[2] } });
      return { path: '/api/attend/remote', body: { token: (r.body as { token: string }).token } };
    },
  },
  {
    method: 'POST', route: '/api/sessions/{id}/submit',
    allowed: { role: 'secretary', level: 'village' },
    build: async (w) => ({ path: `/api/sessions/${await runningSessionOfA(w, { end: true })}/submit` }),
    allowedStatus: [200],
    check: (r) => assert.equal((r.body as { ledgerState: string }).ledgerState, 'submitted'),
  },
  {
    method: 'POST', route: '/api/sessions/{id}/review',
    allowed: { role: 'supervisor', level: 'town' },
    build: async (w) => ({ path: `/api/sessions/${await runningSessionOfA(w, { submit: true })}/review`, body: { decision: 'return', reason: '请补充会议记录' } }),
    allowedStatus: [200],
    check: (r) => assert.equal((r.body as { ledgerState: string }).ledgerState, 'returned'),
  },
  {
    method: 'GET', route: '/api/units/{id}/ledger',
    allowed: { role: 'supervisor', level: 'town' },
    build: (w) => ({ path: `/api/units/${w.A.units.town}/ledger?${period()}` }),
    allowedStatus: [200],
    check: (r, w) => assert.ok((r.body as { sessions: Array<{ id: number }> }).sessions.some((s) => s.id === w.A.session)),
  },
  {
    method: 'GET', route: '/api/units/{id}/ledger.xlsx',
    allowed: { role: 'supervisor', level: 'town' },
    build: (w) => ({ path: `/api/units/${w.A.units.town}/ledger.xlsx?${period()}` }),
    allowedStatus: [200],
    check: (r) => assert.equal(r.headers.get('content-type'), 'application/vnd.openxmlformats-officedocument.spreadsheetml.sheet'),
  },
];
