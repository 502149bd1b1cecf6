import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { DEMO_PASSWORD, generateDemoOrganisation } from '../../infra/demo/generate.ts';
import { openDatabase } from '../../infra/db/open-database.ts';
import { createTestDatabase } from '../support/database.ts';
import { startHarness } from './harness.ts';

// The demo organisation: Weifang-sized, realistic Chinese names, deterministic, and the embedded
// default that starts a real PostgreSQL and fills it when no DATABASE_URL is given.

const HAN = /^[\u4e00-\u9fff0-9]+$/u;

test('the demo organisation is Weifang-sized, complete and usable', async () => {
  const h = await startHarness();
  try {
    const t0 = performance.now();
    const s = await generateDemoOrganisation(h.db.pool);
    const ms = performance.now() - t0;
    console.log(`# demo organisation generated in ${Math.round(ms)} ms`);
    assert.deepEqual(s.units, { city: 1, county: 12, town: 120, community: 1000, village: 9000 });
    const q = async (sql: string): Promise<Record<string, unknown>> => (await h.db.pool.query(sql)).rows[0];
    assert.deepEqual(await q(`SELECT count(*)::int AS n FROM units`), { n: 10_133 });
    // every unit below the city sits at the right depth under a parent one level up
    assert.deepEqual(await q(`SELECT count(*)::int AS n FROM units c JOIN units p ON p.id = c.parent_id WHERE unit_level_rank(c.level) <> unit_level_rank(p.level) + 1 OR c.depth <> p.depth + 1`), { n: 0 });
    const names = (await h.db.pool.query<{ name: string; level: string }>(`SELECT name, level FROM units`)).rows;
    for (const n of names) assert.match(n.name, HAN, `unit name ${n.name}`);
    assert.ok(names.filter((n) => n.level === 'village').every((n) => n.name.endsWith('村')));
    assert.ok(names.filter((n) => n.level === 'town').every((n) => /(镇|街道|乡)$/.test(n.name)));
    // names are unique among siblings
    assert.deepEqual(await q(`SELECT count(*)::int AS n FROM (SELECT parent_id, name FROM units GROUP BY 1, 2 HAVING count(*) > 1) d`), { n: 0 });
    // each community and village has a branch with exactly one secretary who can be reached
    assert.deepEqual(await q(`SELECT count(*)::int AS n FROM branches`), { n: 10_000 });
    assert.deepEqual(await q(`SELECT count(*)::int AS n FROM members WHERE is_secretary`), { n: 10_000 });
    assert.deepEqual(
      await q(`SELECT count(*)::int AS n FROM members WHERE is_secretary AND NOT ((preferred_channel = 'sms' AND mobile IS NOT NULL) OR (preferred_channel = 'beidou' AND beidou_card IS NOT NULL))`),
      { n: 0 },
    );
    const beidou = (await q(`SELECT count(*)::int AS n FROM members WHERE preferred_channel = 'beidou'`)).n as number;
    assert.ok(beidou > 50 && beidou < 2000, `${beidou} secretaries prefer Beidou`);
    // a station and a camera with credentials in every village; centres in towns, counties and the city
    assert.deepEqual(await q(`SELECT count(*)::int AS n FROM units v WHERE v.level = 'village' AND NOT EXISTS (SELECT 1 FROM cameras c WHERE c.unit_id = v.id AND c.password IS NOT NULL)`), { n: 0 });
    assert.deepEqual(await q(`SELECT count(*) FILTER (WHERE kind = 'station')::int AS s, count(*) FILTER (WHERE kind = 'centre')::int AS c FROM service_points`), { s: 9000, c: 133 });
    // SFU cascade: city root, counties under it, towns under their county
    assert.deepEqual(await q(`SELECT count(*)::int AS n FROM sfu_nodes WHERE parent_node_id IS NULL`), { n: 1 });
    assert.deepEqual(
      await q(`SELECT count(*)::int AS n FROM sfu_nodes n JOIN units u ON u.id = n.unit_id JOIN sfu_nodes p ON p.id = n.parent_node_id WHERE p.unit_id <> u.parent_id`),
      { n: 0 },
    );
    // users at each level sign in with the demo password
    const levels = new Set(s.users.map((u) => u.level));
    assert.deepEqual([...levels].sort(), ['city', 'community', 'county', 'town', 'village']);
    for (const username of ['wf.admin', s.users.find((u) => u.level === 'county')!.username, s.users.find((u) => u.level === 'village')!.username]) {
      const token = await h.login(username, DEMO_PASSWORD);
      assert.equal((await h.call('GET', '/api/units?limit=1', { token })).status, 200);
    }
    assert.ok(ms < 30_000);
  } finally {
    await h.close();
  }
});

test('the same seed gives the same organisation', async () => {
  const a = await createTestDatabase();
  const b = await createTestDatabase();
  try {
    const opts = { seed: 7, towns: 12, communities: 30, villages: 90 };
    await generateDemoOrganisation(a.pool, opts);
    await generateDemoOrganisation(b.pool, opts);
    const dump = async (db: typeof a): Promise<string> =>
      JSON.stringify(
        (await db.pool.query(`SELECT u.code, u.name, (SELECT string_agg(m.name || coalesce(m.mobile, ''), ',' ORDER BY m.id) FROM members m JOIN branches br ON br.id = m.branch_id WHERE br.unit_id = u.id) AS m FROM units u ORDER BY u.code`)).rows,
      );
    assert.equal(await dump(a), await dump(b));
    await assert.rejects(generateDemoOrganisation(a.pool, opts), /empty units table/);
  } finally {
    await a.drop();
    await b.drop();
  }
});

test('with DATABASE_URL the app uses that server and generates nothing unless asked', async () => {
  const db = await createTestDatabase({ migrate: false });
  try {
    const opened = await openDatabase({ DATABASE_URL: db.url, DATA_DIR: os.tmpdir() });
    try {
      assert.equal(opened.embedded, false);
      assert.equal(opened.seeded, false);
      const { rows } = await opened.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM units');
      assert.equal(rows[0]!.n, 0, 'migrated, not seeded');
    } finally {
      await opened.close();
    }
  } finally {
    await db.drop();
  }
});

test('without DATABASE_URL a real PostgreSQL is started in the data folder and filled with the demo', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'grassroots-embedded-'));
  fs.chmodSync(dir, 0o755); // PostgreSQL runs as its own OS user and must reach the folder
  try {
    const opened = await openDatabase({ DATA_DIR: dir, DATABASE_URL: undefined });
    try {
      assert.equal(opened.embedded, true);
      assert.equal(opened.seeded, true);
      assert.ok(fs.existsSync(path.join(dir, 'postgres', 'pg', 'PG_VERSION')), 'data folder holds the cluster');
      const { rows } = await opened.pool.query<{ v: string; n: number }>(`SELECT current_setting('server_version') AS v, (SELECT count(*)::int FROM units) AS n`);
      assert.equal(rows[0]!.n, 10_133);
      assert.match(rows[0]!.v, /^\d+/);
    } finally {
      await opened.close();
    }
    // a second start reuses the folder and does not generate again
    const again = await openDatabase({ DATA_DIR: dir, DATABASE_URL: undefined });
    try {
      assert.equal(again.seeded, false);
      const { rows } = await again.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM units');
      assert.equal(rows[0]!.n, 10_133);
    } finally {
      await again.close();
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('the demo city has branch facts and a quarter of history: most done, a minority overdue, a bounded first tick', async () => {
  const { createTestDatabase: makeDb } = await import('../support/database.ts');
  const { generateDemoHistory } = await import('../../infra/demo/history.ts');
  const { startEmbeddedS3 } = await import('../../infra/storage/embedded-s3.ts');
  const { ObjectStorage } = await import('../../infra/storage/ObjectStorage.ts');
  const { evaluateObligations } = await import('../../scheduler/obligations/evaluate.ts');
  const { SchedulerService } = await import('../../scheduler/service.ts');
  const { ManualClock } = await import('../../scheduler/clock.ts');
  const { defaultReminderPolicy } = await import('../../scheduler/reminders/policy.ts');
  const db = await makeDb();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'demo-history-s3-'));
  const s3 = await startEmbeddedS3(dir);
  let service: InstanceType<typeof SchedulerService> | undefined;
  try {
    await generateDemoOrganisation(db.pool, { seed: 11, towns: 12, communities: 40, villages: 260 });
    const q = async (sql: string): Promise<Record<string, number>> => (await db.pool.query(sql)).rows[0];
    // Facts: committees only with >= 7 full members; many branches have one; groups in large branches.
    assert.deepEqual(await q(`SELECT count(*)::int AS n FROM branches b WHERE has_committee
                                AND (SELECT count(*) FROM members m WHERE m.branch_id = b.id AND m.membership = 'full') < 7`), { n: 0 });
    const f = await q(`SELECT count(*) FILTER (WHERE has_committee)::int AS committees, count(*)::int AS branches,
                              (SELECT count(DISTINCT branch_id)::int FROM party_groups) AS with_groups,
                              (SELECT count(*) FILTER (WHERE membership = 'probationary')::float / count(*) FROM members) AS probationary
                         FROM branches`);
    assert.ok(f.committees! > f.branches! * 0.3 && f.committees! < f.branches!, JSON.stringify(f));
    assert.ok(f.with_groups! > 10 && f.with_groups! < f.branches! * 0.6, JSON.stringify(f));
    assert.ok(f.probationary! > 0.04 && f.probationary! < 0.2, JSON.stringify(f));
    assert.deepEqual(await q(`SELECT count(*)::int AS n FROM party_groups g WHERE leader_member_id IS NULL
                               OR NOT EXISTS (SELECT 1 FROM members m WHERE m.party_group_id = g.id)`), { n: 0 });

    const storage = new ObjectStorage({ endPoint: s3.endpoint, port: s3.port, useSSL: false, accessKey: s3.accessKey, secretKey: s3.secretKey, bucket: 'recordings' });
    await storage.ensureBucket();
    const at = new Date('2026-11-20T04:00:00Z'); // Q4; the history covers Q3 and Q4 so far
    const h = await generateDemoHistory(db.pool, { at, seed: 11, storage, maxRecordings: 25 });
    console.log(`# demo history: ${JSON.stringify(h)}`);
    assert.ok(h.flawed > 0 && h.missing > 0 && h.attendance > 0);
    assert.equal(h.recordings, 25);
    const seg = (await db.pool.query<{ object_key: string; thumb_key: string }>(`SELECT object_key, thumb_key FROM recording_segments LIMIT 1`)).rows[0]!;
    assert.ok((await storage.stat(seg.object_key)) !== undefined && (await storage.stat(seg.thumb_key)) !== undefined, 'real objects in S3');
    // The verdicts agree with the attendance: no member meeting judged passed without quorum.
    assert.deepEqual(await q(`SELECT count(*)::int AS n FROM session_obligations so JOIN meeting_sessions s ON s.id = so.session_id
                               WHERE so.obligation = 'member_meeting' AND so.passed
                                 AND (SELECT count(*) FILTER (WHERE a.status = 'present' AND m.membership = 'full') * 2
                                        FROM session_attendance a JOIN members m ON m.id = a.member_id WHERE a.session_id = s.id)
                                     <= (SELECT count(*) FROM members m WHERE m.branch_id = s.branch_id AND m.membership = 'full')`), { n: 0 });

    // The previous quarter as the dashboard shows it: most done, a minority overdue.
    const rows = (await evaluateObligations(db.pool, { at, unitPath: '' })).filter((r) => r.period_key === '2026-Q3');
    const share = (st: string) => rows.filter((r) => r.status === st).length / rows.length;
    console.log(`# 2026-Q3 rows: ${rows.length}; done ${share('done').toFixed(3)}, overdue ${share('overdue').toFixed(3)}`);
    assert.ok(rows.length > 500);
    assert.ok(share('done') > 0.8, `done ${share('done')}`);
    assert.ok(share('overdue') > 0.02 && share('overdue') < 0.15, `overdue ${share('overdue')}`);

    // The scheduler's first tick on the demo decides reminders for the overdue minority, not for everyone.
    const all = await evaluateObligations(db.pool, { at, unitPath: '' });
    // Over every obligation row the dashboard lists (this and the previous period of each kind, yearly items too).
    const overdueAll = all.filter((r) => r.status === 'overdue').length / all.length;
    console.log(`# all rows: ${all.length}; overdue ${overdueAll.toFixed(3)}`);
    assert.ok(overdueAll > 0.01 && overdueAll < 0.12, `overdue ${overdueAll}`);
    service = new SchedulerService({ pool: db.pool, databaseUrl: db.url, clock: new ManualClock(at), policy: defaultReminderPolicy, channels: {} });
    await service.start();
    const tick = await service.tick();
    console.log(`# first tick: ${tick.reminders} reminders for ${all.length} obligation rows`);
    assert.ok(tick.reminders > 0, 'the overdue branches are reminded');
    assert.ok(tick.reminders < all.length * 0.15, `${tick.reminders} reminders of ${all.length} rows`);
  } finally {
    await service?.stop();
    await s3.close();
    await db.drop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
