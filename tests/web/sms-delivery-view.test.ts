import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import type { Browser } from 'playwright-core';
import { launchChromium } from '../support/browser.ts';
import { checkedScreenshot, signIn } from '../support/pages.ts';
import { startSystemHarness, type SystemHarness } from '../support/system-harness.ts';
import { recordReply } from '../../scheduler/replies/ReplyInbox.ts';

// The delivery view in the supervisor's room (issue 13): a county supervisor opens a reminder of a
// village branch and sees the SMS attempt with its provider, its parts, the receipts as they came
// (ACCEPTD then DELIVRD), the Beidou fallback, and the secretary's reply "2" with the request's state.

let h: SystemHarness;
let browser: Browser;

before(async () => {
  h = await startSystemHarness({ towns: 1, communities: 1, villages: 2 });
  browser = await launchChromium();
});
after(async () => {
  await browser?.close();
  await h?.close();
});

test('a supervisor sees each attempt, its receipts and the secretary\'s reply for a reminder', { timeout: 90_000 }, async () => {
  const pool = h.db.pool;
  const sec = h.demo.users.find((u) => u.role === 'secretary' && u.level === 'village')!;
  const b = (await pool.query<{ id: number; unit_id: number }>('SELECT id, unit_id FROM branches WHERE unit_id = $1 ORDER BY id LIMIT 1', [sec.unitId])).rows[0]!;
  const countyId = Number((await pool.query<{ id: number }>(`SELECT c.id FROM units v JOIN units c ON v.path LIKE c.path || '%' WHERE v.id = $1 AND c.level = 'county'`, [b.unit_id])).rows[0]!.id);
  const supervisor = h.demo.users.find((u) => u.role === 'supervisor' && u.unitId === countyId)!.username;
  const member = (await pool.query<{ id: number }>(`INSERT INTO members (branch_id, name, is_secretary, mobile, membership) VALUES ($1, '投递书记', false, '13912340001', 'full') RETURNING id`, [b.id])).rows[0]!.id;
  // A reminder as the scheduler leaves it: an SMS whose parts were receipted, then a Beidou fallback.
  const rid = (await pool.query<{ id: number }>(
    `INSERT INTO reminders (branch_id, obligation, period_key, period_end, step, target, due_at)
     VALUES ($1, 'member_meeting', to_char(now(), 'YYYY') || '-Q' || extract(quarter FROM now()), now() + interval '5 days', 'd7', 'secretary', now()) RETURNING id`, [b.id])).rows[0]!.id;
  const sid = (await pool.query<{ id: number }>(
    `INSERT INTO message_sends (reminder_id, recipient_kind, recipient_id, channel, address, body, parts, state, provider, attempts)
     VALUES ($1, 'member', $2, 'sms', '13912340001', '【昌乐县委组织部】提醒', 2, 'failed', 'cmpp:移动106', 1) RETURNING id`, [rid, member])).rows[0]!.id;
  await pool.query(`INSERT INTO message_send_parts (send_id, part_no, provider_message_id, state) VALUES ($1, 1, '9001', 'delivered'), ($1, 2, '9002', 'failed')`, [sid]);
  await pool.query(`INSERT INTO message_send_receipts (send_id, part_no, provider_message_id, stat) VALUES ($1, 1, '9001', 'ACCEPTD'), ($1, 1, '9001', 'DELIVRD'), ($1, 2, '9002', 'UNDELIV')`, [sid]);
  await pool.query(`INSERT INTO message_send_events (send_id, state, detail) VALUES ($1, 'queued', 'reminder'), ($1, 'failed', 'receipt UNDELIV err:001')`, [sid]);
  await pool.query(
    `INSERT INTO message_sends (reminder_id, recipient_kind, recipient_id, channel, address, body, state, fallback_of) VALUES ($1, 'member', $2, 'beidou', '0300001', '大会前开', 'sent', $3)`,
    [rid, member, sid]);
  const reply = await recordReply(pool, { channel: 'sms', from: '8613912340001', text: '2 村道塌方，申请延期', receivedAt: new Date() });
  assert.equal(reply.outcome, 'postpone_requested');
  assert.equal(reply.reminderId, Number(rid));

  const page = await signIn(browser, h.baseUrl, supervisor, h.demo.password);
  await page.goto(`${h.baseUrl}/#/supervise`);
  await page.getByRole('tab', { name: '完成情况' }).click();
  const row = page.locator(`[data-delivery-reminder="${rid}"]`);
  await row.getByRole('button', { name: '查看' }).click();
  const sms = row.locator(`[data-send="${sid}"]`);
  await sms.waitFor();
  const smsText = await sms.innerText();
  assert.match(smsText, /短信 · cmpp:移动106 · 139\*{4}0001 · 失败/);
  assert.match(smsText, /回执: 1:ACCEPTD 1:DELIVRD 2:UNDELIV/);
  assert.ok(!smsText.includes('13912340001'), 'the number is masked');
  assert.match(await row.innerText(), new RegExp(`北斗 · 0300001 · 已发出 · 改发自 #${sid}`));
  const r = row.locator(`[data-reply="${await pool.query<{ id: number }>('SELECT id FROM reminder_replies').then((q) => q.rows[0]!.id)}"]`);
  assert.match(await r.innerText(), /短信 139\*{4}0001: 「2 村道塌方，申请延期」 → 申请延期 \(待审批\)/);
  await r.scrollIntoViewIfNeeded();
  await checkedScreenshot(page, 'sms-delivery-view');
});
