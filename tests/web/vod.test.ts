import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import type { Browser } from 'playwright-core';
import { launchChromium, tmpDir } from '../support/browser.ts';
import { checkedScreenshot, signIn, waitUntil } from '../support/pages.ts';
import { startSystemHarness, type SystemHarness } from '../support/system-harness.ts';

// Video on demand (seed 001) against the real backend (PostgreSQL, embedded S3, ffprobe/ffmpeg) in
// Chromium: a county operator uploads an education film through the page; a village kiosk of that
// county finds it, plays it from S3 (decoded, seek plays from the new place, Range requests), and the
// viewing is recorded for the village and shown to the county. A kiosk of another county neither
// lists it nor can open it (404); a film that is not H.264/AAC is refused.

let h: SystemHarness;
let browser: Browser;
let clip: string;
let operator: string;
let kiosk: { username: string; unitId: number };
let outsider: { username: string; unitId: number };
let countyId: number;

before(async () => {
  h = await startSystemHarness({ towns: 4, communities: 8, villages: 24, storage: true });
  const dir = tmpDir('vod-');
  clip = path.join(dir, '党课教育片.mp4');
  // 20 s of H.264 + AAC, moov at the end as a camcorder writes it (the server moves it to the front).
  execFileSync('ffmpeg', ['-v', 'error', '-f', 'lavfi', '-i', 'testsrc2=size=320x240:rate=15', '-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=44100',
    '-t', '20', '-c:v', 'libx264', '-preset', 'ultrafast', '-pix_fmt', 'yuv420p', '-g', '15', '-c:a', 'aac', '-b:a', '64k', clip]);
  const q = async <T>(sql: string, args: unknown[] = []) => (await h.db.pool.query(sql, args)).rows as T[];
  const secretaries = h.demo.users.filter((u) => u.role === 'secretary' && u.level === 'village');
  const countyOf = new Map<number, number>();
  for (const s of secretaries) {
    const [row] = await q<{ county: string }>(`SELECT (string_to_array(rtrim(path, '.'), '.'))[2] AS county FROM units WHERE id = $1`, [s.unitId]);
    countyOf.set(s.unitId, Number(row!.county));
  }
  const first = secretaries[0]!;
  countyId = countyOf.get(first.unitId)!;
  const other = secretaries.find((s) => countyOf.get(s.unitId) !== countyId);
  assert.ok(other, 'the demo has village kiosks in two counties');
  kiosk = { username: first.username, unitId: first.unitId };
  outsider = { username: other.username, unitId: other.unitId };
  operator = h.demo.users.find((u) => u.role === 'operator' && u.unitId === countyId)!.username;
  browser = await launchChromium();
});

after(async () => {
  await browser?.close();
  await h?.close();
});

test('a county uploads a film, a village kiosk of the county watches it (decoded, seekable), the view is recorded; another county cannot see it', { timeout: 150_000 }, async () => {
  // 1. The county operator uploads the film on the management page.
  const op = await signIn(browser, h.baseUrl, operator, h.demo.password);
  await op.goto(`${h.baseUrl}/#/vod`);
  await op.getByRole('tab', { name: '影片管理' }).click();
  await op.getByLabel('片名').fill('学习党章 第一讲');
  await op.getByLabel('简介').fill('县委组织部 2026 年冬训教材');
  await op.getByLabel('影片文件（MP4：H.264 + AAC）').setInputFiles(clip);
  await op.getByRole('button', { name: '上传影片' }).click();
  await op.getByRole('status').filter({ hasText: '上传成功' }).waitFor({ timeout: 60_000 });
  const [film] = (await h.db.pool.query<{ id: string; unit_id: string; object_key: string; video_codec: string; audio_codec: string; duration_s: number }>(
    'SELECT id, unit_id, object_key, video_codec, audio_codec, duration_s FROM films',
  )).rows;
  assert.ok(film, 'the film is stored');
  const filmId = Number(film.id);
  assert.equal(Number(film.unit_id), countyId, 'owned by the county');
  assert.deepEqual([film.video_codec, film.audio_codec], ['h264', 'aac']);
  assert.ok(Math.abs(film.duration_s - 20) < 1, `duration probed (${film.duration_s})`);
  const stored = await h.storage!.stat(film.object_key);
  assert.ok(stored && stored.size > 10_000, 'the film is in S3');
  // Remuxed with the index first: 'moov' comes before 'mdat'.
  const head = (await h.storage!.getBuffer(film.object_key)).subarray(0, 4096).toString('latin1');
  assert.ok(head.indexOf('moov') >= 0 && head.indexOf('moov') < (head.indexOf('mdat') === -1 ? Infinity : head.indexOf('mdat')), 'faststart');
  await op.locator(`tr[data-film="${filmId}"]`).waitFor();

  // A film that is not H.264/AAC is refused (not transcoded), with a bilingual message.
  const mpeg4 = path.join(path.dirname(clip), 'mpeg4.mp4');
  execFileSync('ffmpeg', ['-v', 'error', '-f', 'lavfi', '-i', 'testsrc2=size=160x120:rate=10', '-t', '2', '-c:v', 'mpeg4', mpeg4]);
  const opToken = await h.login(operator);
  const refused = await fetch(`${h.baseUrl}/api/vod/films?title=${encodeURIComponent('旧格式')}`, { method: 'POST', headers: { authorization: `Bearer ${opToken}`, 'content-type': 'video/mp4' }, body: fs.readFileSync(mpeg4) });
  assert.equal(refused.status, 415);
  assert.match(((await refused.json()) as { error: { message: string } }).error.message, /H\.264.* \/ .*H\.264/);

  // Not a film at all: refused. A film declared larger than the limit (2 GiB): refused before a byte is read.
  const junk = await fetch(`${h.baseUrl}/api/vod/films?title=x`, { method: 'POST', headers: { authorization: `Bearer ${opToken}`, 'content-type': 'video/mp4' }, body: Buffer.alloc(4096, 7) });
  assert.equal(junk.status, 415);
  const huge = await new Promise<number>((resolve, reject) => {
    const req = http.request(`${h.baseUrl}/api/vod/films?title=x`, { method: 'POST', headers: { authorization: `Bearer ${opToken}`, 'content-type': 'video/mp4', 'content-length': String(3 * 1024 ** 3) } }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
      req.destroy();
    });
    req.on('error', reject);
    req.write(Buffer.alloc(1024));
  });
  assert.equal(huge, 413);
  // A village kiosk does not publish films.
  assert.equal((await fetch(`${h.baseUrl}/api/vod/films?title=x`, { method: 'POST', headers: { authorization: `Bearer ${await h.login(kiosk.username)}`, 'content-type': 'video/mp4' }, body: fs.readFileSync(clip) })).status, 403);
  assert.equal((await h.call<{ items: unknown[] }>(opToken, 'GET', '/api/vod/films?scope=manage')).body.items.length, 1, 'refused uploads leave nothing behind');

  // 2. The village kiosk of the county watches it.
  const site = await signIn(browser, h.baseUrl, kiosk.username, h.demo.password);
  const ranges: string[] = [];
  const partial: number[] = [];
  site.on('request', (r) => {
    if (r.url().includes(encodeURIComponent(film.object_key).replace(/%2F/g, '/')) || r.url().includes(film.object_key)) ranges.push(r.headers()['range'] ?? '');
  });
  site.on('response', (r) => {
    if (r.url().includes(film.object_key)) partial.push(r.status());
  });
  await site.goto(`${h.baseUrl}/#/vod`);
  const card = site.locator(`li[data-film="${filmId}"]`);
  await card.waitFor();
  assert.match((await card.textContent()) ?? '', /学习党章 第一讲/);
  await card.getByRole('button', { name: '播放' }).click();
  const player = site.getByTestId('film-player');
  await player.waitFor();
  const playing = await waitUntil('the film decodes and plays', () => player.evaluate((v: HTMLVideoElement) => ({ t: v.currentTime, w: v.videoWidth, paused: v.paused })), (s) => s.t > 1.5 && s.w > 0);
  assert.equal(playing.w, 320);
  await checkedScreenshot(site, 'vod-kiosk-playing');

  // Seek: jump to 14 s and it plays on from there.
  await player.evaluate((v: HTMLVideoElement) => {
    v.currentTime = 14;
  });
  const seeked = await waitUntil('the film plays on after the seek', () => player.evaluate((v: HTMLVideoElement) => ({ t: v.currentTime, paused: v.paused, seeking: v.seeking })), (s) => s.t > 14.5 && !s.seeking && !s.paused);
  assert.ok(seeked.t < 20, 'from the seek point, not from the start');
  assert.ok(ranges.some((r) => /^bytes=\d+-/.test(r)), `the player asked S3 for byte ranges (${JSON.stringify(ranges)})`);
  assert.ok(partial.includes(206), `S3 answered 206 Partial Content (${JSON.stringify(partial)})`);

  // Closing the player reports what was watched; the view is recorded for the village.
  await site.getByRole('button', { name: '关闭' }).click();
  const views = await waitUntil(
    'the viewing is recorded for the village',
    async () => (await h.db.pool.query<{ unit_id: string; watched_s: number }>('SELECT unit_id, watched_s FROM film_views WHERE film_id = $1', [filmId])).rows,
    (rows) => rows.length === 1 && rows[0]!.watched_s > 1,
  );
  assert.equal(Number(views[0]!.unit_id), kiosk.unitId);

  // 3. The county sees the viewing per site.
  await op.locator(`tr[data-film="${filmId}"]`).getByRole('button', { name: '观看记录' }).click();
  const siteRow = op.getByTestId('film-views').locator(`tr[data-site="${kiosk.unitId}"]`);
  await siteRow.waitFor();
  const [village] = (await h.db.pool.query<{ name: string }>('SELECT name FROM units WHERE id = $1', [kiosk.unitId])).rows;
  assert.match((await siteRow.textContent()) ?? '', new RegExp(village!.name));
  await checkedScreenshot(op, 'vod-county-viewing-records');

  // 4. A kiosk of another county: not listed, and the film answers 404 (playback, viewing, records).
  const out = await h.login(outsider.username);
  const list = await h.call<{ items: { id: number }[] }>(out, 'GET', '/api/vod/films');
  assert.equal(list.status, 200);
  assert.ok(!list.body.items.some((f) => f.id === filmId), 'not listed for another county');
  assert.equal((await h.call(out, 'GET', `/api/vod/films/${filmId}`)).status, 404);
  assert.equal((await h.call(out, 'POST', `/api/vod/films/${filmId}/views`)).status, 404);
  const outPage = await signIn(browser, h.baseUrl, outsider.username, h.demo.password);
  await outPage.goto(`${h.baseUrl}/#/vod`);
  await outPage.getByTestId('film-shelf').getByText('暂无可观看的影片').waitFor();
  assert.equal(await outPage.locator(`li[data-film="${filmId}"]`).count(), 0);
  // Another county's operator cannot read its viewing records either.
  const otherOperator = h.demo.users.find((u) => u.role === 'operator' && u.level === 'county' && u.unitId !== countyId)!;
  assert.equal((await h.call(await h.login(otherOperator.username), 'GET', `/api/vod/films/${filmId}/views`)).status, 404);
  assert.equal((await h.call(await h.login(otherOperator.username), 'DELETE', `/api/vod/films/${filmId}`)).status, 404);

  // Retired by the county: gone from the kiosk's list and no longer playable there; the records stay.
  assert.equal((await h.call(opToken, 'DELETE', `/api/vod/films/${filmId}`)).status, 204);
  const kioskToken = await h.login(kiosk.username);
  assert.ok(!(await h.call<{ items: { id: number }[] }>(kioskToken, 'GET', '/api/vod/films')).body.items.some((f) => f.id === filmId));
  assert.equal((await h.call(kioskToken, 'GET', `/api/vod/films/${filmId}`)).status, 404);
  assert.equal((await h.call<{ sites: unknown[] }>(opToken, 'GET', `/api/vod/films/${filmId}/views`)).body.sites.length, 1);
});
