import { test } from 'node:test';
import assert from 'node:assert/strict';
import { migrateUp } from '../../infra/db/migrate.ts';
import { createTestDatabase } from '../support/database.ts';

// The org/access migration (0002) on top of tests/infra/migrations.test.ts: applied from empty,
// re-run as a no-op, and its constraint keeps camera credentials out of the URL column.

test('0002 applies from empty, re-runs as a no-op and guards the RTSP URL', async () => {
  const db = await createTestDatabase({ migrate: false });
  try {
    const first = await migrateUp(db.url);
    assert.ok(first.includes('0002_org_access'), `applied: ${first.join(', ')}`);
    assert.ok(first.indexOf('0001_core') < first.indexOf('0002_org_access'));
    assert.deepEqual(await migrateUp(db.url), []);
    const { rows: idx } = await db.pool.query<{ indexname: string }>(`SELECT indexname FROM pg_indexes WHERE indexname IN ('units_level_path_idx', 'audit_log_object_idx', 'units_path_idx')`);
    assert.equal(idx.length, 3);
    const { rows } = await db.pool.query<{ id: number }>(`INSERT INTO units (level, name) VALUES ('city', '潍坊市') RETURNING id`);
    const unit = rows[0]!.id;
    await assert.rejects(
      db.pool.query(`INSERT INTO cameras (unit_id, name, rtsp_url) VALUES ($1, 'x', 'rtsp://admin:12345@10.0.0.1/ch1')`, [unit]),
      /cameras_rtsp_url_no_userinfo/,
    );
    await db.pool.query(`INSERT INTO cameras (unit_id, name, rtsp_url, username, password) VALUES ($1, 'x', 'rtsp://10.0.0.1:554/ch1?user=x', 'admin', '12345')`, [unit]);
  } finally {
    await db.drop();
  }
});
