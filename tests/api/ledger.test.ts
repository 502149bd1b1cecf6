import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import fs from 'node:fs/promises';
import ExcelJS from 'exceljs';
import { startS3Fixture, type S3Fixture } from '../support/recorder-fixture.ts';
import { makeClips, tempDir, waitUntil } from '../scheduler/fixtures.ts';
import { Recorder } from '../../recorder/Recorder.ts';
import type { IndexedSegment } from '../../recorder/types.ts';
import { RtspServer } from '../support/rtsp-server.ts';
import { TestCamera } from '../support/rtsp-camera.ts';
import { addCamera, fastRecorderConfig, tempDir as recorderTempDir, waitForEvent } from '../support/recorder-fixture.ts';
import { startSessionWorld, type SessionWorld } from './sessions-fixture.ts';

// The ledger (台账) through the API with a real PostgreSQL, S3 and ffmpeg: one ledger submitted and
// approved by the town, another returned with a reason (and the to-dos each step leaves), the unit's
// ledger exported as .xlsx and read back cell by cell with exceljs, and photos taken from the
// session's recording.

let w: SessionWorld;
let s3: S3Fixture;
let clips: string;

before(async () => {
  [s3, clips] = await Promise.all([startS3Fixture('recordings'), tempDir('ledger-clips-')]);
  await makeClips(clips, 'recordings', ['good']);
  w = await startSessionWorld({ storage: s3.storage, photoCount: 3 });
});
after(async () => {
  await w?.h.close();
  await s3?.close();
  if (clips) await fs.rm(clips, { recursive: true, force: true });
});

interface Session {
  id: number;
  state: string;
  ledgerState: string;
  ledgerNote: string | null;
}
const call = (method: string, p: string, token: string | undefined, body?: unknown) => w.h.call(method, p, { ...(token ? { token } : {}), ...(body === undefined ? {} : { body }) });
const code = (r: { body: unknown }) => (r.body as { error?: { code?: string } }).error?.code;

/** A session held an hour ago, recorded by branch A's camera (a 12-second clip in S3), claimed. */
async function heldSession(topic: string, kinds: string[], offsetMin: number): Promise<Session> {
  const startsAt = new Date(Date.now() - offsetMin * 60_000);
  const key = `cam${w.cameraA}/${startsAt.getTime()}.mp4`;
  await s3.storage.putFile(key, path.join(clips, 'recordings', 'clips', 'good.mp4'), 'video/mp4');
  await w.h.db.pool.query(
    `INSERT INTO recording_segments (camera_id, started_at, ended_at, bytes, video_codec, audio_codec, bucket, object_key)
     VALUES ($1, $2, $3, 1000, 'h264', 'aac', 'recordings', $4)`,
    [w.cameraA, startsAt, new Date(startsAt.getTime() + 12_000), key],
  );
  const r = await call('POST', '/api/sessions/claim', w.tokens.secretaryA, {
    branchId: w.branchA, kinds, cameraId: w.cameraA, topic,
    startsAt: startsAt.toISOString(), endsAt: new Date(startsAt.getTime() + 12_000).toISOString(), chairMemberId: w.fullA[0],
  });
  assert.equal(r.status, 201, r.text);
  return r.body as Session;
}

async function attend(id: number, present: number[], leave: Array<[number, string]>): Promise<void> {
  for (const m of present) assert.equal((await call('PUT', `/api/sessions/${id}/attendance/${m}`, w.tokens.secretaryA, { status: 'present' })).status, 200);
  for (const [m, reason] of leave) assert.equal((await call('PUT', `/api/sessions/${id}/attendance/${m}`, w.tokens.secretaryA, { status: 'leave', reason })).status, 200);
}

const openTodos = async (id: number) =>
  (await w.h.db.pool.query<{ unit_id: number; role: string; kind: string }>(`SELECT unit_id, role, kind FROM todos WHERE object_type = 'session' AND object_id = $1 AND done_at IS NULL`, [String(id)])).rows
    .map((t) => ({ unit: Number(t.unit_id), role: t.role, kind: t.kind }));

let approved: Session;
let returned: Session;

test('a ledger is submitted, waits on the town supervisor\'s to-do list, and is approved by the town', async () => {
  approved = await heldSession('党员大会：选举支部委员', ['member_meeting'], 120);
  await attend(approved.id, w.fullA.slice(0, 6), [[w.fullA[9]!, '外出务工']]);
  assert.equal((await call('PATCH', `/api/sessions/${approved.id}`, w.tokens.secretaryA, { minutes: '会议选举产生新一届支部委员会。' })).status, 200);
  // A running session cannot be submitted yet.
  const running = (await call('POST', '/api/sessions/start-now', w.tokens.secretaryA, { branchId: w.branchA, kinds: ['theme_day'], topic: '进行中', plannedMinutes: 60 })).body as Session;
  assert.equal(code(await call('POST', `/api/sessions/${running.id}/submit`, w.tokens.secretaryA)), 'not_ended');

  const r = await call('POST', `/api/sessions/${approved.id}/submit`, w.tokens.secretaryA);
  assert.equal(r.status, 200, r.text);
  assert.equal((r.body as Session).ledgerState, 'submitted');
  assert.deepEqual(await openTodos(approved.id), [{ unit: w.units.town, role: 'supervisor', kind: 'ledger_review' }]);
  // The review list of the town.
  const list = (await call('GET', `/api/sessions?ledgerState=submitted`, w.tokens.townSupervisor)).body as { items: Session[] };
  assert.deepEqual(list.items.map((i) => i.id), [approved.id]);
  // The branch's own secretary cannot approve it; nor can anyone outside the county.
  assert.equal((await call('POST', `/api/sessions/${approved.id}/review`, w.tokens.secretaryA, { decision: 'approve' })).status, 403);
  assert.equal((await call('POST', `/api/sessions/${approved.id}/review`, w.tokens.otherSecretary, { decision: 'approve' })).status, 403);
  const a = await call('POST', `/api/sessions/${approved.id}/review`, w.tokens.townSupervisor, { decision: 'approve' });
  assert.equal(a.status, 200, a.text);
  assert.equal((a.body as Session).ledgerState, 'approved');
  assert.deepEqual(await openTodos(approved.id), [], 'the review closed the to-do');
  // Approved means final: no more edits or attendance changes, no second review.
  assert.equal(code(await call('PATCH', `/api/sessions/${approved.id}`, w.tokens.secretaryA, { topic: '改' })), 'ledger_approved');
  assert.equal(code(await call('PUT', `/api/sessions/${approved.id}/attendance/${w.fullA[8]}`, w.tokens.secretaryA, { status: 'present' })), 'ledger_approved');
  assert.equal(code(await call('POST', `/api/sessions/${approved.id}/review`, w.tokens.countySupervisor, { decision: 'return', reason: '再看看' })), 'not_submitted');
});

test('another ledger is returned by the town with a reason; the secretary gets a to-do and may submit again', async () => {
  returned = await heldSession('支委会：研究发展党员', ['committee_meeting'], 60);
  await attend(returned.id, w.fullA.slice(0, 2), []);
  assert.equal((await call('POST', `/api/sessions/${returned.id}/submit`, w.tokens.secretaryA)).status, 200);
  const noReason = await call('POST', `/api/sessions/${returned.id}/review`, w.tokens.townSupervisor, { decision: 'return' });
  assert.equal(noReason.status, 400);
  assert.match(JSON.stringify(noReason.body), /退回须说明原因 \/ a return needs a reason/);
  const r = await call('POST', `/api/sessions/${returned.id}/review`, w.tokens.townSupervisor, { decision: 'return', reason: '会议记录不完整，请补充讨论内容' });
  assert.equal(r.status, 200, r.text);
  assert.equal((r.body as Session).ledgerState, 'returned');
  assert.equal((r.body as Session).ledgerNote, '会议记录不完整，请补充讨论内容');
  assert.deepEqual(await openTodos(returned.id), [{ unit: w.units.villageA, role: 'secretary', kind: 'ledger_returned' }]);
  // The committee meeting had 2 of 5 committee members: its quorum fails.
  const d = (await call('GET', `/api/sessions/${returned.id}`, w.tokens.townSupervisor)).body as { quorum: Array<{ passed: boolean; message: string }>; ledger: { state: string; note: string } };
  assert.deepEqual([d.quorum[0]!.passed, d.quorum[0]!.message], [false, '到会2人，应到5人，未超过半数']);
  assert.deepEqual([d.ledger.state, d.ledger.note], ['returned', '会议记录不完整，请补充讨论内容']);
  // Corrected and submitted again: back on the town's list, the secretary's to-do closed.
  assert.equal((await call('PATCH', `/api/sessions/${returned.id}`, w.tokens.secretaryA, { minutes: '讨论了两名入党积极分子的培养情况。' })).status, 200);
  assert.equal((await call('POST', `/api/sessions/${returned.id}/submit`, w.tokens.secretaryA)).status, 200);
  assert.deepEqual(await openTodos(returned.id), [{ unit: w.units.town, role: 'supervisor', kind: 'ledger_review' }]);
  assert.equal((await call('POST', `/api/sessions/${returned.id}/review`, w.tokens.countyLeader, { decision: 'return', reason: '请补充缺席人员原因' })).status, 200);
});

test('the town\'s ledger exported as a spreadsheet reads back cell by cell', async () => {
  const from = new Date(Date.now() - 86_400_000).toISOString();
  const to = new Date(Date.now() + 86_400_000).toISOString();
  const json = await call('GET', `/api/units/${w.units.town}/ledger?from=${from}&to=${to}`, w.tokens.townSupervisor);
  assert.equal(json.status, 200, json.text);
  const rows = (json.body as { sessions: Array<{ id: number; expected: number; present: unknown[]; absent: Array<{ name: string; status: string; reason: string | null }>; ledgerState: string }> }).sessions;
  const a = rows.find((r) => r.id === approved.id)!;
  assert.deepEqual([a.expected, a.present.length, a.ledgerState], [12, 6, 'approved']);
  assert.ok(a.absent.some((x) => x.status === 'leave' && x.reason === '外出务工'));

  const res = await fetch(`${w.h.base}/api/units/${w.units.town}/ledger.xlsx?from=${encodeURIComponent(from)}&to=${encodeURIComponent(to)}`, { headers: { authorization: `Bearer ${w.tokens.townSupervisor}` } });
  assert.equal(res.status, 200);
  assert.equal(res.headers.get('content-type'), 'application/vnd.openxmlformats-officedocument.spreadsheetml.sheet');
  assert.match(res.headers.get('content-disposition') ?? '', /attachment; filename="ledger-/);
  const wb = new ExcelJS.Workbook();
  await wb.xlsx.load(Buffer.from(await res.arrayBuffer()) as unknown as ArrayBuffer);
  const sheet = wb.getWorksheet('会议台账 Sessions')!;
  assert.equal(sheet.getCell('A1').value, '日期');
  assert.equal(sheet.getCell('I1').value, '缺席及原因');
  const byTopic = new Map<string, ExcelJS.Row>();
  sheet.eachRow((row, n) => {
    if (n > 2) byTopic.set(String(row.getCell(4).value), row);
  });
  const ra = byTopic.get('党员大会：选举支部委员')!;
  assert.ok(ra, 'the approved session has its row');
  assert.equal(ra.getCell(2).value, '东村党支部');
  assert.equal(ra.getCell(3).value, '支部党员大会');
  assert.equal(ra.getCell(5).value, '东村党员1');
  assert.equal(ra.getCell(7).value, 12);
  assert.equal(ra.getCell(8).value, 6);
  assert.match(String(ra.getCell(9).value), /东村党员10（请假：外出务工）/);
  assert.equal(ra.getCell(10).value, '符合：到会6人，应到10人，超过半数');
  assert.equal(ra.getCell(12).value, '已通过');
  const rr = byTopic.get('支委会：研究发展党员')!;
  assert.equal(rr.getCell(3).value, '支委会');
  assert.equal(rr.getCell(7).value, 5, 'a committee meeting expects the committee');
  assert.equal(rr.getCell(10).value, '不符合：到会2人，应到5人，未超过半数');
  assert.equal(rr.getCell(12).value, '已退回');
  assert.equal(rr.getCell(13).value, '请补充缺席人员原因');
  const att = wb.getWorksheet('出勤明细 Attendance')!;
  const lines: string[] = [];
  att.eachRow((row, n) => {
    if (n > 2) lines.push([4, 5, 6, 7].map((c) => String(row.getCell(c).value ?? '')).join('|'));
  });
  assert.ok(lines.includes('东村党员10|请假|外出务工|'), lines.join('\n'));
  assert.ok(lines.includes('东村党员1|到会||书记登记') || lines.includes('东村党员1|到会||现场签到'), lines.join('\n'));
  // Another county's user cannot export this town.
  assert.equal((await call('GET', `/api/units/${w.units.town}/ledger?from=${from}&to=${to}`, w.tokens.otherSecretary)).status, 404);
});

test('photos are taken from the session\'s recording with ffmpeg into S3 and shown with presigned URLs', async () => {
  const r = await call('POST', `/api/sessions/${approved.id}/photos`, w.tokens.secretaryA);
  assert.equal(r.status, 200, r.text);
  const photos = (r.body as { photos: Array<{ offsetS: number; url: string }> }).photos;
  assert.deepEqual(photos.map((p) => p.offsetS), [2, 6, 10], 'three frames evenly over the 12-second window');
  for (const p of photos) {
    const img = await fetch(p.url);
    assert.equal(img.status, 200);
    const bytes = Buffer.from(await img.arrayBuffer());
    assert.ok(bytes.length > 1000, `a real frame (${bytes.length} bytes)`);
    assert.deepEqual([...bytes.subarray(0, 2)], [0xff, 0xd8], 'JPEG');
  }
  const d = (await call('GET', `/api/sessions/${approved.id}`, w.tokens.townSupervisor)).body as { photos: Array<{ offsetS: number }> };
  assert.equal(d.photos.length, 3);
  // Submitting a ledger takes its photos by itself (in the background): the returned session has them too.
  await waitUntil(async () => {
    const x = (await call('GET', `/api/sessions/${returned.id}`, w.tokens.secretaryA)).body as { photos: unknown[] };
    return x.photos.length === 3;
  }, 60_000, 'the photos taken on submission');
  // A session with no recording has no photos.
  const none = await call('POST', '/api/sessions/start-now', w.tokens.secretaryA, { branchId: w.branchA, kinds: ['party_lesson'], topic: '无录像', plannedMinutes: 30 });
  const id = (none.body as Session).id;
  await call('POST', `/api/sessions/${id}/end`, w.tokens.secretaryA);
  const p2 = await call('POST', `/api/sessions/${id}/photos`, w.tokens.secretaryA);
  assert.deepEqual((p2.body as { photos: unknown[] }).photos, []);
});

test('started now at the kiosk and ended early: the recorder stops with the session, and the ledger\'s photos come from that recording', async () => {
  const pool = w.h.db.pool;
  const rtsp = await RtspServer.start();
  const cam = new TestCamera({ server: rtsp, path: 'east-hall' });
  let rec: Recorder | undefined;
  try {
    await cam.start();
    const cameraId = await addCamera(pool, w.units.villageA, cam.url, '东村会议室（实拍）');
    rec = await Recorder.start({ pool, storage: s3.storage, config: fastRecorderConfig(recorderTempDir('ledger-rec-'), 2) });
    const recorder = rec;
    const started = waitForEvent(recorder, 'captureStarted', (id: number) => id === cameraId, 30_000);
    const r = await call('POST', '/api/sessions/start-now', w.tokens.secretaryA, { branchId: w.branchA, kinds: ['party_lesson'], topic: '现场党课', cameraId, plannedMinutes: 90 });
    assert.equal(r.status, 201, r.text);
    const s = r.body as Session & { captureJobId: number; endsAt: string };
    await started;
    // A few seconds of the lesson are recorded (2-second segments), then the secretary ends it.
    let indexed = 0;
    await waitForEvent(recorder, 'indexed', (seg: IndexedSegment) => seg.cameraId === cameraId && ++indexed >= 3, 60_000);
    const done = waitForEvent(recorder, 'jobState', (id: number, state: string) => id === s.captureJobId && (state === 'done' || state === 'partial'), 60_000);
    const ended = await call('POST', `/api/sessions/${s.id}/end`, w.tokens.secretaryA);
    assert.equal(ended.status, 200, ended.text);
    const endedAt = new Date((ended.body as { endsAt: string }).endsAt);
    await done;
    await recorder.spool.idle();
    assert.ok(Date.now() < new Date(s.endsAt).getTime() - 60 * 60_000, 'the capture stopped with the session, not at the planned end');
    const cover = (await pool.query<{ first: Date; last: Date; n: number }>(
      'SELECT min(started_at) AS first, max(ended_at) AS last, count(*)::int AS n FROM recording_segments WHERE capture_job_id = $1',
      [s.captureJobId],
    )).rows[0]!;
    assert.ok(cover.n >= 3 && cover.last.getTime() >= endedAt.getTime() - 2_500, `the recording reaches the end (${cover.last.toISOString()} vs ${endedAt.toISOString()})`);
    const p = await call('POST', `/api/sessions/${s.id}/photos`, w.tokens.secretaryA);
    assert.equal(p.status, 200, p.text);
    const photos = (p.body as { photos: Array<{ url: string }> }).photos;
    assert.ok(photos.length >= 2, `photos from the real recording: ${photos.length}`);
    const img = Buffer.from(await (await fetch(photos[0]!.url)).arrayBuffer());
    assert.deepEqual([...img.subarray(0, 2)], [0xff, 0xd8]);
  } finally {
    await rec?.close().catch(() => undefined);
    await cam.stop();
    await rtsp.close();
  }
});
