import type { PoolClient } from '../db/pool.ts';
import { allocateIds, insertUnits, type NewUnit } from './bulk-insert.ts';
import { levelRank, type UnitLevel } from './levels.ts';
import type { OrgIssue, OrgRow } from './org-file.ts';

// Validates parsed org rows against each other and the existing tree, then writes them in bulk.
// All-or-nothing: the caller runs this inside one transaction and any issue means nothing is written.

export interface ImportScope {
  /** units.path of the importing user's unit: parents must lie in this subtree. null = system import (may create a city). */
  rootPath: string | null;
}

/** Problems already found while reading the file; they are reported together with these checks. */
export interface PriorIssues {
  issues: OrgIssue[];
  rejectedCodes: Set<string>;
}

export type ImportResult = { ok: true; created: number; byLevel: Record<string, number> } | { ok: false; issues: OrgIssue[] };

interface Parent {
  level: UnitLevel;
  line?: number; // set when the parent comes from the file
}

export async function importOrgRows(
  client: PoolClient,
  rows: OrgRow[],
  scope: ImportScope,
  prior: PriorIssues = { issues: [], rejectedCodes: new Set() },
): Promise<ImportResult> {
  const issues: OrgIssue[] = [...prior.issues];
  if (rows.length === 0 && issues.length === 0) return { ok: false, issues: [{ line: 1, message: '文件没有数据行 / the file has no data rows' }] };

  const byCode = new Map<string, OrgRow>();
  for (const row of rows) {
    const first = byCode.get(row.code);
    if (first) issues.push({ line: row.line, field: 'code', message: `编码重复（首次出现于第${first.line}行） / duplicate code "${row.code}" (first on line ${first.line})` });
    else byCode.set(row.code, row);
  }

  // Codes already used anywhere: codes are a global key, so this is checked tree-wide.
  const taken = rows.length === 0 ? { rows: [] } : await client.query<{ code: string }>(`SELECT code FROM units WHERE code = ANY($1::text[])`, [[...byCode.keys()]]);
  for (const { code } of taken.rows) {
    issues.push({ line: byCode.get(code)!.line, field: 'code', message: `编码已被使用 / code "${code}" is already in use` });
  }

  // Parents outside the file must exist inside the caller's subtree; others are reported as missing
  // (not "forbidden"), so an import cannot probe for units elsewhere in the tree.
  const external = [...new Set(rows.map((r) => r.parentCode).filter((c): c is string => c !== null && !byCode.has(c)))];
  const existing = new Map<string, { id: number; level: UnitLevel }>();
  if (external.length > 0) {
    const { rows: found } = await client.query<{ id: number; code: string; level: UnitLevel }>(
      `SELECT id, code, level FROM units WHERE code = ANY($1::text[]) AND ($2::text IS NULL OR path LIKE $2 || '%')`,
      [external, scope.rootPath],
    );
    for (const f of found) existing.set(f.code, { id: f.id, level: f.level });
  }

  for (const row of rows) {
    if (row.parentCode === null) {
      if (scope.rootPath !== null || row.level !== 'city') {
        issues.push({ line: row.line, field: 'parent_code', message: '缺少上级编码 / parent_code is required' });
      }
      continue;
    }
    if (row.parentCode === row.code) {
      issues.push({ line: row.line, field: 'parent_code', message: '上级不能是自身 / a unit cannot be its own parent' });
      continue;
    }
    const inFile = byCode.get(row.parentCode);
    const parent: Parent | undefined = inFile ? { level: inFile.level, line: inFile.line } : existing.get(row.parentCode);
    if (!parent && prior.rejectedCodes.has(row.parentCode)) continue; // its parent's line is already reported
    if (!parent) {
      issues.push({ line: row.line, field: 'parent_code', message: `上级单位不存在 / parent "${row.parentCode}" not found` });
      continue;
    }
    if (levelRank(row.level) <= levelRank(parent.level)) {
      issues.push({
        line: row.line,
        field: 'level',
        message: `层级须低于上级 / a ${row.level} cannot be placed under a ${parent.level}${parent.line ? ` (line ${parent.line})` : ''}`,
      });
    }
  }

  // A chain of in-file parents must end at an existing unit; a loop never does.
  if (issues.length === 0) {
    const state = new Map<string, 'visiting' | 'done'>();
    for (const row of rows) {
      const chain: OrgRow[] = [];
      let cur: OrgRow | undefined = row;
      while (cur && state.get(cur.code) !== 'done') {
        if (state.get(cur.code) === 'visiting') {
          issues.push({ line: cur.line, field: 'parent_code', message: `上级关系成环 / parent cycle through "${cur.code}"` });
          break;
        }
        state.set(cur.code, 'visiting');
        chain.push(cur);
        cur = cur.parentCode ? byCode.get(cur.parentCode) : undefined;
      }
      for (const c of chain) state.set(c.code, 'done');
    }
  }

  if (issues.length > 0) {
    issues.sort((a, b) => a.line - b.line);
    return { ok: false, issues };
  }

  const ids = await allocateIds(client, 'units', rows.length);
  const idByCode = new Map(rows.map((r, i) => [r.code, ids[i]!]));
  const units: NewUnit[] = rows.map((r) => ({
    id: idByCode.get(r.code)!,
    parentId: r.parentCode === null ? null : (idByCode.get(r.parentCode) ?? existing.get(r.parentCode)!.id),
    level: r.level,
    name: r.name,
    code: r.code,
  }));
  await insertUnits(client, units);
  const byLevel: Record<string, number> = {};
  for (const r of rows) byLevel[r.level] = (byLevel[r.level] ?? 0) + 1;
  return { ok: true, created: rows.length, byLevel };
}
