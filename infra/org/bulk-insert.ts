import type { PoolClient } from '../db/pool.ts';
import type { UnitLevel } from './levels.ts';

// Bulk writes for imports and the demo generator: ids are taken from the identity sequence up front
// so children can name their parents before anything is written, then each table (or tree level) is
// one INSERT ... SELECT FROM unnest(...) instead of thousands of round trips.

export async function allocateIds(client: PoolClient, table: string, n: number): Promise<number[]> {
  if (n === 0) return [];
  const { rows } = await client.query<{ id: number }>(
    `SELECT nextval(pg_get_serial_sequence($1, 'id'))::bigint AS id FROM generate_series(1, $2::int)`,
    [table, n],
  );
  return rows.map((r) => r.id);
}

export interface NewUnit {
  id: number;
  parentId: number | null;
  level: UnitLevel;
  name: string;
  code: string | null;
}

/**
 * Inserts units whose ids were allocated with allocateIds. Rows are written one tree level at a time
 * because the path trigger reads the parent row, which must already exist (rows of the same
 * statement are not visible to it).
 */
export async function insertUnits(client: PoolClient, units: NewUnit[]): Promise<void> {
  const byId = new Map(units.map((u) => [u.id, u]));
  const depthCache = new Map<number, number>();
  const depthOf = (u: NewUnit): number => {
    const cached = depthCache.get(u.id);
    if (cached !== undefined) return cached;
    let d = 0;
    let p = u.parentId === null ? undefined : byId.get(u.parentId);
    const seen = new Set<number>([u.id]);
    while (p) {
      if (seen.has(p.id)) throw new Error(`unit ${u.id} is in a parent cycle`);
      seen.add(p.id);
      d++;
      p = p.parentId === null ? undefined : byId.get(p.parentId);
    }
    depthCache.set(u.id, d);
    return d;
  };
  const waves: NewUnit[][] = [];
  for (const u of units) (waves[depthOf(u)] ??= []).push(u);
  for (const wave of waves) {
    if (!wave || wave.length === 0) continue;
    await client.query(
      `INSERT INTO units (id, parent_id, level, name, code) OVERRIDING SYSTEM VALUE
       SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::text[])`,
      [wave.map((u) => u.id), wave.map((u) => u.parentId), wave.map((u) => u.level), wave.map((u) => u.name), wave.map((u) => u.code)],
    );
  }
}

/**
 * Multi-row insert of plain rows via unnest: `columns` maps column name to its SQL array type, or
 * to `arraytype|cast` when each element must be cast (e.g. `text[]|text[]` for a text[] column fed
 * with array literals, since unnest cannot carry arrays of arrays). Column names come from code only.
 */
export async function insertRows(
  client: PoolClient,
  table: string,
  columns: Record<string, string>,
  rows: ReadonlyArray<Record<string, unknown>>,
  opts: { overridingSystemValue?: boolean; chunk?: number } = {},
): Promise<void> {
  const names = Object.keys(columns);
  const chunk = opts.chunk ?? 20_000;
  for (let start = 0; start < rows.length; start += chunk) {
    const part = rows.slice(start, start + chunk);
    const arrays = names.map((n) => part.map((r) => r[n] ?? null));
    const params = names.map((n, i) => `$${i + 1}::${columns[n]!.split('|')[0]}`).join(', ');
    const select = names.map((n, i) => {
      const cast = columns[n]!.split('|')[1];
      return cast ? `c${i}::${cast}` : `c${i}`;
    });
    await client.query(
      `INSERT INTO ${table} (${names.join(', ')})${opts.overridingSystemValue ? ' OVERRIDING SYSTEM VALUE' : ''}
       SELECT ${select.join(', ')} FROM unnest(${params}) AS t(${names.map((_, i) => `c${i}`).join(', ')})`,
      arrays,
    );
  }
}
