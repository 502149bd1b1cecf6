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
import { beidouCard, boolQuery, channel, inCameraNetworks, mobile, name, password, rtspUrl, username } from '../schemas.ts';
import type { CameraNetworks } from '../../../infra/net/CameraNetworks.ts';
import { scopePattern } from '../scope.ts';

// Bulk import of cameras and of user accounts from a CSV file, for a county setting up hundreds of
// villages at once. Each line is checked with the same field rules as the single-object routes and
// names its unit by code (a unit of the caller's subtree). All or nothing: any problem answers 422
// with every problem's line, and nothing is written; `dry_run=true` checks everything and writes
// nothing, so the page can preview before writing.
// Account imports cost one scrypt (~100 ms of a libuv thread, 32 MiB) per distinct password, so a
// file may carry at most MAX_IMPORT_PASSWORDS of them, a dry run hashes none, passwords are hashed
// only once the whole file is accepted, and one account import runs at a time per API process:
// imports must not starve sign-ins of the threads their own scrypt needs.

/** Lines per file: a county's villages (~800) with room to spare; bodies stay under the JSON limit. */
export const MAX_BULK_ROWS = 2000;
const MAX_ISSUES = 200;
/** Distinct initial passwords per account import (a county usually hands out one). */
export const MAX_IMPORT_PASSWORDS = 20;
/** What imported accounts hold until the file is accepted: verifies as no password (see verifyPassword). */
const PENDING_HASH = '!import-pending';
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
  /** Refuses a whole file before any line is checked (throws), e.g. one that would cost too much. */
  precheck?: (lines: Line[]) => void;
  /** At most one import of this kind at a time (429 import_busy otherwise). */
  exclusive?: boolean;
  /** State for one request. */
  start: () => Importer<T>;
}

interface Importer<T> {
  /** Writes one checked line; may add issues (e.g. a name already taken) instead. */
  insert: (client: PoolClient, row: T, unitId: number, line: number, issues: LineIssue[]) => Promise<number | null>;
  /** Once every line is accepted, and not on a dry run: the costly part of the writes. */
  complete?: (client: PoolClient) => Promise<void>;
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
  /** An import of this kind is running in this process (checked only for `exclusive` kinds). */
  let busy = false;
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
      tag: kind.objectType === 'camera' ? 'cameras' : kind.objectType === 'member' ? 'members' : 'users',
      roles: kind.roles,
      status: 201,
      query: z.strictObject({ dry_run: boolQuery.optional() }),
      body: z.string().min(1, '文件为空 / empty file'),
      rawBody: { contentTypes: ['text/csv'], description: `CSV with header ${kind.columns.join(',')}` },
      responses: {
        '422': 'rejected; details.issues lists {line, field, message}; nothing written',
        ...(kind.precheck ? { '400': `too_many_passwords: more than ${MAX_IMPORT_PASSWORDS} distinct passwords in the file` } : {}),
        ...(kind.exclusive ? { '429': 'import_busy: another import of this kind is running' } : {}),
      },
    },
    async ({ body, query, user, req }) => {
      if (kind.exclusive && busy) {
        throw new HttpError(429, 'import_busy', `另一个${kind.zh}导入正在进行，请稍后再试 / another ${kind.objectType} import is running, try again shortly`);
      }
      busy = true;
      try {
        return await runImport(body, query.dry_run === true, user, req.ip ?? null);
      } finally {
        busy = false;
      }
    },
  );

  const runImport = async (body: string, dryRun: boolean, user: AuthUser, ip: string | null): Promise<{ created: number; dry_run: boolean }> => {
    const { lines, issues } = readCsv(body, kind.columns, kind.required);
    if (issues.length > 0) throw rejected(issues);
    kind.precheck?.(lines);
    const importer = kind.start();
    try {
      return await withTransaction(pool, async (client) => {
        const ids = await importLines(client, user, kind, importer, lines, issues);
        if (issues.length > 0) throw rejected(issues);
        if (!dryRun) await importer.complete?.(client);
        for (const [id, unitId] of ids) {
          await audit(client, { action: `${kind.objectType}.create`, user, objectType: kind.objectType, objectId: id, unitId, ip, detail: { import: true } });
        }
        await audit(client, { action: `${kind.objectType}.import`, user, objectType: kind.objectType, unitId: user.unitId, ip, detail: { created: ids.length, dry_run: dryRun } });
        const answer = { created: ids.length, dry_run: dryRun };
        // A dry run goes all the way through the database, then undoes it.
        if (dryRun) throw new DryRunDone(answer);
        return answer;
      });
    } catch (err) {
      if (err instanceof DryRunDone) return err.answer;
      throw err;
    }
  };
}

async function importLines<T>(client: PoolClient, user: AuthUser, kind: Kind<T>, importer: Importer<T>, lines: Line[], issues: LineIssue[]): Promise<Array<[number, number]>> {
  // Units by code, in the caller's subtree only: a code elsewhere reads as unknown.
  const codes = [...new Set(lines.map((l) => l.record.unit_code ?? '').filter(Boolean))];
  const { rows } = await client.query<{ id: number; code: string }>('SELECT id, code FROM units WHERE path LIKE $1 AND code = ANY($2::text[])', [scopePattern(user), codes]);
  const unitOf = new Map(rows.map((r) => [r.code, r.id]));
  const created: Array<[number, number]> = [];
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
    const id = await importer.insert(client, parsed.data, unitId, line, issues);
    if (id !== null) created.push([id, unitId]);
  }
  return created;
}

class DryRunDone extends Error {
  constructor(readonly answer: { created: number; dry_run: boolean }) {
    super('dry run');
  }
}

export function registerBulkImportRoutes(routes: ApiRoutes, pool: Pool, networks: CameraNetworks): void {
  const cameraLine = z.object({
    unit_code: z.string(),
    name,
    rtsp_url: inCameraNetworks(rtspUrl, networks),
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
    start: () => ({
      insert: async (client, row, unitId) => {
        const r = await client.query<{ id: number }>(
          'INSERT INTO cameras (unit_id, name, rtsp_url, username, password, location) VALUES ($1, $2, $3, $4, $5, $6) RETURNING id',
          [unitId, row.name, row.rtsp_url, row.username, row.password, row.location],
        );
        return r.rows[0]!.id;
      },
    }),
  });

  // Party members of a branch named by its unit's code and the branch's name (as the branch page shows
  // it): the facts the obligations and reminders need (membership, contact, channel).
  const blankIsNull = <T extends z.ZodType>(schema: T) => z.preprocess((v) => (v === '' || v === undefined ? null : v), schema.nullable());
  const memberLine = z.object({
    unit_code: z.string(),
    branch: z.string().trim().min(1, '须填写支部名称 / branch: the branch name is required').max(100),
    name,
    membership: z.preprocess((v) => (v === '' || v === undefined ? 'full' : v), z.enum(['full', 'probationary'])),
    mobile: blankIsNull(mobile),
    beidou_card: blankIsNull(beidouCard),
    preferred_channel: z.preprocess((v) => (v === '' || v === undefined ? 'sms' : v), channel),
  });
  registerBulkImport(routes, pool, {
    path: '/members/import',
    zh: '党员',
    objectType: 'member',
    roles: permissions.writeMembers,
    columns: ['unit_code', 'branch', 'name', 'membership', 'mobile', 'beidou_card', 'preferred_channel'],
    required: ['unit_code', 'branch', 'name'],
    schema: memberLine,
    start: () => ({
      insert: async (client, row, unitId, line, issues) => {
        if (row.preferred_channel === 'beidou' && !row.beidou_card) {
          issues.push({ line, field: 'beidou_card', message: '选择北斗短报文须填写北斗卡号 / a Beidou card is needed for the beidou channel' });
          return null;
        }
        const b = await client.query<{ id: number }>('SELECT id FROM branches WHERE unit_id = $1 AND name = $2 AND retired_at IS NULL', [unitId, row.branch]);
        if (!b.rows[0]) {
          issues.push({ line, field: 'branch', message: `该单位下没有名为"${row.branch.slice(0, 40)}"的支部 / no branch of that name in the unit` });
          return null;
        }
        const r = await client.query<{ id: number }>(
          'INSERT INTO members (branch_id, name, membership, mobile, beidou_card, preferred_channel) VALUES ($1, $2, $3, $4, $5, $6) RETURNING id',
          [b.rows[0].id, row.name, row.membership, row.mobile, row.beidou_card, row.preferred_channel],
        );
        return r.rows[0]!.id;
      },
    }),
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
    exclusive: true,
    precheck: (lines) => {
      const distinct = new Set(lines.map((l) => (l.record.password ?? '').normalize('NFC'))).size;
      if (distinct > MAX_IMPORT_PASSWORDS) {
        throw new HttpError(
          400,
          'too_many_passwords',
          `一次导入最多${MAX_IMPORT_PASSWORDS}个不同的初始密码（本文件${distinct}个），请分批导入或使用统一初始密码（首次登录须修改） / at most ${MAX_IMPORT_PASSWORDS} distinct initial passwords per import (this file has ${distinct}): split the file or give the accounts a shared initial password (changed at first sign-in)`,
          { max_distinct_passwords: MAX_IMPORT_PASSWORDS, distinct_passwords: distinct },
        );
      }
    },
    start: () => {
      // Accounts by initial password: each distinct one is hashed once, after the file is accepted.
      const accounts = new Map<string, number[]>();
      return {
        insert: async (client, row, unitId, line, issues) => {
          // Names are unique system-wide; a taken one is a line error, not a 409 for the whole file.
          await client.query('SAVEPOINT bulk_line');
          try {
            const r = await client.query<{ id: number }>(
              'INSERT INTO users (username, display_name, unit_id, role, password_hash, must_change_password) VALUES ($1, $2, $3, $4, $5, true) RETURNING id',
              [row.username, row.display_name, unitId, row.role, PENDING_HASH],
            );
            await client.query('RELEASE SAVEPOINT bulk_line');
            const id = r.rows[0]!.id;
            const key = row.password.normalize('NFC');
            const ids = accounts.get(key) ?? [];
            ids.push(id);
            accounts.set(key, ids);
            return id;
          } catch (err) {
            if ((err as { code?: string }).code !== '23505') throw err;
            await client.query('ROLLBACK TO SAVEPOINT bulk_line');
            issues.push({ line, field: 'username', message: `用户名已被使用 / username "${row.username}" is taken` });
            return null;
          }
        },
        // One after another: an import takes one libuv thread at a time, leaving the rest to sign-ins.
        complete: async (client) => {
          for (const [pass, ids] of accounts) {
            await client.query('UPDATE users SET password_hash = $1 WHERE id = ANY($2::bigint[])', [await hashPassword(pass), ids]);
          }
        },
      };
    },
  });
}
