import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SubtreeStatsCache } from '../../web/api/subtree-stats-cache.ts';

// The dashboard counts' cache: concurrent requests share one computation; only slow answers are kept,
// and only for the TTL; cheap ones (a village's, asked before its deletion is confirmed) are always fresh.

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test('concurrent requests share one computation; a slow answer is kept for the TTL, then recomputed', async () => {
  const cache = new SubtreeStatsCache<{ n: number }>({ ttlMs: 400, slowMs: 50 });
  let runs = 0;
  const slow = async () => {
    runs++;
    await sleep(80);
    return { n: runs };
  };
  const first = await Promise.all(Array.from({ length: 8 }, () => cache.get(1, slow)));
  assert.equal(runs, 1, 'eight dashboards opened at once: one computation');
  assert.ok(first.every((r) => r.value.n === 1 && !r.cached));
  const kept = await cache.get(1, slow);
  assert.equal(runs, 1);
  assert.equal(kept.cached, true);
  assert.equal(kept.computedAt.getTime(), first[0]!.computedAt.getTime(), 'the answer says when it was computed');
  const other = await cache.get(2, slow);
  assert.equal(other.value.n, 2, 'another unit is its own entry');
  await sleep(450);
  const again = await cache.get(1, slow);
  assert.equal(again.cached, false, 'recomputed after the TTL');
  assert.equal(again.value.n, 3);
});

test('a cheap answer is never kept; a zero TTL keeps nothing; the oldest entries go first', async () => {
  const cache = new SubtreeStatsCache<number>({ ttlMs: 60_000, slowMs: 50 });
  let runs = 0;
  const fast = async () => ++runs;
  assert.equal((await cache.get(7, fast)).value, 1);
  assert.equal((await cache.get(7, fast)).value, 2, 'a cheap count is fresh every time');

  const off = new SubtreeStatsCache<number>({ ttlMs: 0, slowMs: 0 });
  let offRuns = 0;
  await off.get(1, async () => ++offRuns);
  await off.get(1, async () => ++offRuns);
  assert.equal(offRuns, 2);

  const small = new SubtreeStatsCache<number>({ ttlMs: 60_000, slowMs: 0, maxEntries: 2 });
  let n = 0;
  for (const unit of [1, 2, 3]) await small.get(unit, async () => ++n);
  assert.equal((await small.get(3, async () => ++n)).cached, true);
  assert.equal((await small.get(1, async () => ++n)).cached, false, 'unit 1 was pushed out by the bound');
});

test('a failed computation is not kept and the next request tries again', async () => {
  const cache = new SubtreeStatsCache<number>({ ttlMs: 60_000, slowMs: 0 });
  await assert.rejects(cache.get(1, async () => { throw new Error('database away'); }), /database away/);
  assert.equal((await cache.get(1, async () => 5)).value, 5);
});
