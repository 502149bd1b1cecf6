import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { DEMO_FILM, ensureDemoFilm } from '../../infra/demo/demo-film.ts';
import { launchChromium, tmpDir } from '../support/browser.ts';
import { checkedScreenshot, mediaStats, signIn, waitUntil as until } from '../support/pages.ts';
import { startSystemHarness, type SystemHarness } from '../support/system-harness.ts';

// The chair broadcasts a film to every site from the leader's console: the film is played into the
// meeting room by ffmpeg, every site's page shows it large with its sound, the sites' microphones are
// held; the chair stops it and the meeting goes on; a film that ends lifts the broadcast by itself;
// ending the meeting stops a film still playing.

let h: SystemHarness;
let browser: Browser;
let filmsDir: string;
before(async () => {
  filmsDir = tmpDir('films-');
  await ensureDemoFilm(filmsDir, 30);
  // A second, short film that plays to its end during the test.
  const short = path.join(tmpDir('film-short-'), 'x');
  await ensureDemoFilm(short, 4);
  fs.copyFileSync(path.join(short, DEMO_FILM), path.join(filmsDir, '短片.mp4'));
  h = await startSystemHarness({ towns: 1, communities: 2, villages: 6, filmsDir });
  browser = await launchChromium();
});
after(async () => {
  await browser?.close();
  await h?.close();
});

const open = (username: string) => signIn(browser, h.baseUrl, username, h.demo.password);
const featuredOn = (page: Page) => page.evaluate(() => document.querySelector('[data-featured]')?.getAttribute('data-featured') ?? null);

test('the chair plays a film to every site, stops it, and ending the meeting stops a film', { timeout: 150_000 }, async () => {
  const leaderName = h.demo.users.find((u) => u.role === 'leader' && u.level === 'town')!.username;
  const siteName = h.demo.users.find((u) => u.role === 'secretary' && u.level === 'village')!.username;
  const l = await h.login(leaderName);
  const s = await h.login(siteName);

  // The offer and bad requests first.
  const offered = await h.call<{ films: { name: string }[] }>(l, 'GET', '/api/films');
  assert.deepEqual(offered.body.films.map((f) => f.name).sort(), [DEMO_FILM, '短片.mp4'].sort());
  assert.equal((await h.call(s, 'GET', '/api/films')).status, 403, 'a village secretary does not chair');

  const leader = await open(leaderName);
  await leader.getByLabel('会议主题').fill('党课:学习教育片');
  await leader.getByRole('button', { name: '开始会议' }).click();
  await leader.getByRole('button', { name: '结束会议' }).waitFor();
  const { rows } = await h.db.pool.query<{ id: number }>('SELECT id FROM meetings ORDER BY id DESC LIMIT 1');
  const meetingId = rows[0]!.id;
  const roomId = `m-${meetingId}`;
  assert.equal((await h.call(l, 'POST', `/api/meetings/${meetingId}/film`, { film: '../../etc/passwd' })).status, 404);
  assert.equal((await h.call(l, 'POST', `/api/meetings/${meetingId}/film`, { film: 1 })).status, 400);
  assert.equal((await h.call(s, 'POST', `/api/meetings/${meetingId}/film`, { film: DEMO_FILM })).status, 403, 'a site cannot play films');

  const site = await open(siteName);
  await site.getByRole('link', { name: '我的会议' }).click();
  await site.getByRole('button', { name: '进入会议' }).click();
  await until('the site joined', () => mediaStats(site), (m) => m.state === 'joined');
  const room = () => h.sfu.rooms.get(roomId)!;
  const siteMic = () => [...room().peers.values()].filter((p) => p.claims.role !== 'chair').flatMap((p) => [...p.producers.values()]).find((p) => p.appData.source === 'microphone');
  await until('the site publishes its microphone', async () => siteMic()?.paused, (v) => v === false);

  // Play from the console: the site shows the film large, decodes it and hears it; its microphone is held.
  const t0 = Date.now();
  await leader.getByRole('group', { name: '播放影片' }).getByRole('button', { name: '向全部会场播放' }).click();
  await leader.getByTestId('film-playing').waitFor();
  const filmPeer = `film-${roomId}`;
  await until('the film is featured on the site', () => featuredOn(site), (f) => f === filmPeer);
  await until('the site decodes the film', () => mediaStats(site), (x) => (x.videoFramesDecoded[filmPeer] ?? 0) >= 40);
  console.log(`# film shown and 40 frames decoded on the site ${Date.now() - t0} ms after play`);
  // The film's own sound, alone (the chair's microphone also counts in the page's audio total), over a window.
  const filmAudioPackets = async () => ((await mediaStats(site)).consumers ?? []).filter((c) => c.peerId === filmPeer && c.kind === 'audio').reduce((n, c) => n + c.packetsReceived, 0);
  const heardFrom = await filmAudioPackets();
  await new Promise((r) => setTimeout(r, 2000));
  const heard = (await filmAudioPackets()) - heardFrom;
  assert.ok(heard > 40, `the site receives the film's sound: ${heard} packets of the film's audio in 2 s (Opus: ~100)`);
  await until('the site microphone is held', async () => siteMic()?.paused, (v) => v === true);
  const filmAudio = [...room().ingests.values()].find((i) => i.peerInfo.peerId === filmPeer && i.producer.kind === 'audio');
  assert.equal(filmAudio?.producer.paused, false, 'the film\'s own sound is not muted by its broadcast');
  const filmRow = leader.getByTestId('chair-controls').locator(`li[data-site="${filmPeer}"] [data-muted]`);
  assert.equal(await filmRow.getAttribute('data-muted'), 'false', 'the chair sees the film\'s sound as live, not muted');
  await checkedScreenshot(site, 'film-broadcast-site');
  await checkedScreenshot(leader, 'film-broadcast-chair');

  // Stop: the broadcast is lifted, the film leaves the room, the meeting goes on.
  await leader.getByRole('button', { name: '停止播放' }).click();
  await until('broadcast lifted', async () => room().control.state.broadcast, (b) => b === null);
  await until('the film left the room', async () => room().ingests.size, (n) => n === 0);
  await until('the site microphone is back', async () => siteMic()?.paused, (v) => v === false);
  assert.equal(await featuredOn(site), null);

  // A film that ends lifts the broadcast by itself.
  const short = await h.call<{ producerId: string }>(l, 'POST', `/api/meetings/${meetingId}/film`, { film: '短片.mp4' });
  assert.equal(short.status, 201, JSON.stringify(short.body));
  assert.equal(room().control.state.broadcast, short.body.producerId);
  await until('the short film ended and the broadcast is lifted', async () => [room().control.state.broadcast, room().ingests.size], ([b, n]) => b === null && n === 0, 20_000);

  // Ending the meeting stops a film still playing.
  assert.equal((await h.call(l, 'POST', `/api/meetings/${meetingId}/film`, { film: DEMO_FILM })).status, 201);
  assert.equal(room().ingests.size, 2, 'film video + audio in the room');
  const ingests = [...room().ingests.values()];
  await leader.getByRole('button', { name: '结束会议' }).click();
  await until('the film stopped with the meeting', async () => ingests.every((i) => i.producer.closed), Boolean, 10_000);
  const { rows: audit } = await h.db.pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM audit_log WHERE action = 'meeting.film'`);
  assert.equal(audit[0]!.n, 3, 'each film played is audited');
});
