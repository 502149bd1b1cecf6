import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import sharp from 'sharp';
import { OnvifCamera, OnvifError } from '../../recorder/OnvifCamera.ts';
import { OnvifCameraSim } from '../support/onvif-camera-sim.ts';
import { DebianRtspServer } from '../support/debian-rtsp.ts';

// recorder/OnvifCamera (the `onvif` library) against a camera's ONVIF side written from the
// specifications (tests/support/onvif-camera-sim.ts), whose two profiles name two real
// gst-rtsp-server streams: main 1280x720 H.264 High, sub 320x180 Baseline.

const USER = 'admin';
const PASSWORD = 'Hik#2026&<pw>';
let main: DebianRtspServer;
let sub: DebianRtspServer;
let sim: OnvifCameraSim;
let notOnvif: http.Server;

before(async () => {
  [main, sub] = await Promise.all([
    DebianRtspServer.start({ width: 1280, height: 720, profile: 'high', fps: 15, path: '/Streaming/Channels/101', auth: { user: USER, password: PASSWORD } }),
    DebianRtspServer.start({ width: 320, height: 180, profile: 'baseline', fps: 15, path: '/Streaming/Channels/102', auth: { user: USER, password: PASSWORD } }),
  ]);
  sim = await OnvifCameraSim.start({
    username: USER,
    password: PASSWORD,
    // The camera answers its URIs with credentials in them and with its LAN address (as some do behind NAT).
    profiles: [
      { token: 'Profile_101', name: 'mainStream', encoding: 'H264', h264Profile: 'High', width: 1280, height: 720, fps: 15, bitrateKbps: 2048, streamUri: `rtsp://admin:leak@192.168.1.64:${main.port}/Streaming/Channels/101?transportmode=unicast` },
      { token: 'Profile_102', name: 'subStream', encoding: 'H264', h264Profile: 'Baseline', width: 320, height: 180, fps: 15, bitrateKbps: 256, streamUri: `${sub.url}?transportmode=unicast` },
    ],
    advertisedHost: '192.168.1.64',
  });
  // An HTTP server that is not ONVIF (a camera's web page on the port asked).
  notOnvif = http.createServer((_req, res) => res.writeHead(404, { 'content-type': 'text/html' }).end('<html><body>Not Found</body></html>'));
  await new Promise<void>((r) => notOnvif.listen(0, '127.0.0.1', r));
});

after(async () => {
  await sim?.close();
  await Promise.all([main?.close(), sub?.close()]);
  notOnvif?.closeAllConnections();
  await new Promise<void>((r) => (notOnvif ? notOnvif.close(() => r()) : r()));
});

const camera = (password = PASSWORD, port = sim.port) => new OnvifCamera({ host: '127.0.0.1', port, username: USER, password });

test('discovery returns the device, both profiles with their encoders, main/sub stream URIs and the snapshot', async () => {
  const d = await camera().discover();
  assert.deepEqual(d.device, { manufacturer: 'HIKVISION', model: 'DS-2CD2T47G2-L', firmware_version: 'V5.7.3 build 220112', serial_number: 'DS-2CD2T47G2-L20220101AACHE00000001', hardware_id: '88' });
  assert.deepEqual(
    d.profiles.map((p) => [p.token, p.name, p.encoding, p.h264_profile, p.width, p.height, p.fps, p.bitrate_kbps]),
    [
      ['Profile_101', 'mainStream', 'H264', 'High', 1280, 720, 15, 2048],
      ['Profile_102', 'subStream', 'H264', 'Baseline', 320, 180, 15, 256],
    ],
  );
  assert.equal(d.main, 'Profile_101', 'main = the most pixels');
  assert.equal(d.sub, 'Profile_102', 'sub = the fewest');
  // No userinfo, and the LAN address the camera named is replaced by the one we reached it at.
  assert.equal(d.main_stream_uri, `rtsp://127.0.0.1:${main.port}/Streaming/Channels/101?transportmode=unicast`);
  assert.equal(d.sub_stream_uri, `${sub.url}?transportmode=unicast`);
  assert.equal(d.snapshot_uri, `http://127.0.0.1:${sim.port}/onvif/snapshot?token=Profile_101`);
  assert.equal(d.address_rewritten, true);
  assert.ok(!JSON.stringify(d).includes('leak') && !JSON.stringify(d).includes(PASSWORD), 'no credentials in what discovery returns');
  // Every call after the clock carried a UsernameToken the simulator verified.
  assert.deepEqual(sim.operations().slice(0, 4), ['GetSystemDateAndTime', 'GetServices', 'GetDeviceInformation', 'GetProfiles']);
  assert.ok(sim.requests.filter((r) => r.authorized !== null).every((r) => r.authorized === true));

  // The snapshot URI serves a real JPEG of the main size, behind HTTP Digest.
  const jpeg = await camera().snapshot(d.snapshot_uri!);
  const meta = await sharp(jpeg).metadata();
  assert.deepEqual([meta.format, meta.width, meta.height], ['jpeg', 1280, 720]);
  assert.equal(sim.snapshotsServed, 1);

  // The discovered URIs are the real streams: with the camera's credentials added (as the recorder's
  // pull does), each plays at its profile's size.
  for (const [uri, size] of [[d.main_stream_uri!, '1280x720'], [d.sub_stream_uri!, '320x180']] as const) {
    const u = new URL(uri);
    u.username = encodeURIComponent(USER);
    u.password = encodeURIComponent(PASSWORD);
    const out = execFileSync('ffprobe', ['-v', 'error', '-rtsp_transport', 'tcp', '-select_streams', 'v:0', '-show_entries', 'stream=width,height', '-of', 'csv=p=0:s=x', u.toString()], { timeout: 20_000 }).toString().trim();
    assert.equal(out, size, `${uri} plays at ${size}`);
  }
});

test('a wrong password is an auth error (the simulator verified the digest and answered ter:NotAuthorized)', async () => {
  const before = sim.requests.length;
  await assert.rejects(camera('wrong-password').discover(), (err: unknown) => {
    assert.ok(err instanceof OnvifError);
    assert.equal(err.reason, 'auth');
    assert.match(err.message, /用户名或密码错误.*wrong ONVIF username or password/);
    assert.ok(!err.message.includes('wrong-password'), 'the password is not in the error');
    return true;
  });
  const refused = sim.requests.slice(before).filter((r) => r.authorized === false);
  assert.equal(refused.length, 1, 'one refused request, then discovery stopped');
});

test('a port without ONVIF is not_onvif (HTTP but not SOAP), a closed port or a silent one is unreachable', async () => {
  // A JSON API that answers 200 to anything.
  const json = http.createServer((_req, res) => res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}'));
  await new Promise<void>((r) => json.listen(0, '127.0.0.1', r));
  for (const [port, what] of [
    [(notOnvif.address() as AddressInfo).port, 'an HTML 404 page'],
    [(json.address() as AddressInfo).port, 'a JSON 200'],
  ] as const) {
    await assert.rejects(camera(PASSWORD, port).discover(), (err: unknown) => {
      assert.ok(err instanceof OnvifError, what);
      assert.equal(err.reason, 'not_onvif', `${what}: ${err.detail}`);
      return true;
    });
  }
  json.closeAllConnections();
  await new Promise<void>((r) => json.close(() => r()));
  const closed = http.createServer();
  await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
  const port = (closed.address() as AddressInfo).port;
  await new Promise<void>((r) => closed.close(() => r()));
  await assert.rejects(camera(PASSWORD, port).discover(), (err: unknown) => err instanceof OnvifError && err.reason === 'unreachable');
  // A device that accepts the connection and never answers: bounded by the deadline, not hung.
  const silent = http.createServer(() => undefined);
  await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
  const started = Date.now();
  await assert.rejects(
    new OnvifCamera({ host: '127.0.0.1', port: (silent.address() as AddressInfo).port, username: USER, password: PASSWORD, requestTimeoutMs: 500, timeoutMs: 3_000 }).discover(),
    (err: unknown) => err instanceof OnvifError && err.reason === 'unreachable',
  );
  assert.ok(Date.now() - started < 3_500, 'within the deadline');
  silent.closeAllConnections();
  await new Promise<void>((r) => silent.close(() => r()));
});
