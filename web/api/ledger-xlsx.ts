import ExcelJS from 'exceljs';
import type { LedgerRow } from './routes/ledger.ts';

// A unit's ledger (台账) for a period as an .xlsx workbook (exceljs): sheet 1 "会议台账" one row per
// session, sheet 2 "出勤明细" one row per member and session. Headers are Chinese with English below.

const STATE_ZH: Record<string, string> = { draft: '草稿', submitted: '待审核', approved: '已通过', returned: '已退回' };
const STATUS_ZH: Record<string, string> = { present: '到会', absent: '缺席', leave: '请假', unrecorded: '未登记' };
const SOURCE_ZH: Record<string, string> = { kiosk: '现场签到', phone: '手机签到', remote: '远程参会', secretary: '书记登记' };

/** Local date and time in China (UTC+8), as the ledger is read there. */
function chinaTime(d: Date): string {
  const t = new Date(d.getTime() + 8 * 3_600_000).toISOString();
  return `${t.slice(0, 10)} ${t.slice(11, 16)}`;
}

export async function ledgerWorkbook(unitName: string, from: Date, to: Date, rows: LedgerRow[]): Promise<Buffer> {
  const wb = new ExcelJS.Workbook();
  wb.creator = 'grassroots-av';
  wb.created = new Date();

  const sessions = wb.addWorksheet('会议台账 Sessions', { views: [{ state: 'frozen', ySplit: 2 }] });
  sessions.columns = [
    { key: 'date', width: 18 },
    { key: 'branch', width: 24 },
    { key: 'kinds', width: 22 },
    { key: 'topic', width: 30 },
    { key: 'chair', width: 10 },
    { key: 'lecturer', width: 10 },
    { key: 'expected', width: 8 },
    { key: 'present', width: 8 },
    { key: 'absent', width: 36 },
    { key: 'quorum', width: 30 },
    { key: 'check', width: 30 },
    { key: 'ledger', width: 10 },
    { key: 'note', width: 24 },
  ];
  sessions.addRow(['日期', '党支部', '会议类型', '议题', '主持人', '授课人', '应到', '实到', '缺席及原因', '人数要求', '视频核验', '台账状态', '审核意见']);
  sessions.addRow(['Date', 'Branch', 'Kinds', 'Topic', 'Chair', 'Lecturer', 'Expected', 'Present', 'Absent (reason)', 'Quorum', 'Check', 'Ledger', 'Review note']);
  sessions.getRow(1).font = { bold: true };
  sessions.getRow(2).font = { italic: true, color: { argb: 'FF666666' } };
  for (const r of rows) {
    const quorum = r.quorum.filter((q) => q.rule !== 'none');
    sessions.addRow({
      date: chinaTime(r.startsAt),
      branch: r.branchName,
      kinds: r.kindsZh.join('、'),
      topic: r.topic ?? '',
      chair: r.chairName ?? '',
      lecturer: r.lecturerName ?? '',
      expected: r.expected,
      present: r.present.length,
      absent: r.absent.map((a) => `${a.name}（${STATUS_ZH[a.status] ?? a.status}${a.reason ? `：${a.reason}` : ''}）`).join('；'),
      quorum: quorum.length === 0 ? '不适用' : quorum.map((q) => `${q.passed ? '符合' : '不符合'}：${q.message ?? ''}`).join('；'),
      check: r.check ? (r.check.passed ? '通过' : `未通过：${r.check.reasons.map((x) => x.message).join('；')}`) : '待核验',
      ledger: STATE_ZH[r.ledgerState] ?? r.ledgerState,
      note: r.ledgerNote ?? '',
    });
  }

  const attendance = wb.addWorksheet('出勤明细 Attendance', { views: [{ state: 'frozen', ySplit: 2 }] });
  attendance.columns = [
    { key: 'date', width: 18 },
    { key: 'branch', width: 24 },
    { key: 'topic', width: 30 },
    { key: 'member', width: 12 },
    { key: 'status', width: 8 },
    { key: 'reason', width: 24 },
    { key: 'source', width: 10 },
  ];
  attendance.addRow(['日期', '党支部', '议题', '党员', '出勤', '原因', '签到方式']);
  attendance.addRow(['Date', 'Branch', 'Topic', 'Member', 'Status', 'Reason', 'Source']);
  attendance.getRow(1).font = { bold: true };
  attendance.getRow(2).font = { italic: true, color: { argb: 'FF666666' } };
  for (const r of rows) {
    for (const p of r.present) {
      attendance.addRow({ date: chinaTime(r.startsAt), branch: r.branchName, topic: r.topic ?? '', member: p.name, status: STATUS_ZH.present, reason: '', source: SOURCE_ZH[p.source] ?? p.source });
    }
    for (const a of r.absent) {
      attendance.addRow({ date: chinaTime(r.startsAt), branch: r.branchName, topic: r.topic ?? '', member: a.name, status: STATUS_ZH[a.status] ?? a.status, reason: a.reason ?? '', source: '' });
    }
  }
  wb.title = `${unitName}台账 ${chinaTime(from).slice(0, 10)} — ${chinaTime(to).slice(0, 10)}`;
  return Buffer.from(await wb.xlsx.writeBuffer());
}
