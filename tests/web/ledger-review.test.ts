import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import ExcelJS from 'exceljs';
import type { Browser, Page } from 'playwright-core';
import { launchChromium, tmpDir } from '../support/browser.ts';
import { checkedScreenshot, signIn } from '../support/pages.ts';
import { startSystemHarness, type SystemHarness } from '../support/system-harness.ts';

// The ledger (台账) review in Chromium (issue 16): a village secretary holds and submits two sessions
// at the kiosk; the town leader approves one and returns the other with a reason on the review tab;
// the secretary sees the reason; the town's print page shows both; the spreadsheet link downloads a
// file whose cells are read back.

let h: SystemHarness;
let browser: Browser;
let secretary: string;
let townLeader: string;
let townId: number;
let branchId: number;
const names: string[] = [];

before(async () => {
  h = await startSystemHarness({ towns: 1, communities: 2, villages: 9 });
  const sec = h.demo.users.find((u) => u.role === 'secretary' && u.level === 'village')!;
  secretary = sec.username;
  const pool = h.db.pool;
  townId = Number(
    (await pool.query<{ id: number }>(`SELECT t.id FROM units v JOIN units t ON v.path LIKE t.path || '%' WHERE v.id = $1 AND t.level = 'town'`, [sec.unitId])).rows[0]!.id,
  );
  townLeader = h.demo.users.find((u) => u.role === 'leader' && u.unitId === townId)!.username;
  branchId = Number((await pool.query<{ id: number }>('SELECT id FROM branches WHERE unit_id = $1 ORDER BY id LIMIT 1', [sec.unitId])).rows[0]!.id);
  await pool.query(`UPDATE members SET left_at = now() - interval '1 day', is_secretary = false, committee_role = NULL, party_group_id = NULL WHERE branch_id = $1`, [branchId]);
  await pool.query('UPDATE branches SET has_committee = false WHERE id = $1', [branchId]);
  for (let i = 0; i < 10; i++) {
    const name = `台账党员${'甲乙丙丁戊己庚辛壬癸'[i]}`;
    await pool.query(`INSERT INTO members (branch_id, name, is_secretary, mobile, membership) VALUES ($1, $2, $3, $4, 'full')`, [branchId, name, i === 0, `1390000${String(2000 + i)}`]);
    names.push(name);
  }
  browser = await launchChromium();
});

after(async () => {
  await browser?.close();
  await h?.close();
});

/** Holds a 党员大会 at the kiosk: start now, tap `present` members, end, minutes, submit. */
async function holdAndSubmit(page: Page, topic: string, present: number): Promise<number> {
  await page.getByRole('tab', { name: '三会一课' }).click();
  await page.getByLabel('支部党员大会', { exact: true }).check();
  await page.getByLabel('主题', { exact: true }).fill(topic);
  await page.getByRole('button', { name: '立即开始' }).click();
  await page.getByTestId('session-detail').or(page.getByRole('alert')).first().waitFor();
  assert.equal(await page.getByRole('alert').count(), 0, `no error: ${await page.getByRole('alert').allTextContents()}`);
  for (const name of names.slice(0, present)) {
    await page.getByRole('button', { name, exact: true }).click();
    await page.locator('[data-testid="member"][data-status="present"]', { hasText: name }).waitFor();
  }
  await page.getByRole('button', { name: '结束会议' }).click();
  await page.locator('[data-testid="session-detail"][data-state="ended"]').waitFor();
  await page.locator('textarea[name="minutes"]').fill(`${topic}：会议记录。`);
  await page.getByRole('button', { name: '提交台账' }).click();
  await page.locator('[data-testid="session-detail"][data-ledger="submitted"]').waitFor();
  await page.getByRole('button', { name: '返回' }).click();
  const { rows } = await h.db.pool.query<{ id: number }>('SELECT id FROM meeting_sessions WHERE branch_id = $1 AND topic = $2', [branchId, topic]);
  return Number(rows[0]!.id);
}

test('the town approves one ledger and returns another with a reason; print page and spreadsheet show them', { timeout: 120_000 }, async () => {
  const kiosk = await signIn(browser, h.baseUrl, secretary, h.demo.password);
  await kiosk.goto(`${h.baseUrl}/#/kiosk`);
  const good = await holdAndSubmit(kiosk, '学习党章', 7);
  const poor = await holdAndSubmit(kiosk, '讨论村务', 6);

  const town = await signIn(browser, h.baseUrl, townLeader, h.demo.password);
  await town.goto(`${h.baseUrl}/#/supervise`);
  await town.getByRole('tab', { name: '台账审核' }).click();
  await town.locator(`[data-testid="pending-ledger"][data-session-id="${good}"]`).waitFor();
  await town.locator(`[data-testid="pending-ledger"][data-session-id="${poor}"]`).waitFor();
  await checkedScreenshot(town, 'ledger-review-pending');
  await town.locator(`[data-testid="pending-ledger"][data-session-id="${good}"]`).getByRole('button', { name: '通过' }).click();
  await town.locator(`[data-testid="pending-ledger"][data-session-id="${good}"]`).waitFor({ state: 'detached' });
  const reason = '会议记录过于简略，请补充讨论内容';
  const row = town.locator(`[data-testid="pending-ledger"][data-session-id="${poor}"]`);
  await row.getByLabel('退回原因').fill(reason);
  await row.getByRole('button', { name: '退回' }).click();
  await row.waitFor({ state: 'detached' });
  const { rows: states } = await h.db.pool.query<{ id: number; ledger_state: string; ledger_note: string | null }>(
    'SELECT id, ledger_state, ledger_note FROM meeting_sessions WHERE id = ANY($1::bigint[]) ORDER BY id',
    [[good, poor]],
  );
  assert.deepEqual(states.map((s) => [Number(s.id), s.ledger_state]), [[good, 'approved'], [poor, 'returned']]);
  assert.equal(states.find((s) => Number(s.id) === poor)!.ledger_note, reason);

  // The secretary sees the reason in the kiosk's list.
  await kiosk.reload();
  await kiosk.getByRole('tab', { name: '三会一课' }).click();
  await kiosk.locator(`[data-testid="session-row"][data-session-id="${poor}"] [data-testid="return-reason"]`).filter({ hasText: reason }).waitFor();
  await checkedScreenshot(kiosk, 'ledger-returned-at-kiosk');

  // The print page of the town for the period.
  const from = new Date(Date.now() - 86_400_000).toISOString();
  const to = new Date(Date.now() + 86_400_000).toISOString();
  await town.goto(`${h.baseUrl}/#/ledger/${townId}?from=${encodeURIComponent(from)}&to=${encodeURIComponent(to)}`);
  await town.getByTestId('ledger-print').waitFor();
  await town.locator('[data-testid="ledger-entry"]').nth(1).waitFor();
  assert.equal(await town.locator('[data-testid="ledger-entry"]').count(), 2);
  assert.match((await town.locator(`[data-testid="ledger-entry"][data-session-id="${poor}"]`).textContent()) ?? '', new RegExp(reason));
  await town.emulateMedia({ media: 'print' });
  assert.equal(await town.locator('header.app-header').isVisible(), false, 'print CSS hides the app bar');
  await checkedScreenshot(town, 'ledger-print');
  await town.emulateMedia({ media: 'screen' });

  // The spreadsheet link: a real download, read back cell by cell.
  await town.goto(`${h.baseUrl}/#/supervise`);
  await town.getByRole('tab', { name: '台账审核' }).click();
  const [download] = await Promise.all([town.waitForEvent('download'), town.getByTestId('xlsx-link').click()]);
  const file = path.join(tmpDir('ledger-xlsx-'), 'ledger.xlsx');
  await download.saveAs(file);
  assert.ok(fs.statSync(file).size > 0);
  const wb = new ExcelJS.Workbook();
  await wb.xlsx.readFile(file);
  const sheet = wb.worksheets[0]!;
  const cells: string[] = [];
  sheet.eachRow((r) => r.eachCell((c) => void cells.push(String(c.text))));
  const text = cells.join('|');
  for (const want of ['学习党章', '讨论村务', '支部党员大会', reason]) assert.ok(text.includes(want), `the sessions sheet has ${want}`);
  assert.ok(wb.worksheets.length >= 2, 'a sheet of attendance too');
  const att: string[] = [];
  wb.worksheets[1]!.eachRow((r) => r.eachCell((c) => void att.push(String(c.text))));
  assert.ok(att.join('|').includes(names[6]!), 'the attendance sheet names the seventh member of the first session');
});
