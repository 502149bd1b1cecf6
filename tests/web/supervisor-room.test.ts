import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import type { Browser } from 'playwright-core';
import { launchChromium, tmpDir } from '../support/browser.ts';
import { checkedScreenshot, mediaStats, signIn, waitUntil } from '../support/pages.ts';
import { RtspServer } from '../support/rtsp-server.ts';
import { TestCamera } from '../support/rtsp-camera.ts';
import { startSystemHarness, type SystemHarness } from '../support/system-harness.ts';
import { SmscSimulator } from '../support/smsc-simulator.ts';
import { SmppChannel } from '../../scheduler/channels/SmppChannel.ts';
import { ManualClock } from '../../scheduler/clock.ts';
import { SchedulerService } from '../../scheduler/service.ts';
import { defaultReminderPolicy } from '../../scheduler/reminders/policy.ts';
import { keepOnlyObligations, waitUntil as waitUntilDb } from '../scheduler/fixtures.ts';

// The supervisor's room in Chromium against the real backend: a county supervisor opens a live
// village camera (a real RTSP source pulled by ffmpeg into the SFU), finds a recording with a gap on
// the timeline, and sees the reminder the scheduler's own tick decided and sent (SMSC simulator receipt). A
// supervisor of another county can do none of it (404).

let h: SystemHarness;
let browser: Browser;
let rtsp: RtspServer;
let camera: TestCamera;
let cameraId: number;
let supervisor: string;
let outsider: string;
let branchName: string;
let smsc: SmscSimulator;
let sms: SmppChannel;
let scheduler: SchedulerService;

before(async () => {
  h = await startSystemHarness({ towns: 4, communities: 8, villages: 24, storage: true });
  rtsp = await RtspServer.start();
  camera = new TestCamera({ server: rtsp, path: 'village-cam', audio: 'pcm_mulaw' });
  await camera.start();
  const q = async <T>(sql: string, args: unknown[] = []) => (await h.db.pool.query(sql, args)).rows as T[];
  const sup = h.demo.users.find((u) => u.role === 'supervisor' && u.level === 'county')!;
  supervisor = sup.username;
  outsider = h.demo.users.find((u) => u.role === 'supervisor' && u.level === 'county' && u.unitId !== sup.unitId)!.username;
  const [county] = await q<{ path: string }>('SELECT path FROM units WHERE id = $1', [sup.unitId]);
  // Point the first camera of the supervisor's list at the test camera (credentials only in the DB).
  const [cam] = await q<{ id: number; unit_id: number }>(
    `SELECT c.id, c.unit_id FROM cameras c JOIN units u ON u.id = c.unit_id WHERE u.path LIKE $1 ORDER BY c.id LIMIT 1`,
    [`${county!.path}%`],
  );
  cameraId = cam!.id;
  await h.db.pool.query('UPDATE cameras SET rtsp_url = $1, username = $2, password = $3 WHERE id = $4', [camera.url, 'admin', 'cam-secret-9', cameraId]);

  // Two recorded minutes with a two-minute gap between them (the recorder's own tests make real gaps).
  const clip = path.join(tmpDir('clip-'), 'clip.mp4');
  execFileSync('ffmpeg', ['-v', 'error', '-f', 'lavfi', '-i', 'testsrc2=size=320x180:rate=10', '-t', '2', '-c:v', 'libx264', '-preset', 'ultrafast', '-pix_fmt', 'yuv420p', clip]);
  const t0 = Date.now() - 30 * 60_000;
  for (const [i, start] of [t0, t0 + 3 * 60_000].entries()) {
    const key = `test/camera-${cameraId}/seg-${i}.mp4`;
    await h.storage!.putFile(key, clip, 'video/mp4');
    await h.db.pool.query(
      `INSERT INTO recording_segments (camera_id, started_at, ended_at, bytes, video_codec, bucket, object_key)
       VALUES ($1, $2, $3, 1000, 'h264', 'recordings', $4)`,
      [cameraId, new Date(start), new Date(start + 60_000), key],
    );
  }

  // The reminder comes from the scheduler's own tick (clock inside Q4's last week, member meetings only
  // owed in this scenario), goes out through the SMSC simulator, and its receipt marks it delivered.
  await keepOnlyObligations(h.db.pool, ['member_meeting']);
  smsc = new SmscSimulator();
  await smsc.start();
  sms = new SmppChannel({ port: smsc.port, systemId: 'sched', password: 'secret' }, (r): Promise<void> => scheduler.onReceipt(r));
  scheduler = new SchedulerService({
    pool: h.db.pool, databaseUrl: h.db.url, clock: new ManualClock(new Date('2026-12-25T00:00:00Z')), policy: defaultReminderPolicy,
    channels: { sms }, periodsFrom: new Date('2026-09-30T16:00:00Z'),
  });
  await scheduler.start();
  assert.ok((await scheduler.tick()).reminders > 0, 'the tick decides reminders');
  await scheduler.drain(60_000);
  const [rem] = await q<{ id: number; name: string }>(
    `SELECT r.id, b.name FROM reminders r JOIN branches b ON b.id = r.branch_id JOIN units u ON u.id = b.unit_id
      WHERE u.path LIKE $1 AND r.target = 'secretary' ORDER BY r.id DESC LIMIT 1`,
    [`${county!.path}%`],
  );
  assert.ok(rem, 'a reminder for a branch of the county');
  branchName = rem.name;
  await waitUntilDb(async () => (await q<{ state: string }>(`SELECT state FROM message_sends WHERE reminder_id = $1`, [rem.id])).some((x) => x.state === 'delivered'),
    20_000, 'the SMSC simulator\'s receipt marks the reminder delivered');
  browser = await launchChromium();
});

after(async () => {
  await scheduler?.stop();
  await sms?.close();
  await smsc?.stop();
  await browser?.close();
  await camera?.stop();
  await rtsp?.close();
  await h?.close();
});

test('a supervisor watches a live camera, finds a gap in a recording, and sees the reminder the scheduler sent with its SMSC delivery state', { timeout: 150_000 }, async () => {
  const page = await signIn(browser, h.baseUrl, supervisor, h.demo.password);
  await page.getByRole('link', { name: '督导室' }).click();

  // Live inspection.
  await page.locator(`li[data-camera="${cameraId}"] button`).click();
  const live = await waitUntil('the camera decodes in the browser', () => mediaStats(page), (s) => Object.values(s.videoFramesDecoded).some((n) => n > 30));
  assert.equal(Object.keys(live.videoFramesDecoded).length, 1);
  assert.ok(live.audioPacketsReceived > 0, 'the camera\'s audio arrives too');
  assert.equal(live.peers, 1, 'video and audio of the camera are one site');
  await checkedScreenshot(page, 'supervisor-live-camera');
  const html = await page.content();
  assert.ok(!html.includes('cam-secret-9'), 'camera password never reaches the browser');
  await page.getByRole('button', { name: '关闭' }).click();

  // Recordings with a gap.
  await page.getByRole('tab', { name: '录像回看' }).click();
  await page.getByLabel('摄像机 ID').fill(String(cameraId));
  const local = (d: Date) => new Date(d.getTime() - d.getTimezoneOffset() * 60_000).toISOString().slice(0, 16);
  await page.getByLabel('开始').fill(local(new Date(Date.now() - 40 * 60_000)));
  await page.getByLabel('结束').fill(local(new Date(Date.now() - 20 * 60_000)));
  await page.getByRole('button', { name: '查询' }).click();
  // A real wait: the timeline must draw a gap (fails after 30 s otherwise).
  await page.getByTestId('gap').first().waitFor({ timeout: 30_000 });
  const gaps = await page.getByTestId('gap').count();
  assert.ok(gaps >= 1, `the timeline shows the gap (${gaps})`);
  await page.getByText(/中断: .* \(120 秒\)/).waitFor();
  await checkedScreenshot(page, 'supervisor-recordings-gap');

  // Completion and reminders.
  await page.getByRole('tab', { name: '完成情况' }).click();
  await page.locator('tr[data-reminder]').first().waitFor();
  const row = await page.locator('tr[data-reminder]').first().textContent();
  assert.match(row ?? '', new RegExp(branchName));
  assert.match(row ?? '', /短信 已送达/);
  await checkedScreenshot(page, 'supervisor-completion');

  // Audit: the live view and the recording listing were recorded.
  const { rows } = await h.db.pool.query<{ action: string }>(`SELECT DISTINCT action FROM audit_log WHERE action IN ('camera.live.view', 'recording.list')`);
  assert.deepEqual(rows.map((r) => r.action).sort(), ['camera.live.view', 'recording.list']);

  // Outside the subtree: nothing, and the SFU is never asked.
  const token = await h.login(outsider);
  assert.equal((await h.call(token, 'POST', `/api/cameras/${cameraId}/live`)).status, 404);
  assert.equal((await h.call(token, 'GET', `/api/cameras/${cameraId}/recordings?from=${new Date(Date.now() - 3600_000).toISOString()}&to=${new Date().toISOString()}`)).status, 404);
});
