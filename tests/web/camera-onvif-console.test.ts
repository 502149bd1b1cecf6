import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import type { Browser } from 'playwright-core';
import { launchChromium } from '../support/browser.ts';
import { signIn, waitUntil } from '../support/pages.ts';
import { OnvifCameraSim } from '../support/onvif-camera-sim.ts';
import { startSystemHarness, type SystemHarness } from '../support/system-harness.ts';

// The operator's console in Chromium: editing a camera, "从 ONVIF 读取" asks the server to read the
// camera's ONVIF profiles (the simulator written from the specifications) with the stored
// credentials, fills main / sub / snapshot, and Save keeps them.

const CAM_USER = 'onvif-web';
const CAM_PASS = 'Web#Pass-2026';
let h: SystemHarness;
let browser: Browser;
let sim: OnvifCameraSim;
let cameraId: number;
let operator: string;

before(async () => {
  [h, browser] = await Promise.all([startSystemHarness({ towns: 2, communities: 4, villages: 8 }), launchChromium()]);
  sim = await OnvifCameraSim.start({
    username: CAM_USER,
    password: CAM_PASS,
    profiles: [
      { token: 'Profile_101', name: 'mainStream', encoding: 'H264', h264Profile: 'High', width: 1920, height: 1080, fps: 25, bitrateKbps: 4096, streamUri: 'rtsp://127.0.0.1:554/Streaming/Channels/101' },
      { token: 'Profile_102', name: 'subStream', encoding: 'H264', h264Profile: 'Main', width: 640, height: 360, fps: 25, bitrateKbps: 512, streamUri: 'rtsp://127.0.0.1:554/Streaming/Channels/102' },
    ],
  });
  const town = await h.db.pool.query<{ parent_id: number }>('SELECT parent_id FROM units WHERE id = $1', [h.demo.unitIds.town[0]]);
  const county = town.rows[0]!.parent_id;
  operator = h.demo.users.find((u) => u.role === 'operator' && u.unitId === county)!.username;
  cameraId = (
    await h.db.pool.query<{ id: number }>(`INSERT INTO cameras (unit_id, name, rtsp_url, username, password) VALUES ($1, 'ONVIF大门摄像机', 'rtsp://127.0.0.1/typed', $2, $3) RETURNING id`, [county, CAM_USER, CAM_PASS])
  ).rows[0]!.id;
});

after(async () => {
  await browser?.close();
  await sim?.close();
  await h?.close();
});

test('"从 ONVIF 读取" fills main, sub and snapshot addresses, and Save stores them', async () => {
  const op = await signIn(browser, h.baseUrl, operator, h.demo.password);
  await op.getByRole('tab', { name: '摄像机', selected: true }).waitFor();
  await op.locator(`tr[data-camera="${cameraId}"]`).getByRole('button', { name: '编辑' }).click();
  const form = op.getByRole('form', { name: '摄像机' });
  await form.locator('input[name="onvif_port"]').fill(String(sim.port));
  await form.getByTestId('onvif-read').click();
  const result = form.getByTestId('onvif-result');
  await result.waitFor();
  assert.match((await result.textContent())!, /HIKVISION.*1920×1080.*主\/main.*640×360.*子\/sub/s);
  assert.equal(await form.locator('input[name="rtsp_url"]').inputValue(), 'rtsp://127.0.0.1:554/Streaming/Channels/101');
  assert.equal(await form.locator('input[name="sub_stream_url"]').inputValue(), 'rtsp://127.0.0.1:554/Streaming/Channels/102');
  assert.equal(await form.locator('input[name="snapshot_url"]').inputValue(), `http://127.0.0.1:${sim.port}/onvif/snapshot?token=Profile_101`);
  assert.equal(await form.locator('input[name="camera-password"]').inputValue(), '', 'the stored password never reaches the page');
  await form.getByRole('button', { name: '保存' }).click();
  const row = await waitUntil(
    'the camera saved with its ONVIF addresses',
    async () => (await h.db.pool.query<{ rtsp_url: string; sub_stream_url: string | null; onvif_port: number | null; username: string | null }>('SELECT rtsp_url, sub_stream_url, onvif_port, username FROM cameras WHERE id = $1', [cameraId])).rows[0]!,
    (r) => r.sub_stream_url !== null,
    15_000,
  );
  assert.deepEqual(row, { rtsp_url: 'rtsp://127.0.0.1:554/Streaming/Channels/101', sub_stream_url: 'rtsp://127.0.0.1:554/Streaming/Channels/102', onvif_port: sim.port, username: CAM_USER });
  assert.ok(sim.requests.some((r) => r.operation === 'GetProfiles' && r.authorized === true), 'read with the stored credentials, verified by the camera');
});
