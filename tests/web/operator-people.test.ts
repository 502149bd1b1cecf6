import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import type { Browser, Page } from 'playwright-core';
import { launchChromium } from '../support/browser.ts';
import { checkedScreenshot, signIn } from '../support/pages.ts';
import { startSystemHarness, type SystemHarness } from '../support/system-harness.ts';

// The console's people, branch, retire and audit pages in Chromium against the real API and
// PostgreSQL: a password reset by an admin forces its owner to choose a new one before anything else
// (pages and API); a disabled account cannot sign in; a branch gets its secretary with the contact
// the reminders need, the API's field errors shown by the field; deleting a camera with recordings
// asks first and then says what was kept; the audit log filters by person, unit and time and exports
// what it shows.

let h: SystemHarness;
let browser: Browser;
let admin: string;
let adminUnit: number;
let secretary: { username: string; id: number; unitId: number };
let village: { id: number; name: string };

before(async () => {
  h = await startSystemHarness({ towns: 2, communities: 4, villages: 8 });
  const town = await h.db.pool.query<{ parent_id: number }>('SELECT parent_id FROM units WHERE id = $1', [h.demo.unitIds.town[0]]);
  const a = h.demo.users.find((u) => u.role === 'admin' && u.level === 'county' && u.unitId === town.rows[0]!.parent_id)!;
  admin = a.username;
  adminUnit = a.unitId;
  const { rows } = await h.db.pool.query<{ id: number; username: string; unit_id: number; name: string }>(
    `SELECT x.id, x.username, x.unit_id, u.name FROM users x JOIN units u ON u.id = x.unit_id
      WHERE x.role = 'secretary' AND u.level = 'village' AND EXISTS (SELECT 1 FROM cameras c WHERE c.unit_id = u.id)
        AND u.path LIKE (SELECT path FROM units WHERE id = $1) || '%' ORDER BY x.id LIMIT 1`,
    [adminUnit],
  );
  secretary = { username: rows[0]!.username, id: rows[0]!.id, unitId: rows[0]!.unit_id };
  village = { id: rows[0]!.unit_id, name: rows[0]!.name };
  browser = await launchChromium();
});

after(async () => {
  await browser?.close();
  await h?.close();
});

async function tab(page: Page, name: string): Promise<void> {
  await page.getByRole('tab', { name }).click();
  await page.getByRole('tab', { name, selected: true }).waitFor();
}

const login = (username: string, password: string) => h.call<{ token: string; user: { must_change_password?: boolean } }>(undefined, 'POST', '/api/auth/login', { username, password });

test('an admin resets a password: its owner must choose a new one before anything else; a disabled account cannot sign in', { timeout: 90_000 }, async () => {
  const page = await signIn(browser, h.baseUrl, admin, h.demo.password);
  await tab(page, '人员账号');
  await page.getByPlaceholder('按用户名或姓名查找').fill(secretary.username);
  const searched = page.waitForResponse((r) => r.url().includes('/api/users?') && r.url().includes('q='));
  await page.getByRole('button', { name: '筛选' }).click();
  const found = (await (await searched).json()) as { items: Array<{ username: string }> };
  assert.deepEqual(found.items.map((u) => u.username), [secretary.username], 'the server-side search finds exactly the one account');
  const row = page.locator(`tr[data-user="${secretary.username}"]`);
  await page.waitForFunction(() => document.querySelectorAll('tr[data-user]').length === 1);
  await row.getByRole('button', { name: '重置密码' }).click();
  const reset = page.locator('form', { has: page.getByLabel('新密码（至少8位）') });
  await reset.getByLabel('新密码（至少8位）').fill('short');
  await reset.getByRole('button', { name: '保存' }).click();
  await reset.locator('.field-error', { hasText: '密码至少8位' }).waitFor();
  await reset.getByLabel('新密码（至少8位）').fill('Temporary@2026');
  await reset.getByRole('button', { name: '保存' }).click();
  await page.getByRole('status').filter({ hasText: '密码已重置' }).waitFor();

  // The old password is gone; the temporary one signs in but opens nothing but the change.
  assert.equal((await login(secretary.username, h.demo.password)).status, 401);
  const temp = await login(secretary.username, 'Temporary@2026');
  assert.equal(temp.status, 200);
  assert.equal(temp.body.user.must_change_password, true);
  const blocked = await h.call<{ error: { code: string } }>(temp.body.token, 'GET', '/api/service-points');
  assert.equal(blocked.status, 403);
  assert.equal(blocked.body.error.code, 'password_change_required');
  assert.equal((await h.call(temp.body.token, 'GET', '/api/auth/me')).status, 200);

  const sec = await signIn(browser, h.baseUrl, secretary.username, 'Temporary@2026');
  const form = sec.getByRole('form', { name: '修改密码' });
  await form.waitFor();
  await checkedScreenshot(sec, 'operator-change-password');
  const [current, next, again] = [form.getByLabel('当前密码'), form.getByLabel('新密码（至少8位）'), form.getByLabel('再次输入新密码')];
  await current.fill('not-the-password');
  await next.fill('MyOwn@2026x');
  await again.fill('MyOwn@2026x');
  await form.getByRole('button', { name: '保存' }).click();
  await form.locator('.field-error', { hasText: '当前密码不正确 / the current password is wrong' }).waitFor();
  await current.fill('Temporary@2026');
  await again.fill('MyOwn@2026y');
  await form.getByRole('button', { name: '保存' }).click();
  await form.locator('.field-error', { hasText: '两次输入的新密码不一致' }).waitFor();
  await again.fill('MyOwn@2026x');
  await form.getByRole('button', { name: '保存' }).click();
  // Then the secretary's own page, the kiosk.
  await sec.getByRole('link', { name: '村服务站' }).waitFor();
  await form.waitFor({ state: 'detached' });
  assert.equal((await login(secretary.username, 'Temporary@2026')).status, 401);
  const own = await login(secretary.username, 'MyOwn@2026x');
  assert.equal(own.body.user.must_change_password, undefined, 'the flag is gone');
  assert.equal((await h.call(own.body.token, 'GET', '/api/service-points')).status, 200);
  await sec.context().close();

  // Disable: refused at sign-in and on the token already held; enable again.
  await row.getByRole('button', { name: '停用' }).click();
  await row.getByRole('button', { name: '启用' }).waitFor();
  assert.equal((await login(secretary.username, 'MyOwn@2026x')).status, 401);
  assert.equal((await h.call(own.body.token, 'GET', '/api/service-points')).status, 401);
  await row.getByRole('button', { name: '启用' }).click();
  await row.getByRole('button', { name: '停用' }).waitFor();
  assert.equal((await login(secretary.username, 'MyOwn@2026x')).status, 200);
  await page.context().close();
});

test('a branch gets its secretary with the contact reminders need; the API\'s field errors show by the field', { timeout: 60_000 }, async () => {
  const page = await signIn(browser, h.baseUrl, admin, h.demo.password);
  await tab(page, '党支部');
  const add = page.getByRole('form', { name: '党支部' });
  await add.getByPlaceholder('按名称或编码查找单位').fill(village.name);
  await add.getByRole('button', { name: '查找' }).click();
  await add.locator('select option', { hasText: village.name }).first().waitFor({ state: 'attached' });
  await add.locator('input[name="branch-name"]').fill('示范第二党支部');
  await add.getByRole('button', { name: '新增' }).click();
  await page.getByRole('status').filter({ hasText: '示范第二党支部' }).waitFor();
  const b = await h.db.pool.query<{ id: number; unit_id: number }>("SELECT id, unit_id FROM branches WHERE name = '示范第二党支部'");
  assert.equal(b.rows[0]!.unit_id, village.id);
  const branchId = b.rows[0]!.id;

  // Find it through the list's unit filter, then add its secretary.
  const filter = page.locator('form.row').first();
  await filter.getByPlaceholder('按名称或编码查找单位').fill(village.name);
  await filter.getByRole('button', { name: '查找' }).click();
  await filter.locator('select option', { hasText: village.name }).first().waitFor({ state: 'attached' });
  await filter.locator('select').selectOption({ index: 1 });
  await filter.getByRole('button', { name: '筛选' }).click();
  await page.locator(`tr[data-branch="${branchId}"]`).getByRole('button').first().click();
  const member = page.getByRole('form', { name: '党员' });
  await member.locator('input[name="member-name"]').fill('李书记');
  await member.getByLabel('书记').check();
  await member.locator('select').selectOption('beidou');
  await member.getByRole('button', { name: '新增' }).click();
  // Beidou chosen without a card: refused, with the reason by the channel field, nothing written.
  await member.locator('.field-error', { hasText: '首选渠道缺少对应号码' }).waitFor();
  assert.equal((await h.db.pool.query('SELECT 1 FROM members WHERE branch_id = $1', [branchId])).rowCount, 0);
  await member.locator('input[name="beidou_card"]').fill('12a');
  await member.getByRole('button', { name: '新增' }).click();
  await member.locator('.field-error', { hasText: '北斗卡号为6-8位数字' }).waitFor();
  await member.locator('input[name="beidou_card"]').fill('1234567');
  await member.getByRole('button', { name: '新增' }).click();
  await page.locator('tr[data-member]', { hasText: '李书记' }).waitFor();
  const m = await h.db.pool.query<{ is_secretary: boolean; beidou_card: string; preferred_channel: string }>('SELECT is_secretary, beidou_card, preferred_channel FROM members WHERE branch_id = $1', [branchId]);
  assert.deepEqual(m.rows[0], { is_secretary: true, beidou_card: '1234567', preferred_channel: 'beidou' });
  await checkedScreenshot(page, 'operator-branches');
  await page.context().close();
});

test('deleting asks first and says what was kept; a unit with data shows what depends on it and cannot be deleted', { timeout: 60_000 }, async () => {
  const { rows } = await h.db.pool.query<{ id: number; name: string }>('SELECT id, name FROM cameras WHERE unit_id = $1 ORDER BY id LIMIT 1', [village.id]);
  const cam = rows[0]!;
  await h.db.pool.query(
    `INSERT INTO recording_segments (camera_id, started_at, ended_at, bytes, video_codec, bucket, object_key)
     VALUES ($1, now() - interval '2 minutes', now() - interval '1 minute', 1000, 'h264', 'recordings', 'test/retire-1.mp4')`,
    [cam.id],
  );
  const page = await signIn(browser, h.baseUrl, admin, h.demo.password);
  await tab(page, '摄像机');
  await page.getByPlaceholder('按名称查找').fill(cam.name);
  await page.getByRole('button', { name: '筛选' }).click();
  const row = page.locator(`tr[data-camera="${cam.id}"]`);
  // Moving the camera to another port drops its stored credentials (they would go to another
  // device), and the page says so instead of leaving a camera that silently stops working.
  const before = (await h.db.pool.query<{ rtsp_url: string; username: string | null; password: string | null }>('SELECT rtsp_url, username, password FROM cameras WHERE id = $1', [cam.id])).rows[0]!;
  assert.ok(before.username && before.password, 'the demo camera has credentials');
  await row.getByRole('button', { name: '编辑' }).click();
  await page.locator('input[name="rtsp_url"]').fill(before.rtsp_url.replace(/^(rtsps?:\/\/[^/:?#]+)(:\d+)?/, '$1:10554'));
  await page.locator('form', { has: page.locator('input[name="rtsp_url"]') }).getByRole('button', { name: '保存' }).click();
  await page.getByRole('status').filter({ hasText: '原账号密码已清除' }).waitFor();
  const after = (await h.db.pool.query<{ username: string | null; password: string | null }>('SELECT username, password FROM cameras WHERE id = $1', [cam.id])).rows[0]!;
  assert.deepEqual(after, { username: null, password: null });
  await row.getByRole('button', { name: '删除' }).click();
  const ask = page.getByRole('dialog');
  await ask.getByText('历史与证据全部保留').waitFor();
  await ask.getByRole('button', { name: '取消' }).click();
  assert.equal((await h.db.pool.query('SELECT retired_at FROM cameras WHERE id = $1 AND retired_at IS NULL', [cam.id])).rowCount, 1, 'cancel changes nothing');
  await row.getByRole('button', { name: '删除' }).click();
  await page.getByRole('dialog').getByRole('button', { name: '确认' }).click();
  await page.getByRole('status').filter({ hasText: '已撤销，保留的数据' }).filter({ hasText: '录像片段 1' }).waitFor();
  await row.waitFor({ state: 'detached' });
  const kept = await h.db.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM recording_segments WHERE camera_id = $1', [cam.id]);
  assert.equal(kept.rows[0]!.n, 1, 'the recording is kept');

  // The village still holds a station and its branch: deleting it is refused and the page says why.
  await tab(page, '组织机构');
  await page.getByPlaceholder('按名称或编码查找单位').fill(village.name);
  await page.getByRole('button', { name: '查找' }).click();
  await page.locator(`tr[data-unit="${village.id}"]`).getByRole('button', { name: '删除' }).click();
  const dialog = page.getByRole('dialog');
  await dialog.getByText('单位下仍有数据').waitFor();
  assert.match((await dialog.textContent())!, /服务站点: 1/);
  assert.equal(await dialog.getByRole('button', { name: '确认' }).count(), 0, 'no way to confirm the deletion of a unit with data');
  await page.context().close();
});

test('the audit log filters by person, unit and time on the server and exports what it shows', { timeout: 60_000 }, async () => {
  const page = await signIn(browser, h.baseUrl, admin, h.demo.password);
  await tab(page, '审计日志');
  await page.locator('tr[data-audit]').first().waitFor();
  const form = page.locator('form.row').first();
  await form.getByLabel('操作人').fill(secretary.username);
  await form.getByPlaceholder('按名称或编码查找单位').fill(village.name);
  await form.getByRole('button', { name: '查找' }).click();
  await form.locator('select option', { hasText: village.name }).first().waitFor({ state: 'attached' });
  await form.locator('#audit-unit').selectOption({ index: 1 });
  const local = (d: Date) => new Date(d.getTime() - d.getTimezoneOffset() * 60_000).toISOString().slice(0, 16);
  await form.getByLabel('截止时间').fill(local(new Date(Date.now() + 60 * 60_000)));
  const answered = page.waitForResponse((r) => r.url().includes('/api/audit?') && r.url().includes('username='));
  await form.getByRole('button', { name: '筛选' }).click();
  const res = await answered;
  assert.match(res.url(), /under=\d+/);
  assert.match(res.url(), /until=/);
  const body = (await res.json()) as { items: Array<{ username: string; unit_id: number }> };
  assert.ok(body.items.length >= 3, `the secretary's sign-ins and password change are listed (${body.items.length})`);
  assert.ok(body.items.every((i) => i.username === secretary.username && i.unit_id === village.id));
  await page.waitForFunction((n) => document.querySelectorAll('tr[data-audit]').length === n, body.items.length);
  await checkedScreenshot(page, 'operator-audit-filtered');

  const download = page.waitForEvent('download');
  await form.getByRole('button', { name: '导出 CSV' }).click();
  const file = await (await download).path();
  const csv = fs.readFileSync(file, 'utf8').replace(/^\ufeff/, '').trim().split(/\r\n/);
  assert.equal(csv[0], 'id,at,user_id,username,action,object_type,object_id,unit_id,ip,detail');
  assert.equal(csv.length - 1, body.items.length, 'the export holds what the filter selects');
  assert.ok(csv.slice(1).every((l) => l.split(',')[3] === secretary.username));
  assert.ok(csv.some((l) => l.includes('user.password_change')));
  await page.context().close();
});

test('cameras and accounts import from CSV: bad lines are named and nothing is written; a good file previews, then writes', { timeout: 60_000 }, async () => {
  const { rows: codes } = await h.db.pool.query<{ code: string; inside: boolean }>(
    `SELECT code, path LIKE (SELECT path FROM units WHERE id = $1) || '%' AS inside FROM units WHERE level = 'village' ORDER BY id`,
    [adminUnit],
  );
  const mine = codes.filter((c) => c.inside).map((c) => c.code);
  const elsewhere = codes.find((c) => !c.inside)!.code;
  const count = async (table: string) => (await h.db.pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${table}`)).rows[0]!.n;
  const page = await signIn(browser, h.baseUrl, admin, h.demo.password);

  await tab(page, '摄像机');
  const cams = page.getByRole('region', { name: '从表格批量导入摄像机' });
  const camerasBefore = await count('cameras');
  const badCams = [
    'unit_code,name,rtsp_url,username,password,location',
    `${elsewhere},别县摄像机,rtsp://10.2.0.1/ch1,,,`,
    `${mine[0]},带密码地址,rtsp://u:p@10.2.0.2/ch1,,,`,
    `${mine[1]},村口摄像机,rtsp://10.2.0.3/ch1,admin,cam-import-pw-1,村口`,
  ].join('\n');
  await cams.locator('textarea').fill(badCams);
  await cams.getByRole('button', { name: '预览' }).click();
  await cams.getByTestId('import-issues').waitFor();
  const camLines = await cams.locator('tr[data-line]').evaluateAll((rs) => rs.map((r) => `${r.getAttribute('data-line')}:${r.children[1]!.textContent}`));
  assert.deepEqual(camLines.sort(), ['2:unit_code', '3:rtsp_url'], 'another county\'s code reads as unknown; an address with credentials is refused');
  assert.equal(await count('cameras'), camerasBefore);
  const goodCams = [badCams.split('\n')[0], `${mine[0]},村委会摄像机,rtsp://10.2.0.2/ch1,,,`, badCams.split('\n')[3]].join('\n');
  await cams.locator('textarea').fill(goodCams);
  await cams.getByRole('button', { name: '预览' }).click();
  await cams.getByTestId('import-preview').waitFor();
  assert.equal(await count('cameras'), camerasBefore, 'a preview writes nothing');
  await cams.getByRole('button', { name: '确认导入' }).click();
  await cams.getByTestId('import-done').waitFor();
  const made = await h.db.pool.query<{ name: string; code: string; password: string | null }>(
    `SELECT c.name, u.code, c.password FROM cameras c JOIN units u ON u.id = c.unit_id WHERE c.rtsp_url LIKE 'rtsp://10.2.0.%' ORDER BY c.name`,
  );
  assert.deepEqual(made.rows, [
    { name: '村口摄像机', code: mine[1], password: 'cam-import-pw-1' },
    { name: '村委会摄像机', code: mine[0], password: null },
  ]);

  await tab(page, '人员账号');
  const users = page.getByRole('region', { name: '从表格批量导入账号' });
  const usersBefore = await count('users');
  const header = 'unit_code,username,display_name,role,password';
  await users.locator('textarea').fill([header, `${mine[0]},${secretary.username},重名,secretary,Initial@2026`, `${mine[0]},imp.king,国王,king,Initial@2026`, `${mine[1]},imp.clerk,张三,clerk,Initial@2026`].join('\n'));
  await users.getByRole('button', { name: '预览' }).click();
  await users.getByTestId('import-issues').waitFor();
  const userLines = await users.locator('tr[data-line]').evaluateAll((rs) => rs.map((r) => `${r.getAttribute('data-line')}:${r.children[1]!.textContent}`));
  assert.deepEqual(userLines.sort(), ['2:username', '3:role']);
  assert.match((await users.locator('tr[data-line="2"]').textContent())!, /用户名已被使用/);
  assert.equal(await count('users'), usersBefore);
  await users.locator('textarea').fill([header, `${mine[0]},imp.secretary,李四,secretary,Initial@2026`, `${mine[1]},imp.clerk,张三,clerk,Initial@2026`].join('\n'));
  await users.getByRole('button', { name: '预览' }).click();
  await users.getByTestId('import-preview').waitFor();
  await users.getByRole('button', { name: '确认导入' }).click();
  await users.getByTestId('import-done').waitFor();
  assert.equal(await count('users'), usersBefore + 2);
  const first = await login('imp.clerk', 'Initial@2026');
  assert.equal(first.status, 200);
  assert.equal(first.body.user.must_change_password, true, 'imported accounts change their password at first sign-in');
  // A role is changed in the list.
  await page.getByPlaceholder('按用户名或姓名查找').fill('imp.clerk');
  await page.getByRole('button', { name: '筛选' }).click();
  await page.waitForFunction(() => document.querySelectorAll('tr[data-user]').length === 1);
  await page.getByLabel('角色 imp.clerk').selectOption('secretary');
  await page.getByRole('status').filter({ hasText: 'imp.clerk → 支部书记' }).waitFor();
  const role = await h.db.pool.query<{ role: string }>("SELECT role FROM users WHERE username = 'imp.clerk'");
  assert.equal(role.rows[0]!.role, 'secretary');
  await checkedScreenshot(page, 'operator-users-import');
  await page.context().close();
});

test('a station\'s services are edited with the API\'s errors by the field; a station with calls is retired and keeps them; the console reads in English', { timeout: 60_000 }, async () => {
  const { rows: points } = await h.db.pool.query<{ id: number }>("SELECT id FROM service_points WHERE unit_id = $1 AND kind = 'station'", [village.id]);
  const station = points[0]!.id;
  const { rows: centres } = await h.db.pool.query<{ id: number }>("SELECT id FROM service_points WHERE unit_id = $1 AND kind = 'centre'", [adminUnit]);
  await h.db.pool.query(`INSERT INTO service_calls (station_id, centre_id, service, state, ended_at) VALUES ($1, $2, 'legal_aid', 'closed', now())`, [station, centres[0]!.id]);

  const page = await signIn(browser, h.baseUrl, admin, h.demo.password);
  await tab(page, '服务站点');
  const filter = page.locator('form.row').first();
  await filter.getByPlaceholder('按名称或编码查找单位').fill(village.name);
  await filter.getByRole('button', { name: '查找' }).click();
  await filter.locator('select option', { hasText: village.name }).first().waitFor({ state: 'attached' });
  await filter.locator('#point-filter-unit').selectOption({ index: 1 });
  await filter.getByRole('button', { name: '筛选' }).click();
  const row = page.locator(`tr[data-point="${station}"]`);
  await row.getByRole('button', { name: '编辑' }).click();
  const edit = page.locator('form', { has: page.locator('input[name="point-services"]') });
  await edit.locator('input[name="point-services"]').fill('legal_aid, Bad-Key');
  await edit.getByRole('button', { name: '保存' }).click();
  await edit.locator('.field-error', { hasText: 'service key' }).waitFor();
  await edit.locator('input[name="point-services"]').fill('legal_aid, pension');
  await edit.getByRole('button', { name: '保存' }).click();
  await row.getByText('legal_aid, pension').waitFor();
  const s = await h.db.pool.query<{ services: string[] }>('SELECT services FROM service_points WHERE id = $1', [station]);
  assert.deepEqual(s.rows[0]!.services, ['legal_aid', 'pension']);

  await row.getByRole('button', { name: '删除' }).click();
  await page.getByRole('dialog').getByRole('button', { name: '确认' }).click();
  await page.getByRole('status').filter({ hasText: '服务通话 1' }).waitFor();
  await row.waitFor({ state: 'detached' });
  const kept = await h.db.pool.query<{ retired: boolean; calls: number }>(
    'SELECT retired_at IS NOT NULL AS retired, (SELECT count(*)::int FROM service_calls WHERE station_id = $1) AS calls FROM service_points WHERE id = $1',
    [station],
  );
  assert.deepEqual(kept.rows[0], { retired: true, calls: 1 }, 'retired, with its call history');

  await page.getByRole('button', { name: 'English' }).click();
  await page.getByRole('tab', { name: 'Service points', selected: true }).waitFor();
  for (const name of ['Organisation', 'People', 'Party branches', 'Cameras', 'SFU nodes', 'Audit log']) await page.getByRole('tab', { name }).waitFor();
  await page.getByRole('link', { name: 'Administration' }).waitFor();
  await checkedScreenshot(page, 'operator-service-points-en');
  await page.context().close();
});

test("a slow answer to the tree's first page does not overwrite a search the operator started meanwhile", { timeout: 60_000 }, async () => {
  const page = await signIn(browser, h.baseUrl, admin, h.demo.password);
  await tab(page, '摄像机');
  // Hold the organisation panel's first list (the children of the admin's unit) until the search is answered.
  const held: Array<import('playwright-core').Route> = [];
  await page.route(/\/api\/units\?.*parent_id=/, (route) => void held.push(route));
  await tab(page, '组织机构');
  await page.waitForFunction(() => true); // let the panel mount and ask
  await page.getByPlaceholder('按名称或编码查找单位').fill(village.name);
  await page.getByRole('button', { name: '查找' }).click();
  const found = page.locator(`tr[data-unit="${village.id}"]`);
  await found.waitFor();
  assert.ok(held.length >= 1, 'the first page was held');
  const late = page.waitForResponse(/\/api\/units\?.*parent_id=/);
  for (const r of held) await r.continue();
  await late;
  await page.unroute(/\/api\/units\?.*parent_id=/);
  // Give the page the turn in which the late answer would have replaced the list.
  await page.evaluate(() => new Promise((r) => requestAnimationFrame(() => r(null))));
  assert.equal(await found.count(), 1, 'the searched village is still listed after the late first page arrived');
  const shown = await page.locator('tr[data-unit]').count();
  const { rows } = await h.db.pool.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM units WHERE name LIKE '%' || $1 || '%' AND path LIKE (SELECT path FROM units WHERE id = $2) || '%'`,
    [village.name, adminUnit],
  );
  assert.equal(shown, Math.min(rows[0]!.n, 20), 'the list is the search result, not the first page');
  await page.context().close();
});
