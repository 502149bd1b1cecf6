import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import type { Browser, Page } from 'playwright-core';
import { launchChromium } from '../support/browser.ts';
import { checkedScreenshot, signIn, waitUntil } from '../support/pages.ts';
import { RtspServer } from '../support/rtsp-server.ts';
import { TestCamera } from '../support/rtsp-camera.ts';
import { startSystemHarness, type SystemHarness } from '../support/system-harness.ts';

// The operator's console in Chromium against the real backend (API, PostgreSQL, recorder with an
// embedded S3, ffmpeg, a real RTSP server with a password): a county admin adds a village and its
// secretary, the county's operator adds the village's camera, "test now" tells a wrong password from
// a wrong path and then shows a snapshot, and a capture lands in recordings — all through pages. An
// org import with errors writes nothing; a good one previews, then writes. The other county sees
// none of it: 404 from the API, absent in its pages.

const CAM_USER = 'cam';
const CAM_PASS = 'right-pass-7';
const WRONG_PASS = 'wrong-pass-3';
const VILLAGE = '示范新村';
const SECRETARY = 'v.demo.secretary';
const CAMERA = '示范新村大门摄像机';

let h: SystemHarness;
let browser: Browser;
let rtsp: RtspServer;
let camera: TestCamera;
let admin: string;
let operator: string;
let outsider: string;
let county: { id: number; code: string; path: string };
let village: { id: number } | undefined;
let secretaryId: number | undefined;
let cameraId: number | undefined;

before(async () => {
  h = await startSystemHarness({ towns: 2, communities: 4, villages: 8, recorder: true });
  // A camera with a password, checked by Digest as most IP cameras do.
  rtsp = await RtspServer.start(0, '127.0.0.1', { auth: { scheme: 'digest', username: CAM_USER, password: CAM_PASS } });
  camera = new TestCamera({ server: rtsp, path: 'demo/gate', audio: 'none' });
  await camera.start();
  const countyAdmins = h.demo.users.filter((u) => u.role === 'admin' && u.level === 'county');
  // The county that has towns in this small demo, and another one.
  const town = await h.db.pool.query<{ parent_id: number }>('SELECT parent_id FROM units WHERE id = $1', [h.demo.unitIds.town[0]]);
  const mine = countyAdmins.find((u) => u.unitId === town.rows[0]!.parent_id)!;
  admin = mine.username;
  operator = h.demo.users.find((u) => u.role === 'operator' && u.unitId === mine.unitId)!.username;
  outsider = countyAdmins.find((u) => u.unitId !== mine.unitId)!.username;
  const c = await h.db.pool.query<{ id: number; code: string; path: string }>('SELECT id, code, path FROM units WHERE id = $1', [mine.unitId]);
  county = c.rows[0]!;
  browser = await launchChromium();
});

after(async () => {
  await browser?.close();
  await camera?.stop();
  await rtsp?.close();
  await h?.close();
});

async function tab(page: Page, name: string): Promise<void> {
  await page.getByRole('tab', { name }).click();
  await page.getByRole('tab', { name, selected: true }).waitFor();
}

/** Chooses a unit in a form's unit picker by searching its name. */
async function pickUnit(page: Page, form: string, unitName: string): Promise<void> {
  const f = page.getByRole('form', { name: form });
  await f.getByPlaceholder('按名称或编码查找单位').fill(unitName);
  await f.getByRole('button', { name: '查找' }).click();
  await f.locator('select').first().locator('option', { hasText: unitName }).first().waitFor({ state: 'attached' });
  await f.locator('select').first().selectOption({ label: (await f.locator('select').first().locator('option', { hasText: unitName }).first().textContent())! });
}

test('a county admin adds a village and its secretary; the county operator adds its camera, tests it, fixes it and records it, all through pages', { timeout: 180_000 }, async () => {
  const page = await signIn(browser, h.baseUrl, admin, h.demo.password);
  // Admins land on the console, not the kiosk.
  await page.getByRole('tab', { name: '组织机构', selected: true }).waitFor();
  const countyName = (await h.db.pool.query<{ name: string }>('SELECT name FROM units WHERE id = $1', [county.id])).rows[0]!.name;
  await page.getByTestId('current-unit').getByText(countyName).waitFor();

  // Down to a community: county -> town -> community.
  await page.locator('tr[data-unit] button', { hasText: '进入' }).first().click();
  await page.getByTestId('current-unit').filter({ hasNotText: countyName }).waitFor();
  await page.locator('tr[data-unit] button', { hasText: '进入' }).first().click();
  await page.getByRole('form', { name: '新增下级单位' }).locator('select').locator('option:checked', { hasText: '村' }).waitFor({ state: 'attached' });
  const community = (await page.getByTestId('current-unit').textContent())!;

  // A bad code: the API's bilingual message next to the field, nothing written.
  const addForm = page.getByRole('form', { name: '新增下级单位' });
  await addForm.locator('input[name="unit-name"]').fill(VILLAGE);
  await addForm.locator('input[name="unit-code"]').fill('bad code!');
  await addForm.getByRole('button', { name: '新增' }).click();
  await addForm.locator('.field-error', { hasText: '编码须为1-32位字母数字 / code' }).waitFor();
  assert.equal((await h.db.pool.query('SELECT 1 FROM units WHERE name = $1', [VILLAGE])).rowCount, 0, 'a refused form writes nothing');

  await addForm.locator('input[name="unit-code"]').fill('SFX-001');
  await addForm.getByRole('button', { name: '新增' }).click();
  await page.locator('tr[data-unit]', { hasText: VILLAGE }).waitFor();
  const v = await h.db.pool.query<{ id: number; level: string; parent: string }>(
    `SELECT u.id, u.level, p.name AS parent FROM units u JOIN units p ON p.id = u.parent_id WHERE u.name = $1`,
    [VILLAGE],
  );
  assert.equal(v.rowCount, 1);
  assert.equal(v.rows[0]!.level, 'village');
  assert.equal(v.rows[0]!.parent, community.trim(), 'the village sits under the community the page was showing');
  village = { id: v.rows[0]!.id };
  await checkedScreenshot(page, 'operator-org');

  // Its secretary.
  await tab(page, '人员账号');
  await pickUnit(page, '用户', VILLAGE);
  const userForm = page.getByRole('form', { name: '用户' });
  await userForm.locator('input[name="username"]').fill(SECRETARY);
  await userForm.locator('input[name="display_name"]').fill('王书记');
  await userForm.locator('select[name="role"]').selectOption('secretary');
  await userForm.locator('input[name="password"]').fill('short');
  await userForm.getByRole('button', { name: '新增' }).click();
  await userForm.locator('.field-error', { hasText: '密码至少8位' }).waitFor();
  await userForm.locator('input[name="password"]').fill('Secretary@2026');
  await userForm.getByRole('button', { name: '新增' }).click();
  await page.getByRole('status').filter({ hasText: SECRETARY }).waitFor();
  const s = await h.db.pool.query<{ id: number; unit_id: number; role: string }>('SELECT id, unit_id, role FROM users WHERE username = $1', [SECRETARY]);
  assert.deepEqual({ unit: s.rows[0]!.unit_id, role: s.rows[0]!.role }, { unit: village.id, role: 'secretary' });
  secretaryId = s.rows[0]!.id;
  // The new secretary can sign in with that password.
  assert.equal((await h.call(undefined, 'POST', '/api/auth/login', { username: SECRETARY, password: 'Secretary@2026' })).status, 200);
  await checkedScreenshot(page, 'operator-people');

  // The county's operator: cameras first; people and the audit log are not theirs.
  const op = await signIn(browser, h.baseUrl, operator, h.demo.password);
  await op.getByRole('tab', { name: '摄像机', selected: true }).waitFor();
  assert.equal(await op.getByRole('tab', { name: '人员账号' }).count(), 0, 'an operator has no people tab');
  assert.equal(await op.getByRole('tab', { name: '审计日志' }).count(), 0, 'an operator has no audit tab');
  await pickUnit(op, '摄像机', VILLAGE);
  const camForm = op.getByRole('form', { name: '摄像机' });
  await camForm.locator('input[name="camera-name"]').fill(CAMERA);
  // An address with the password in it is refused: credentials have their own fields.
  await camForm.locator('input[name="rtsp_url"]').fill(camera.url.replace('rtsp://', `rtsp://${CAM_USER}:${CAM_PASS}@`));
  await camForm.getByRole('button', { name: '保存' }).click();
  await camForm.locator('.field-error[data-field="rtsp_url"]', { hasText: '不含账号密码' }).waitFor();
  await camForm.locator('input[name="rtsp_url"]').fill(camera.url);
  await camForm.locator('input[name="camera-username"]').fill(CAM_USER);
  await camForm.locator('input[name="camera-password"]').fill(WRONG_PASS);
  await camForm.locator('input[name="location"]').fill('村委会大门');
  await camForm.getByRole('button', { name: '保存' }).click();
  await op.getByTestId('camera-card').waitFor();
  const c = await h.db.pool.query<{ id: number; unit_id: number; password: string }>('SELECT id, unit_id, password FROM cameras WHERE name = $1', [CAMERA]);
  assert.equal(c.rows[0]!.unit_id, village.id);
  assert.equal(c.rows[0]!.password, WRONG_PASS);
  cameraId = c.rows[0]!.id;

  const card = op.getByTestId('camera-card');
  const runTest = async () => {
    await card.getByRole('button', { name: '立即测试' }).click();
    await card.getByTestId('camera-test').waitFor();
    return card.getByTestId('camera-test');
  };
  // Wrong password: the camera's 401, said as such.
  let result = await runTest();
  assert.equal(await result.getAttribute('data-reason'), 'unauthorized');
  assert.match((await result.textContent())!, /用户名或密码错误/);
  const connection = op.locator(`tr[data-camera="${cameraId}"] [data-testid="connection"]`);
  await connection.filter({ hasText: /离线 自 .*密码错误/ }).waitFor();
  const statusOf = async () => (await h.db.pool.query<{ online: boolean; since: Date }>('SELECT online, since FROM camera_status WHERE camera_id = $1', [cameraId])).rows[0]!;
  const offlineSince = (await statusOf()).since.getTime();

  // Fix the password, break the path: 404, said as such.
  await op.locator(`tr[data-camera="${cameraId}"]`).getByRole('button', { name: '编辑' }).click();
  await camForm.locator('input[name="camera-password"]').fill(CAM_PASS);
  await camForm.locator('input[name="rtsp_url"]').fill(`${camera.url}-typo`);
  await camForm.getByRole('button', { name: '保存' }).click();
  await op.locator(`tr[data-camera="${cameraId}"]`, { hasText: '-typo' }).waitFor();
  result = await runTest();
  assert.equal(await result.getAttribute('data-reason'), 'not_found');
  assert.match((await result.textContent())!, /路径不存在/);
  await connection.filter({ hasText: '路径不存在' }).waitFor();
  assert.equal((await statusOf()).since.getTime(), offlineSince, 'still offline: "since" stays where it went offline');

  // Fix the address: a snapshot with codec and resolution.
  await op.locator(`tr[data-camera="${cameraId}"]`).getByRole('button', { name: '编辑' }).click();
  await camForm.locator('input[name="rtsp_url"]').fill(camera.url);
  await camForm.getByRole('button', { name: '保存' }).click();
  await op.locator(`tr[data-camera="${cameraId}"]`, { hasNotText: '-typo' }).waitFor();
  result = await runTest();
  await result.getByTestId('snapshot').waitFor();
  assert.match((await result.textContent())!, /连接成功.*h264.*640×360/s);
  const img = await result.getByTestId('snapshot').evaluate((el: HTMLImageElement) => ({ w: el.naturalWidth, h: el.naturalHeight, src: el.src.slice(0, 23) }));
  assert.deepEqual(img, { w: 640, h: 360, src: 'data:image/jpeg;base64,' }, 'the snapshot is a decoded 640x360 JPEG');
  await connection.filter({ hasText: /^在线 自/ }).waitFor();
  const online = await statusOf();
  assert.ok(online.online && online.since.getTime() > offlineSince, 'online since the good test');
  await checkedScreenshot(op, 'operator-camera-test');
  for (const secret of [CAM_PASS, WRONG_PASS]) assert.ok(!(await op.content()).includes(secret), 'camera credentials never reach the page');

  // Record now: the recorder pulls the camera and a segment lands in recordings.
  await card.locator('input[type="number"]').fill('1');
  await card.getByRole('button', { name: '立即录制' }).click();
  await op.getByRole('status').filter({ hasText: '录制任务已创建' }).waitFor();
  await card.getByTestId('last-segment').waitFor({ timeout: 60_000 });
  await card.getByRole('button', { name: '最近一小时录像' }).click();
  await card.locator('li[data-segment] img').first().waitFor();
  const segs = await h.db.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM recording_segments WHERE camera_id = $1', [cameraId]);
  assert.ok(segs.rows[0]!.n >= 1, 'a segment of the camera is indexed');
  await checkedScreenshot(op, 'operator-camera-recorded');

  // The audit log, filtered on the server: the three tests, as the admin sees them.
  await tab(page, '审计日志');
  await page.getByLabel('动作').fill('camera.test');
  await page.getByRole('button', { name: '筛选' }).click();
  await waitUntil('three camera tests in the audit page', () => page.locator('tr[data-audit]').count(), (n) => n === 3);
  const rows = await page.locator('tr[data-audit]').allTextContents();
  assert.ok(rows.every((r) => r.includes('camera.test') && r.includes(operator)), 'only camera tests, by the operator');
  await checkedScreenshot(page, 'operator-audit');

  // The remaining pages render too.
  await tab(op, '服务站点');
  await op.locator('tr[data-point]').first().waitFor();
  await checkedScreenshot(op, 'operator-service-points');
  await tab(op, 'SFU节点');
  await op.locator('tr[data-node]').first().waitFor();
  await checkedScreenshot(op, 'operator-sfu-nodes');
  await op.context().close();
  await page.context().close();
});

test('a broken import shows its line errors and writes nothing; a good one previews, then writes; a unit moves with its subtree and nodes', { timeout: 90_000 }, async () => {
  const page = await signIn(browser, h.baseUrl, admin, h.demo.password);
  await page.getByTestId('current-unit').waitFor();
  const importer = page.getByRole('region', { name: '从表格导入组织机构' });
  const count = async () => (await h.db.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM units')).rows[0]!.n;
  const before = await count();

  const broken = ['code,parent_code,level,name', `IMP-T1,${county.code},town,导入镇`, 'IMP-C1,IMP-T1,hamlet,导入社区', 'IMP-V1,NO-SUCH,village,导入村'].join('\n');
  await importer.locator('textarea').fill(broken);
  await importer.getByRole('button', { name: '预览' }).click();
  await importer.getByTestId('import-issues').waitFor();
  const lines = await importer.locator('[data-testid="import-issues"] tr[data-line]').evaluateAll((rs) => rs.map((r) => Number(r.getAttribute('data-line'))));
  assert.deepEqual([...new Set(lines)].sort(), [3, 4], `the bad lines are named (${lines.join(',')})`);
  assert.ok(await importer.getByRole('button', { name: '确认导入' }).isDisabled(), 'nothing can be imported from a rejected file');
  assert.equal(await count(), before, 'a rejected preview wrote nothing');
  await importer.getByTestId('import-issues').scrollIntoViewIfNeeded();
  await checkedScreenshot(page, 'operator-import-errors');

  const good = ['code,parent_code,level,name', `IMP-T1,${county.code},town,导入镇`, 'IMP-C1,IMP-T1,community,导入社区', 'IMP-V1,IMP-C1,village,导入村'].join('\n');
  await importer.locator('textarea').fill(good);
  await importer.getByRole('button', { name: '预览' }).click();
  await importer.getByTestId('import-preview').waitFor();
  assert.match((await importer.getByTestId('import-preview').textContent())!, /新建：\s*3/);
  assert.equal(await count(), before, 'a preview writes nothing');
  await importer.getByTestId('import-preview').scrollIntoViewIfNeeded();
  await checkedScreenshot(page, 'operator-import-preview');

  await importer.getByRole('button', { name: '确认导入' }).click();
  await importer.getByTestId('import-done').waitFor();
  assert.equal(await count(), before + 3);
  const { rows } = await h.db.pool.query<{ code: string; parent: string }>(
    `SELECT u.code, p.code AS parent FROM units u JOIN units p ON p.id = u.parent_id WHERE u.code LIKE 'IMP-%' ORDER BY u.code`,
  );
  assert.deepEqual(rows, [
    { code: 'IMP-C1', parent: 'IMP-T1' },
    { code: 'IMP-T1', parent: county.code },
    { code: 'IMP-V1', parent: 'IMP-C1' },
  ]);

  // Export: the county's tree in the import's own format, new units included.
  const download = page.waitForEvent('download');
  await page.getByRole('button', { name: '导出 CSV' }).click();
  const exported = fs.readFileSync(await (await download).path(), 'utf8').replace(/^\ufeff/, '').split(/\r\n/);
  assert.equal(exported[0], 'code,parent_code,level,name');
  for (const line of [`IMP-T1,${county.code},town,导入镇`, 'IMP-C1,IMP-T1,community,导入社区', 'IMP-V1,IMP-C1,village,导入村']) assert.ok(exported.includes(line), `export has ${line}`);
  const unitsInCounty = (await h.db.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM units WHERE path LIKE $1', [`${county.path}%`])).rows[0]!.n;
  assert.equal(exported.length - 1, unitsInCounty, 'every unit of the county, once');

  // Move the imported community (with its village) under a town that was there before.
  const [town] = (await h.db.pool.query<{ id: number; name: string; path: string }>('SELECT id, name, path FROM units WHERE id = $1', [h.demo.unitIds.town[0]])).rows;
  const token = await h.login(admin);
  const impC1 = (await h.db.pool.query<{ id: number }>("SELECT id FROM units WHERE code = 'IMP-C1'")).rows[0]!.id;
  const node = await h.call<{ id: number; parent_node_id: number }>(token, 'POST', '/api/sfu-nodes', { unit_id: impC1, name: '导入社区节点', signalling_url: 'wss://imp-c1.example/sfu' });
  const nodeOf = async (unitId: number) => (await h.db.pool.query<{ id: number }>('SELECT id FROM sfu_nodes WHERE unit_id = $1', [unitId])).rows[0]!.id;
  assert.equal(node.body.parent_node_id, await nodeOf(county.id), 'before: the community\'s node hangs off the county\'s');
  await page.locator('tr[data-unit]', { hasText: '导入镇' }).getByRole('button', { name: '进入' }).click();
  await page.locator('tr[data-unit]', { hasText: '导入社区' }).getByRole('button', { name: '移动' }).click();
  const dialog = page.getByRole('dialog', { name: '移动' });
  await dialog.getByPlaceholder('按名称或编码查找单位').fill(town!.name);
  await dialog.getByRole('button', { name: '查找' }).click();
  await dialog.locator('option', { hasText: town!.name }).first().waitFor({ state: 'attached' });
  await dialog.locator('select').selectOption({ label: (await dialog.locator('option', { hasText: town!.name }).first().textContent())! });
  await dialog.getByRole('button', { name: '确认' }).click();
  await page.getByRole('status').filter({ hasText: '已移动' }).waitFor();
  await page.locator('tr[data-unit]', { hasText: '导入社区' }).waitFor({ state: 'detached' });
  const moved = await h.db.pool.query<{ code: string; parent_id: number; path: string; depth: number }>(
    `SELECT code, parent_id, path, depth FROM units WHERE code IN ('IMP-C1', 'IMP-V1') ORDER BY code`,
  );
  assert.equal(moved.rows[0]!.parent_id, town!.id);
  for (const r of moved.rows) assert.ok(r.path.startsWith(town!.path), `${r.code} now lies under the town (${r.path})`);
  assert.deepEqual(moved.rows.map((r) => r.depth), [3, 4], 'depths follow the new place');
  const relinked = await h.db.pool.query<{ parent_node_id: number }>('SELECT parent_node_id FROM sfu_nodes WHERE id = $1', [node.body.id]);
  assert.equal(relinked.rows[0]!.parent_node_id, await nodeOf(town!.id), 'after: it follows the cascade to the new town\'s node');
  // Under its own subtree or at its own level: refused with the reason, nothing moved.
  const [c1, v1] = moved.rows.map((r) => Number(r.path.split('.').at(-2)));
  const cycle = await h.call<{ error: { code: string } }>(token, 'POST', `/api/units/${c1}/move`, { parent_id: v1 });
  assert.deepEqual([cycle.status, cycle.body.error.code], [422, 'cycle']);
  const impTown = (await h.db.pool.query<{ id: number }>("SELECT id FROM units WHERE code = 'IMP-T1'")).rows[0]!.id;
  const level = await h.call<{ error: { code: string } }>(token, 'POST', `/api/units/${impTown}/move`, { parent_id: town!.id });
  assert.deepEqual([level.status, level.body.error.code], [422, 'bad_level']);
  const still = await h.db.pool.query<{ parent_id: number }>("SELECT parent_id FROM units WHERE code IN ('IMP-T1', 'IMP-C1') ORDER BY code");
  assert.deepEqual(still.rows.map((r) => r.parent_id), [town!.id, county.id], 'refused moves changed nothing');
  // Outside units_move() the database still refuses a move.
  await assert.rejects(h.db.pool.query('UPDATE units SET parent_id = $1 WHERE id = $2', [county.id, c1]), /cannot be moved/);
  await page.context().close();
});

test('an admin of another county sees none of it: 404 from the API, absent from the pages', { timeout: 60_000 }, async () => {
  assert.ok(village && secretaryId && cameraId, 'the first test made the village, secretary and camera');
  const token = await h.login(outsider);
  const own = await h.login(admin);
  const probes: Array<[string, string, unknown?]> = [
    ['GET', `/api/units/${village.id}`],
    ['GET', `/api/units/${village.id}/stats`],
    ['PATCH', `/api/units/${village.id}`, { name: '改名' }],
    ['GET', `/api/users/${secretaryId}`],
    ['PATCH', `/api/users/${secretaryId}`, { password: 'Takeover@2026' }],
    ['GET', `/api/cameras/${cameraId}`],
    ['PATCH', `/api/cameras/${cameraId}`, { rtsp_url: 'rtsp://10.0.0.1/x' }],
    ['POST', `/api/cameras/${cameraId}/test`],
    ['GET', `/api/cameras/${cameraId}/state`],
    ['POST', `/api/units/${village.id}/move`, { parent_id: county.id }],
    ['POST', `/api/cameras/${cameraId}/capture-jobs`, { startsAt: new Date().toISOString(), endsAt: new Date(Date.now() + 60_000).toISOString() }],
  ];
  for (const [method, path, body] of probes) {
    const r = await h.call(token, method, path, body);
    assert.equal(r.status, 404, `${method} ${path} from the other county: ${r.status}`);
  }
  // The batch of connection states leaves the camera out for the other county, not for its own.
  const theirs = await h.call<{ items: unknown[] }>(token, 'GET', `/api/camera-statuses?ids=${cameraId}`);
  assert.deepEqual([theirs.status, theirs.body.items], [200, []]);
  const ours = await h.call<{ items: Array<{ camera_id: number; status: { online: boolean } }> }>(own, 'GET', `/api/camera-statuses?ids=${cameraId}`);
  assert.deepEqual(ours.body.items.map((i) => [i.camera_id, i.status.online]), [[cameraId, true]]);
  // The same calls from the owning county succeed (the 404s are about the subtree, not the route).
  assert.equal((await h.call(own, 'GET', `/api/cameras/${cameraId}/state`)).status, 200);
  assert.equal((await h.call(own, 'GET', `/api/units/${village.id}`)).status, 200);
  const unchanged = await h.db.pool.query<{ rtsp_url: string }>('SELECT rtsp_url FROM cameras WHERE id = $1', [cameraId]);
  assert.equal(unchanged.rows[0]!.rtsp_url, camera.url);
  const tests = await h.db.pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM audit_log WHERE action = 'camera.test' AND username = $1`, [outsider]);
  assert.equal(tests.rows[0]!.n, 0, 'no camera test ran for the outsider');

  const page = await signIn(browser, h.baseUrl, outsider, h.demo.password);
  await page.getByTestId('current-unit').waitFor();
  await page.getByPlaceholder('按名称或编码查找单位').first().fill(VILLAGE);
  const searched = page.waitForResponse((r) => r.url().includes('/api/units?') && r.url().includes('q='));
  await page.getByRole('button', { name: '查找' }).first().click();
  const found = (await (await searched).json()) as { items: unknown[] };
  assert.deepEqual(found.items, [], 'the search finds nothing of the other county');
  await page.getByText('没有记录').waitFor();
  // The owner's search for the same name does find it (the empty answer is about the subtree).
  const mine = await h.call<{ items: Array<{ id: number }> }>(own, 'GET', `/api/units?q=${encodeURIComponent(VILLAGE)}`);
  assert.deepEqual(mine.body.items.map((u) => u.id), [village.id]);
  await tab(page, '摄像机');
  const filter = page.locator('form').first();
  await filter.getByPlaceholder('按名称或编码查找单位').fill(VILLAGE);
  await filter.getByRole('button', { name: '查找' }).click();
  await filter.getByText('没有匹配的单位').waitFor();
  assert.ok(!(await page.content()).includes(CAMERA), 'the camera is nowhere on the page');
  await tab(page, '人员账号');
  await page.locator('tr[data-user]').first().waitFor();
  assert.equal(await page.locator(`tr[data-user="${SECRETARY}"]`).count(), 0);
  await checkedScreenshot(page, 'operator-outsider');
  await page.context().close();
});

test('"test now" answers unreachable for a dead address, never says the password nor puts it on a command line; only camera writers may test', { timeout: 30_000 }, async () => {
  const token = await h.login(operator);
  const c = await h.call<{ id: number }>(token, 'POST', '/api/cameras', { unit_id: county.id, name: '不通的摄像机', rtsp_url: 'rtsp://127.0.0.1:1/none', username: 'u', password: 'dead-pass-1' });
  assert.equal(c.status, 201);
  const r = await h.call<{ ok: boolean; reason: string; message: string; detail: string }>(token, 'POST', `/api/cameras/${c.body.id}/test`);
  assert.equal(r.status, 200);
  assert.equal(r.body.ok, false);
  assert.equal(r.body.reason, 'unreachable');
  assert.match(r.body.message, /^无法连接摄像机.* \/ cannot connect to the camera/);
  assert.ok(!JSON.stringify(r.body).includes('dead-pass-1'), 'ffmpeg\'s echo of the URL is redacted');
  // An address no URL parser reads is refused at the field now; a row stored before that rule gets a reason, not a 500.
  const odd = await h.call<{ error: { code: string } }>(token, 'POST', '/api/cameras', { unit_id: county.id, name: '怪地址', rtsp_url: 'rtsp://[bad' });
  assert.equal(odd.status, 400);
  await h.db.pool.query("UPDATE cameras SET rtsp_url = 'rtsp://[bad' WHERE id = $1", [c.body.id]);
  const oddTest = await h.call<{ ok: boolean; reason: string }>(token, 'POST', `/api/cameras/${c.body.id}/test`);
  assert.deepEqual([oddTest.status, oddTest.body.ok, oddTest.body.reason], [200, false, 'unreachable']);

  // ffmpeg's command line (readable by any local user) never holds the camera's password: the test
  // pulls through the recorder's loopback relay.
  const good = await h.call<{ id: number }>(token, 'POST', '/api/cameras', { unit_id: county.id, name: '命令行检查', rtsp_url: camera.url, username: CAM_USER, password: CAM_PASS });
  let tools = 0;
  let leaked = false;
  let done = false;
  const scan = (async () => {
    while (!done) {
      for (const pid of fs.readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
        let cmd: string;
        try {
          cmd = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8');
        } catch {
          continue;
        }
        if (!/ffprobe|-frames:v/.test(cmd)) continue;
        tools++;
        if (cmd.includes(CAM_PASS)) leaked = true;
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  })();
  const tested = await h.call<{ ok: boolean }>(token, 'POST', `/api/cameras/${good.body.id}/test`);
  done = true;
  await scan;
  assert.equal(tested.body.ok, true);
  assert.ok(tools > 0, 'the scan saw the test\'s ffprobe/ffmpeg');
  assert.equal(leaked, false, 'no command line held the camera password');

  // A secretary may not run tests (the API's role rule, as for editing cameras).
  const sec = await h.call<{ token: string }>(undefined, 'POST', '/api/auth/login', { username: SECRETARY, password: 'Secretary@2026' });
  assert.equal(sec.status, 200);
  // The admin chose that password, so first the secretary must change it; then the role rule answers.
  const first = await h.call<{ error: { code: string } }>(sec.body.token, 'POST', `/api/cameras/${c.body.id}/test`);
  assert.deepEqual([first.status, first.body.error.code], [403, 'password_change_required']);
  const changed = await h.call<{ token: string }>(sec.body.token, 'POST', '/api/auth/password', { current_password: 'Secretary@2026', new_password: 'Secretary@2027' });
  assert.equal(changed.status, 200);
  // The change ends older sessions; the answer carries the fresh one.
  const second = await h.call<{ error: { code: string } }>(changed.body.token, 'POST', `/api/cameras/${c.body.id}/test`);
  assert.deepEqual([second.status, second.body.error.code], [403, 'forbidden']);
});
