import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createTestDatabase } from '../support/database.ts';
import { migrateUp } from '../../infra/db/migrate.ts';

test('migrations run up from an empty database and re-run as a no-op', async () => {
  const db = await createTestDatabase({ migrate: false });
  try {
    const first = await migrateUp(db.url);
    assert.ok(first.length >= 1, 'at least one migration applied on an empty database');
    const again = await migrateUp(db.url);
    assert.deepEqual(again, [], 'second run applies nothing');
    const { rows } = await db.pool.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM information_schema.tables WHERE table_name IN ('units','users','cameras','audit_log')`,
    );
    assert.equal(rows[0]?.n, 4);
  } finally {
    await db.drop();
  }
});

test('unit paths are derived from the parent and levels must descend', async () => {
  const db = await createTestDatabase();
  try {
    const city = await db.pool.query<{ id: number; path: string }>(
      `INSERT INTO units (level, name) VALUES ('city', '潍坊市') RETURNING id, path`,
    );
    const cityRow = city.rows[0]!;
    assert.equal(cityRow.path, `${cityRow.id}.`);
    const county = await db.pool.query<{ id: number; path: string; depth: number }>(
      `INSERT INTO units (parent_id, level, name) VALUES ($1, 'county', '昌邑市') RETURNING id, path, depth`,
      [cityRow.id],
    );
    assert.equal(county.rows[0]!.path, `${cityRow.id}.${county.rows[0]!.id}.`);
    assert.equal(county.rows[0]!.depth, 1);
    await assert.rejects(
      db.pool.query(`INSERT INTO units (parent_id, level, name) VALUES ($1, 'city', 'x')`, [county.rows[0]!.id]),
      /a city cannot be placed under a county/,
    );
    // The audit log is append-only: an update or a delete of a row that exists is refused.
    await db.pool.query(`INSERT INTO audit_log (action) VALUES ('t')`);
    await assert.rejects(db.pool.query(`UPDATE audit_log SET action = 'x'`), /append-only/);
    await assert.rejects(db.pool.query(`DELETE FROM audit_log`), /append-only/);
  } finally {
    await db.drop();
  }
});
