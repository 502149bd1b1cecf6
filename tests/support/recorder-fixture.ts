import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Pool } from '../../infra/db/pool.ts';
import { startEmbeddedS3, type EmbeddedS3 } from '../../infra/storage/embedded-s3.ts';
import { ObjectStorage } from '../../infra/storage/ObjectStorage.ts';
import { createLogger } from '../../infra/logger.ts';
import { SegmentCapture } from '../../recorder/SegmentCapture.ts';
import type { RecorderConfig } from '../../recorder/config.ts';

// Shared set-up for recorder tests: a small org tree with cameras, a real S3-compatible server and
// helpers for event-driven waits.

export interface OrgFixture {
  cityId: number;
  countyId: number;
  townAId: number;
  townBId: number;
  villageAId: number;
  villageBId: number;
  paths: Record<'city' | 'county' | 'townA' | 'townB' | 'villageA' | 'villageB', string>;
}

export async function seedOrg(pool: Pool): Promise<OrgFixture> {
  const ins = async (parent: number | null, level: string, name: string): Promise<{ id: number; path: string }> => {
    const r = await pool.query<{ id: number; path: string }>('INSERT INTO units (parent_id, level, name) VALUES ($1, $2, $3) RETURNING id, path', [parent, level, name]);
    return r.rows[0]!;
  };
  const city = await ins(null, 'city', '潍坊市');
  const county = await ins(city.id, 'county', '青州市');
  const townA = await ins(county.id, 'town', '王府街道');
  const townB = await ins(county.id, 'town', '益都街道');
  const villageA = await ins(townA.id, 'village', '东村');
  const villageB = await ins(townB.id, 'village', '西村');
  return {
    cityId: city.id, countyId: county.id, townAId: townA.id, townBId: townB.id, villageAId: villageA.id, villageBId: villageB.id,
    paths: { city: city.path, county: county.path, townA: townA.path, townB: townB.path, villageA: villageA.path, villageB: villageB.path },
  };
}

export async function addCamera(pool: Pool, unitId: number, rtspUrl: string, name = '服务站摄像头'): Promise<number> {
  const r = await pool.query<{ id: number }>(
    `INSERT INTO cameras (unit_id, name, rtsp_url, username, password) VALUES ($1, $2, $3, 'admin', 'cam-secret-pw') RETURNING id`,
    [unitId, name, rtspUrl],
  );
  return r.rows[0]!.id;
}

export interface S3Fixture {
  dir: string;
  port: number;
  server: EmbeddedS3 | undefined;
  storage: ObjectStorage;
  /** Takes the S3 server down (connections refused). */
  stop(): Promise<void>;
  /** Brings it back on the same port with the same data. */
  start(): Promise<void>;
  close(): Promise<void>;
}

export async function startS3Fixture(bucket = 'recordings'): Promise<S3Fixture> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 's3-'));
  const first = await startEmbeddedS3(dir, 0);
  const fx: S3Fixture = {
    dir,
    port: first.port,
    server: first,
    storage: new ObjectStorage({ endPoint: first.endpoint, port: first.port, accessKey: first.accessKey, secretKey: first.secretKey, bucket }),
    async stop() {
      await fx.server?.close();
      fx.server = undefined;
    },
    async start() {
      fx.server ??= await startEmbeddedS3(dir, fx.port);
    },
    async close() {
      await fx.stop();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
  await fx.storage.ensureBucket();
  return fx;
}

/** Polls `fn` until it returns a value that is not undefined/false (e.g. a DB row appears). */
export async function waitFor<T>(what: string, fn: () => Promise<T | undefined | false> | T | undefined | false, timeoutMs: number, everyMs = 200): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

const tempDirs: string[] = [];
process.once('exit', () => {
  for (const d of tempDirs) fs.rmSync(d, { recursive: true, force: true });
});

/** A fresh directory under the OS temp dir, removed when the test process exits. */
export function tempDir(prefix: string): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  tempDirs.push(d);
  return d;
}

/** Resolves with the arguments of the first `event` for which `match` holds; rejects after the timeout. */
export function waitForEvent<A extends unknown[]>(
  emitter: { on(e: string, l: (...a: A) => void): unknown; off(e: string, l: (...a: A) => void): unknown },
  event: string,
  match: (...args: A) => boolean,
  timeoutMs: number,
): Promise<A> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      emitter.off(event, on);
      reject(new Error(`timed out after ${timeoutMs} ms waiting for ${event}`));
    }, timeoutMs);
    const on = (...args: A): void => {
      if (!match(...args)) return;
      clearTimeout(timer);
      emitter.off(event, on);
      resolve(args);
    };
    emitter.on(event, on);
  });
}

/**
 * Recorder settings shortened for tests (short segments, quick restarts and retries): the issue's
 * minutes become seconds through configuration, never through different code paths.
 */
export function fastRecorderConfig(spoolDir: string, segmentSeconds: number, overrides: Record<string, unknown> = {}) {
  return {
    spoolDir,
    recorderId: `test-${path.basename(spoolDir)}`,
    segmentSeconds,
    rtspTimeoutMs: 3_000,
    stallTimeoutMs: 6_000,
    restartBackoffMinMs: 500,
    restartBackoffMaxMs: 2_000,
    uploadRetryMinMs: 200,
    uploadRetryMaxMs: 1_000,
    jobPollMs: 250,
    startLeadMs: 6_000,
    ...overrides,
  };
}

/** A SegmentCapture of one camera as the recorder runs it (its transport setting; wall-clock timestamps). */
export function cameraCapture(name: string, url: string, transport: 'tcp' | 'udp' | 'auto', config: RecorderConfig): SegmentCapture {
  return new SegmentCapture({
    name,
    dir: config.spoolDir,
    config,
    log: createLogger('test-capture'),
    input: async () => ({
      url,
      label: name,
      rtspTransport: transport,
      inputOptions: ['-timeout', String(config.rtspTimeoutMs * 1000), '-use_wallclock_as_timestamps', '1', '-fflags', '+genpts+discardcorrupt'],
    }),
  });
}
