import express from 'express';
import { parse as parseCsv } from 'csv-parse/sync';
import { z } from 'zod';
import { withTransaction, type Pool, type PoolClient } from '../../../infra/db/pool.ts';
import { hashPassword } from '../../../infra/auth/password.ts';
import { roleSchema, type Role } from '../../../infra/tokens.ts';
import { currentUser, HttpError, type AuthUser } from '../auth-context.ts';
import { audit } from '../audit.ts';
import { declaredSizeAtMost, JSON_BODY_LIMIT } from '../body-limits.ts';
import { forbidden } from '../errors.ts';
import { permissions } from '../permissions.ts';
import type { ApiRoutes } from '../route-registry.ts';
import { boolQuery, name, password, rtspUrl, username } from '../schemas.ts';
import { scopePattern } from '../scope.ts';

// Bulk import of cameras and of user accounts from a CSV file, for a county setting up hundreds of
// villages at once. Each line is checked with the same field rules as the single-object routes and
// names its unit by code (a unit of the caller's subtree). All or nothing: any problem answers 422
// with every problem's line, and nothing is written; `dry_run=true` checks everything and writes
// nothing, so the page can preview before writing.

/** Lines per file: a county's villages (~800) with room to spare; bodies stay under the JSON limit. */
export const MAX_BULK_ROWS = 2000;
const MAX_ISSUES = 200;
const zhLocale = z.locales.zhCN();

export interface LineIssue {
  line: number;
  field?: string;
  message: string;
}

interface Line {
  line: number;
  record: Record<string, string>;
}

interface Kind<T> {
  path: string;
  zh: string;
  objectType: string;
  roles: readonly Role[];
  columns: string[];
  required: string[];
  /** Field rules of one line; `unit_code` is resolved separately. */
  schema: z.ZodType<T>;
  /** Writes one checked line; may add issues (e.g. a name already taken) instead. `memo` lives for one request. */
  insert: (client: PoolClient, row: T, unitId: number, line: number, issues: LineIssue[], memo: Map<string, Promise<string>>) => Promise<number | null>;
}

function rejected(issues: LineIssue[]): HttpError {
  return new HttpError(422, 'import_rejected', `导入被拒绝，共${issues.length}处错误，未写入任何数据 / import rejected: ${issues.length} problem(s), nothing written`, {
    issues: issues.slice(0, MAX_ISSUES),
    total_issues: issues.length,
  });
}

function readCsv(text: string, columns: string[], required: string[]): { lines: Line[]; issues: LineIssue[] } {
  let records: Array<{ record: Record<string, string>; info: { lines: number } }>;
  try {
    records = parseCsv(text, {
      bom: true,
      columns: (header: string[]) => header.map((h) => h.trim().toLowerCase()),
      info: true,
      skip_empty_lines: true,
      trim: true,
    }) as Array<{ record: Record<string, string>; info: { lines: number } }>;
  } catch (err) {
    const e = err as { message?: string; lines?: number };
    return { lines: [], issues: [{ line: e.lines ?? 1, message: `CSV格式错误 / malformed CSV: ${e.message ?? String(err)}` }] };
  }
  const header = text.replace(/^\uFEFF/, '').split(/\r?\n/, 1)[0] ?? '';
  const cols = header.split(',').map((h) => h.trim().toLowerCase());
  const missing = required.filter((c) => !cols.includes(c));
  if (missing.length > 0) return { lines: [], issues: [{ line: 1, message: `缺少列 / missing columns: ${missing.join(', ')} (header: ${columns.join(',')})` }] };
  const unknown = cols.filter((c) => !columns.includes(c));
  if (unknown.length > 0) return { lines: [], issues: [{ line: 1, message: `未知列 / unknown columns: ${unknown.join(', ')} (header: ${columns.join(',')})` }] };
  if (records.length === 0) return { lines: [], issues: [{ line: 1, message: '文件中没有数据行 / no data lines' }] };
  if (records.length > MAX_BULK_ROWS) return { lines: [], issues: [{ line: 1, message: `行数超过上限 / more than ${MAX_BULK_ROWS} lines` }] };
  return { lines: records.map((r) => ({ line: r.info.lines, record: r.record })), issues: [] };
}

const optionalText = (max: number) =>
  z
    .string()
    .max(max)
    .optional()
    .transform((v) => (v === undefined || v === '' ? null : v));

function registerBulkImport<T>(routes: ApiRoutes, pool: Pool, kind: Kind<T>): void {
  // The file is read as text only once the caller's role may import (as the org import does).
  routes.router.post(
    kind.path,
    (req, _res, next) => {
      if (!kind.roles.some((r) => r === currentUser(req).role)) throw forbidden();
      next();
    },
    declaredSizeAtMost(JSON_BODY_LIMIT),
    express.text({ type: () => true, limit: JSON_BODY_LIMIT }),
  );
  routes.add(
    {
      method: 'post',
      path: kind.path,
      summary: `Import ${kind.objectType}s from CSV (header ${kind.columns.join(',')}), all-or-nothing, with line-numbered errors; dry_run=true only checks`,
      tag: kind.objectType === 'camera' ? 'cameras' : 'users',
      roles: kind.roles,
      status: 201,
      query: z.strictObject({ dry_run: boolQuery.optional() }),
      body: z.string().min(1, '文件为空 / empty file'),
      rawBody: { contentTypes: ['text/csv'], description: `CSV with header ${kind.columns.join(',')}` },
      responses: { '422': 'rejected; details.issues lists {line, field, message}; nothing written' },
    },
    async ({ body, query, user, req }) => {
      const { lines, issues } = readCsv(body, kind.columns, kind.required);
      if (issues.length > 0) throw rejected(issues);
      const dryRun = query.dry_run === true;
      try {
        return await withTransaction(pool, async (client) => {
          const ids = await importLines(client, user, kind, lines, issues);
          if (issues.length > 0) throw rejected(issues);
          for (const [id, unitId] of ids) {
            await audit(client, { action: `${kind.objectType}.create`, user, objectType: kind.objectType, objectId: id, unitId, ip: req.ip ?? null, detail: { import: true } });
          }
          await audit(client, { action: `${kind.objectType}.import`, user, objectType: kind.objectType, unitId: user.unitId, ip: req.ip ?? null, detail: { created: ids.length, dry_run: dryRun } });
          const answer = { created: ids.length, dry_run: dryRun };
          // A dry run goes all the way through the database, then undoes it.
          if (dryRun) throw new DryRunDone(answer);
          return answer;
        });
      } catch (err) {
        if (err instanceof DryRunDone) return err.answer;
        throw err;
      }
    },
  );
}

async function importLines<T>(client: PoolClient, user: AuthUser, kind: Kind<T>, lines: Line[], issues: LineIssue[]): Promise<Array<[number, number]>> {
  // Units by code, in the caller's subtree only: a code elsewhere reads as unknown.
  const codes = [...new Set(lines.map((l) => l.record.unit_code ?? '').filter(Boolean))];
  const { rows } = await client.query<{ id: number; code: string }>('SELECT id, code FROM units WHERE path LIKE $1 AND code = ANY($2::text[])', [scopePattern(user), codes]);
  const unitOf = new Map(rows.map((r) => [r.code, r.id]));
  const created: Array<[number, number]> = [];
  const memo = new Map<string, Promise<string>>();
  for (const { line, record } of lines) {
    const unitId = unitOf.get(record.unit_code ?? '');
    if (unitId === undefined) issues.push({ line, field: 'unit_code', message: `单位编码不存在或不在本辖区 / unknown unit code "${(record.unit_code ?? '').slice(0, 40)}"` });
    const parsed = kind.schema.safeParse(record);
    if (!parsed.success) {
      // "中文 / English", as the API's own 400s: the same issues once more with zod's Chinese words.
      const chinese = kind.schema.safeParse(record, { error: zhLocale.localeError }).error?.issues ?? [];
      parsed.error.issues.forEach((i, n) => {
        const zh = chinese[n]?.message;
        const message = zh && !i.message.includes(' / ') && zh !== i.message ? `${zh} / ${i.message}` : i.message;
        issues.push({ line, field: i.path.map(String).join('.'), message });
      });
      continue;
    }
    if (unitId === undefined || issues.length >= MAX_ISSUES) continue;
    const id = await kind.insert(client, parsed.data, unitId, line, issues, memo);
    if (id !== null) created.push([id, unitId]);
  }
  return created;
}

class DryRunDone extends Error {
  constructor(readonly answer: unknown) {
    super('dry run');
  }
}

export function registerBulkImportRoutes(routes: ApiRoutes, pool: Pool): void {
  const cameraLine = z.object({
    unit_code: z.string(),
    name,
    rtsp_url: rtspUrl,
    username: optionalText(100),
    password: optionalText(100),
    location: optionalText(200),
  });
  registerBulkImport(routes, pool, {
    path: '/cameras/import',
    zh: '摄像机',
    objectType: 'camera',
    roles: permissions.writeCameras,
    columns: ['unit_code', 'name', 'rtsp_url', 'username', 'password', 'location'],
    required: ['unit_code', 'name', 'rtsp_url'],
    schema: cameraLine,
    insert: async (client, row, unitId) => {
      const r = await client.query<{ id: number }>(
        'INSERT INTO cameras (unit_id, name, rtsp_url, username, password, location) VALUES ($1, $2, $3, $4, $5, $6) RETURNING id',
        [unitId, row.name, row.rtsp_url, row.username, row.password, row.location],
      );
      return r.rows[0]!.id;
    },
  });

  const userLine = z.object({ unit_code: z.string(), username, display_name: z.string().trim().min(1).max(64), role: roleSchema, password });
  registerBulkImport(routes, pool, {
    path: '/users/import',
    zh: '用户',
    objectType: 'user',
    roles: permissions.writeUsers,
    columns: ['unit_code', 'username', 'display_name', 'role', 'password'],
    required: ['unit_code', 'username', 'display_name', 'role', 'password'],
    schema: userLine,
    insert: async (client, row, unitId, line, issues, hashes) => {
      // Names are unique system-wide; a taken one is a line error, not a 409 for the whole file.
      await client.query('SAVEPOINT bulk_line');
      try {
        // One hash per distinct password in the file (a county often hands out one initial password,
        // which every account must change at first sign-in): scrypt per line would take minutes.
        let hash = hashes.get(row.password);
        if (!hash) {
          hash = hashPassword(row.password);
          hashes.set(row.password, hash);
        }
        const r = await client.query<{ id: number }>(
          'INSERT INTO users (username, display_name, unit_id, role, password_hash, must_change_password) VALUES ($1, $2, $3, $4, $5, true) RETURNING id',
          [row.username, row.display_name, unitId, row.role, await hash],
        );
        await client.query('RELEASE SAVEPOINT bulk_line');
        return r.rows[0]!.id;
      } catch (err) {
        if ((err as { code?: string }).code !== '23505') throw err;
        await client.query('ROLLBACK TO SAVEPOINT bulk_line');
        issues.push({ line, field: 'username', message: `用户名已被使用 / username "${row.username}" is taken` });
        return null;
      }
    },
  });
}
