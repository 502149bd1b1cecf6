import { parse as parseCsv } from 'csv-parse/sync';
import { z } from 'zod';
import { parseLevel, type UnitLevel } from './levels.ts';

// Reads an org tree file (CSV with a header, or a JSON array) into rows that remember the line they
// came from, so every error can point at it. Nothing here touches the database.

export interface OrgRow {
  line: number;
  code: string;
  parentCode: string | null;
  level: UnitLevel;
  name: string;
}

export interface OrgIssue {
  line: number;
  field?: string;
  message: string;
}

export interface ParsedOrgFile {
  rows: OrgRow[];
  issues: OrgIssue[];
  /** Codes of records that failed validation, so their children are not also reported as orphans. */
  rejectedCodes: Set<string>;
}

export const MAX_IMPORT_ROWS = 100_000;
export const unitCodeSchema = z.string().regex(/^[A-Za-z0-9_-]{1,32}$/, '编码须为1-32位字母数字 / code: 1-32 of A-Z a-z 0-9 _ -');

/** Validates one record's fields; `raw` keys are the CSV header or JSON keys. */
function toRow(raw: Record<string, unknown>, line: number, issues: OrgIssue[], rejected: Set<string>): OrgRow | undefined {
  const str = (k: string): string => (typeof raw[k] === 'string' ? (raw[k] as string).trim() : raw[k] == null ? '' : String(raw[k]));
  const before = issues.length;
  const code = str('code');
  if (!unitCodeSchema.safeParse(code).success) {
    issues.push({ line, field: 'code', message: `编码无效 / invalid code "${code.slice(0, 40)}" (1-32 of A-Z a-z 0-9 _ -)` });
  }
  const parentCode = str('parent_code');
  if (parentCode !== '' && !unitCodeSchema.safeParse(parentCode).success) {
    issues.push({ line, field: 'parent_code', message: `上级编码无效 / invalid parent_code "${parentCode.slice(0, 40)}"` });
  }
  const levelRaw = str('level');
  const level = parseLevel(levelRaw);
  if (!level) {
    issues.push({ line, field: 'level', message: `层级无效 / invalid level "${levelRaw.slice(0, 20)}" (city|county|town|community|village)` });
  }
  const name = str('name');
  if (name.length < 1 || name.length > 100) {
    issues.push({ line, field: 'name', message: '名称须为1-100个字符 / name must be 1-100 characters' });
  }
  if (issues.length > before || !level) {
    if (code !== '') rejected.add(code);
    return undefined;
  }
  return { line, code, parentCode: parentCode === '' ? null : parentCode, level, name };
}

const REQUIRED_COLUMNS = ['code', 'parent_code', 'level', 'name'];

export function parseOrgCsv(text: string): ParsedOrgFile {
  const issues: OrgIssue[] = [];
  let records: Array<{ record: Record<string, string>; info: { lines: number } }>;
  try {
    records = parseCsv(text, {
      bom: true,
      columns: (header: string[]) => header.map((h) => h.trim().toLowerCase()),
      info: true,
      skip_empty_lines: true,
      trim: true,
      relax_column_count: false,
    }) as Array<{ record: Record<string, string>; info: { lines: number } }>;
  } catch (err) {
    const e = err as { message?: string; lines?: number };
    return { rows: [], rejectedCodes: new Set(), issues: [{ line: e.lines ?? 1, message: `CSV格式错误 / malformed CSV: ${e.message ?? String(err)}` }] };
  }
  const header = text.replace(/^\uFEFF/, '').split(/\r?\n/, 1)[0] ?? '';
  const cols = header.split(',').map((h) => h.trim().toLowerCase());
  const missing = REQUIRED_COLUMNS.filter((c) => !cols.includes(c));
  if (missing.length > 0) {
    return { rows: [], rejectedCodes: new Set(), issues: [{ line: 1, message: `缺少列 / missing columns: ${missing.join(', ')} (header: code,parent_code,level,name)` }] };
  }
  if (records.length > MAX_IMPORT_ROWS) {
    return { rows: [], rejectedCodes: new Set(), issues: [{ line: 1, message: `行数超过上限 / more than ${MAX_IMPORT_ROWS} rows` }] };
  }
  const rows: OrgRow[] = [];
  const rejectedCodes = new Set<string>();
  for (const { record, info } of records) {
    const row = toRow(record, info.lines, issues, rejectedCodes);
    if (row) rows.push(row);
  }
  return { rows, issues, rejectedCodes };
}

/**
 * Where V8 gives no position: the start line of the first top-level array element that does not
 * parse on its own (1 when the array itself is unreadable).
 */
function brokenElementLine(text: string): number {
  const starts = elementStarts(text);
  for (let i = 0; i < starts.length; i++) {
    const from = starts[i]!.offset;
    const to = i + 1 < starts.length ? text.lastIndexOf(',', starts[i + 1]!.offset) : text.lastIndexOf(']');
    try {
      JSON.parse(text.slice(from, to > from ? to : undefined));
    } catch {
      return starts[i]!.line;
    }
  }
  return 1;
}

/** Line (1-based) on which each element of the top-level JSON array starts. */
function elementLines(text: string): number[] {
  return elementStarts(text).map((s) => s.line);
}

function elementStarts(text: string): Array<{ line: number; offset: number }> {
  const lines: Array<{ line: number; offset: number }> = [];
  let line = 1;
  let depth = 0;
  let inString = false;
  let expectElement = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i]!;
    if (ch === '\n') line++;
    if (inString) {
      if (ch === '\\') i++;
      else if (ch === '"') inString = false;
      continue;
    }
    if (depth === 1 && expectElement && !/\s/.test(ch) && ch !== ']') {
      lines.push({ line, offset: i });
      expectElement = false;
    }
    if (ch === '"') inString = true;
    else if (ch === '[' || ch === '{') {
      depth++;
      if (depth === 1) expectElement = true;
    } else if (ch === ']' || ch === '}') depth--;
    else if (ch === ',' && depth === 1) expectElement = true;
  }
  return lines;
}

export function parseOrgJson(text: string): ParsedOrgFile {
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (err) {
    // V8 reports "at position N" (or "line L column C"); turn a position into a line number.
    const msg = (err as Error).message;
    const pos = /position (\d+)/.exec(msg);
    const lineMatch = /line (\d+)/.exec(msg);
    const line = pos ? text.slice(0, Number(pos[1])).split('\n').length : lineMatch ? Number(lineMatch[1]) : brokenElementLine(text);
    return { rows: [], rejectedCodes: new Set(), issues: [{ line, message: `JSON格式错误 / malformed JSON: ${msg}` }] };
  }
  if (!Array.isArray(data)) {
    return { rows: [], rejectedCodes: new Set(), issues: [{ line: 1, message: 'JSON须为数组 / JSON must be an array of {code, parent_code, level, name}' }] };
  }
  if (data.length > MAX_IMPORT_ROWS) {
    return { rows: [], rejectedCodes: new Set(), issues: [{ line: 1, message: `行数超过上限 / more than ${MAX_IMPORT_ROWS} rows` }] };
  }
  const lines = elementLines(text);
  const issues: OrgIssue[] = [];
  const rows: OrgRow[] = [];
  const rejectedCodes = new Set<string>();
  data.forEach((item, i) => {
    const line = lines[i] ?? 1;
    if (typeof item !== 'object' || item === null || Array.isArray(item)) {
      issues.push({ line, message: `第${i + 1}项不是对象 / item ${i + 1} is not an object` });
      return;
    }
    const row = toRow(item as Record<string, unknown>, line, issues, rejectedCodes);
    if (row) rows.push(row);
  });
  return { rows, issues, rejectedCodes };
}
