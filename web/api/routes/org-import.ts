import express from 'express';
import { z } from 'zod';
import { withTransaction, type Pool } from '../../../infra/db/pool.ts';
import { importOrgRows } from '../../../infra/org/import-tree.ts';
import { parseOrgCsv, parseOrgJson, type OrgIssue } from '../../../infra/org/org-file.ts';
import { currentUser, HttpError } from '../auth-context.ts';
import { declaredSizeAtMost, ORG_IMPORT_BODY_LIMIT } from '../body-limits.ts';
import { forbidden } from '../errors.ts';
import { audit } from '../audit.ts';
import { permissions } from '../permissions.ts';
import type { ApiRoutes } from '../route-registry.ts';
import { boolQuery } from '../schemas.ts';

// Org tree import: CSV (header code,parent_code,level,name) or a JSON array of the same objects.
// Parents are codes of rows in the file or of existing units in the caller's subtree. All or nothing:
// any problem answers 422 with every problem's line number, and nothing is written.

const MAX_ISSUES = 200;

class ImportRejected extends HttpError {
  constructor(issues: OrgIssue[]) {
    super(422, 'import_rejected', `导入被拒绝，共${issues.length}处错误，未写入任何数据 / import rejected: ${issues.length} problem(s), nothing written`, {
      issues: issues.slice(0, MAX_ISSUES),
      total_issues: issues.length,
    });
  }
}

export function registerOrgImportRoutes(routes: ApiRoutes, pool: Pool): void {
  // The file arrives as text whatever its type, so it can be parsed with line numbers; it is read only
  // once the caller is known to be allowed to import (an anonymous 20 MB upload is refused unread).
  routes.router.post(
    '/org/import',
    (req, _res, next) => {
      const user = currentUser(req);
      if (!permissions.importOrg.some((r) => r === user.role)) throw forbidden();
      next();
    },
    declaredSizeAtMost(ORG_IMPORT_BODY_LIMIT),
    express.text({ type: () => true, limit: ORG_IMPORT_BODY_LIMIT }),
  );
  routes.add(
    {
      method: 'post',
      path: '/org/import',
      summary: 'Import part of the org tree (CSV or JSON), all-or-nothing, with line-numbered errors',
      tag: 'units',
      roles: permissions.importOrg,
      status: 201,
      query: z.strictObject({ format: z.enum(['csv', 'json']).optional(), dry_run: boolQuery.optional() }),
      body: z.string().min(1, '文件为空 / empty file'),
      rawBody: { contentTypes: ['text/csv', 'application/json'], description: 'CSV with header code,parent_code,level,name, or a JSON array of {code, parent_code, level, name}' },
      responses: { '422': 'rejected; details.issues lists {line, field, message}; nothing written' },
    },
    async ({ body, query, user, req }) => {
      const type = req.headers['content-type'] ?? '';
      const format = query.format ?? (type.includes('json') || /^\s*\[/.test(body) ? 'json' : 'csv');
      const parsed = format === 'json' ? parseOrgJson(body) : parseOrgCsv(body);
      try {
        return await withTransaction(pool, async (client) => {
          const result = await importOrgRows(client, parsed.rows, { rootPath: user.unitPath }, parsed);
          if (!result.ok) throw new ImportRejected(result.issues);
          await audit(client, { action: 'org.import', user, objectType: 'unit', unitId: user.unitId, ip: req.ip ?? null, detail: { format, created: result.created, by_level: result.byLevel, dry_run: query.dry_run === true } });
          const answer = { created: result.created, by_level: result.byLevel, dry_run: query.dry_run === true };
          // A dry run validates against the database and writes, then undoes everything.
          if (query.dry_run) throw new DryRunDone(answer);
          return answer;
        });
      } catch (err) {
        if (err instanceof DryRunDone) return err.answer;
        if (err instanceof ImportRejected) {
          await audit(pool, { action: 'org.import_rejected', user, unitId: user.unitId, ip: req.ip ?? null, detail: { format, issues: (err.details as { total_issues: number }).total_issues } });
        }
        throw err;
      }
    },
  );
}

class DryRunDone extends Error {
  constructor(readonly answer: unknown) {
    super('dry run');
  }
}
