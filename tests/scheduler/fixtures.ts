import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import type { Pool } from '../../infra/db/pool.ts';
import { setUnitRule } from '../../scheduler/obligations/rules.ts';
import { SmppChannel } from '../../scheduler/channels/SmppChannel.ts';
import { BeidouTerminal } from '../../scheduler/channels/BeidouTerminal.ts';
import { ManualClock } from '../../scheduler/clock.ts';
import { SchedulerService } from '../../scheduler/service.ts';
import { defaultReminderPolicy } from '../../scheduler/reminders/policy.ts';
import { SmsRouter } from '../../scheduler/channels/sms/SmsRouter.ts';
import { localCloudAgent } from '../support/cloud-sms-server.ts';
import { signAccessToken } from '../../infra/tokens.ts';

const run = promisify(execFile);

export type Clip = 'good' | 'black' | 'short' | 'frozen' | 'silent';

const clipArgs: Record<Clip, string[]> = {
  good: ['-f', 'lavfi', '-i', 'testsrc2=s=320x240:r=10:d=12', '-f', 'lavfi', '-i', 'sine=f=440:d=12'],
  black: ['-f', 'lavfi', '-i', 'color=c=black:s=320x240:r=10:d=12', '-f', 'lavfi', '-i', 'sine=f=440:d=12'],
  short: ['-f', 'lavfi', '-i', 'testsrc2=s=320x240:r=10:d=4', '-f', 'lavfi', '-i', 'sine=f=440:d=4'],
  // SMPTE bars do not move: a camera showing one still picture.
  frozen: ['-f', 'lavfi', '-i', 'smptebars=s=320x240:r=10:d=12', '-f', 'lavfi', '-i', 'sine=f=440:d=12'],
  silent: ['-f', 'lavfi', '-i', 'testsrc2=s=320x240:r=10:d=12', '-f', 'lavfi', '-i', 'anullsrc=r=44100:cl=mono:d=12'],
};

export const clipSeconds: Record<Clip, number> = { good: 12, black: 12, short: 4, frozen: 12, silent: 12 };

/** Real MP4 recordings made with ffmpeg, under <root>/<bucket>/clips/. */
export async function makeClips(root: string, bucket = 'recordings', which: Clip[] = ['good', 'black', 'short', 'frozen', 'silent']): Promise<void> {
  const dir = path.join(root, bucket, 'clips');
  await fs.mkdir(dir, { recursive: true });
  await Promise.all(
    which.map((c) =>
      run('ffmpeg', ['-y', '-hide_banner', '-loglevel', 'error', ...clipArgs[c], '-shortest',
        '-c:v', 'libx264', '-preset', 'ultrafast', '-pix_fmt', 'yuv420p', '-c:a', 'aac', '-b:a', '64k',
        path.join(dir, `${c}.mp4`)]),
    ),
  );
}

export async function tempDir(prefix: string): Promise<string> {
  return fs.mkdtemp(path.join(os.tmpdir(), prefix));
}

/** Points a new segment key at one of the clips (symlink), as the recorder would upload one. */
export async function addSegment(pool: Pool, root: string, cameraId: number, startsAt: Date, clip: Clip, bucket = 'recordings'): Promise<void> {
  const key = `cam${cameraId}/${startsAt.getTime()}-${clip}.mp4`;
  const file = path.join(root, bucket, key);
  await fs.mkdir(path.dirname(file), { recursive: true });
  await fs.symlink(path.join(root, bucket, 'clips', `${clip}.mp4`), file);
  await pool.query(
    `INSERT INTO recording_segments (camera_id, started_at, ended_at, bytes, video_codec, audio_codec, bucket, object_key)
     VALUES ($1, $2, $3, 1000, 'h264', 'aac', $4, $5)`,
    [cameraId, startsAt, new Date(startsAt.getTime() + clipSeconds[clip] * 1000), bucket, key],
  );
}

export interface Town {
  cityId: number;
  countyId: number;
  townId: number;
  otherTownId: number;
  branches: Array<{ id: number; unitId: number; cameraId: number; secretaryId: number; mobile: string }>;
  townSupervisor: { id: number; mobile: string };
  otherTownSupervisor: { id: number; mobile: string };
  countySupervisor: { id: number; mobile: string };
}

/**
 * The test world's national defaults: only the obligations in `keep` are owed, the others are switched
 * off nationally (a scenario for the test; a city could not switch off a statutory item, see rules.ts).
 */
export async function keepOnlyObligations(pool: Pool, keep: string[]): Promise<void> {
  await pool.query(`UPDATE obligation_rules SET enabled = (obligation = ANY($1::text[])) WHERE unit_id IS NULL`, [keep]);
}

/**
 * One village branch owing only a quarterly member meeting (8 s minimum), whose secretary takes
 * reminders over Beidou on `card`: what the Beidou tests send to. Returns the town and the secretary.
 */
export async function buildBeidouBranch(pool: Pool, card: string): Promise<{ town: Town; secretaryId: number }> {
  const town = await buildTown(pool, 1);
  await setUnitRule(pool, town.cityId, { obligation: 'member_meeting', period: 'quarter', requiredCount: 1, minDurationS: 8 });
  await keepOnlyObligations(pool, ['member_meeting']);
  await pool.query(`DELETE FROM members WHERE branch_id IN (SELECT id FROM branches WHERE name = '外村党支部')`);
  await pool.query(`DELETE FROM branches WHERE name = '外村党支部'`);
  const secretaryId = town.branches[0]!.secretaryId;
  await pool.query(`UPDATE members SET preferred_channel = 'beidou', beidou_card = $2 WHERE id = $1`, [secretaryId, card]);
  return { town, secretaryId };
}

/**
 * A city > county > two towns; the first town has `n` villages with one branch, camera and secretary each.
 * committee: every branch has a branch committee (2018 条例: >= 7 full members; set here as a fact).
 */
export async function buildTown(pool: Pool, n: number, opts: { committee?: boolean } = {}): Promise<Town> {
  const q = async (sql: string, params: unknown[]) => (await pool.query<{ id: number }>(sql, params)).rows[0]!.id;
  const cityId = await q(`INSERT INTO units (level, name) VALUES ('city', '潍坊市') RETURNING id`, []);
  const countyId = await q(`INSERT INTO units (parent_id, level, name) VALUES ($1, 'county', '昌乐县') RETURNING id`, [cityId]);
  const townId = await q(`INSERT INTO units (parent_id, level, name) VALUES ($1, 'town', '宝城街道') RETURNING id`, [countyId]);
  const otherTownId = await q(`INSERT INTO units (parent_id, level, name) VALUES ($1, 'town', '朱刘街道') RETURNING id`, [countyId]);
  const user = async (name: string, unitId: number, mobile: string) => {
    const id = await q(
      `INSERT INTO users (username, display_name, unit_id, role, password_hash) VALUES ($1, $1, $2, 'supervisor', 'x') RETURNING id`,
      [name, unitId],
    );
    await pool.query(`INSERT INTO notification_contacts (user_id, mobile) VALUES ($1, $2)`, [id, mobile]);
    return { id, mobile };
  };
  const townSupervisor = await user('sup_town', townId, '13900000001');
  const otherTownSupervisor = await user('sup_other', otherTownId, '13900000002');
  const countySupervisor = await user('sup_county', countyId, '13900000003');
  const branches: Town['branches'] = [];
  for (let i = 0; i < n; i++) {
    const unitId = await q(`INSERT INTO units (parent_id, level, name) VALUES ($1, 'village', $2) RETURNING id`, [townId, `${i + 1}村`]);
    const id = await q(`INSERT INTO branches (unit_id, name) VALUES ($1, $2) RETURNING id`, [unitId, `${i + 1}村党支部`]);
    const cameraId = await q(`INSERT INTO cameras (unit_id, name, rtsp_url) VALUES ($1, '站点', 'rtsp://127.0.0.1/cam') RETURNING id`, [unitId]);
    const mobile = `138${String(i).padStart(8, '0')}`;
    const secretaryId = await q(
      `INSERT INTO members (branch_id, name, is_secretary, mobile) VALUES ($1, $2, true, $3) RETURNING id`,
      [id, `书记${i + 1}`, mobile],
    );
    branches.push({ id, unitId, cameraId, secretaryId, mobile });
  }
  // A branch in the other town, so escalations can be seen not to leak across towns.
  const ou = await q(`INSERT INTO units (parent_id, level, name) VALUES ($1, 'village', '外村') RETURNING id`, [otherTownId]);
  const ob = await q(`INSERT INTO branches (unit_id, name) VALUES ($1, '外村党支部') RETURNING id`, [ou]);
  await pool.query(`INSERT INTO members (branch_id, name, is_secretary, mobile) VALUES ($1, '外村书记', true, '13700000000')`, [ob]);
  if (opts.committee) await pool.query(`UPDATE branches SET has_committee = true`);
  return { cityId, countyId, townId, otherTownId, branches, townSupervisor, otherTownSupervisor, countySupervisor };
}

/** Polls `pred` until it holds (event-driven waits where there is no event to hook). */
export async function waitUntil(pred: () => Promise<boolean> | boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await pred()) return;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * A started scheduler with both channels, SMS through the SMSC simulator on `smscPort` and Beidou on the
 * pty `beidouPath`, its clock inside the last 7 days of Q1 2026 (reminders due). Closing is pushed on `cleanups`.
 */
export async function startSmsAndBeidouScheduler(
  db: { pool: Pool; url: string },
  smscPort: number,
  beidouPath: string,
  cleanups: Array<() => Promise<unknown>>,
): Promise<SchedulerService> {
  let service: SchedulerService | undefined;
  const sms = new SmppChannel({ port: smscPort, systemId: 'sched', password: 'secret' }, async (r): Promise<void> => service?.onReceipt(r));
  cleanups.push(() => sms.close());
  const beidou = new BeidouTerminal({ path: beidouPath, feedbackTimeoutMs: 2000 });
  await beidou.open();
  cleanups.push(() => beidou.close());
  service = new SchedulerService({
    pool: db.pool, databaseUrl: db.url, clock: new ManualClock(new Date('2026-03-25T00:00:00Z')), policy: defaultReminderPolicy,
    channels: { sms, beidou }, periodsFrom: new Date('2025-12-31T16:00:00Z'),
  });
  await service.start();
  const started = service;
  cleanups.push(() => started.stop());
  return started;
}

/** The scheduler sending SMS through the per-unit provider table (SmsRouter), the providers' SDKs sent to this machine. */
export async function startCloudSmsScheduler(db: { pool: Pool; url: string }, cleanups: Array<() => Promise<unknown>>): Promise<SchedulerService> {
  let service: SchedulerService | undefined;
  const router = new SmsRouter(db.pool, { onReceipt: (r) => service?.onReceipt(r) }, { agent: localCloudAgent });
  cleanups.push(() => router.close());
  service = new SchedulerService({
    pool: db.pool, databaseUrl: db.url, clock: new ManualClock(new Date('2026-03-25T00:00:00Z')),
    policy: defaultReminderPolicy, channels: { sms: router }, periodsFrom: new Date('2025-12-31T16:00:00Z'),
  });
  await service.start();
  const started = service;
  cleanups.push(() => started.stop());
  return started;
}

/** A second county of the city with one village branch (北村, 寿光市 / 洛城街道) and its secretary. */
export async function addOtherCounty(pool: Pool, cityId: number, opts: { beidouCard?: string } = {}): Promise<{ countyId: number; villageId: number; branchId: number }> {
  const q = async (sql: string, p: unknown[]) => Number((await pool.query<{ id: number }>(sql, p)).rows[0]!.id);
  const countyId = await q(`INSERT INTO units (parent_id, level, name) VALUES ($1, 'county', '寿光市') RETURNING id`, [cityId]);
  const townId = await q(`INSERT INTO units (parent_id, level, name) VALUES ($1, 'town', '洛城街道') RETURNING id`, [countyId]);
  const villageId = await q(`INSERT INTO units (parent_id, level, name) VALUES ($1, 'village', '北村') RETURNING id`, [townId]);
  const branchId = await q(`INSERT INTO branches (unit_id, name) VALUES ($1, '北村党支部') RETURNING id`, [villageId]);
  await pool.query(`INSERT INTO members (branch_id, name, is_secretary, mobile, beidou_card) VALUES ($1, '北村书记', true, '13600000001', $2)`, [branchId, opts.beidouCard ?? null]);
  return { countyId, villageId, branchId };
}

/** An admin account of `unitId` (as the level above creates it) and a token signed with the API's `secret`. */
export async function adminToken(pool: Pool, secret: string, unitId: number, username: string): Promise<string> {
  const { rows } = await pool.query<{ id: number }>(
    `INSERT INTO users (username, display_name, unit_id, role, password_hash) VALUES ($1, $1, $2, 'admin', 'x') RETURNING id`, [username, unitId]);
  return signAccessToken(secret, { userId: Number(rows[0]!.id), username, role: 'admin', unitId }, 3600);
}
