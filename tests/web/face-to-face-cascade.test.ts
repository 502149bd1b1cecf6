import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import type { Browser } from 'playwright-core';
import { launchChromium } from '../support/browser.ts';
import { SfuDirectory } from '../../web/api/sfu-directory.ts';
import { artifactsDir, tmpDir } from '../support/browser.ts';
import { TreeNode } from '../support/cascade-harness.ts';
import { checkedScreenshot, mediaStats, signIn, waitUntil } from '../support/pages.ts';
import { startSystemHarness, type SystemHarness } from '../support/system-harness.ts';

// The face-to-face service across the cascade, end to end through the API: the system's node is the
// city root, the town centre and the village station each have their own SFU node below it. The API
// sends the villager's kiosk to the village node and the clerk's desk to the town node; the call's
// record flag makes the root record the station's camera and microphone, pulled up through the
// cascade, into S3 segments indexed under the room and the station's unit.

const run = promisify(execFile);

interface Call {
  id: number;
  state: string;
  record: boolean;
  recording: string;
  join: { room: string; token: string; sfu: string } | null;
}

describe('face to face across SFU nodes, routed and recorded by the system', { timeout: 240_000 }, () => {
  let h: SystemHarness;
  let town: TreeNode;
  let village: TreeNode;
  let villager: string;
  let clerk: string;
  let leader: string;
  let villageUnit: number;
  let stationId: number;

  before(async () => {
    h = await startSystemHarness({ towns: 1, communities: 2, villages: 4, recorder: true, cascadeRoot: 'city' });
    const sec = h.demo.users.find((u) => u.role === 'secretary' && u.level === 'village')!;
    villager = sec.username;
    villageUnit = sec.unitId;
    const q = async <T>(sql: string, args: unknown[]) => (await h.db.pool.query(sql, args)).rows as T[];
    const [t] = await q<{ id: number }>(`SELECT t.id FROM units t, units v WHERE v.id = $1 AND t.level = 'town' AND v.path LIKE t.path || '%'`, [villageUnit]);
    const townUnit = t!.id;
    clerk = h.demo.users.find((u) => u.role === 'clerk' && u.unitId === townUnit)!.username;
    leader = h.demo.users.find((u) => u.role === 'leader' && u.unitId === townUnit)!.username;
    stationId = (await q<{ id: number }>(`SELECT id FROM service_points WHERE unit_id = $1 AND kind = 'station'`, [villageUnit]))[0]!.id;

    // Two more node processes' worth of SFU below the system's root: town, and a village under it.
    town = new TreeNode('town', townUnit, h.cascadeUrl, { lingerMs: 300 });
    await town.start();
    village = new TreeNode('village', villageUnit, town.cascadeUrl, { lingerMs: 300 });
    await village.start();
    await waitUntil('both links up', async () => [town, village].every((n) => n.node.cascade?.parentConnected), (up) => up, 10_000);
    // Register where they are: the town's centre node and a node at the village station.
    await h.db.pool.query('UPDATE sfu_nodes SET signalling_url = $2 WHERE unit_id = $1', [townUnit, town.wsUrl]);
    await h.db.pool.query(
      `INSERT INTO sfu_nodes (unit_id, parent_node_id, name, signalling_url) SELECT $1, id, '村服务站节点', $2 FROM sfu_nodes WHERE unit_id = $3`,
      [villageUnit, village.wsUrl, townUnit],
    );
  });

  after(async () => {
    await village?.stop().catch(() => undefined);
    await town?.stop().catch(() => undefined);
    await h?.close();
  });

  test('each person is sent to the nearest node: meetings and calls alike', async () => {
    const l = await h.login(leader);
    const v = await h.login(villager);
    const m = await h.call<{ id: number }>(l, 'POST', '/api/meetings', { title: '节点路由', unitIds: [villageUnit] });
    assert.equal(m.status, 201, JSON.stringify(m.body));
    const chair = await h.call<{ sfu: string }>(l, 'POST', `/api/meetings/${m.body.id}/join-token`);
    const site = await h.call<{ sfu: string }>(v, 'POST', `/api/meetings/${m.body.id}/join-token`);
    assert.equal(chair.body.sfu, town.wsUrl, 'the town leader chairs from the town node');
    assert.equal(site.body.sfu, village.wsUrl, 'the village site joins its own node');
    // A unit without a node of its own attaches to its nearest ancestor's: the community under the town.
    const { rows } = await h.db.pool.query<{ path: string }>(`SELECT path FROM units WHERE level = 'community' ORDER BY id LIMIT 1`);
    assert.equal(await new SfuDirectory(h.db.pool, 'nearest').urlFor(rows[0]!.path), town.wsUrl);
    assert.equal(await new SfuDirectory(h.db.pool, 'local').urlFor(rows[0]!.path), '/sfu', 'single-machine mode keeps everyone on this node');
    await h.call(l, 'POST', `/api/meetings/${m.body.id}/end`);
  });

  test('kiosk on the village node and desk on the town node decode each other; the recorded call lands in S3', async () => {
    const browser: Browser = await launchChromium();
    try {
      const kiosk = await signIn(browser, h.baseUrl, villager, h.demo.password);
      await kiosk.getByText('请选择您要办理的业务').waitFor();
      await kiosk.getByLabel('录制本次服务').check();
      await kiosk.locator('button.choice').first().click();
      await kiosk.getByText('正在排队,请稍候').waitFor();

      const desk = await signIn(browser, h.baseUrl, clerk, h.demo.password);
      await desk.getByRole('button', { name: '接听' }).first().click();

      const v = await h.login(villager);
      const c = await h.login(clerk);
      const { rows } = await h.db.pool.query<{ id: number; record: boolean }>('SELECT id, record FROM service_calls WHERE station_id = $1 ORDER BY id DESC LIMIT 1', [stationId]);
      const callId = rows[0]!.id;
      assert.equal(rows[0]!.record, true, 'the kiosk asked for a recording');
      const room = `f2f-${callId}`;
      const asVillager = await h.call<Call>(v, 'GET', `/api/service-calls/${callId}`);
      const asClerk = await h.call<Call>(c, 'GET', `/api/service-calls/${callId}`);
      assert.equal(asVillager.body.join?.sfu, village.wsUrl, 'the villager is sent to the village node');
      assert.equal(asClerk.body.join?.sfu, town.wsUrl, 'the clerk is sent to the town node');

      const t0 = Date.now();
      for (const [name, page] of [['kiosk', kiosk], ['desk', desk]] as const) {
        await waitUntil(`${name} decodes the other side`, () => mediaStats(page), (m) => Object.values(m.videoFramesDecoded).some((n) => n > 30) && m.audioPacketsReceived > 20);
      }
      console.log(`# kiosk (village node) and desk (town node) decode each other ${Date.now() - t0} ms after accept`);
      assert.ok(village.node.rooms.get(room)?.peers.size === 1 && town.node.rooms.get(room)?.peers.size === 1, 'each party is on its own node');
      assert.equal(h.sfu.rooms.get(room)?.peers.size ?? 0, 0, 'nobody joined the root directly');

      // Recording: the root pulls the station's camera + microphone (not the clerk's) and writes segments.
      await waitUntil('recording on', async () => (await h.call<Call>(v, 'GET', `/api/service-calls/${callId}`)).body.recording, (r) => r === 'on', 20_000);
      await kiosk.getByTestId('recording').and(kiosk.locator('[data-state="on"]')).waitFor({ timeout: 5_000 });
      await desk.getByTestId('recording').and(desk.locator('[data-state="on"]')).waitFor({ timeout: 5_000 });
      assert.equal(await kiosk.getByRole('button', { name: '举手' }).count(), 0, 'no raise-hand in a one-to-one call (nobody chairs it)');
      await checkedScreenshot(kiosk, 'kiosk-recorded-call-village-node');
      await checkedScreenshot(desk, 'desk-recorded-call-town-node');
      const segments = async () => (await h.db.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM recording_segments WHERE room_id = $1', [room])).rows[0]!.n;
      await waitUntil('two segments indexed', segments, (n) => n >= 2, 30_000);
      assert.equal(h.sfu.cascade!.rooms.get(room)?.subscriptions.size, 2, 'the station\'s audio + video are piped up to the root, nothing else');

      // The kiosk reloads mid-call (power cut): its old streams end, the recording of them ends with
      // its last segment, and a new recording starts on its new streams.
      const restarted = new Promise<void>((resolve) => h.recordings!.once('started', (r) => r === room && resolve()));
      const before = await segments();
      await kiosk.reload();
      await restarted;
      await waitUntil('segments of the resumed recording', segments, (n) => n >= before + 2, 30_000);

      await desk.getByLabel('办理结果备注').fill('已录像存档');
      await desk.getByRole('button', { name: '结束并保存' }).click();
      await kiosk.getByText('通话已结束,感谢使用').waitFor({ timeout: 10_000 });
      await waitUntil('recording stopped', async () => h.recordings!.recording(room), (r) => r === undefined, 15_000);
      await h.recorder!.spool.idle();
      const n = await segments();
      await new Promise((r) => setTimeout(r, 2500));
      assert.equal(await segments(), n, 'no segments after the call closed');

      const indexed = await h.db.pool.query<{ unit_id: string; video_codec: string; audio_codec: string | null; object_key: string; started_at: Date; ended_at: Date }>(
        'SELECT unit_id, video_codec, audio_codec, object_key, started_at, ended_at FROM recording_segments WHERE room_id = $1 ORDER BY started_at',
        [room],
      );
      assert.ok(indexed.rowCount! >= 2);
      for (const s of indexed.rows) {
        assert.equal(Number(s.unit_id), villageUnit, 'the recording belongs to the station unit');
        assert.equal(s.video_codec, 'h264', 'VP8 from the kiosk transcoded to H.264');
        assert.equal(s.audio_codec, 'aac', 'the station microphone is in the recording');
        assert.ok(await h.storage!.stat(s.object_key), `${s.object_key} is in S3`);
      }
      // The last object really holds video: ffprobe reads it back from S3.
      const file = path.join(tmpDir('f2f-segment-'), 'last.mp4');
      fs.writeFileSync(file, await h.storage!.getBuffer(indexed.rows.at(-1)!.object_key));
      fs.copyFileSync(file, path.join(artifactsDir(), 'f2f-recorded-segment.mp4'));
      const { stdout } = await run('ffprobe', ['-v', 'error', '-show_entries', 'stream=codec_type,width,height', '-of', 'json', file]);
      const streams = (JSON.parse(stdout) as { streams: Array<{ codec_type: string; width?: number }> }).streams;
      assert.ok(streams.some((s) => s.codec_type === 'video' && (s.width ?? 0) > 0), stdout);
      assert.ok(streams.some((s) => s.codec_type === 'audio'), stdout);
      console.log(`# recorded call ${room}: ${indexed.rowCount} segments, ${indexed.rows.reduce((a, s) => a + s.ended_at.getTime() - s.started_at.getTime(), 0)} ms in S3`);
    } finally {
      await browser.close();
    }
  });
});
