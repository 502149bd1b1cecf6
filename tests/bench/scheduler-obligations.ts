// Benchmark: evaluating obligations and completion for 10,000 branches and queuing 10,000 reminders
// (with their sends and pg-boss jobs), set-based vs a naive per-branch query loop.
// Run: NODE_ENV=test node --import tsx tests/bench/scheduler-obligations.ts [branches=10000] [naiveSample=1000]
import os from 'node:os';
import { createTestDatabase } from '../support/database.ts';
import { evaluateObligations, evaluateObligationsNaive } from '../../scheduler/obligations/evaluate.ts';
import { setUnitRule } from '../../scheduler/obligations/rules.ts';
import { keepOnlyObligations } from '../scheduler/fixtures.ts';
import { planReminders } from '../../scheduler/reminders/plan.ts';
import { defaultReminderPolicy } from '../../scheduler/reminders/policy.ts';
import { startQueue, queues } from '../../scheduler/jobs/queue.ts';
import { textFor } from '../../scheduler/reminders/messages.ts';

const N = Number(process.argv[2] ?? 10_000);
const SAMPLE = Number(process.argv[3] ?? 1000);
const TOWNS = 50;
const AT = new Date('2026-03-25T00:00:00Z'); // inside the last week of March / Q1: everything not done is at risk

const db = await createTestDatabase();
const ms = (t0: bigint) => Number(process.hrtime.bigint() - t0) / 1e6;
const fmt = (n: number) => Math.round(n).toLocaleString('en-US');
try {
  const t0 = process.hrtime.bigint();
  await db.pool.query(`INSERT INTO units (level, name) VALUES ('city', '市')`);
  await db.pool.query(`INSERT INTO units (parent_id, level, name) SELECT 1, 'county', '县' || g FROM generate_series(1, 5) g`);
  await db.pool.query(`INSERT INTO units (parent_id, level, name) SELECT 2 + (g % 5), 'town', '镇' || g FROM generate_series(1, $1::int) g`, [TOWNS]);
  await db.pool.query(
    `INSERT INTO units (parent_id, level, name)
     SELECT t.id, 'village', t.name || '村' || g FROM generate_series(1, $1::int) g
       JOIN (SELECT id, name, row_number() OVER (ORDER BY id) - 1 AS k FROM units WHERE level = 'town') t ON t.k = g % $2`,
    [N, TOWNS],
  );
  // Every branch has a committee (>= 7 full members), so committee meetings are owed as before the 2018 model.
  await db.pool.query(`INSERT INTO branches (unit_id, name, has_committee) SELECT id, name || '党支部', true FROM units WHERE level = 'village'`);
  await db.pool.query(`INSERT INTO members (branch_id, name, is_secretary, mobile) SELECT id, '书记', true, '138' || lpad(id::text, 8, '0') FROM branches`);
  await db.pool.query(`INSERT INTO users (username, display_name, unit_id, role, password_hash)
                       SELECT 'sup' || id, '督导', id, 'supervisor', 'x' FROM units WHERE level = 'town'`);
  await db.pool.query(`INSERT INTO notification_contacts (user_id, mobile) SELECT id, '139' || lpad(id::text, 8, '0') FROM users`);
  // 40% of branches held a committee meeting in March that passed its check; 10% one that failed.
  await db.pool.query(
    `WITH s AS (
       INSERT INTO meeting_sessions (branch_id, obligation, starts_at, ends_at)
       SELECT id, 'committee_meeting', '2026-03-10T02:00Z', '2026-03-10T03:00Z' FROM branches WHERE id % 10 < 5
       RETURNING id, branch_id)
     INSERT INTO completion_checks (session_id, passed, covered_s, required_s) SELECT id, branch_id % 10 < 4, 3600, 1800 FROM s`,
  );
  await db.pool.query('ANALYZE');
  console.log(`setup: ${fmt(N)} branches in ${TOWNS} towns, ${fmt(ms(t0))} ms; ${os.availableParallelism()} CPUs visible, load ${os.loadavg()[0]!.toFixed(2)}`);

  // 1. Evaluation, set-based, all branches, six obligations x (current, previous) period.
  for (let i = 0; i < 2; i++) {
    const t = process.hrtime.bigint();
    const rows = await evaluateObligations(db.pool, { at: AT });
    const d = ms(t);
    const atRisk = rows.filter((r) => r.status === 'at_risk').length;
    console.log(`evaluate set-based  (run ${i + 1}): ${fmt(rows.length)} (branch, obligation, period) rows in ${fmt(d)} ms = ${fmt((rows.length / d) * 1000)} rows/s, ${fmt((N / d) * 1000)} branches/s; at risk ${fmt(atRisk)}`);
  }
  // Same subtree for both methods: the first towns, about SAMPLE branches.
  const sub = await db.pool.query<{ path: string; n: number }>(
    `SELECT u.path, (SELECT count(*) FROM branches b JOIN units v ON v.id = b.unit_id WHERE v.path LIKE u.path || '%')::int AS n
       FROM units u WHERE level = 'town' ORDER BY id LIMIT $1`,
    [Math.max(1, Math.round((SAMPLE / N) * TOWNS))],
  );
  const sampleN = sub.rows.reduce((s, r) => s + r.n, 0);
  let naiveRows = 0;
  let tn = process.hrtime.bigint();
  for (const r of sub.rows) naiveRows += (await evaluateObligationsNaive(db.pool, { at: AT, unitPath: r.path })).length;
  const dn = ms(tn);
  let setRows = 0;
  tn = process.hrtime.bigint();
  for (const r of sub.rows) setRows += (await evaluateObligations(db.pool, { at: AT, unitPath: r.path })).length;
  const ds = ms(tn);
  console.log(`evaluate naive loop on ${fmt(sampleN)} branches: ${fmt(naiveRows)} rows in ${fmt(dn)} ms = ${fmt((naiveRows / dn) * 1000)} rows/s (extrapolated to ${fmt(N)}: ~${fmt((dn * N) / sampleN)} ms)`);
  console.log(`evaluate set-based on the same ${fmt(sampleN)} branches: ${fmt(setRows)} rows in ${fmt(ds)} ms (${(dn / ds).toFixed(1)}x faster)`);

  // 2. Queuing reminders: only the member meeting is owed (city rule), nobody has held it -> one
  // reminder, one send and one pg-boss job per branch.
  // (Switched off nationally for the scenario: a city may not switch off a statutory item.)
  await keepOnlyObligations(db.pool, ['member_meeting']);
  await setUnitRule(db.pool, 1, { obligation: 'member_meeting', period: 'quarter', requiredCount: 1, minDurationS: 60 });
  const boss = await startQueue(db.url);
  try {
    // Naive baseline on the sample: evaluate per branch, insert reminder, look up the secretary, insert the send, send the job.
    tn = process.hrtime.bigint();
    let naiveQueued = 0;
    for (const r of sub.rows) {
      const st = await evaluateObligationsNaive(db.pool, { at: AT, unitPath: r.path });
      for (const s of st) {
        if (s.status === 'done' || s.period_start > AT || AT >= s.period_end) continue;
        const ins = await db.pool.query<{ id: number }>(
          `INSERT INTO reminders (branch_id, obligation, period_key, period_end, step, target, due_at)
           VALUES ($1, $2, $3, $4, 'naive', 'secretary', $5) ON CONFLICT DO NOTHING RETURNING id`,
          [s.branch_id, s.obligation, s.period_key, s.period_end, AT],
        );
        if (!ins.rows[0]) continue;
        const m = await db.pool.query<{ id: number; mobile: string; bname: string; uname: string }>(
          `SELECT m.id, m.mobile, b.name AS bname, u.name AS uname FROM members m JOIN branches b ON b.id = m.branch_id
             JOIN units u ON u.id = b.unit_id WHERE m.branch_id = $1 AND m.is_secretary`, [s.branch_id]);
        const sec = m.rows[0]!;
        const body = textFor('sms', { target: 'secretary', branchName: sec.bname, unitName: sec.uname, obligation: s.obligation, period: s.period, periodKey: s.period_key, periodEnd: s.period_end, done: s.done_count, required: s.required_count });
        const send = await db.pool.query<{ id: number }>(
          `INSERT INTO message_sends (reminder_id, recipient_kind, recipient_id, channel, address, body) VALUES ($1, 'member', $2, 'sms', $3, $4) RETURNING id`,
          [ins.rows[0].id, sec.id, sec.mobile, body]);
        await boss.send(queues.sms, { sendId: send.rows[0]!.id });
        naiveQueued++;
      }
    }
    const dq = ms(tn);
    console.log(`queue naive loop on ${fmt(sampleN)} branches: ${fmt(naiveQueued)} reminders in ${fmt(dq)} ms = ${fmt((naiveQueued / dq) * 1000)} reminders/s (extrapolated to ${fmt(N)}: ~${fmt((dq * N) / Math.max(1, naiveQueued))} ms)`);
    await db.pool.query(`DELETE FROM reminders WHERE step = 'naive'`);
    await boss.purgeQueue(queues.sms);

    const tq = process.hrtime.bigint();
    const res = await planReminders(db.pool, boss, defaultReminderPolicy, AT);
    const dp = ms(tq);
    const jobs = await boss.getQueueSize(queues.sms);
    console.log(`queue set-based: ${fmt(res.reminders)} reminders + ${fmt(res.sends)} sends + ${fmt(jobs)} pg-boss jobs in ${fmt(dp)} ms = ${fmt((res.reminders / dp) * 1000)} reminders/s`);
    const again = process.hrtime.bigint();
    const res2 = await planReminders(db.pool, boss, defaultReminderPolicy, AT);
    console.log(`queue set-based, second pass (nothing new, exactly-once check): ${fmt(res2.reminders)} new in ${fmt(ms(again))} ms`);
  } finally {
    await boss.stop({ graceful: false, wait: true });
  }
} finally {
  await db.drop();
}
