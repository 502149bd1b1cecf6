import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { createTestDatabase } from '../support/database.ts';
import { openPtyPair } from '../support/pty-pair.ts';
import { BeidouTerminalSim } from '../support/beidou-terminal-sim.ts';
import { BeidouTerminal } from '../../scheduler/channels/BeidouTerminal.ts';
import { ManualClock } from '../../scheduler/clock.ts';
import { SchedulerService } from '../../scheduler/service.ts';
import { defaultReminderPolicy } from '../../scheduler/reminders/policy.ts';
import { buildBeidouBranch, waitUntil } from '../scheduler/fixtures.ts';

// A Beidou reminder split into numbered frames loses its transmission half-way (no signal): the retry
// resumes at the frame that failed, so the card never shows "(1/n)" twice.

const cleanups: Array<() => Promise<unknown>> = [];
after(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => undefined);
});

test('transmission suppressed at frame 2: the retry resumes at frame 2, each frame reaches the terminal once', async () => {
  const db = await createTestDatabase();
  cleanups.push(() => db.drop());
  const pty = await openPtyPair();
  cleanups.push(() => pty.close());
  const sim = new BeidouTerminalSim(pty.b, { card: '0242407', intervalS: 1, level: 2 });
  await sim.open();
  cleanups.push(() => sim.close());
  const card = '0300001';
  await buildBeidouBranch(db.pool, card);
  await db.pool.query(`UPDATE branches SET name = name || '第一网格党小组联合议事会'`);

  // One suppressed answer is final for a frame here, so the failure reaches the dispatcher.
  // Numbered frames on purpose (not the short form), so there is a frame 2 to lose.
  const beidou = new BeidouTerminal({ path: pty.a, feedbackTimeoutMs: 2000, maxAttempts: 1, suppressedBackoffMs: 50, tooLong: 'split' });
  await beidou.open();
  cleanups.push(() => beidou.close());
  const service = new SchedulerService({
    pool: db.pool, databaseUrl: db.url, clock: new ManualClock(new Date('2026-03-25T00:00:00Z')),
    policy: defaultReminderPolicy, channels: { beidou }, periodsFrom: new Date('2025-12-31T16:00:00Z'),
    dispatcher: { maxAttempts: 5, retryBaseMs: 100, retryMaxMs: 1000 },
  });
  await service.start();
  cleanups.push(() => service.stop());

  assert.equal((await service.tick()).sends, 1);
  await waitUntil(() => sim.accepted.length === 1, 10_000, 'frame 1 out');
  (sim as unknown as { opts: { suppressNext: number } }).opts.suppressNext = 1;
  await waitUntil(async () => {
    const q = await db.pool.query<{ state: string }>(`SELECT state FROM message_sends`);
    return q.rows[0]?.state === 'sent';
  }, 20_000, 'the send completed');
  const texts = sim.accepted.filter((m) => m.to === card).map((m) => m.text);
  const n = texts.length;
  assert.ok(n >= 2, `a multi-frame message: ${JSON.stringify(texts)}`);
  assert.deepEqual(texts.map((t) => /^\((\d+)\/(\d+)\)/.exec(t)?.slice(1).join('/')), Array.from({ length: n }, (_, i) => `${i + 1}/${n}`),
    `each frame once, in order: ${JSON.stringify(texts)}`);
  const events = await db.pool.query<{ detail: string }>(`SELECT detail FROM message_send_events ORDER BY id`);
  assert.ok(events.rows.some((e) => /suppressed/.test(e.detail ?? '')), `the suppression happened: ${JSON.stringify(events.rows)}`);
});
