import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import type { Browser, Page } from 'playwright-core';
import { createLogger } from '../../infra/logger.ts';
import { EnrolmentClient } from '../../sfu/cascade/EnrolmentClient.ts';
import { EnrolledKeys } from '../../sfu/cascade/EnrolmentKeys.ts';
import { EnrolmentReporter } from '../../sfu/cascade/EnrolmentReporter.ts';
import { launchChromium, tmpDir } from '../support/browser.ts';
import { TreeNode, waitFor } from '../support/cascade-harness.ts';
import { checkedScreenshot, signIn } from '../support/pages.ts';
import { rtcPortRange } from '../support/rtc-ports.ts';
import { startSystemHarness, type SystemHarness } from '../support/system-harness.ts';

// The console's leftovers of issue 17 in Chromium against the real API and PostgreSQL (one harness):
// - node enrolment with real cascade nodes: the county operator registers a community's node, gets its
//   one-time code (shown once), the node enrols with it and links to the town's node, the page shows it
//   connected with its load; revoking it from the page drops its link (the parent re-reads its
//   children's keys) and refuses it after;
// - a village with data is retired, not deleted: the page shows what depends on it first, and its
//   evidence stays while its obligations stop;
// - a party-member import with bad lines names them and writes nothing; a good one previews, then writes.

let h: SystemHarness;
let browser: Browser;
let operator: string;
let admin: string;
let countyId = 0;
let community: { id: number; name: string };
let parent: TreeNode;
let child: TreeNode | undefined;

before(async () => {
  h = await startSystemHarness({ towns: 2, communities: 4, villages: 8 });
  const town = h.demo.unitIds.town[0]!;
  const county = (await h.db.pool.query<{ parent_id: number }>('SELECT parent_id FROM units WHERE id = $1', [town])).rows[0]!.parent_id;
  operator = h.demo.users.find((u) => u.role === 'operator' && u.unitId === county)!.username;
  admin = h.demo.users.find((u) => u.role === 'admin' && u.unitId === county)!.username;
  countyId = county;
  community = (await h.db.pool.query<{ id: number; name: string }>(`SELECT id, name FROM units WHERE parent_id = $1 AND level = 'community' ORDER BY id LIMIT 1`, [town])).rows[0]!;
  // The town's control centre: a real node reading its enrolled children's keys from the database.
  const keys = new EnrolledKeys(h.db.pool, 'town-parent');
  parent = new TreeNode('town-parent', town, undefined, { ...rtcPortRange(200), nodeAuthFor: () => ({ childKeys: keys.lookup, childKeyRecheckMs: 500 }) });
  await parent.start();
  await h.db.pool.query(`UPDATE sfu_nodes SET signalling_url = $2, cascade_id = 'town-parent' WHERE unit_id = $1`, [town, parent.wsUrl]);
  browser = await launchChromium();
});

after(async () => {
  await browser?.close();
  await child?.stop();
  await parent?.stop();
  await h?.close();
});

async function tab(page: Page, name: string): Promise<void> {
  await page.getByRole('tab', { name }).click();
  await page.getByRole('tab', { name, selected: true }).waitFor();
}

test('an operator registers a node, sees its code once; the node enrols, links and shows connected with its load; revoking drops it', { timeout: 90_000 }, async () => {
  const page = await signIn(browser, h.baseUrl, operator, h.demo.password);
  await tab(page, 'SFU节点');
  const form = page.getByRole('form', { name: 'SFU节点' });
  await form.getByPlaceholder('按名称或编码查找单位').fill(community.name);
  await form.getByRole('button', { name: '查找' }).click();
  const option = form.locator('select').first().locator('option', { hasText: community.name }).first();
  await option.waitFor({ state: 'attached' });
  await form.locator('select').first().selectOption({ label: (await option.textContent())! });
  await form.getByLabel('名称').fill('社区节点');
  await form.getByLabel('信令地址 ws(s)://').fill('ws://127.0.0.1:9/sfu');
  await form.getByRole('button', { name: '新增' }).click();
  const row = page.locator('tr[data-node]', { hasText: '社区节点' });
  await row.waitFor();
  await row.locator('td.enrolment', { hasText: '未注册' }).waitFor();

  await row.getByRole('button', { name: '生成注册码' }).click();
  const dialog = page.getByRole('dialog', { name: '一次性注册码' });
  const code = (await dialog.locator('[data-code]').textContent())!.trim();
  assert.match(code, /^[A-Z2-9]{5}(-[A-Z2-9]{5}){4}$/);
  await dialog.getByText('此码只显示这一次').waitFor();
  await checkedScreenshot(page, 'operator-node-enrolment-code');
  await dialog.getByRole('button', { name: '我已记下' }).click();
  await dialog.waitFor({ state: 'detached' });
  await page.reload();
  await tab(page, 'SFU节点');
  await row.waitFor();
  assert.ok(!(await page.content()).includes(code), 'the code is not shown again');

  // On the node's host: its own key pair, enrolled with the code; then it dials its parent.
  const client = new EnrolmentClient(h.baseUrl, tmpDir('community-node-'));
  const record = await client.enrol(code);
  assert.equal(record.parent?.cascade_url, parent.cascadeUrl);
  child = new TreeNode(record.node_id, record.unit_id, record.parent!.cascade_url, { ...rtcPortRange(200), nodeAuthFor: () => ({ nodeKey: () => client.currentKey() }) });
  await child.start();
  await waitFor('the enrolled node linked to the town', () => child!.node.cascade!.parentConnected && parent.node.cascade!.children.includes(record.node_id));
  await new EnrolmentReporter(child.node, client, createLogger('enrol-page-test')).reportNow();

  await page.getByRole('button', { name: '刷新' }).click();
  await row.locator('td.state', { hasText: '已连接' }).waitFor();
  await row.locator('td.enrolment', { hasText: '已注册' }).waitFor();
  await row.locator('td.load', { hasText: /0 会议 · 0 终端 · CPU [0-9.]+%/ }).waitFor();
  assert.match((await row.textContent())!, /town|城|镇|街道|指挥中心/, 'the parent link is named');
  await checkedScreenshot(page, 'operator-node-connected');

  const down = new Promise<void>((resolve) => child!.node.cascade!.once('parentdown', () => resolve()));
  await row.getByRole('button', { name: '吊销' }).click();
  await page.getByRole('dialog', { name: '吊销' }).getByRole('button', { name: '确认' }).click();
  await row.locator('td.enrolment', { hasText: '已吊销' }).waitFor();
  await row.locator('td.state', { hasText: '离线' }).waitFor();
  await down;
  await page.context().close();
});

test('a village with data is retired, not deleted: its dependants are shown first, its evidence kept, its obligations stopped', { timeout: 60_000 }, async () => {
  // A village of the county with a camera, a branch and accounts; one recorded segment as evidence.
  const { rows } = await h.db.pool.query<{ id: number; name: string; parent_id: number; town: number; camera: number; branch: number }>(
    `SELECT v.id, v.name, v.parent_id, c.parent_id AS town, cam.id AS camera, b.id AS branch FROM units v JOIN units c ON c.id = v.parent_id
       JOIN cameras cam ON cam.unit_id = v.id AND cam.retired_at IS NULL JOIN branches b ON b.unit_id = v.id AND b.retired_at IS NULL
      WHERE v.level = 'village' AND v.path LIKE (SELECT path FROM units WHERE id = $1) || '%' ORDER BY v.id LIMIT 1`,
    [countyId],
  );
  const v = rows[0]!;
  const seg = await h.db.pool.query<{ id: number }>(
    `INSERT INTO recording_segments (camera_id, started_at, ended_at, bytes, bucket, object_key, evidence)
     VALUES ($1, now() - interval '10 minutes', now() - interval '9 minutes', 1000, 'recordings', $2, true) RETURNING id`,
    [v.camera, `retire-test/${v.camera}/seg.mp4`],
  );
  const obligationsBefore = await h.db.pool.query('SELECT 1 FROM branch_obligation_rules WHERE branch_id = $1', [v.branch]);
  assert.ok(obligationsBefore.rowCount! > 0, 'the branch has obligations before');

  const page = await signIn(browser, h.baseUrl, admin, h.demo.password);
  await page.getByRole('tab', { name: '组织机构', selected: true }).waitFor();
  for (const unit of [v.town, v.parent_id]) {
    await page.locator(`tr[data-unit="${unit}"] button`, { hasText: '进入' }).click();
    await page.locator(`tr[data-unit="${unit}"]`).waitFor({ state: 'detached' });
  }
  const row = page.locator(`tr[data-unit="${v.id}"]`);
  await row.getByRole('button', { name: '删除' }).click();
  const ask = page.getByRole('dialog', { name: '删除' });
  const retire = ask.getByRole('region', { name: '撤销该单位' });
  await retire.locator('li[data-thing="cameras"]').waitFor();
  for (const thing of ['branches', 'members', 'users']) await retire.locator(`li[data-thing="${thing}"]`).waitFor();
  assert.match((await retire.locator('li[data-kept="recording_segments"]').textContent())!, /录像片段: [1-9]/, 'the evidence to keep is shown');
  assert.equal(await ask.getByRole('button', { name: '确认' }).count(), 0, 'a unit with data offers no delete');
  await retire.scrollIntoViewIfNeeded();
  await checkedScreenshot(page, 'operator-retire-unit');
  await retire.getByRole('button', { name: '撤销该单位' }).click();
  await page.getByRole('status').filter({ hasText: `已撤销: ${v.name}` }).waitFor();
  await row.getByText('已撤销').waitFor();

  const after = await h.db.pool.query<{ unit: Date | null; branch: Date | null; camera: Date | null; segment: number; live_users: number }>(
    `SELECT (SELECT retired_at FROM units WHERE id = $1) AS unit, (SELECT retired_at FROM branches WHERE id = $2) AS branch,
            (SELECT retired_at FROM cameras WHERE id = $3) AS camera, (SELECT count(*)::int FROM recording_segments WHERE id = $4) AS segment,
            (SELECT count(*)::int FROM users WHERE unit_id = $1 AND NOT disabled) AS live_users`,
    [v.id, v.branch, v.camera, seg.rows[0]!.id],
  );
  const a = after.rows[0]!;
  assert.ok(a.unit && a.branch && a.camera, 'the unit, its branch and camera are retired');
  assert.equal(a.segment, 1, 'the evidence is kept');
  assert.equal(a.live_users, 0, "the unit's accounts are disabled");
  assert.equal((await h.db.pool.query('SELECT 1 FROM branch_obligation_rules WHERE branch_id = $1', [v.branch])).rowCount, 0, 'its obligations stop');
  await page.context().close();
});

test('a member import with bad lines names them and writes nothing; a good one previews, then writes', { timeout: 60_000 }, async () => {
  const { rows } = await h.db.pool.query<{ code: string; branch: string; id: number }>(
    `SELECT u.code, b.name AS branch, b.id FROM branches b JOIN units u ON u.id = b.unit_id
      WHERE b.retired_at IS NULL AND u.retired_at IS NULL AND u.code IS NOT NULL AND u.path LIKE (SELECT path FROM units WHERE id = $1) || '%' ORDER BY b.id LIMIT 1`,
    [countyId],
  );
  const b = rows[0]!;
  const count = async () => (await h.db.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM members WHERE branch_id = $1', [b.id])).rows[0]!.n;
  const before = await count();
  const page = await signIn(browser, h.baseUrl, admin, h.demo.password);
  await tab(page, '党支部');
  const importer = page.getByRole('region', { name: '从表格批量导入党员' });
  const header = 'unit_code,branch,name,membership,mobile,beidou_card,preferred_channel';
  const bad = [header, `${b.code},${b.branch},导入党员甲,full,13800000001,,sms`, `${b.code},${b.branch},导入党员乙,full,12-34,,sms`, `${b.code},没有这个支部,导入党员丙,probationary,13800000003,,sms`, `${b.code},${b.branch},导入党员丁,full,,,beidou`].join('\n');
  await importer.locator('textarea').fill(bad);
  await importer.getByRole('button', { name: '预览' }).click();
  await importer.getByTestId('import-issues').waitFor();
  const lines = await importer.locator('[data-testid="import-issues"] tr[data-line]').evaluateAll((rs) => rs.map((r) => Number(r.getAttribute('data-line'))));
  assert.deepEqual([...new Set(lines)].sort(), [3, 4, 5], `the bad lines are named (${lines.join(',')})`);
  assert.ok(await importer.getByRole('button', { name: '确认导入' }).isDisabled());
  assert.equal(await count(), before, 'a rejected file wrote nothing, not even its good line');
  await importer.getByTestId('import-issues').scrollIntoViewIfNeeded();
  await checkedScreenshot(page, 'operator-member-import-errors');

  const good = [header, `${b.code},${b.branch},导入党员甲,full,13800000001,,sms`, `${b.code},${b.branch},导入党员乙,probationary,,1234567,beidou`].join('\n');
  await importer.locator('textarea').fill(good);
  await importer.getByRole('button', { name: '预览' }).click();
  await importer.getByTestId('import-preview').waitFor();
  assert.equal(await count(), before, 'a preview writes nothing');
  await importer.getByRole('button', { name: '确认导入' }).click();
  await importer.getByTestId('import-done').waitFor();
  assert.equal(await count(), before + 2);
  const m = await h.db.pool.query<{ name: string; membership: string; preferred_channel: string }>(
    `SELECT name, membership, preferred_channel FROM members WHERE branch_id = $1 AND name LIKE '导入党员%' ORDER BY name`,
    [b.id],
  );
  assert.deepEqual(m.rows, [
    { name: '导入党员乙', membership: 'probationary', preferred_channel: 'beidou' },
    { name: '导入党员甲', membership: 'full', preferred_channel: 'sms' },
  ]);
  await page.context().close();
});

test('obligation rules: a county tightens a statutory item; loosening it shows the API\'s 422 by the field', { timeout: 60_000 }, async () => {
  const page = await signIn(browser, h.baseUrl, admin, h.demo.password);
  await tab(page, '三会一课规则');
  const row = page.locator('tr[data-rule="member_meeting"]');
  await row.waitFor();
  await row.getByText('法定').waitFor();
  // Yearly instead of quarterly: looser than the 条例, refused, the reason next to the period.
  await row.locator('select').selectOption('year');
  await row.getByRole('button', { name: '保存' }).click();
  const err = row.locator('td:nth-child(2) .field-error');
  await err.waitFor();
  assert.match((await err.textContent())!, /不得低于|只能在上级规则基础上从严/);
  assert.match((await err.textContent())!, / \/ /, 'bilingual');
  const stored = async () => (await h.db.pool.query('SELECT 1 FROM obligation_rules WHERE unit_id = $1 AND obligation = $2', [countyId, 'member_meeting'])).rowCount;
  assert.equal(await stored(), 0, 'nothing written');
  await checkedScreenshot(page, 'operator-rules-refused');
  // Tighter: quarterly, twice.
  await row.locator('select').selectOption('quarter');
  await row.getByLabel('支部党员大会 次数').fill('2');
  await row.getByRole('button', { name: '保存' }).click();
  await page.getByRole('status').filter({ hasText: '已保存: 支部党员大会' }).waitFor();
  await page.locator('tr[data-rule="member_meeting"]', { hasText: '本级设定' }).waitFor();
  assert.equal(await stored(), 1);
  await page.getByRole('region', { name: '提醒与督办阶梯' }).locator('tr[data-step]').first().waitFor();
  await checkedScreenshot(page, 'operator-rules');
  await page.context().close();
});
