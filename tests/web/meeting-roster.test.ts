import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import { signJoinToken, verifyJoinToken, type JoinClaims } from '../../infra/tokens.ts';
import { createLogger } from '../../infra/logger.ts';
import type { Pool } from '../../infra/db/pool.ts';
import { AttendanceRecorder } from '../../web/attendance-recorder.ts';
import { startSystemHarness, type SystemHarness } from '../support/system-harness.ts';
import { TEST_JOIN_KEYS } from '../support/join-keys.ts';
import { TreeNode } from '../support/cascade-harness.ts';

// The chair's view of a large meeting (issue 11): a meeting above the small-meeting threshold is held as
// main venue / branch venues (venue tokens; only the chair and leaders/supervisors above may rotate), and
// the roster, the counts by child unit, the missing list and the attendance record come from what the
// system's own SFU node sees: sites join over /sfu with real signalling and appear in PostgreSQL.

interface Meeting {
  id: number;
  room: string;
  site_count: number;
  layout: 'open' | 'venue';
  rotation_seconds: number;
  your_role?: string;
  can_rotate?: boolean;
}
interface TokenAnswer {
  token: string;
  role: string;
  layout: 'open' | 'venue';
  rotate: boolean;
}
interface RosterItem {
  unit_id: number;
  name: string;
  parent_name: string | null;
  level: string;
  joined: boolean;
  peer_id: string | null;
  display_name: string | null;
  joined_at: string | null;
  minutes_present: number;
}
interface Roster {
  items: RosterItem[];
  total: number;
  limit: number;
  offset: number;
  next_offset: number | null;
}
interface Summary {
  under: { unit_id: number; name: string; level: string };
  expected: number;
  joined: number;
  by_unit: Array<{ unit_id: number; name: string; level: string; expected: number; joined: number }>;
}
interface AttendanceItem {
  unit_id: number;
  name: string;
  first_joined_at: string | null;
  last_left_at: string | null;
  present: boolean;
  minutes: number;
  sessions: number;
}

type Msg = { type: string; id?: string; ok?: boolean; data?: unknown; error?: { code: string; message: string } };

/** A site's signalling connection without media: joins with a token, leaves by closing. */
class Site {
  readonly ws: WebSocket;
  readonly #waiting = new Map<string, (m: Msg) => void>();
  #n = 0;
  peerId = '';
  joinedAt = 0;
  private constructor(url: string) {
    this.ws = new WebSocket(url);
    this.ws.on('message', (d) => {
      const m = JSON.parse(String(d)) as Msg;
      if (m.type === 'response' && m.id) this.#waiting.get(m.id)?.(m);
    });
  }
  static async join(url: string, token: string): Promise<Site> {
    const s = new Site(url);
    await new Promise((res, rej) => (s.ws.once('open', res), s.ws.once('error', rej)));
    const r = await s.request('join', { token });
    assert.equal(r.ok, true, `joined: ${JSON.stringify(r.error)}`);
    s.peerId = (r.data as { peerId: string }).peerId;
    s.joinedAt = Date.now();
    return s;
  }
  request(method: string, data: unknown = {}): Promise<Msg> {
    const id = `r${++this.#n}`;
    return new Promise((res, rej) => {
      const t = setTimeout(() => rej(new Error(`${method}: no response`)), 10_000);
      this.#waiting.set(id, (m) => (clearTimeout(t), this.#waiting.delete(id), res(m)));
      this.ws.send(JSON.stringify({ id, method, data }));
    });
  }
  async leave(): Promise<void> {
    if (this.ws.readyState === WebSocket.CLOSED) return;
    const closed = new Promise((r) => this.ws.once('close', r));
    this.ws.close();
    await closed;
  }
}

let h: SystemHarness;
const sites: Site[] = [];
before(async () => {
  // 90 villages: one in nine has a secretary account, so each town has a handful of site users.
  h = await startSystemHarness({ towns: 2, communities: 6, villages: 90, meetings: { openMaxSites: 8, rotationSeconds: 7 } });
});
after(async () => {
  await Promise.all(sites.map((s) => s.leave().catch(() => undefined)));
  await h?.close();
});

const q = async <T>(sql: string, args: unknown[] = []) => (await h.db.pool.query(sql, args)).rows as T[];

async function until<T>(what: string, fn: () => Promise<T | undefined>, timeoutMs = 5_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out: ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const claims = (token: string): Promise<JoinClaims> => verifyJoinToken(TEST_JOIN_KEYS.publicKey, token);

async function allRoster(token: string, meetingId: number, query: string): Promise<RosterItem[]> {
  const items: RosterItem[] = [];
  for (let offset: number | null = 0; offset !== null; ) {
    const r: { status: number; body: Roster } = await h.call<Roster>(token, 'GET', `/api/meetings/${meetingId}/roster?${query}&limit=500&offset=${offset}`);
    assert.equal(r.status, 200, JSON.stringify(r.body));
    items.push(...r.body.items);
    offset = r.body.next_offset;
  }
  return items;
}

test('a town meeting above the threshold: venue tokens, rotation only for the chair and those above; live roster, missing list and attendance', async () => {
  const [town] = await q<{ id: number; path: string }>(`SELECT id, path FROM units WHERE level = 'town' ORDER BY id LIMIT 1`);
  const leader = await h.login(h.demo.users.find((u) => u.role === 'leader' && u.unitId === town!.id)!.username);
  const created = await h.call<Meeting>(leader, 'POST', '/api/meetings', { title: '全镇视频会议', levels: ['village'] });
  assert.equal(created.status, 201, JSON.stringify(created.body));
  const m = created.body;
  assert.ok(m.site_count > 8, `more sites than the threshold: ${m.site_count}`);
  assert.deepEqual([m.layout, m.rotation_seconds], ['venue', 7]);

  // Tokens: everyone venue; rotate for the chair and the leaders/supervisors above, never for a site.
  const chairAnswer = await h.call<TokenAnswer>(leader, 'POST', `/api/meetings/${m.id}/join-token`);
  const chairClaims = await claims(chairAnswer.body.token);
  assert.deepEqual([chairClaims.role, chairClaims.layout, chairClaims.rotate], ['chair', 'venue', true]);
  assert.deepEqual([chairAnswer.body.layout, chairAnswer.body.rotate], ['venue', true]);

  const siteUsers: Array<{ username: string; unitId: number }> = [];
  for (const u of h.demo.users.filter((x) => x.role === 'secretary' && x.level === 'village')) {
    const [p] = await q<{ path: string }>('SELECT path FROM units WHERE id = $1', [u.unitId]);
    if (p!.path.startsWith(town!.path)) siteUsers.push(u);
  }
  assert.ok(siteUsers.length >= 3, `the town has site users: ${siteUsers.length}`);
  const siteTokens: string[] = [];
  const siteLogins: string[] = [];
  for (const u of siteUsers.slice(0, 3)) {
    const login = await h.login(u.username);
    siteLogins.push(login);
    const a = await h.call<TokenAnswer>(login, 'POST', `/api/meetings/${m.id}/join-token`);
    assert.equal(a.status, 201);
    const c = await claims(a.body.token);
    assert.deepEqual([c.role, c.layout, c.rotate], ['participant', 'venue', undefined], 'a site watches the stage and may not rotate');
    assert.equal(a.body.rotate, false);
    siteTokens.push(a.body.token);
  }
  const siteMeeting = await h.call<Meeting>(siteLogins[0]!, 'GET', `/api/meetings/${m.id}`);
  assert.deepEqual([siteMeeting.body.your_role, siteMeeting.body.can_rotate, siteMeeting.body.layout], ['participant', false, 'venue']);

  const cityLeader = await h.login('wf.leader');
  const watch = await claims((await h.call<TokenAnswer>(cityLeader, 'POST', `/api/meetings/${m.id}/join-token`)).body.token);
  assert.deepEqual([watch.role, watch.layout, watch.rotate], ['viewer', 'venue', true], 'the city leader watches from above and may rotate');
  const countySupervisorUser = h.demo.users.find((u) => u.role === 'supervisor' && u.level === 'county' && town!.path.startsWith(`${h.demo.unitIds.city[0]}.${u.unitId}.`));
  assert.ok(countySupervisorUser, 'the town lies under a county with a supervisor');
  const countySupervisor = await h.login(countySupervisorUser.username);
  const supervised = await h.call<Meeting>(countySupervisor, 'GET', `/api/meetings/${m.id}`);
  assert.deepEqual([supervised.body.your_role, supervised.body.can_rotate], ['viewer', true]);
  assert.equal((await claims((await h.call<TokenAnswer>(countySupervisor, 'POST', `/api/meetings/${m.id}/join-token`)).body.token)).rotate, true);

  // A small meeting stays open (everyone sees everyone); a broadcast is a venue whatever its size.
  const villages = await q<{ id: number; name: string }>(`SELECT id, name FROM units WHERE level = 'village' AND path LIKE $1 ORDER BY path`, [`${town!.path}%`]);
  const small = await h.call<Meeting>(leader, 'POST', '/api/meetings', { title: '小会', unitIds: [villages[0]!.id, villages[1]!.id] });
  assert.equal(small.body.layout, 'open');
  const smallToken = await h.call<TokenAnswer>(leader, 'POST', `/api/meetings/${small.body.id}/join-token`);
  assert.deepEqual([(await claims(smallToken.body.token)).layout, smallToken.body.layout], ['open', 'open']);
  const film = await h.call<Meeting>(leader, 'POST', '/api/meetings', { title: '放映', mode: 'broadcast', unitIds: [villages[0]!.id] });
  assert.equal(film.body.layout, 'venue');

  // Nobody has joined yet: everything is missing.
  const invited = new Set(villages.map((v) => v.id));
  assert.equal(invited.size, m.site_count);
  const missing0 = await allRoster(leader, m.id, 'filter=missing');
  assert.deepEqual(new Set(missing0.map((i) => i.unit_id)), invited);

  // The chair and three sites join over the system's own /sfu with the tokens the API issued.
  const chair = await Site.join(h.wsUrl, chairAnswer.body.token);
  sites.push(chair);
  const joinedSites: Site[] = [];
  for (const t of siteTokens) joinedSites.push(await Site.join(h.wsUrl, t));
  sites.push(...joinedSites);
  const joinedUnits = siteUsers.slice(0, 3).map((u) => u.unitId);
  const t0 = Date.now();
  const joined = await until('three sites joined', async () => {
    const items = await allRoster(leader, m.id, 'filter=joined');
    return items.length === 3 ? items : undefined;
  });
  const lag = Date.now() - t0;
  assert.ok(lag < 1_500, `sites appear as joined within about a second (${lag} ms)`);
  assert.deepEqual(new Set(joined.map((i) => i.unit_id)), new Set(joinedUnits));
  for (const [i, s] of joinedSites.entries()) {
    const item = joined.find((x) => x.unit_id === joinedUnits[i])!;
    assert.equal(item.peer_id, s.peerId, 'the live session is the peer that joined');
    assert.ok(item.joined && item.joined_at && item.display_name, JSON.stringify(item));
    assert.equal(item.level, 'village');
    assert.ok(item.parent_name, 'the village is shown with its community');
  }
  // The chair is recorded too (role chair), but its unit is not an invited site: not in the roster.
  const [chairRow] = await q<{ role: string; unit_id: number; left_at: Date | null }>('SELECT role, unit_id::int AS unit_id, left_at FROM meeting_attendance WHERE peer_id = $1', [chair.peerId]);
  assert.deepEqual([chairRow?.role, chairRow?.unit_id, chairRow?.left_at], ['chair', town!.id, null]);

  // The missing list is exactly the invited minus the joined.
  const missing = await allRoster(leader, m.id, 'filter=missing');
  assert.deepEqual(new Set(missing.map((i) => i.unit_id)), new Set([...invited].filter((u) => !joinedUnits.includes(u))));
  assert.ok(missing.every((i) => !i.joined && i.peer_id === null));
  const everything = await allRoster(leader, m.id, 'filter=all');
  assert.equal(everything.length, m.site_count);
  const order = await q<{ id: number }>('SELECT u.id::int AS id FROM meeting_sites s JOIN units u ON u.id = s.unit_id WHERE s.meeting_id = $1 ORDER BY u.path', [m.id]);
  assert.deepEqual(everything.map((i) => i.unit_id), order.map((r) => r.id), 'tree order');
  // Paging and the total; search by name.
  const page2 = await h.call<Roster>(leader, 'GET', `/api/meetings/${m.id}/roster?limit=4&offset=4`);
  assert.deepEqual([page2.body.total, page2.body.items.length, page2.body.next_offset], [m.site_count, 4, m.site_count > 8 ? 8 : null]);
  assert.deepEqual(page2.body.items.map((i) => i.unit_id), order.slice(4, 8).map((r) => r.id));
  const named = villages.find((v) => v.id === joinedUnits[0])!;
  const searched = await h.call<Roster>(leader, 'GET', `/api/meetings/${m.id}/roster?q=${encodeURIComponent(named.name.slice(0, 3))}`);
  assert.ok(searched.body.items.some((i) => i.unit_id === named.id) && searched.body.items.every((i) => i.name.includes(named.name.slice(0, 3))));
  const past = await h.call<Roster>(leader, 'GET', `/api/meetings/${m.id}/roster?offset=100000`);
  assert.deepEqual([past.body.items.length, past.body.total, past.body.next_offset], [0, m.site_count, null]);

  const summary = await h.call<Summary>(leader, 'GET', `/api/meetings/${m.id}/attendance/summary`);
  assert.equal(summary.status, 200);
  assert.deepEqual([summary.body.under.unit_id, summary.body.expected, summary.body.joined], [town!.id, m.site_count, 3]);
  assert.equal(summary.body.by_unit.reduce((n, c) => n + c.expected, 0), m.site_count);
  assert.ok(summary.body.by_unit.every((c) => c.level === 'community'));

  // Who may look: the chair and those above; a site and a stranger see no such meeting.
  for (const path of ['roster', 'attendance/summary', 'attendance', 'attendance?format=csv']) {
    assert.equal((await h.call(siteLogins[0]!, 'GET', `/api/meetings/${m.id}/${path}`)).status, 404, `a site gets 404 on ${path}`);
    assert.equal((await h.call(countySupervisor, 'GET', `/api/meetings/${m.id}/${path}`)).status, 200, `a supervisor above reads ${path}`);
  }
  const stranger = h.demo.users.find((u) => u.role === 'leader' && u.level === 'town' && u.unitId !== town!.id)!;
  const strangerLogin = await h.login(stranger.username);
  const refused = await h.call<{ error: { code: string; message: string } }>(strangerLogin, 'GET', `/api/meetings/${m.id}/roster`);
  assert.equal(refused.status, 404);
  assert.match(refused.body.error.message, /会议不存在 \/ meeting not found/);
  assert.equal((await h.call(leader, 'GET', `/api/meetings/${m.id}/roster?filter=present`)).status, 400);
  assert.equal((await h.call(leader, 'GET', `/api/meetings/${m.id}/roster?under=${h.demo.unitIds.city[0]}`)).status, 404, 'under outside the chair’s subtree');
  const audited = await q<{ action: string }>(`SELECT DISTINCT action FROM audit_log WHERE object_type = 'meeting' AND object_id = $1`, [String(m.id)]);
  for (const a of ['meeting.roster.view', 'meeting.attendance.summary', 'meeting.attendance.view']) assert.ok(audited.some((r) => r.action === a), `audited: ${a}`);

  // A site leaves: the row is closed with the time present; it rejoins as a second session.
  await new Promise((r) => setTimeout(r, 1_200));
  const leaver = joinedSites[0]!;
  await leaver.leave();
  const leftAt = Date.now();
  const after1 = await until('the site shows as left', async () => {
    const items = await allRoster(leader, m.id, 'filter=all');
    const it = items.find((i) => i.unit_id === joinedUnits[0]);
    return it && !it.joined ? it : undefined;
  });
  assert.ok(Date.now() - leftAt < 1_500, 'leaving shows within about a second');
  const expectedMinutes = (leftAt - leaver.joinedAt) / 60_000;
  assert.ok(after1.minutes_present > 0 && Math.abs(after1.minutes_present - expectedMinutes) < 0.02, `minutes present ${after1.minutes_present} ≈ ${expectedMinutes}`);
  const [row] = await q<{ left_at: Date | null; joined_at: Date }>('SELECT joined_at, left_at FROM meeting_attendance WHERE peer_id = $1', [leaver.peerId]);
  assert.ok(row?.left_at, 'the session row is closed');
  assert.ok(Math.abs(row.left_at.getTime() - leftAt) < 1_000);
  assert.deepEqual((await allRoster(leader, m.id, 'filter=missing')).map((i) => i.unit_id).sort(), [...invited].filter((u) => u !== joinedUnits[1] && u !== joinedUnits[2]).sort());

  const back = await Site.join(h.wsUrl, siteTokens[0]!);
  sites.push(back);
  await until('the site is back', async () => ((await allRoster(leader, m.id, 'filter=joined')).find((i) => i.unit_id === joinedUnits[0])?.peer_id === back.peerId ? true : undefined));
  const record = await h.call<{ items: AttendanceItem[]; total: number; meeting: { id: number } }>(cityLeader, 'GET', `/api/meetings/${m.id}/attendance?limit=500`);
  assert.equal(record.status, 200);
  assert.equal(record.body.total, m.site_count);
  const rec = record.body.items.find((i) => i.unit_id === joinedUnits[0])!;
  assert.deepEqual([rec.sessions, rec.present, rec.last_left_at], [2, true, null]);
  assert.equal(new Date(rec.first_joined_at!).getTime(), row.joined_at.getTime());
  const never = record.body.items.find((i) => !joinedUnits.includes(i.unit_id))!;
  assert.deepEqual([never.sessions, never.minutes, never.first_joined_at, never.present], [0, 0, null, false]);

  // The record for the supervisors' files: CSV with a header and one line per invited site.
  const csv = await fetch(`${h.baseUrl}/api/meetings/${m.id}/attendance?format=csv`, { headers: { authorization: `Bearer ${countySupervisor}` } });
  assert.equal(csv.status, 200);
  assert.match(csv.headers.get('content-type') ?? '', /^text\/csv/);
  assert.match(csv.headers.get('content-disposition') ?? '', new RegExp(`attachment; filename="meeting-${m.id}-attendance.csv"`));
  const lines = (await csv.text()).replace(/^\uFEFF/, '').trim().split('\r\n');
  assert.equal(lines[0], 'unit_id,unit,parent,level,first_joined_at,last_left_at,present,minutes,sessions');
  assert.equal(lines.length, m.site_count + 1);
  const csvRow = lines.find((l) => l.startsWith(`${joinedUnits[0]},`))!.split(',');
  assert.deepEqual([csvRow[1], csvRow[3], csvRow[6], csvRow[8]], [named.name, 'village', 'yes', '2']);
  assert.ok(Number(csvRow[7]) > 0);
  assert.ok(lines.some((l) => l.startsWith(`${never.unit_id},`) && l.endsWith(',,no,0,0')), 'a site that never joined');

  // The chair ends the meeting: the room closes everywhere and no session stays open.
  assert.equal((await h.call(leader, 'POST', `/api/meetings/${m.id}/end`)).status, 200);
  await until('every session closed', async () => {
    const [open] = await q<{ n: number }>('SELECT count(*)::int AS n FROM meeting_attendance WHERE meeting_id = $1 AND left_at IS NULL', [m.id]);
    return open!.n === 0 ? true : undefined;
  });
  const ended = await h.call<Summary>(leader, 'GET', `/api/meetings/${m.id}/attendance/summary`);
  assert.equal(ended.body.joined, 0);
});

test('a city meeting over a generated 2,000-village county: counts by child unit, missing lists per town, fast', async () => {
  // The county arrives as an administrator would bring it: one org import (CSV) through the API.
  const admin = await h.login('wf.admin');
  const TOWNS = 8;
  const COMMUNITIES = 5;
  const VILLAGES = 50;
  const csvLines = ['code,parent_code,level,name', 'T99,370700,county,试验县'];
  for (let t = 0; t < TOWNS; t++) {
    csvLines.push(`T99${t},T99,town,试验县${t}镇`);
    for (let c = 0; c < COMMUNITIES; c++) {
      csvLines.push(`T99${t}C${c},T99${t},community,试验县${t}镇${c}社区`);
      for (let v = 0; v < VILLAGES; v++) csvLines.push(`T99${t}C${c}V${v},T99${t}C${c},village,试验${t}-${c}-${v}村`);
    }
  }
  const imported = await fetch(`${h.baseUrl}/api/org/import`, { method: 'POST', headers: { authorization: `Bearer ${admin}`, 'content-type': 'text/csv' }, body: csvLines.join('\n') });
  assert.equal(imported.status, 201, await imported.text());
  const [county] = await q<{ id: number; path: string }>(`SELECT id::int AS id, path FROM units WHERE code = 'T99'`);

  const cityLeader = await h.login('wf.leader');
  const created = await h.call<Meeting>(cityLeader, 'POST', '/api/meetings', { title: '全县村级视频会议', under: county!.id, levels: ['village'] });
  assert.equal(created.status, 201, JSON.stringify(created.body));
  const m = created.body;
  assert.deepEqual([m.site_count, m.layout], [TOWNS * COMMUNITIES * VILLAGES, 'venue']);

  // A sample of villages joins over /sfu: synthetic sites without user accounts, so their tokens are
  // signed here with the test join key (the API-issued path is covered above); one user id each.
  const villages = await q<{ id: number; path: string; town: number; community: number }>(
    `SELECT v.id::int AS id, v.path, t.id::int AS town, c.id::int AS community
       FROM units v JOIN units c ON c.id = v.parent_id JOIN units t ON t.id = c.parent_id
      WHERE v.level = 'village' AND v.path LIKE $1 ORDER BY v.path`,
    [`${county!.path}%`],
  );
  // Uneven by design: town t gets 5·t joined villages (town 0 none), spread over its communities.
  const sample = villages.filter((v, i) => {
    const t = Math.floor(i / (COMMUNITIES * VILLAGES));
    return i % (COMMUNITIES * VILLAGES) < 5 * t;
  });
  const synthetic = await Promise.all(
    sample.map(async (v, i) =>
      Site.join(h.wsUrl, await signJoinToken(TEST_JOIN_KEYS.privateKey, { userId: 900_000 + i, displayName: `村${v.id}`, unitId: v.id, room: m.room, role: 'participant', layout: 'venue' })),
    ),
  );
  sites.push(...synthetic);
  const expectedJoined = sample.length;
  await until('the sample has joined', async () => {
    const s = await h.call<Summary>(cityLeader, 'GET', `/api/meetings/${m.id}/attendance/summary?under=${county!.id}`);
    return s.body.joined === expectedJoined ? true : undefined;
  }, 10_000);

  // By town (children of the county): expected 250 each, joined as the sample put them.
  const started = performance.now();
  const byTown = await h.call<Summary>(cityLeader, 'GET', `/api/meetings/${m.id}/attendance/summary?under=${county!.id}`);
  const took = performance.now() - started;
  assert.deepEqual([byTown.body.expected, byTown.body.joined, byTown.body.by_unit.length], [2000, expectedJoined, TOWNS]);
  const towns = [...new Set(villages.map((v) => v.town))];
  assert.deepEqual(
    byTown.body.by_unit.map((c) => [c.unit_id, c.level, c.expected, c.joined]),
    towns.map((t) => [t, 'town', COMMUNITIES * VILLAGES, sample.filter((v) => v.town === t).length]),
  );
  assert.ok(took < 1_000, `summary of 2,000 sites in ${took.toFixed(0)} ms`);
  // The chair's default is its own unit (the city): one child, the county, holding every site.
  const byCounty = await h.call<Summary>(cityLeader, 'GET', `/api/meetings/${m.id}/attendance/summary`);
  assert.deepEqual(byCounty.body.by_unit.map((c) => [c.unit_id, c.expected, c.joined]), [[county!.id, 2000, expectedJoined]]);
  // One level down: a town by its communities.
  const busiest = towns[TOWNS - 1]!;
  const byCommunity = await h.call<Summary>(cityLeader, 'GET', `/api/meetings/${m.id}/attendance/summary?under=${busiest}`);
  const communities = [...new Set(villages.filter((v) => v.town === busiest).map((v) => v.community))];
  assert.deepEqual(
    byCommunity.body.by_unit.map((c) => [c.unit_id, c.expected, c.joined]),
    communities.map((c) => [c, VILLAGES, sample.filter((v) => v.community === c).length]),
  );

  // The missing list of a town, paged: exactly its invited villages minus the joined ones.
  const missing = await allRoster(cityLeader, m.id, `filter=missing&under=${busiest}`);
  const joinedIds = new Set(sample.map((v) => v.id));
  assert.deepEqual(missing.map((i) => i.unit_id), villages.filter((v) => v.town === busiest && !joinedIds.has(v.id)).map((v) => v.id));
  const joinedHere = await h.call<Roster>(cityLeader, 'GET', `/api/meetings/${m.id}/roster?filter=joined&under=${busiest}&limit=500`);
  assert.deepEqual(new Set(joinedHere.body.items.map((i) => i.peer_id)), new Set(synthetic.filter((_, i) => sample[i]!.town === busiest).map((s) => s.peerId)));

  // Half of them leave: the counts follow within about a second.
  const leaving = synthetic.filter((_, i) => i % 2 === 0);
  await Promise.all(leaving.map((s) => s.leave()));
  await until('the counts follow the leavers', async () => {
    const s = await h.call<Summary>(cityLeader, 'GET', `/api/meetings/${m.id}/attendance/summary?under=${county!.id}`);
    return s.body.joined === expectedJoined - leaving.length ? true : undefined;
  }, 3_000);
});

test('the recorder: closes what a previous process left open, a room that closes, and rides out a database that is away', async () => {
  const leader = await h.login('wf.leader');
  const [county] = await q<{ id: number }>(`SELECT id::int AS id FROM units WHERE level = 'county' ORDER BY id LIMIT 1`);
  const created = await h.call<Meeting>(leader, 'POST', '/api/meetings', { title: '记录器', under: county!.id, levels: ['village'] });
  assert.equal(created.status, 201, JSON.stringify(created.body));
  const m = created.body;
  const [village] = await q<{ id: number }>('SELECT unit_id::int AS id FROM meeting_sites WHERE meeting_id = $1 LIMIT 1', [m.id]);
  const token = (userId: number, unitId = village!.id) =>
    signJoinToken(TEST_JOIN_KEYS.privateKey, { userId, displayName: `站点${userId}`, unitId, room: m.room, role: 'participant', layout: 'venue' });

  // A row a process that died left open (raw insert: that process is gone) is closed by the next one.
  await q(`INSERT INTO meeting_attendance (meeting_id, unit_id, peer_id, display_name, role, joined_at) VALUES ($1, $2, 'ghost', 'x', 'participant', now() - interval '1 hour')`, [m.id, village!.id]);
  const restarted = new AttendanceRecorder({ pool: h.db.pool, sfu: h.sfu, log: createLogger('attendance-test') });
  await restarted.start();
  await restarted.close();
  const [ghost] = await q<{ left_at: Date | null }>(`SELECT left_at FROM meeting_attendance WHERE peer_id = 'ghost'`);
  assert.ok(ghost?.left_at && Date.now() - ghost.left_at.getTime() < 5_000, 'closed at start-up');

  // The room goes away without its peers leaving one by one (its worker died): their rows close with it.
  const a = await Site.join(h.wsUrl, await token(800_001));
  const b = await Site.join(h.wsUrl, await token(800_002));
  sites.push(a, b);
  await until('both recorded', async () => ((await q<{ n: number }>('SELECT count(*)::int AS n FROM meeting_attendance WHERE meeting_id = $1 AND left_at IS NULL', [m.id]))[0]!.n === 2 ? true : undefined));
  h.sfu.rooms.get(m.room)!.abandon('worker-died');
  await until('closed with the room', async () => ((await q<{ n: number }>('SELECT count(*)::int AS n FROM meeting_attendance WHERE meeting_id = $1 AND left_at IS NULL', [m.id]))[0]!.n === 0 ? true : undefined), 2_000);

  // A database that is away: events wait in a bounded queue (the overflow is dropped and counted),
  // nothing throws, and what waited is written once the database answers again.
  let down = true;
  const refused = () => Promise.reject(new Error('connection refused (test)'));
  const real = h.db.pool;
  const flaky = { query: (...args: Parameters<Pool['query']>) => (down ? refused() : (real.query as (...x: unknown[]) => unknown)(...args)), connect: () => (down ? refused() : real.connect()) } as unknown as Pool;
  const recorder = new AttendanceRecorder({ pool: flaky, sfu: h.sfu, log: createLogger('attendance-test'), maxQueue: 3, flushMs: 100 });
  void recorder.start();
  const during: Site[] = [];
  for (let i = 0; i < 5; i++) during.push(await Site.join(h.wsUrl, await token(800_100 + i)));
  sites.push(...during);
  await new Promise((r) => setTimeout(r, 600));
  assert.deepEqual([recorder.pending, recorder.dropped, recorder.written], [3, 2, 0], 'three queued, two dropped, none written');
  down = false;
  await until('the queue is written once the database is back', async () => (recorder.pending === 0 && recorder.written === 3 ? true : undefined), 15_000);
  await recorder.close();
  const byRestarted = await q<{ peer_id: string; left_at: Date | null }>('SELECT peer_id, left_at FROM meeting_attendance WHERE meeting_id = $1 AND peer_id = ANY($2)', [m.id, during.map((s) => s.peerId)]);
  // The system's own recorder wrote all five meanwhile; the restarted recorder's start-up closed none of them.
  assert.equal(byRestarted.length, 5);
  assert.ok(byRestarted.every((r) => r.left_at === null));
});

describe('across the cascade: the root records sites that joined at nodes below it', () => {
  let c: SystemHarness;
  let town: TreeNode;
  let village: TreeNode;
  const here: Site[] = [];
  before(async () => {
    c = await startSystemHarness({ towns: 1, communities: 3, villages: 27, cascadeRoot: 'city' });
  });
  after(async () => {
    await Promise.all(here.map((s) => s.leave().catch(() => undefined)));
    await village?.stop().catch(() => undefined);
    await town?.stop().catch(() => undefined);
    await c?.close();
  });

  test('a village secretary joins at the village node two links down; the city root has it in the roster, and loses it with the node', async () => {
    const cq = async <T>(sql: string, args: unknown[] = []) => (await c.db.pool.query(sql, args)).rows as T[];
    const [t] = await cq<{ id: number; path: string }>(`SELECT id::int AS id, path FROM units WHERE level = 'town' LIMIT 1`);
    const secretaries = c.demo.users.filter((u) => u.role === 'secretary' && u.level === 'village');
    assert.ok(secretaries.length >= 2);
    town = new TreeNode('town', t!.id, c.cascadeUrl, { lingerMs: 300 });
    await town.start();
    village = new TreeNode('village', secretaries[0]!.unitId, town.cascadeUrl, { lingerMs: 300 });
    await village.start();
    await until('links up', async () => ([town, village].every((n) => n.node.cascade?.parentConnected) ? true : undefined), 10_000);

    const leader = await c.login(c.demo.users.find((u) => u.role === 'leader' && u.unitId === t!.id)!.username);
    const m = (await c.call<Meeting>(leader, 'POST', '/api/meetings', { title: '跨节点会议', levels: ['village'] })).body;
    assert.equal(m.layout, 'venue');
    const chair = await Site.join(c.wsUrl, (await c.call<TokenAnswer>(leader, 'POST', `/api/meetings/${m.id}/join-token`)).body.token);
    here.push(chair);
    const tokens: string[] = [];
    for (const u of secretaries.slice(0, 2)) tokens.push((await c.call<TokenAnswer>(await c.login(u.username), 'POST', `/api/meetings/${m.id}/join-token`)).body.token);
    // One site at the village node (two links below the root), one at the town node.
    const far = await Site.join(village.wsUrl, tokens[0]!);
    const near = await Site.join(town.wsUrl, tokens[1]!);
    here.push(far, near);
    const joined = await until('both sites joined at the root', async () => {
      const r = await c.call<Roster>(leader, 'GET', `/api/meetings/${m.id}/roster?filter=joined`);
      return r.body.items.length === 2 ? r.body.items : undefined;
    }, 5_000);
    assert.deepEqual(
      new Map(joined.map((i) => [i.unit_id, i.peer_id])),
      new Map([
        [secretaries[0]!.unitId, far.peerId],
        [secretaries[1]!.unitId, near.peerId],
      ]),
    );
    const summary = await c.call<Summary>(leader, 'GET', `/api/meetings/${m.id}/attendance/summary`);
    assert.deepEqual([summary.body.expected, summary.body.joined], [m.site_count, 2]);

    // The village node is lost (crash): the root forgets its site and the session closes.
    await village.stop();
    await until('the lost node’s site has left', async () => {
      const r = await c.call<Roster>(leader, 'GET', `/api/meetings/${m.id}/roster?filter=joined`);
      return r.body.items.length === 1 && r.body.items[0]!.unit_id === secretaries[1]!.unitId ? true : undefined;
    }, 10_000);
    const [row] = await cq<{ left_at: Date | null }>('SELECT left_at FROM meeting_attendance WHERE peer_id = $1', [far.peerId]);
    assert.ok(row?.left_at, 'the far site’s session is closed');
  });
});
