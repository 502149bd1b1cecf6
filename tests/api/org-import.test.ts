import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { hashPassword } from '../../infra/auth/password.ts';
import { startHarness, type Harness } from './harness.ts';

// Org tree import: a 10,000-unit file in one request, and broken files rejected with their line
// numbers and nothing written.

let h: Harness;
let token: string;

interface Issue {
  line: number;
  field?: string;
  message: string;
}

async function unitCount(): Promise<number> {
  return (await h.db.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM units')).rows[0]!.n;
}

function issuesOf(body: unknown): Issue[] {
  return (body as { error: { details: { issues: Issue[] } } }).error.details.issues;
}

before(async () => {
  h = await startHarness();
  const { rows } = await h.db.pool.query<{ id: number }>(`INSERT INTO units (level, name, code) VALUES ('city', '潍坊市', '370700') RETURNING id`);
  await h.db.pool.query(`INSERT INTO units (parent_id, level, name, code) VALUES ($1, 'county', '寿光市', '370783')`, [rows[0]!.id]);
  await h.db.pool.query(`INSERT INTO users (username, display_name, unit_id, role, password_hash) VALUES ('imp', '管理员', $1, 'admin', $2)`, [
    rows[0]!.id,
    await hashPassword('import-2026'),
  ]);
  token = await h.login('imp', 'import-2026');
});

after(async () => {
  await h?.close();
});

test('a 10,000-unit CSV is imported in one request', async () => {
  // 10 counties x 9 towns x 10 communities x 10 villages = 10 + 90 + 900 + 9,000 = 10,000 units
  const lines = ['code,parent_code,level,name'];
  for (let c = 1; c <= 10; c++) {
    const cc = `K${c}`;
    lines.push(`${cc},370700,county,第${c}区`);
    for (let t = 1; t <= 9; t++) {
      const tc = `${cc}T${t}`;
      lines.push(`${tc},${cc},town,第${t}镇`);
      for (let m = 1; m <= 10; m++) {
        const mc = `${tc}M${m}`;
        lines.push(`${mc},${tc},社区,"第${m}社区"`);
        for (let v = 1; v <= 10; v++) lines.push(`${mc}V${v},${mc},村,第${v}村`);
      }
    }
  }
  assert.equal(lines.length - 1, 10_000);
  const before = await unitCount();
  const t0 = performance.now();
  const r = await h.call('POST', '/api/org/import', { token, raw: lines.join('\n') + '\n', contentType: 'text/csv' });
  const ms = performance.now() - t0;
  assert.equal(r.status, 201, r.text.slice(0, 500));
  assert.deepEqual(r.body, { created: 10_000, by_level: { county: 10, town: 90, community: 900, village: 9000 }, dry_run: false });
  assert.equal(await unitCount(), before + 10_000);
  // What was written, level by level (read from the database, not from the answer). No timing bound:
  // the request's time is printed as a figure only (a loaded CI machine says nothing about correctness).
  const written = await h.db.pool.query<{ level: string; n: number }>(
    `SELECT level, count(*)::int AS n FROM units WHERE code LIKE 'K%' GROUP BY level ORDER BY level`);
  assert.deepEqual(Object.fromEntries(written.rows.map((x) => [x.level, x.n])), { community: 900, county: 10, town: 90, village: 9000 });
  const named = await h.db.pool.query<{ name: string; level: string }>(`SELECT name, level FROM units WHERE code = 'K10T9M10'`);
  assert.deepEqual(named.rows, [{ name: '第10社区', level: 'community' }], 'the Chinese level alias 社区 and the quoted name are read');
  console.log(`# 10,000-unit import: ${Math.round(ms)} ms`);
  // The tree is wired correctly: a village's path runs through its community, town, county and the city.
  const { rows } = await h.db.pool.query<{ path: string; depth: number; chain: string }>(
    `SELECT v.path, v.depth, (SELECT string_agg(a.code, '>' ORDER BY a.depth) FROM units a WHERE v.path LIKE a.path || '%') AS chain
     FROM units v WHERE v.code = 'K7T3M4V9'`,
  );
  assert.equal(rows[0]!.depth, 4);
  assert.equal(rows[0]!.chain, '370700>K7>K7T3>K7T3M4>K7T3M4V9');
  const sub = await h.db.pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM units WHERE path LIKE (SELECT path FROM units WHERE code = 'K2') || '%'`);
  assert.equal(sub.rows[0]!.n, 1 + 9 + 90 + 900);
  const audit = await h.db.pool.query(`SELECT detail FROM audit_log WHERE action = 'org.import'`);
  assert.equal(audit.rows[0].detail.created, 10_000);
});

test('a broken CSV is rejected with every problem and its line, and nothing is written', async () => {
  const csv = [
    'code,parent_code,level,name', // 1
    'B1,370700,county,好区', // 2  fine
    'B2,B1,hamlet,坏层级', // 3  bad level
    'B3,B1,town,好镇', // 4  fine
    'B3,B1,town,重复镇', // 5  duplicate code
    'B4,B1,town,', // 6  empty name
    'B5,NOPE,town,无上级', // 7  unknown parent
    'B6,B3,community,好社区', // 8  fine
    'B7,B6,town,层级颠倒', // 9  town under a community
    'b 8,B3,village,坏编码', // 10 bad code
    '370783,370700,county,已存在', // 11 code already used
    'B9,,town,无上级编码', // 12 missing parent_code
  ].join('\n');
  const before = await unitCount();
  const r = await h.call('POST', '/api/org/import', { token, raw: csv, contentType: 'text/csv' });
  assert.equal(r.status, 422, r.text);
  const issues = issuesOf(r.body);
  assert.deepEqual(
    issues.map((i) => [i.line, i.field]),
    [
      [3, 'level'],
      [5, 'code'],
      [6, 'name'],
      [7, 'parent_code'],
      [9, 'level'],
      [10, 'code'],
      [11, 'code'],
      [12, 'parent_code'],
    ],
  );
  assert.match(issues[1]!.message, /first on line 4/);
  assert.match((r.body as { error: { message: string } }).error.message, /nothing written/);
  assert.equal(await unitCount(), before, 'nothing written');
  const rej = await h.db.pool.query(`SELECT count(*)::int AS n FROM audit_log WHERE action = 'org.import_rejected'`);
  assert.equal(rej.rows[0].n, 1);
});

test('structural CSV errors and parent cycles are reported with lines', async () => {
  const before = await unitCount();
  const unclosed = await h.call('POST', '/api/org/import', { token, raw: 'code,parent_code,level,name\nC1,370700,county,a\nC2,C1,town,"open\n', contentType: 'text/csv' });
  assert.equal(unclosed.status, 422);
  assert.equal(issuesOf(unclosed.body)[0]!.line, 3);
  const header = await h.call('POST', '/api/org/import', { token, raw: 'id,name\n1,a\n', contentType: 'text/csv' });
  assert.equal(header.status, 422);
  assert.match(issuesOf(header.body)[0]!.message, /missing columns: code, parent_code, level/);
  const cycle = await h.call('POST', '/api/org/import', {
    token,
    raw: 'code,parent_code,level,name\nX1,X3,village,a\nX2,X1,village,b\nX3,X2,village,c\n',
    contentType: 'text/csv',
  });
  assert.equal(cycle.status, 422);
  assert.ok(issuesOf(cycle.body).length >= 1);
  assert.equal((await h.call('POST', '/api/org/import', { token, raw: '', contentType: 'text/csv' })).status, 400);
  assert.equal(await unitCount(), before);
});

test('JSON import: valid arrays import, errors point at the line of the item', async () => {
  const good = JSON.stringify(
    [
      { code: 'J1', parent_code: '370783', level: 'town', name: '洛城街道' },
      { code: 'J2', parent_code: 'J1', level: 'community', name: '东关社区' },
      { code: 'J3', parent_code: 'J2', level: 'village', name: '王家庄村' },
    ],
    null,
    2,
  );
  const ok = await h.call('POST', '/api/org/import', { token, raw: good, contentType: 'application/json' });
  assert.equal(ok.status, 201, ok.text);
  assert.equal((ok.body as { created: number }).created, 3);

  const before = await unitCount();
  const bad = '[\n  {"code": "J4", "parent_code": "J1", "level": "community", "name": "好"},\n  {"code": "J5", "parent_code": "J1",\n   "level": "county", "name": "坏"},\n  "not an object"\n]';
  const r = await h.call('POST', '/api/org/import', { token, raw: bad, contentType: 'application/json' });
  assert.equal(r.status, 422, r.text);
  assert.deepEqual(issuesOf(r.body).map((i) => i.line), [3, 5]);
  // a syntax error points at the line (or, where the parser gives no position, the item's first line)
  const syntax = await h.call('POST', '/api/org/import', {
    token,
    raw: '[\n {"code": "J6", "parent_code": "J1", "level": "community", "name": "a"},\n {"code": "J7",\n "name": }\n]',
    contentType: 'application/json',
  });
  assert.equal(syntax.status, 422);
  assert.ok([3, 4].includes(issuesOf(syntax.body)[0]!.line), syntax.text);
  const comma = await h.call('POST', '/api/org/import', { token, raw: '[\n{"code": "J8"\n "name": "x"}\n]', contentType: 'application/json' });
  assert.equal(comma.status, 422);
  assert.equal(issuesOf(comma.body)[0]!.line, 3, comma.text);
  assert.equal(await unitCount(), before);
});

test('a dry run validates against the database but writes nothing', async () => {
  const before = await unitCount();
  const r = await h.call('POST', '/api/org/import?dry_run=true', { token, raw: 'code,parent_code,level,name\nD1,370783,town,试运行镇\n', contentType: 'text/csv' });
  assert.equal(r.status, 201, r.text);
  assert.deepEqual(r.body, { created: 1, by_level: { town: 1 }, dry_run: true });
  assert.equal(await unitCount(), before);
});
