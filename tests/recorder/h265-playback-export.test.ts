import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import type { AddressInfo } from 'node:net';
import type { Browser, Page } from 'playwright-core';
import { Recorder } from '../../recorder/Recorder.ts';
import { renditionKeyFor } from '../../recorder/TranscodeCache.ts';
import { startEmbeddedS3 } from '../../infra/storage/embedded-s3.ts';
import { ObjectStorage } from '../../infra/storage/ObjectStorage.ts';
import { startSystemHarness, type SystemHarness } from '../support/system-harness.ts';
import { RtspServer } from '../support/rtsp-server.ts';
import { TestCamera } from '../support/rtsp-camera.ts';
import { TcpRelay } from '../support/tcp-relay.ts';
import { launchChromium } from '../support/browser.ts';
import { checkedScreenshot, signIn } from '../support/pages.ts';
import { addCamera, fastRecorderConfig, seedOrg, tempDir, waitForEvent } from '../support/recorder-fixture.ts';

// Issue 15, items 4, 7 and 8. A camera that sends H.265 (as Hikvision/Dahua do by default) is
// recorded by stream copy from an RTSP server; the camera drops out for 8 s in the middle. Then, as
// a county supervisor through the real API: a segment plays in Chromium (frames decoded) through its
// H.264 rendition, made once and kept in S3; the export across the outage lists the gap in its
// sidecar and chapters, lasts the covered time, and plays in Chromium too. Presigned URLs are signed
// for a public address when one is set, and work through a proxy there.

const OUTAGE_MS = 8_000;

/** Runs in the page: plays a URL (or an API export, fetched with the bearer token) and reports what Chromium decoded. */
const IN_PAGE = `async ({ src, frames, bearer }) => {
  let url = src;
  if (src.startsWith('/api/')) {
    const r = await fetch(src, { headers: { authorization: 'Bearer ' + bearer } });
    url = URL.createObjectURL(await r.blob());
  }
  const v = document.createElement('video');
  v.muted = true;
  v.autoplay = true;
  document.body.append(v);
  v.src = url;
  await new Promise((resolve) => {
    const deadline = setTimeout(resolve, 20000);
    function check() {
      if (v.getVideoPlaybackQuality().totalVideoFrames >= frames || v.error || v.ended) { clearTimeout(deadline); resolve(); }
      else v.requestVideoFrameCallback(check);
    }
    v.requestVideoFrameCallback(check);
    v.addEventListener('error', check);
    v.addEventListener('ended', check);
  });
  return { frames: v.getVideoPlaybackQuality().totalVideoFrames, width: v.videoWidth, duration: v.duration, error: v.error ? v.error.code + ' ' + v.error.message : null };
}`;

describe('H.265 recordings in the browser, and exports that show their gaps', () => {
  let h: SystemHarness;
  let rtsp: RtspServer;
  let cam: TestCamera;
  let browser: Browser;
  let cameraId: number;
  let token: string;
  let first: Date;
  let last: Date;

  before(async () => {
    // Browsers reach the store as "localhost", the server as 127.0.0.1 (S3_PUBLIC_URL): every URL a page gets must name the public address.
    h = await startSystemHarness({ storage: true, s3PublicHost: 'localhost' });
    rtsp = await RtspServer.start(0, '127.0.0.1', { auth: { scheme: 'digest', username: 'admin', password: 'cam-secret-pw' } });
    cam = new TestCamera({ server: rtsp, path: 'hevc-cam', audio: 'aac', video: 'h265' });
    await cam.start();
    const org = await seedOrg(h.db.pool);
    cameraId = await addCamera(h.db.pool, org.villageAId, cam.url);
    const hash = (await h.db.pool.query<{ password_hash: string }>(`SELECT password_hash FROM users WHERE username = 'wf.admin'`)).rows[0]!.password_hash;
    await h.db.pool.query(`INSERT INTO users (username, display_name, unit_id, role, password_hash) VALUES ('hevc_sup', 'hevc_sup', $1, 'supervisor', $2)`, [org.countyId, hash]);
    token = await h.login('hevc_sup');
    browser = await launchChromium();

    const rec = await Recorder.start({ pool: h.db.pool, storage: h.storage!, config: fastRecorderConfig(tempDir('rec-hevc-'), 2, { stripFrames: 2 }) });
    try {
      const startsAt = new Date(Date.now() + 6_000);
      const job = await rec.scheduleCapture({ cameraId, startsAt, endsAt: new Date(startsAt.getTime() + 30_000) });
      // Some footage, then the camera is off for a fixed stretch (the outage under test), then back.
      let indexed = 0;
      await waitForEvent(rec, 'indexed', () => ++indexed >= 3, 60_000);
      await cam.stop();
      await new Promise((r) => setTimeout(r, OUTAGE_MS));
      await cam.start();
      await waitForEvent(rec, 'jobState', (id: number, s: string) => id === job.id && s !== 'recording' && s !== 'scheduled', 90_000);
      await rec.spool.idle();
    } finally {
      await rec.close();
    }
    const segs = (await h.db.pool.query<{ started_at: Date; ended_at: Date; video_codec: string }>(
      'SELECT started_at, ended_at, video_codec FROM recording_segments WHERE camera_id = $1 ORDER BY started_at', [cameraId])).rows;
    assert.ok(segs.length >= 4, `segments recorded: ${segs.length}`);
    assert.deepEqual([...new Set(segs.map((s) => s.video_codec))], ['hevc'], 'recorded as the camera sent it (stream copy)');
    first = segs[0]!.started_at;
    last = segs.at(-1)!.ended_at;
  });

  after(async () => {
    await browser?.close();
    await h?.close();
    await cam?.stop();
    await rtsp?.close();
  });

  const api = async (p: string): Promise<Response> => fetch(`${h.baseUrl}/api${p}`, { headers: { authorization: `Bearer ${token}` } });
  const range = (a: Date, b: Date) => `from=${encodeURIComponent(a.toISOString())}&to=${encodeURIComponent(b.toISOString())}`;

  /** Plays `src` in a <video> on a fresh page; the decoded frames and picture size once it has shown enough, or what it reached. */
  interface Played { frames: number; width: number; duration: number; error: string | null }
  const play = async (src: string, frames: number): Promise<Played> => {
    const page: Page = await browser.newPage();
    try {
      await page.goto(`${h.baseUrl}/api/health`);
      // A string, not a function: the test's TypeScript transform would add helpers the page lacks.
      return await page.evaluate<Played>(`(${IN_PAGE})(${JSON.stringify({ src, frames, bearer: token })})`);
    } finally {
      await page.close();
    }
  };

  test('an H.265 segment plays in Chromium through its H.264 rendition, made once and kept beside the original', async () => {
    const tl = (await (await api(`/cameras/${cameraId}/recordings?${range(first, last)}`)).json()) as { segments: { id: number; thumb_url: string | null }[] };
    const id = tl.segments[1]!.id;
    // Thumbnails come from the public address too (made once per stretch, shared by its segments).
    const thumb = tl.segments[0]!.thumb_url!;
    assert.equal(new URL(thumb).hostname, 'localhost');
    assert.equal((await fetch(thumb)).status, 200);
    const r1 = await api(`/recordings/${id}`);
    assert.equal(r1.status, 200);
    const seg = (await r1.json()) as { media_url: string; original_url: string; rendition: string; video_codec: string };
    assert.equal(seg.video_codec, 'hevc');
    assert.equal(seg.rendition, 'h264');
    assert.equal(new URL(seg.media_url).hostname, 'localhost', 'playback URL names the public address');
    const played = await play(seg.media_url, 10);
    assert.equal(played.error, null);
    assert.ok(played.frames >= 10 && played.width === 640, `rendition decoded in Chromium: ${JSON.stringify(played)}`);
    // The rendition is an object beside the original; asking again does not make it again.
    const key = (await h.db.pool.query<{ object_key: string }>('SELECT object_key FROM recording_segments WHERE id = $1', [id])).rows[0]!.object_key;
    const made = await h.storage!.stat(renditionKeyFor(key));
    assert.ok(made, 'rendition stored in S3');
    const r2 = await api(`/recordings/${id}`);
    assert.equal(r2.status, 200);
    assert.equal((await h.storage!.stat(renditionKeyFor(key)))!.lastModified.getTime(), made.lastModified.getTime(), 'served from the cache');
    // The reason for all this: this Chromium shows no picture from the H.265 original.
    const original = await play(seg.original_url.replace(/response-content-disposition=[^&]*&?/, ''), 10);
    assert.ok(original.width === 0 || original.error !== null, `Chromium decodes H.265 here after all: ${JSON.stringify(original)}`);
  });

  test('an export across the outage lists the gap in its sidecar and chapters, lasts the covered time, and plays in Chromium', async () => {
    const q = range(first, last);
    const m = await api(`/cameras/${cameraId}/playback?${q}&format=manifest`);
    assert.equal(m.status, 200);
    const side = (await m.json()) as { covered_ms: number; requested_ms: number; duration_s: number; gaps: { from: string; to: string; duration_ms: number; export_offset_s: number }[]; pieces: unknown[] };
    const big = side.gaps.filter((g) => g.duration_ms >= OUTAGE_MS - 1_000);
    assert.equal(big.length, 1, `one gap for the outage: ${JSON.stringify(side.gaps)}`);
    assert.ok(big[0]!.export_offset_s > 2 && big[0]!.export_offset_s < side.duration_s - 1, 'the gap falls inside the file');
    // What is neither covered nor listed are the sub-second joins between segments (wall-clock jitter, under the 1 s tolerance).
    const unlisted = side.requested_ms - side.covered_ms - side.gaps.reduce((n, g) => n + g.duration_ms, 0);
    assert.ok(unlisted >= 0 && unlisted < 1_000 * side.pieces.length, `covered + gaps = requested, but for ${unlisted} ms of joins`);

    const res = await api(`/cameras/${cameraId}/playback?${q}&format=mp4`);
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('x-export-gaps'), String(side.gaps.length));
    const file = path.join(tempDir('hevc-export-'), 'x.mp4');
    fs.writeFileSync(file, Buffer.from(await res.arrayBuffer()));
    const info = JSON.parse(execFileSync('ffprobe', ['-v', 'error', '-show_chapters', '-show_format', '-show_streams', '-of', 'json', file]).toString()) as {
      format: { duration: string; tags?: { comment?: string } };
      streams: { codec_type: string; codec_name: string }[];
      chapters: { start_time: string; tags: { title: string } }[];
    };
    assert.equal(info.streams.find((s) => s.codec_type === 'video')?.codec_name, 'h264', 'the export is H.264');
    const dur = Number(info.format.duration);
    // Encoded, not stream-copied: cuts are exact; one frame (1/15 s) and AAC priming of slack either way.
    assert.ok(Math.abs(dur - side.covered_ms / 1000) < 0.6, `export lasts ${dur} s, covered ${side.covered_ms / 1000} s (requested ${side.requested_ms / 1000} s)`);
    const gapChapter = info.chapters.find((c) => c.tags.title.includes('中断'));
    assert.ok(gapChapter, `a chapter names the gap: ${JSON.stringify(info.chapters.map((c) => c.tags.title))}`);
    assert.ok(Math.abs(Number(gapChapter.start_time) - big[0]!.export_offset_s) < 0.05, 'the chapter starts where the jump is');
    assert.deepEqual((JSON.parse(info.format.tags!.comment!) as { gaps: unknown[] }).gaps, side.gaps, 'the sidecar travels in the file');

    const played = await play(`/api/cameras/${cameraId}/playback?${q}&format=mp4`, 30);
    assert.equal(played.error, null);
    assert.ok(played.frames >= 30 && played.width === 640, `export decoded in Chromium: ${JSON.stringify(played)}`);
  });

  test('the supervisor exports from the recordings tab and sees where the file jumps in time', async () => {
    const page = await signIn(browser, h.baseUrl, 'hevc_sup', 'Weifang@2026');
    try {
      await page.getByRole('tab', { name: '录像回看' }).click();
      await page.getByLabel('摄像机 ID').fill(String(cameraId));
      const local = (d: Date) => new Date(d.getTime() - d.getTimezoneOffset() * 60_000).toISOString().slice(0, 16);
      await page.getByLabel('开始').fill(local(first));
      await page.getByLabel('结束').fill(local(new Date(last.getTime() + 60_000)));
      await page.getByRole('button', { name: '查询' }).click();
      await page.getByTestId('gap').first().waitFor({ timeout: 30_000 });
      await page.getByRole('button', { name: '导出该时段' }).click();
      const box = page.getByTestId('export-gaps');
      await box.waitFor({ timeout: 60_000 });
      const text = (await box.textContent()) ?? '';
      assert.match(text, /导出文件中的中断/);
      // The outage, by its length and its place in the file.
      const secs = [...text.matchAll(/\((\d+) 秒\)/g)].map((m) => Number(m[1]));
      assert.ok(secs.some((n) => n >= OUTAGE_MS / 1000 - 1 && n <= OUTAGE_MS / 1000 + 8), `the outage is listed: ${text}`);
      assert.match(text, /文件内位置 0:\d\d/);
      await checkedScreenshot(page, 'supervisor-export-gaps');
    } finally {
      await page.context().close();
    }
  });

  test('presigned URLs are signed for the public address and work through a proxy there', async () => {
    const s3 = await startEmbeddedS3(tempDir('s3-public-'), 0);
    const relay = await TcpRelay.create();
    relay.target = { host: '127.0.0.1', port: s3.port };
    const publicPort = (relay.server.address() as AddressInfo).port;
    try {
      const opts = { endPoint: s3.endpoint, port: s3.port, useSSL: false, accessKey: s3.accessKey, secretKey: s3.secretKey, bucket: 'recordings' };
      const internal = new ObjectStorage(opts);
      await internal.ensureBucket();
      await internal.putBuffer('unit/1/thumb.jpg', Buffer.from('jpeg bytes'), 'image/jpeg');
      const pub = new ObjectStorage({ ...opts, publicUrl: `http://localhost:${publicPort}` });
      const url = await pub.presignGet('unit/1/thumb.jpg', 60);
      assert.equal(new URL(url).host, `localhost:${publicPort}`, 'browser URL names the public address');
      const r = await fetch(url);
      assert.equal(r.status, 200);
      assert.equal(await r.text(), 'jpeg bytes');
      // Tools on this host keep the internal address.
      assert.equal(new URL(await pub.presignInternal('unit/1/thumb.jpg', 60)).port, String(s3.port));
      // An internal URL shown through the proxy fails (the signature covers the host): why the setting is needed.
      const wrong = new URL(await internal.presignGet('unit/1/thumb.jpg', 60));
      wrong.host = `localhost:${publicPort}`;
      assert.equal((await fetch(wrong)).status, 403);
    } finally {
      relay.close();
      await s3.close();
    }
  });
});
