import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { coveredWithin, Recorder } from '../../recorder/Recorder.ts';
import { FAILURE_TEXT, type CaptureFailureReason } from '../../recorder/CaptureFailure.ts';
import { startSystemHarness, type SystemHarness } from '../support/system-harness.ts';
import { RtspServer } from '../support/rtsp-server.ts';
import { TestCamera } from '../support/rtsp-camera.ts';
import { freePort } from '../support/node-process.ts';
import { launchChromium } from '../support/browser.ts';
import { signIn } from '../support/pages.ts';
import { addCamera, fastRecorderConfig, seedOrg, tempDir, waitFor, type OrgFixture } from '../support/recorder-fixture.ts';

// Capture outcomes as data (issue 15, item 2): jobs against a real RTSP server that demands digest
// credentials, recorded by a real recorder into a real S3 and PostgreSQL. A wrong password, a wrong
// path and a refused port each end `failed` with that reason and nothing covered; a camera that
// comes up 5 s into its 14 s window ends `partial` with the covered seconds; the API lists and
// reads them within the subtree only (404 for another county and a sibling town) and cancels
// (audited, once). Windows are seconds long (the are an hour) through configuration only.

const SEGMENT_S = 2;

interface JobOut {
  id: number;
  state: string;
  reason: string | null;
  reason_text: string | null;
  covered_s: number;
  window_s: number;
  camera_id: number;
  detail: string | null;
}

test('covered seconds: the union within the window; holes up to the gap tolerance count, longer ones do not', () => {
  // 1 h of 10 s segments with 30 ms between them (as ffmpeg leaves them): covered in full at 1 s tolerance.
  const hour: Array<[number, number]> = Array.from({ length: 360 }, (_, i) => [i * 10_000 + 30, (i + 1) * 10_000] as [number, number]);
  assert.equal(coveredWithin(hour, 30, 3_600_000, 1_000), 3_600_000 - 30);
  assert.equal(coveredWithin(hour, 0, 3_600_000, 0), 3_600_000 - 360 * 30);
  // Overlapping intervals (two hosts, or a recovered partial) are not counted twice; clipped to the window.
  assert.equal(coveredWithin([[0, 5_000], [4_000, 8_000], [20_000, 40_000]], 2_000, 30_000, 1_000), 6_000 + 10_000);
  assert.equal(coveredWithin([], 0, 10_000, 1_000), 0);
});

describe('capture outcomes: failed with a reason, partial with covered seconds, list/read/cancel in the subtree', () => {
  let h: SystemHarness;
  let rtsp: RtspServer;
  let rec: Recorder;
  let org: OrgFixture;
  const cams: TestCamera[] = [];
  const tokens = new Map<string, string>();
  let otherCounty: string;

  before(async () => {
    h = await startSystemHarness({ storage: true });
    rtsp = await RtspServer.start(0, '127.0.0.1', { auth: { scheme: 'digest', username: 'admin', password: 'cam-secret-pw' } });
    org = await seedOrg(h.db.pool);
    const hash = (await h.db.pool.query<{ password_hash: string }>(`SELECT password_hash FROM users WHERE username = 'wf.admin'`)).rows[0]!.password_hash;
    for (const [name, unit] of [['county_sup', org.countyId], ['townb_sup', org.townBId]] as const) {
      await h.db.pool.query(`INSERT INTO users (username, display_name, unit_id, role, password_hash) VALUES ($1, $1, $2, 'supervisor', $3)`, [name, unit, hash]);
    }
    otherCounty = (await h.db.pool.query<{ username: string }>(
      `SELECT x.username FROM users x JOIN units u ON u.id = x.unit_id WHERE u.level = 'county' AND x.role IN ('leader', 'supervisor') ORDER BY x.id LIMIT 1`)).rows[0]!.username;
    for (const name of ['county_sup', 'townb_sup', otherCounty]) tokens.set(name, await h.login(name));
    rec = await Recorder.start({
      pool: h.db.pool,
      storage: h.storage!,
      config: fastRecorderConfig(tempDir('rec-outcomes-'), SEGMENT_S, { stripFrames: 2, cameraProbeIntervalMs: 300, leaseMs: 5_000, leaseHeartbeatMs: 1_000 }),
    });
  });

  after(async () => {
    await rec?.close();
    for (const c of cams) await c.stop();
    await rtsp?.close();
    await h?.close();
  });

  const api = async <T = Record<string, unknown>>(user: string, method: string, path: string, body?: unknown) => {
    const r = await h.call<T>(tokens.get(user), method, `/api${path}`, body);
    // Never a camera credential in an answer.
    assert.ok(!JSON.stringify(r.body).includes('cam-secret-pw'), 'no camera password in the answer');
    return r;
  };
  const job = async (id: number): Promise<JobOut> => (await api<JobOut>('county_sup', 'GET', `/capture-jobs/${id}`)).body;
  const insertJob = async (cameraId: number, startsAt: Date, endsAt: Date): Promise<number> =>
    (await h.db.pool.query<{ id: number }>('INSERT INTO capture_jobs (camera_id, starts_at, ends_at) VALUES ($1, $2, $3) RETURNING id', [cameraId, startsAt, endsAt])).rows[0]!.id;

  test('wrong password, 404 path and refused port end failed with that reason; a camera up halfway ends partial', async () => {
    const good = new TestCamera({ server: rtsp, path: 'outcome-ok', audio: 'none' });
    cams.push(good);
    await good.start();
    const wrongPw = await addCamera(h.db.pool, org.villageAId, good.url, '密码错误');
    await h.db.pool.query(`UPDATE cameras SET password = 'not-the-password' WHERE id = $1`, [wrongPw]);
    const noPath = await addCamera(h.db.pool, org.villageAId, rtsp.url('no-such-stream'), '路径错误');
    const refused = await addCamera(h.db.pool, org.villageAId, `rtsp://127.0.0.1:${await freePort()}/stream`, '端口拒绝');
    const late = new TestCamera({ server: rtsp, path: 'outcome-late', audio: 'none' });
    cams.push(late);
    const lateCam = await addCamera(h.db.pool, org.villageAId, late.url, '半途上线');

    const startsAt = new Date(Date.now() + 1_000);
    const endsAt = new Date(startsAt.getTime() + 14_000);
    const ids = {
      auth: await insertJob(wrongPw, startsAt, endsAt),
      not_found: await insertJob(noPath, startsAt, endsAt),
      unreachable: await insertJob(refused, startsAt, endsAt),
    };
    const partialId = await insertJob(lateCam, startsAt, endsAt);
    rec.wake();
    // The late camera appears 5 s into its 14 s window.
    await new Promise((r) => setTimeout(r, Math.max(0, startsAt.getTime() + 5_000 - Date.now()))); // the outage is the stimulus
    await late.start();

    const final = new Set(['done', 'partial', 'failed', 'cancelled']);
    const all = [...Object.values(ids), partialId];
    await waitFor('every job finished', async () => {
      const r = await h.db.pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM capture_jobs WHERE id = ANY($1) AND state = ANY($2)`, [all, [...final]]);
      return r.rows[0]!.n === all.length;
    }, endsAt.getTime() - Date.now() + 45_000, 250);

    for (const [reason, id] of Object.entries(ids)) {
      const j = await job(id);
      assert.equal(j.state, 'failed', `job ${reason}: ${JSON.stringify(j)}`);
      assert.equal(j.reason, reason, `job ${reason}: ${JSON.stringify(j)}`);
      assert.equal(j.covered_s, 0, `nothing covered: ${JSON.stringify(j)}`);
      assert.match(j.reason_text ?? '', / \/ /, 'bilingual reason text');
    }
    const p = await job(partialId);
    console.log(`# partial job: covered ${p.covered_s} s of ${p.window_s} s (camera up 5 s into the window)`);
    assert.equal(p.state, 'partial', JSON.stringify(p));
    assert.ok(p.covered_s > 0 && p.covered_s < p.window_s - 2, `part of the window covered: ${JSON.stringify(p)}`);
    assert.ok(p.covered_s <= 14 - 5 + SEGMENT_S, `no more than the camera could give: ${JSON.stringify(p)}`);

    // The list: failed jobs of the county, filterable by state and camera.
    const failed = await api<{ items: JobOut[]; next_offset: number | null }>('county_sup', 'GET', `/capture-jobs?state=failed&unit_id=${org.countyId}&limit=50`);
    assert.equal(failed.status, 200);
    const byId = new Map(failed.body.items.map((j) => [j.id, j]));
    for (const [reason, id] of Object.entries(ids)) assert.equal(byId.get(id)?.reason, reason, `listed with its reason: ${reason}`);
    assert.ok(!byId.has(partialId), 'state filter applied');
    const one = await api<{ items: JobOut[] }>('county_sup', 'GET', `/capture-jobs?camera_id=${noPath}`);
    assert.deepEqual(one.body.items.map((j) => j.id), [ids.not_found]);
    const paged = await api<{ items: JobOut[]; next_offset: number | null }>('county_sup', 'GET', `/capture-jobs?limit=2`);
    assert.equal(paged.body.items.length, 2);
    assert.equal(paged.body.next_offset, 2);
    const window = await api<{ items: JobOut[] }>('county_sup', 'GET', `/capture-jobs?from=${new Date(endsAt.getTime() + 60_000).toISOString()}`);
    assert.ok(!window.body.items.some((j) => all.includes(j.id)), 'time filter applied');

    // Outside the subtree: another county and a sibling town see nothing and get 404s.
    for (const outsider of [otherCounty, 'townb_sup']) {
      assert.equal((await api(outsider, 'GET', `/capture-jobs/${ids.auth}`)).status, 404, `${outsider} reads a job of village A`);
      assert.equal((await api(outsider, 'GET', `/capture-jobs?camera_id=${wrongPw}`)).status, 404, `${outsider} filters by a camera of village A`);
      assert.equal((await api(outsider, 'GET', `/capture-jobs?unit_id=${org.townAId}`)).status, 404, `${outsider} filters by town A`);
      const list = await api<{ items: JobOut[] }>(outsider, 'GET', '/capture-jobs?limit=500');
      assert.ok(!list.body.items.some((j) => all.includes(j.id)), `${outsider} lists none of village A's jobs`);
    }
    // The supervisor sees them: the recordings tab lists failed jobs with the reason in words.
    const browser = await launchChromium();
    try {
      const page = await signIn(browser, h.baseUrl, 'county_sup', h.demo.password);
      await page.getByRole('link', { name: '督导室' }).click();
      await page.getByRole('tab', { name: '录像回看' }).click();
      await page.getByTestId('capture-state').selectOption('failed');
      for (const [reason, id] of Object.entries(ids)) {
        const row = page.locator(`tr[data-job="${id}"]`);
        await row.waitFor({ timeout: 15_000 });
        assert.equal(await row.getAttribute('data-state'), 'failed');
        assert.ok((await row.innerText()).includes(FAILURE_TEXT[reason as CaptureFailureReason].split(' / ')[0]!), `the row says why (${reason}): ${await row.innerText()}`);
      }
      assert.ok(!(await page.content()).includes('cam-secret-pw'), 'no camera password in the page');
    } finally {
      await browser.close();
    }
    const bad = await api<{ error: { code: string; message: string } }>('county_sup', 'GET', '/capture-jobs?state=bogus');
    assert.equal(bad.status, 400);
    assert.match(bad.body.error.message, / \/ /, 'bilingual validation error');
  });

  test('cancel: a running job stops and is audited; a second cancel is 409; another county gets 404', async () => {
    const cam = new TestCamera({ server: rtsp, path: 'outcome-cancel', audio: 'none' });
    cams.push(cam);
    await cam.start();
    const cameraId = await addCamera(h.db.pool, org.villageAId, cam.url, '取消');
    const id = await insertJob(cameraId, new Date(), new Date(Date.now() + 600_000));
    rec.wake();
    await waitFor('recording', async () => (await job(id)).state === 'recording', 30_000, 250);

    assert.equal((await api(otherCounty, 'POST', `/capture-jobs/${id}/cancel`, {})).status, 404);
    assert.equal((await api('townb_sup', 'POST', `/capture-jobs/${id}/cancel`, {})).status, 404);
    assert.equal((await api('county_sup', 'POST', `/capture-jobs/${id}/cancel`, { extra: 1 })).status, 400, 'strict body');
    const stopped = new Promise<void>((resolve) => rec.on('captureStopped', (c) => c === cameraId && resolve()));
    const r = await api<JobOut>('county_sup', 'POST', `/capture-jobs/${id}/cancel`, { note: '会议取消' });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal(r.body.state, 'cancelled');
    await stopped;
    const again = await api<{ error: { code: string } }>('county_sup', 'POST', `/capture-jobs/${id}/cancel`, {});
    assert.equal(again.status, 409);
    assert.equal(again.body.error.code, 'not_open');
    const audits = await h.db.pool.query<{ username: string; detail: { note: string } }>(
      `SELECT username, detail FROM audit_log WHERE action = 'capture.cancel' AND object_id = $1`, [String(id)]);
    assert.equal(audits.rowCount, 1, 'one audit row for the one cancel');
    assert.equal(audits.rows[0]!.username, 'county_sup');
    assert.equal(audits.rows[0]!.detail.note, '会议取消');
    const row = await h.db.pool.query<{ cancelled_by: number | null }>('SELECT cancelled_by FROM capture_jobs WHERE id = $1', [id]);
    assert.ok(row.rows[0]!.cancelled_by !== null, 'who cancelled is kept');

    const doc = await (await fetch(`${h.baseUrl}/api/openapi.json`)).json() as { paths: Record<string, unknown> };
    for (const p of ['/api/capture-jobs', '/api/capture-jobs/{id}', '/api/capture-jobs/{id}/cancel']) assert.ok(doc.paths[p], `${p} in OpenAPI`);
  });
});
