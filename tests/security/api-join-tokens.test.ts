import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { SignJWT } from 'jose';
import WebSocket from 'ws';
import { generateKeyPair, signJoinToken, verifyJoinToken } from '../../infra/tokens.ts';
import { MAX_LIVE_MEETINGS_PER_CHAIR } from '../../web/api/routes/meetings.ts';
import { startSystemHarness, type SystemHarness } from '../support/system-harness.ts';
import { TEST_SECRET } from '../support/sfu-harness.ts';
import { TEST_JOIN_KEYS } from '../support/join-keys.ts';

// Attack: a signed-in leader of county A tries to get into what is not theirs — county B's meeting,
// a face-to-face call they are not party to, a camera outside their subtree, the chair of a meeting
// they only watch — through the API (every join token comes from the object's own access check; no
// route signs a token for a room the caller names), then takes whatever it got to the SFU (/sfu).

type Msg = { type: string; id?: string; ok?: boolean; data?: unknown; error?: { code: string; message: string } };

/** A bare signalling client (no media): one WebSocket to /sfu. */
class Signalling {
  readonly ws: WebSocket;
  readonly #waiting = new Map<string, (m: Msg) => void>();
  #n = 0;
  private constructor(url: string) {
    this.ws = new WebSocket(url);
    this.ws.on('message', (d) => {
      const m = JSON.parse(String(d)) as Msg;
      if (m.type === 'response' && m.id) this.#waiting.get(m.id)?.(m);
    });
  }
  static async open(url: string): Promise<Signalling> {
    const s = new Signalling(url);
    await new Promise((res, rej) => (s.ws.once('open', res), s.ws.once('error', rej)));
    return s;
  }
  request(method: string, data: unknown = {}): Promise<Msg> {
    const id = `r${++this.#n}`;
    return new Promise((res, rej) => {
      const t = setTimeout(() => rej(new Error(`${method}: no response`)), 5000);
      this.#waiting.set(id, (m) => (clearTimeout(t), this.#waiting.delete(id), res(m)));
      this.ws.send(JSON.stringify({ id, method, data }));
    });
  }
  close(): void {
    this.ws.close();
  }
}

/** Joins with `token` and returns the answer; the connection is closed afterwards unless kept. */
async function tryJoin(h: SystemHarness, token: string): Promise<Msg> {
  const s = await Signalling.open(h.wsUrl);
  try {
    return await s.request('join', { token });
  } finally {
    s.close();
  }
}

interface Call {
  id: number;
  state: string;
  join?: { token: string; room: string } | null;
  error?: { code: string };
}

describe('join tokens come only from the object’s own access check', { timeout: 120_000 }, () => {
  let h: SystemHarness;
  const q = async <T>(sql: string, args: unknown[] = []) => (await h.db.pool.query(sql, args)).rows as T[];
  let attacker: string; // county A leader
  let countyBLeader: string;
  let townLeader: string; // town of county B: chairs the meeting
  let siteSecretary: string; // a village of that town: a site
  let clerk: string; // the town's clerk: takes the call
  let meetingId: number;
  let callId: number;
  let cameraB: number;

  before(async () => {
    h = await startSystemHarness({ towns: 2, communities: 4, villages: 36 });
    const [town] = await q<{ id: number; path: string }>(`SELECT id, path FROM units WHERE level = 'town' ORDER BY id LIMIT 1`);
    const [countyB] = await q<{ id: number; code: string }>(`SELECT id, code FROM units WHERE level = 'county' AND $1 LIKE path || '%'`, [town!.path]);
    const [countyA] = await q<{ id: number }>(`SELECT id FROM units WHERE level = 'county' AND id <> $1 ORDER BY id LIMIT 1`, [countyB!.id]);
    const user = (role: string, unitId: number) => h.demo.users.find((u) => u.role === role && u.unitId === unitId)!.username;
    attacker = user('leader', countyA!.id);
    countyBLeader = user('leader', countyB!.id);
    townLeader = user('leader', town!.id);
    clerk = user('clerk', town!.id);
    const sec = (await q<{ username: string; unit_id: number }>(
      `SELECT x.username, x.unit_id FROM users x JOIN units u ON u.id = x.unit_id
        JOIN service_points s ON s.unit_id = u.id AND s.kind = 'station'
       WHERE x.role = 'secretary' AND u.level = 'village' AND u.path LIKE $1 ORDER BY x.id LIMIT 1`,
      [`${town!.path}%`],
    ))[0]!;
    siteSecretary = sec.username;

    const chair = await h.login(townLeader);
    const m = await h.call<{ id: number }>(chair, 'POST', '/api/meetings', { title: '县乙镇务会', levels: ['village'] });
    assert.equal(m.status, 201, JSON.stringify(m.body));
    meetingId = m.body.id;

    const v = await h.login(siteSecretary);
    const [station] = await q<{ id: number }>(`SELECT id FROM service_points WHERE unit_id = $1 AND kind = 'station'`, [sec.unit_id]);
    const [centre] = await q<{ services: string[] }>(`SELECT services FROM service_points WHERE unit_id = $1 AND kind = 'centre'`, [town!.id]);
    const c = await h.call<Call>(v, 'POST', '/api/service-calls', { stationId: station!.id, service: centre?.services[0] ?? 'civil_affairs' });
    assert.equal(c.status, 201, JSON.stringify(c.body));
    callId = c.body.id;
    const accepted = await h.call<Call>(await h.login(clerk), 'POST', `/api/service-calls/${callId}/accept`);
    assert.equal(accepted.body.state, 'accepted');

    cameraB = (await q<{ id: number }>(`SELECT c.id FROM cameras c JOIN units u ON u.id = c.unit_id WHERE u.path LIKE (SELECT path FROM units WHERE id = $1) || '%' LIMIT 1`, [countyB!.id]))[0]!.id;
  });

  after(async () => h?.close());

  test('county A’s leader gets nothing for county B’s meeting, call or camera, and no route names a room', async () => {
    const a = await h.login(attacker);
    const meeting = await h.call<{ error: { code: string } }>(a, 'POST', `/api/meetings/${meetingId}/join-token`);
    assert.equal(meeting.status, 404, 'another county’s meeting does not exist for the attacker');
    assert.equal((await h.call(a, 'GET', `/api/meetings/${meetingId}`)).status, 404);
    const call = await h.call<Call>(a, 'GET', `/api/service-calls/${callId}`);
    assert.equal(call.status, 404, 'a face-to-face call of another county');
    const cam = await h.call(a, 'POST', `/api/cameras/${cameraB}/live`);
    assert.equal(cam.status, 404, 'a camera outside the subtree');
    for (const room of [`m-${meetingId}`, `f2f-${callId}`, `camera-${cameraB}`, 'any-new-room']) {
      const generic = await h.call<{ error: { code: string } }>(a, 'POST', `/api/rooms/${room}/join-token`, {});
      assert.equal(generic.status, 404, `no generic token for ${room}`);
      assert.equal(generic.body.error.code, 'no_route');
    }
    const { rows } = await h.db.pool.query(`SELECT 1 FROM audit_log WHERE action LIKE '%join_token%' AND username = $1`, [attacker]);
    assert.equal(rows.length, 0, 'nothing was issued to the attacker');
  });

  test('a leader in scope who is not a party to the call gets no token for it', async () => {
    const b = await h.login(countyBLeader);
    const call = await h.call<Call>(b, 'GET', `/api/service-calls/${callId}`);
    assert.equal(call.status, 200, 'the call is visible in the subtree');
    assert.equal(call.body.join, null, 'but only its two parties get a token');
  });

  test('nobody but the meeting’s own chair gets a chair token; viewers and sites cannot chair on the SFU', async () => {
    const roles: Record<string, string> = {};
    const tokens: Record<string, string> = {};
    for (const name of [townLeader, countyBLeader, 'wf.leader', siteSecretary]) {
      const r = await h.call<{ token: string; role: string }>(await h.login(name), 'POST', `/api/meetings/${meetingId}/join-token`);
      assert.equal(r.status, 201, `${name}: ${JSON.stringify(r.body)}`);
      roles[name] = (await verifyJoinToken(TEST_JOIN_KEYS.publicKey, r.body.token)).role;
      tokens[name] = r.body.token;
    }
    assert.deepEqual(roles, { [townLeader]: 'chair', [countyBLeader]: 'viewer', 'wf.leader': 'viewer', [siteSecretary]: 'participant' });

    // The real chair joins (the SFU works); the watcher and the site try the chair's commands.
    const chair = await Signalling.open(h.wsUrl);
    assert.equal((await chair.request('join', { token: tokens[townLeader] })).ok, true);
    for (const name of [countyBLeader, siteSecretary]) {
      const s = await Signalling.open(h.wsUrl);
      const joined = await s.request('join', { token: tokens[name] });
      assert.equal(joined.ok, true, `${name} joins with its own role`);
      for (const action of [{ action: 'muteAll' }, { action: 'endMeeting' }]) {
        const r = await s.request('chairCommand', action);
        assert.equal(r.ok, false, `${name} may not ${action.action}`);
        assert.equal(r.error?.code, 'forbidden');
      }
      if (roles[name] === 'viewer') {
        const send = await s.request('createTransport', { direction: 'send' });
        assert.equal(send.error?.code, 'forbidden', 'a viewer only watches');
      }
      s.close();
    }
    chair.close();
  });

  test('whatever the attacker holds, the SFU refuses it', async () => {
    const a = await h.login(attacker);
    const answer = await h.call(a, 'POST', `/api/meetings/${meetingId}/join-token`);
    const forgedKey = generateKeyPair().privateKey;
    const claims = { userId: 1, displayName: 'attacker', unitId: 1, room: `m-${meetingId}`, role: 'chair' as const };
    const attempts: Record<string, string> = {
      'the API’s 404 answer': JSON.stringify(answer.body),
      'the attacker’s own access token': a,
      'a join token signed with a key of its own': await signJoinToken(forgedKey, claims),
      'HS256 with the access secret (algorithm confusion)': await new SignJWT(claims)
        .setProtectedHeader({ alg: 'HS256' })
        .setIssuer('grassroots-av')
        .setAudience('sfu-join')
        .setExpirationTime('5m')
        .sign(new TextEncoder().encode(TEST_SECRET)),
      'an unsigned token (alg none)': `${Buffer.from('{"alg":"none"}').toString('base64url')}.${Buffer.from(JSON.stringify({ ...claims, aud: 'sfu-join', iss: 'grassroots-av' })).toString('base64url')}.`,
    };
    for (const [what, token] of Object.entries(attempts)) {
      const r = await tryJoin(h, token);
      assert.equal(r.ok, false, `${what} is refused`);
      assert.equal(r.error?.code, 'unauthorized', `${what}: ${JSON.stringify(r.error)}`);
    }
    assert.equal(h.sfu.rooms.get(`m-${meetingId}`)?.peers.size ?? 0, 0, 'nobody is in the room');
  });

  test('ended meetings and closed calls give no tokens, and earlier tokens no longer admit', async () => {
    const site = await h.login(siteSecretary);
    const early = await h.call<{ token: string }>(site, 'POST', `/api/meetings/${meetingId}/join-token`);
    assert.equal(early.status, 201);
    const chair = await h.login(townLeader);
    assert.equal((await h.call(chair, 'POST', `/api/meetings/${meetingId}/end`)).status, 200);
    const late = await h.call<{ error: { code: string } }>(site, 'POST', `/api/meetings/${meetingId}/join-token`);
    assert.equal(late.status, 409);
    assert.equal(late.body.error.code, 'ended');
    const rejoin = await tryJoin(h, early.body.token);
    assert.equal(rejoin.ok, false, 'a token issued before the end does not get back in');

    const before = await h.call<Call>(site, 'GET', `/api/service-calls/${callId}`);
    assert.ok(before.body.join?.token, 'the station holds a token while the call is open');
    assert.equal((await h.call(await h.login(clerk), 'POST', `/api/service-calls/${callId}/close`, {})).status, 200);
    const closed = await h.call<Call>(site, 'GET', `/api/service-calls/${callId}`);
    assert.equal(closed.body.state, 'closed');
    assert.equal(closed.body.join, null, 'a closed call gives no token');
    assert.equal((await tryJoin(h, before.body.join!.token)).ok, false, 'nor does its old token admit');
  });

  test('a disabled or retired camera in the caller’s own subtree gives no live token', async () => {
    const a = await h.login(attacker);
    const unit = h.demo.users.find((u) => u.username === attacker)!.unitId;
    const [cam] = await q<{ id: number }>(`SELECT c.id FROM cameras c JOIN units u ON u.id = c.unit_id WHERE u.path LIKE (SELECT path FROM units WHERE id = $1) || '%' LIMIT 1`, [unit]);
    await h.db.pool.query('UPDATE cameras SET retired_at = now() WHERE id = $1', [cam!.id]);
    const retired = await h.call<{ error: { code: string }; token?: string }>(a, 'POST', `/api/cameras/${cam!.id}/live`);
    assert.equal(retired.status, 409);
    assert.equal(retired.body.token, undefined);
    await h.db.pool.query('UPDATE cameras SET retired_at = NULL, enabled = false WHERE id = $1', [cam!.id]);
    assert.equal((await h.call(a, 'POST', `/api/cameras/${cam!.id}/live`)).status, 409);
    assert.equal(h.sfu.rooms.has(`camera-${cam!.id}`), false, 'no room was opened for it');
  });

  test('nobody opens rooms without end: one chair holds at most MAX_LIVE_MEETINGS_PER_CHAIR live meetings', async () => {
    const chair = await h.login(townLeader);
    const statuses: number[] = [];
    for (let i = 0; i <= MAX_LIVE_MEETINGS_PER_CHAIR + 1; i++) statuses.push((await h.call(chair, 'POST', '/api/meetings', { title: `会议${i}`, levels: ['village'] })).status);
    const live = await q<{ n: number }>(`SELECT count(*)::int AS n FROM meetings m JOIN users x ON x.id = m.chair_user_id WHERE x.username = $1 AND m.state = 'live'`, [townLeader]);
    assert.equal(live[0]!.n, MAX_LIVE_MEETINGS_PER_CHAIR);
    assert.deepEqual(statuses.slice(-2), [409, 409]);
    const { rows } = await h.db.pool.query<{ id: number }>(`SELECT m.id FROM meetings m JOIN users x ON x.id = m.chair_user_id WHERE x.username = $1 AND m.state = 'live' LIMIT 1`, [townLeader]);
    assert.equal((await h.call(chair, 'POST', `/api/meetings/${rows[0]!.id}/end`)).status, 200);
    assert.equal((await h.call(chair, 'POST', '/api/meetings', { title: '结束一个后', levels: ['village'] })).status, 201, 'ending one makes room for another');
  });
});
