import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import type { Server } from 'node:http';
import express from 'express';
import * as mediasoup from 'mediasoup';
import type { types } from 'mediasoup';
import { verifyJoinToken } from '../../infra/tokens.ts';
import { LiveCameraIngest } from '../../recorder/LiveCameraIngest.ts';
import { Recorder } from '../../recorder/Recorder.ts';
import type { AuthUser } from '../../web/api/auth-context.ts';
import { errorHandler } from '../../web/api/errors.ts';
import { createLiveCamerasRouter, liveRoomFor, type LiveCameraProvider, type LiveCameraTarget } from '../../web/api/routes/live-cameras.ts';
import { createRecordingsRouter } from '../../web/api/routes/recordings.ts';
import { createTestDatabase, type TestDatabase } from '../support/database.ts';
import { RtspServer } from '../support/rtsp-server.ts';
import { TestCamera } from '../support/rtsp-camera.ts';
import { addCamera, seedOrg, startS3Fixture, tempDir, waitForEvent, type OrgFixture, type S3Fixture } from '../support/recorder-fixture.ts';
import { TEST_JOIN_KEYS } from '../support/join-keys.ts';

// Review and live-inspection routers, mounted in a tiny express app whose test middleware sets
// req.user (the real app's authentication is another module). Material is recorded for real first
// (a 10 s capture with 2 s segments).

const SECRET = 'x'.repeat(40);

describe('recordings and live-camera routers: subtree access, audit, review material', () => {
  let db: TestDatabase;
  let s3: S3Fixture;
  let rtsp: RtspServer;
  let cam: TestCamera;
  let worker: types.Worker;
  let router: types.Router;
  let server: Server;
  let base: string;
  let org: OrgFixture;
  let cameraId: number;
  let from: Date;
  let to: Date;
  const users = new Map<string, AuthUser>();
  const ingests = new Map<number, LiveCameraIngest>();
  const ensured: LiveCameraTarget[] = [];

  before(async () => {
    db = await createTestDatabase();
    s3 = await startS3Fixture();
    rtsp = await RtspServer.start();
    cam = new TestCamera({ server: rtsp, path: 'east-village', audio: 'pcm_mulaw' });
    await cam.start();
    org = await seedOrg(db.pool);
    cameraId = await addCamera(db.pool, org.villageAId, cam.url.replace('rtsp://', 'rtsp://'));
    for (const [name, unit, unitPath] of [
      ['county_sup', org.countyId, org.paths.county],
      ['towna_sup', org.townAId, org.paths.townA],
      ['townb_sup', org.townBId, org.paths.townB],
    ] as const) {
      const r = await db.pool.query<{ id: number }>(
        `INSERT INTO users (username, display_name, unit_id, role, password_hash) VALUES ($1, $1, $2, 'supervisor', 'scrypt$x') RETURNING id`, [name, unit]);
      users.set(name, { id: r.rows[0]!.id, username: name, displayName: name, role: 'supervisor', unitId: unit, unitPath });
    }

    // Real material: record 10 s.
    const rec = await Recorder.start({
      pool: db.pool, storage: s3.storage,
      config: { spoolDir: tempDir('rec-routes-'), recorderId: 'routes', segmentSeconds: 2, startLeadMs: 6_000, jobPollMs: 250, restartBackoffMinMs: 500, stripFrames: 3 },
    });
    from = new Date(Date.now() + 5_000);
    to = new Date(from.getTime() + 10_000);
    const job = await rec.scheduleCapture({ cameraId, startsAt: from, endsAt: to });
    await waitForEvent(rec, 'jobState', (id: number, s: string) => id === job.id && s === 'done', 45_000);
    await rec.spool.idle();
    await rec.close();

    worker = await mediasoup.createWorker({ logLevel: 'error', rtcMinPort: 48000, rtcMaxPort: 48999 });
    router = await worker.createRouter({
      mediaCodecs: [
        { kind: 'audio', mimeType: 'audio/opus', clockRate: 48000, channels: 2 },
        { kind: 'video', mimeType: 'video/H264', clockRate: 90000, parameters: { 'packetization-mode': 1, 'profile-level-id': '42e01f', 'level-asymmetry-allowed': 1 } },
      ],
    });
    const provider: LiveCameraProvider = {
      async ensure(target) {
        ensured.push(target);
        let ing = ingests.get(target.id);
        if (!ing) {
          ing = await LiveCameraIngest.create({ router, pullUrl: target.pullUrl, label: `camera ${target.id}` });
          ingests.set(target.id, ing);
        }
        const producers: { kind: 'audio' | 'video'; producerId: string }[] = [{ kind: 'video', producerId: ing.videoProducer.id }];
        if (ing.audioProducer) producers.push({ kind: 'audio', producerId: ing.audioProducer.id });
        return { room: liveRoomFor(target.id), producers };
      },
    };

    const app = express();
    app.use((req, _res, next) => {
      const u = users.get(String(req.headers['x-test-user'] ?? ''));
      if (u) req.user = u;
      next();
    });
    app.use('/api', createRecordingsRouter({ pool: db.pool, storage: s3.storage }));
    app.use('/api', createLiveCamerasRouter({ pool: db.pool, joinKey: TEST_JOIN_KEYS.privateKey, provider }));
    app.use(errorHandler);
    server = app.listen(0, '127.0.0.1');
    await new Promise((r) => server.once('listening', r));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}/api`;
  });

  after(async () => {
    for (const i of ingests.values()) i.close();
    server?.close();
    worker?.close();
    await cam?.stop();
    await rtsp?.close();
    await s3?.close();
    await db?.drop();
  });

  const call = async (user: string, method: string, p: string): Promise<{ status: number; body: string; json: () => Record<string, unknown> }> => {
    const res = await fetch(`${base}${p}`, { method, headers: { 'x-test-user': user } });
    const body = await res.text();
    // Never a camera credential or pull URL in any answer.
    assert.ok(!body.includes('cam-secret-pw') && !body.includes('rtsp://'), `answer leaks camera details: ${body.slice(0, 200)}`);
    return { status: res.status, body, json: () => JSON.parse(body) as Record<string, unknown> };
  };
  const audits = async (username: string, action: string): Promise<number> =>
    (await db.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM audit_log WHERE username = $1 AND action = $2', [username, action])).rows[0]!.n;
  const range = () => `from=${encodeURIComponent(from.toISOString())}&to=${encodeURIComponent(to.toISOString())}`;

  test('a supervisor whose subtree holds the camera lists its timeline with thumbnails, views a segment, and is audited', async () => {
    const r = await call('county_sup', 'GET', `/cameras/${cameraId}/recordings?${range()}`);
    assert.equal(r.status, 200, r.body);
    const tl = r.json() as { segments: { id: number; thumb_url: string; strip_url: string }[]; gaps: unknown[] };
    assert.ok(tl.segments.length >= 4, 'segments over the range');
    assert.deepEqual(tl.gaps, []);
    const img = await fetch(tl.segments[0]!.thumb_url);
    assert.equal(img.status, 200);
    assert.equal((await img.arrayBuffer()).byteLength > 1000, true);
    const one = await call('towna_sup', 'GET', `/recordings/${tl.segments[1]!.id}`);
    assert.equal(one.status, 200);
    const media = await fetch(String(one.json().media_url));
    assert.equal(media.status, 200, 'presigned media URL serves the segment');
    assert.equal(await audits('county_sup', 'recording.list'), 1);
    assert.equal(await audits('towna_sup', 'recording.view'), 1);
  });

  test('a supervisor outside the camera subtree gets 404 for its recordings, segments, playback and live view', async () => {
    const seg = await db.pool.query<{ id: number }>('SELECT id FROM recording_segments WHERE camera_id = $1 LIMIT 1', [cameraId]);
    for (const [method, p] of [
      ['GET', `/cameras/${cameraId}/recordings?${range()}`],
      ['GET', `/recordings/${seg.rows[0]!.id}`],
      ['GET', `/cameras/${cameraId}/playback?${range()}`],
      ['GET', `/cameras/${cameraId}/playback?${range()}&format=mp4`],
      ['POST', `/cameras/${cameraId}/live`],
    ] as const) {
      const r = await call('townb_sup', method, p);
      assert.equal(r.status, 404, `${method} ${p}: ${r.body}`);
      assert.equal((r.json().error as { code: string }).code, 'not_found');
      // Indistinguishable from a camera that does not exist.
      const missing = await call('townb_sup', method, p.replace(`/cameras/${cameraId}/`, '/cameras/999999/').replace(/\/recordings\/\d+/, '/recordings/999999'));
      assert.equal(missing.status, 404);
      assert.equal(missing.body, r.body);
    }
    assert.equal(ensured.length, 0, 'the SFU was never asked to bring the camera in for an outsider');
    const n = await db.pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM audit_log WHERE username = 'townb_sup'`);
    assert.equal(n.rows[0]!.n, 0, 'nothing was shown, so nothing viewed');
    const unauth = await call('nobody', 'GET', `/cameras/${cameraId}/recordings?${range()}`);
    assert.equal(unauth.status, 401);
  });

  test('playback: a range across segments as a presigned playlist, and exported as one MP4 by stream copy', async () => {
    const a = new Date(from.getTime() + 1_500);
    const b = new Date(from.getTime() + 7_500);
    const q = `from=${encodeURIComponent(a.toISOString())}&to=${encodeURIComponent(b.toISOString())}`;
    const list = await call('county_sup', 'GET', `/cameras/${cameraId}/playback?${q}`);
    assert.equal(list.status, 200);
    const pl = list.json() as { segments: { url: string; in_s: number; out_s: number }[] };
    assert.ok(pl.segments.length >= 3, 'the range spans several segments');
    assert.ok(pl.segments[0]!.in_s > 0, 'first segment entered part-way');
    const res = await fetch(`${base}/cameras/${cameraId}/playback?${q}&format=mp4`, { headers: { 'x-test-user': 'county_sup' } });
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('content-type'), 'video/mp4');
    const file = path.join(tempDir('export-'), 'x.mp4');
    fs.writeFileSync(file, Buffer.from(await res.arrayBuffer()));
    const dur = Number(execFileSync('ffprobe', ['-v', 'error', '-show_entries', 'format=duration', '-of', 'csv=p=0', file]).toString());
    // Stream copy cuts on keyframes (1 s apart here): the export is the range give or take a GOP.
    assert.ok(Math.abs(dur - 6) < 1.6, `exported duration ${dur} s for a 6 s range`);
    assert.equal(await audits('county_sup', 'recording.export'), 1);
    const bad = await call('county_sup', 'GET', `/cameras/${cameraId}/playback?from=${encodeURIComponent(b.toISOString())}&to=${encodeURIComponent(a.toISOString())}`);
    assert.equal(bad.status, 400, 'a reversed range is a clear 400');
  });

  test('live inspection: an in-subtree supervisor gets a viewer token for the camera room with its producers', async () => {
    const r = await call('towna_sup', 'POST', `/cameras/${cameraId}/live`);
    assert.equal(r.status, 201, r.body);
    const body = r.json() as { room: string; token: string; producers: { kind: string; producerId: string }[] };
    const claims = await verifyJoinToken(TEST_JOIN_KEYS.publicKey, body.token);
    assert.equal(claims.room, liveRoomFor(cameraId));
    assert.equal(claims.role, 'viewer', 'watching only');
    assert.equal(claims.userId, users.get('towna_sup')!.id);
    assert.equal(ensured.length, 1);
    assert.match(ensured[0]!.pullUrl, /^rtsp:\/\/admin:cam-secret-pw@/, 'credentials go only to the server-side ingest');
    const video = ingests.get(cameraId)!.videoProducer;
    assert.deepEqual(body.producers.find((p) => p.kind === 'video')?.producerId, video.id);
    assert.equal(await audits('towna_sup', 'camera.live.view'), 1);
  });

  test('a recorded meeting room is listed for supervisors above its unit and is 404 elsewhere', async () => {
    // A room segment owned by town A, reusing real stored media.
    const seg = await db.pool.query<{ object_key: string; bytes: number; started_at: Date; ended_at: Date }>(
      'SELECT object_key, bytes, started_at, ended_at FROM recording_segments WHERE camera_id = $1 ORDER BY started_at LIMIT 1', [cameraId]);
    const s = seg.rows[0]!;
    await db.pool.query(
      `INSERT INTO recording_segments (room_id, unit_id, started_at, ended_at, bytes, bucket, object_key, video_codec, evidence)
       VALUES ('town-a-meeting', $1, $2, $3, $4, 'recordings', $5, 'h264', true)`,
      [org.townAId, s.started_at, s.ended_at, s.bytes, `${s.object_key}.room-copy`]);
    const ok = await call('county_sup', 'GET', `/rooms/town-a-meeting/recordings?${range()}`);
    assert.equal(ok.status, 200, ok.body);
    assert.equal((ok.json().segments as unknown[]).length, 1);
    const no = await call('townb_sup', 'GET', `/rooms/town-a-meeting/recordings?${range()}`);
    assert.equal(no.status, 404);
    const missing = await call('townb_sup', 'GET', `/rooms/no-such-room/recordings?${range()}`);
    assert.equal(missing.body, no.body);
  });
});
