import type { AddressInfo } from 'node:net';
import type http from 'node:http';
import { createLogger } from '../../infra/logger.ts';
import { ObjectStorage } from '../../infra/storage/ObjectStorage.ts';
import { startEmbeddedS3, type EmbeddedS3 } from '../../infra/storage/embedded-s3.ts';
import { tmpDir } from './browser.ts';
import { generateDemoOrganisation, type DemoSummary } from '../../infra/demo/generate.ts';
import { SfuNode } from '../../sfu/SfuNode.ts';
import { Recorder } from '../../recorder/Recorder.ts';
import { RoomRecordings } from '../../recorder/RoomRecordings.ts';
import { CASCADE_SECRET } from './cascade-harness.ts';
import { fastRecorderConfig } from './recorder-fixture.ts';
import { attendanceRecorderOf, createWebServer } from '../../web/server.ts';
import type { AttendanceRecorder } from '../../web/attendance-recorder.ts';
import { createTestDatabase, type TestDatabase } from './database.ts';
import { TEST_SECRET } from './sfu-harness.ts';
import { TEST_JOIN_KEYS } from './join-keys.ts';
import { SfuNodeHosts } from '../../infra/sfu-node-hosts.ts';
import { rtcPortRange } from './rtc-ports.ts';
import type { TurnCredentials } from '../../infra/turn/TurnCredentials.ts';
import { CameraNetworks } from '../../infra/net/CameraNetworks.ts';

/** SFU_NODE_HOSTS of the test systems: loopback and the reserved *.example names (the demo's nodes among them). */
export const TEST_SFU_NODE_HOSTS = 'loopback,*.example';

export interface SystemHarness {
  db: TestDatabase;
  demo: DemoSummary;
  sfu: SfuNode;
  /** The recordings store (an embedded S3 server) when started with `storage: true`. */
  storage?: ObjectStorage;
  /** With `recorder: true`: the recorder and the face-to-face recording coordinator on this node. */
  recorder?: Recorder;
  recordings?: RoomRecordings;
  server: http.Server;
  /** Writes meeting attendance from this node's rooms (as in `npm start`). */
  attendance: AttendanceRecorder;
  /** ws:// URL of this node's browser signalling, and of its cascade endpoint for child nodes. */
  wsUrl: string;
  cascadeUrl: string;
  baseUrl: string;
  /** Signs in through the API; returns the bearer token. */
  login(username: string): Promise<string>;
  /** JSON request as a signed-in user (or anonymous with token undefined). */
  call<T = Record<string, unknown>>(token: string | undefined, method: string, path: string, body?: unknown): Promise<{ status: number; body: T }>;
  close(): Promise<void>;
}

/** The people-facing system on a fresh database with a small demo organisation. */
export async function startSystemHarness(
  opts: {
    towns?: number;
    communities?: number;
    villages?: number;
    /** An S3 server for recordings; `recorder` adds a recorder (2 s segments) and call recordings. */
    storage?: boolean;
    /** S3_PUBLIC_URL's host: presigned URLs name http://<this>:<S3 port> (e.g. 'localhost' beside the internal 127.0.0.1). */
    s3PublicHost?: string;
    recorder?: boolean;
    /** Folder of films chairs can broadcast. */
    filmsDir?: string;
    /** Short-lived join tokens, to test rejoining after they expire. */
    joinTokenTtlSeconds?: number;
    /** Makes this node the root of a cascade (children dial `cascadeUrl` with CASCADE_SECRET) and sends browsers to their nearest registered node. */
    cascadeRoot?: string;
    /** The web server's deadline for request headers (slow-client tests). */
    headersTimeoutMs?: number;
    /** Live inspection caps (per node, per person). */
    liveCameras?: { maxCameras?: number; maxPerUser?: number; cameraProbeIntervalMs?: number };
    /** MEETING_OPEN_MAX_SITES (default 8) and MEETING_ROTATION_SECONDS (default 10). */
    meetings?: { openMaxSites?: number; rotationSeconds?: number };
    /** SFU_NODE_HOSTS; default loopback and the reserved *.example names the tests and the demo use. */
    sfuNodeHosts?: string;
    /** CAMERA_NETWORKS for the API's camera routes; default as an unset environment gives (private, loopback). */
    cameraNetworks?: string;
    /** The SFU's media address (default 127.0.0.1), e.g. one only some network namespaces can route to. */
    listenIp?: string;
    /** TURN credentials handed out with each join (infra/turn/). */
    turn?: TurnCredentials;
  } = {},
): Promise<SystemHarness> {
  const db = await createTestDatabase();
  const demo = await generateDemoOrganisation(db.pool, { towns: opts.towns ?? 2, communities: opts.communities ?? 4, villages: opts.villages ?? 18 });
  const ports = rtcPortRange(1000);
  const sfu = new SfuNode({
    joinKey: TEST_JOIN_KEYS.publicKey,
    ...(opts.cascadeRoot
      ? { cascade: { nodeId: opts.cascadeRoot, unitId: demo.unitIds.city[0]!, secret: CASCADE_SECRET, admission: 'grant', pipeListenIp: '127.0.0.1', pingIntervalMs: 1000, unsubscribeLingerMs: 300 } }
      : {}),
    numWorkers: 1,
    listenIp: opts.listenIp ?? '127.0.0.1',
    ...(opts.turn ? { turn: opts.turn } : {}),
    webRtcBasePort: 0,
    rtcMinPort: ports.rtcMinPort,
    rtcMaxPort: ports.rtcMaxPort,
    logger: createLogger('sfu-test'),
  });
  await sfu.start();
  let s3: EmbeddedS3 | undefined;
  let storage: ObjectStorage | undefined;
  if (opts.storage || opts.recorder) {
    s3 = await startEmbeddedS3(tmpDir('harness-s3-'));
    storage = new ObjectStorage({ endPoint: s3.endpoint, port: s3.port, useSSL: false, accessKey: s3.accessKey, secretKey: s3.secretKey, bucket: 'recordings', ...(opts.s3PublicHost ? { publicUrl: `http://${opts.s3PublicHost}:${s3.port}` } : {}) });
    await storage.ensureBucket();
  }
  let recorder: Recorder | undefined;
  let recordings: RoomRecordings | undefined;
  if (opts.recorder && storage) {
    recorder = await Recorder.start({ pool: db.pool, storage, config: fastRecorderConfig(tmpDir('harness-spool-'), 2), log: createLogger('recorder-test') });
    recordings = new RoomRecordings({ sfu, recorder, audioWaitMs: 1500 });
  }
  const server = createWebServer({
    pool: db.pool,
    tokenSecret: TEST_SECRET,
    joinKey: TEST_JOIN_KEYS.privateKey,
    sfu,
    ...(storage ? { storage } : {}),
    ...(recordings ? { recordings } : {}),
    routing: opts.cascadeRoot ? 'nearest' : 'local',
    sfuNodeHosts: new SfuNodeHosts(opts.sfuNodeHosts ?? TEST_SFU_NODE_HOSTS),
    ...(opts.cameraNetworks !== undefined ? { cameraNetworks: new CameraNetworks(opts.cameraNetworks) } : {}),
    ...(opts.filmsDir ? { filmsDir: opts.filmsDir } : {}),
    ...(opts.joinTokenTtlSeconds ? { joinTokenTtlSeconds: opts.joinTokenTtlSeconds } : {}),
    ...(opts.headersTimeoutMs ? { headersTimeoutMs: opts.headersTimeoutMs } : {}),
    ...(opts.liveCameras ? { liveCameras: opts.liveCameras } : {}),
    ...(opts.meetings ? { meetings: opts.meetings } : {}),
  });
  const attendance = attendanceRecorderOf(server)!;
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  const baseUrl = `http://127.0.0.1:${port}`;
  const call: SystemHarness['call'] = async (token, method, path, body) => {
    const res = await fetch(baseUrl + path, {
      method,
      headers: { ...(body !== undefined ? { 'content-type': 'application/json' } : {}), ...(token ? { authorization: `Bearer ${token}` } : {}) },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    });
    return { status: res.status, body: (await res.json().catch(() => ({}))) as never };
  };
  return {
    db,
    demo,
    sfu,
    ...(storage ? { storage } : {}),
    ...(recorder && recordings ? { recorder, recordings } : {}),
    server,
    attendance,
    baseUrl,
    wsUrl: `ws://127.0.0.1:${port}/sfu`,
    cascadeUrl: `ws://127.0.0.1:${port}/cascade`,
    call,
    async login(username) {
      const r = await call<{ token: string }>(undefined, 'POST', '/api/auth/login', { username, password: demo.password });
      if (r.status !== 200) throw new Error(`login ${username}: ${r.status} ${JSON.stringify(r.body)}`);
      return r.body.token;
    },
    async close() {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
      await attendance.close();
      await recordings?.close();
      await recorder?.close({ drain: true, drainTimeoutMs: 5_000 });
      await sfu.close();
      ports.release();
      await s3?.close();
      await db.drop();
    },
  };
}
