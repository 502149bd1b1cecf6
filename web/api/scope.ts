import type { AuthUser } from './auth-context.ts';
import type pg from 'pg';
import { notFound } from './errors.ts';

// Subtree scoping. units.path is a materialised path of ids ('1.7.93.'), so "in the caller's subtree"
// is a prefix match served by the text_pattern_ops index. Paths hold only digits and dots, so they
// need no LIKE escaping.

export function scopePattern(user: AuthUser): string {
  return `${user.unitPath}%`;
}

export interface ScopedUnit {
  id: number;
  path: string;
  level: string;
  parent_id: number | null;
}

/** A pool or a transaction's client. */
export type Db = Pick<pg.Pool, 'query'>;

/** The unit if it lies in the caller's subtree; otherwise a 404 that looks exactly like "no such unit". */
export async function requireUnitInScope(db: Db, user: AuthUser, unitId: number, field?: string): Promise<ScopedUnit> {
  const { rows } = await db.query<ScopedUnit>(`SELECT id, path, level, parent_id FROM units WHERE id = $1 AND path LIKE $2`, [
    unitId,
    scopePattern(user),
  ]);
  const unit = rows[0];
  if (!unit) throw notFound('单位', 'unit', field ? { field } : undefined);
  return unit;
}
