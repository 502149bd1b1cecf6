import { z } from 'zod';
import { withTransaction, type Pool, type PoolClient } from '../../infra/db/pool.ts';
import type { Role } from '../../infra/tokens.ts';
import type { AuthUser } from './auth-context.ts';
import { audit } from './audit.ts';
import { notFound } from './errors.ts';
import { ApiRoutes, idParam, page, pageQuery } from './route-registry.ts';
import { scopePattern, type Db } from './scope.ts';

// List / read / create / update / delete for a table whose rows belong to a unit. Every statement
// carries the caller's subtree (`u.path LIKE $1`), so rows elsewhere are simply not found (404), and
// every response is built from an explicit column list (secrets such as camera credentials are
// never selected).

export interface Ref {
  /** SQL returning `path` (units.path of the owning unit) for the referenced id given as $1. */
  sql: string;
  zh: string;
  en: string;
}

export interface Filter {
  schema: z.ZodType;
  /** SQL condition with `?` where the value goes, e.g. `c.unit_id = ?`. */
  sql: string;
}

export interface ScopedResourceConfig<C extends z.ZodObject, U extends z.ZodObject> {
  path: string; // '/cameras'
  tag: string;
  objectType: string; // 'camera': audit actions camera.create / camera.view ...
  zh: string; // '摄像机'
  en: string;
  table: string;
  alias: string;
  /** FROM clause in which `u` is the owning unit. */
  from: string;
  /** Explicit output columns; may use $1 (the caller's scope pattern); must include unit_id. */
  select: string;
  filters: Record<string, Filter>;
  create: C;
  update: U;
  /** Body fields pointing at other rows, checked to lie in the caller's subtree. */
  refs: Partial<Record<keyof z.output<C> & string, Ref>>;
  readRoles?: readonly Role[];
  writeRoles: readonly Role[];
  /** Turns a validated body into columns (e.g. hashing a password). */
  toColumns?: (body: Record<string, unknown>) => Promise<Record<string, unknown>>;
  /**
   * PATCH only, with the row locked, before it is written: further columns the change implies (e.g.
   * secrets a new address must not inherit) and fields added to the answer and the audit detail.
   */
  beforeUpdate?: (client: PoolClient, id: number, body: Record<string, unknown>) => Promise<UpdateExtras>;
  afterCreate?: (client: PoolClient, id: number, user: AuthUser) => Promise<void>;
  afterWrite?: (client: PoolClient, id: number) => Promise<void>;
  beforeDelete?: (client: PoolClient, id: number) => Promise<void>;
  /** Write `<objectType>.view` to the audit log on every single-object read. */
  auditView?: boolean;
  /**
   * Soft delete (table has `retired_at`): DELETE removes a row nothing refers to (204); a row that
   * history hangs off (the foreign keys refuse) is retired instead - hidden from lists and reads,
   * kept for the record - and the answer (200) says what was kept.
   */
  retire?: {
    onRetire?: (client: PoolClient, id: number) => Promise<void>;
    kept: (client: PoolClient, id: number) => Promise<Record<string, number>>;
  };
}

export interface UpdateExtras {
  columns?: Record<string, unknown>;
  answer?: Record<string, unknown>;
  audit?: Record<string, unknown>;
}

export type Row = Record<string, unknown> & { id: number; unit_id: number };

export function registerScopedResource<C extends z.ZodObject, U extends z.ZodObject>(
  routes: ApiRoutes,
  pool: Pool,
  cfg: ScopedResourceConfig<C, U>,
): void {
  const a = cfg.alias;
  const live = cfg.retire ? ` AND ${a}.retired_at IS NULL` : '';
  const filterShape: Record<string, z.ZodType> = {};
  for (const [k, f] of Object.entries(cfg.filters)) filterShape[k] = f.schema.optional();
  const listQuery = z.strictObject({ ...pageQuery, ...filterShape });
  const updateBody = cfg.update.refine((o) => Object.keys(o).length > 0, { message: '至少修改一个字段 / change at least one field' });

  const readOne = async (db: Db, user: AuthUser, id: number): Promise<Row> => {
    const { rows } = await db.query<Row>(`SELECT ${cfg.select} FROM ${cfg.from} WHERE u.path LIKE $1 AND ${a}.id = $2${live}`, [scopePattern(user), id]);
    if (!rows[0]) throw notFound(cfg.zh, cfg.en);
    return rows[0];
  };

  const lockOne = async (client: PoolClient, user: AuthUser, id: number): Promise<void> => {
    const { rows } = await client.query(`SELECT ${a}.id FROM ${cfg.from} WHERE u.path LIKE $1 AND ${a}.id = $2${live} FOR UPDATE OF ${a}`, [
      scopePattern(user),
      id,
    ]);
    if (rows.length === 0) throw notFound(cfg.zh, cfg.en);
  };

  const checkRefs = async (client: PoolClient, user: AuthUser, body: Record<string, unknown>): Promise<void> => {
    for (const [field, ref] of Object.entries(cfg.refs) as Array<[string, Ref]>) {
      const value = body[field];
      if (value === undefined || value === null) continue;
      const { rows } = await client.query<{ path: string }>(ref.sql, [value]);
      const path = rows[0]?.path;
      // Missing and out-of-subtree give the same answer.
      if (!path || !path.startsWith(user.unitPath)) throw notFound(ref.zh, ref.en, { field });
    }
  };

  const columnsOf = async (body: Record<string, unknown>): Promise<Record<string, unknown>> =>
    cfg.toColumns ? cfg.toColumns(body) : body;

  routes.add(
    { method: 'get', path: cfg.path, summary: `List ${cfg.en}s in the caller's subtree`, tag: cfg.tag, roles: cfg.readRoles, query: listQuery },
    async ({ query, user }) => {
      const values: unknown[] = [scopePattern(user)];
      const where = [`u.path LIKE $1${live}`];
      const q = query as Record<string, unknown> & { limit: number; offset: number; after_id?: number };
      if (q.after_id !== undefined) where.push(`${a}.id > $${values.push(q.after_id)}`);
      for (const [k, f] of Object.entries(cfg.filters)) {
        if (q[k] === undefined) continue;
        values.push(q[k]);
        where.push(f.sql.replace('?', `$${values.length}`));
      }
      values.push(q.limit + 1, q.offset);
      const { rows } = await pool.query<Row>(
        `SELECT ${cfg.select} FROM ${cfg.from} WHERE ${where.join(' AND ')} ORDER BY ${a}.id LIMIT $${values.length - 1} OFFSET $${values.length}`,
        values,
      );
      return page(rows, q.limit, q.offset);
    },
  );

  routes.add(
    { method: 'get', path: `${cfg.path}/:id`, summary: `Read one ${cfg.en}`, tag: cfg.tag, roles: cfg.readRoles, params: idParam },
    async ({ params, user, req }) => {
      const row = await readOne(pool, user, params.id);
      if (cfg.auditView) {
        await audit(pool, { action: `${cfg.objectType}.view`, user, objectType: cfg.objectType, objectId: row.id, unitId: row.unit_id, ip: req.ip ?? null });
      }
      return row;
    },
  );

  routes.add(
    { method: 'post', path: cfg.path, summary: `Create a ${cfg.en}`, tag: cfg.tag, roles: cfg.writeRoles, body: cfg.create, status: 201 },
    async ({ body, user, req }) =>
      withTransaction(pool, async (client) => {
        const b = body as Record<string, unknown>;
        await checkRefs(client, user, b);
        const cols = await columnsOf(b);
        const names = Object.keys(cols);
        const { rows } = await client.query<{ id: number }>(
          `INSERT INTO ${cfg.table} (${names.join(', ')}) VALUES (${names.map((_, i) => `$${i + 1}`).join(', ')}) RETURNING id`,
          names.map((n) => cols[n]),
        );
        const id = rows[0]!.id;
        await cfg.afterCreate?.(client, id, user);
        await cfg.afterWrite?.(client, id);
        const row = await readOne(client, user, id);
        await audit(client, { action: `${cfg.objectType}.create`, user, objectType: cfg.objectType, objectId: id, unitId: row.unit_id, ip: req.ip ?? null });
        return row;
      }),
  );

  routes.add(
    { method: 'patch', path: `${cfg.path}/:id`, summary: `Change a ${cfg.en}`, tag: cfg.tag, roles: cfg.writeRoles, params: idParam, body: updateBody },
    async ({ params, body, user, req }) =>
      withTransaction(pool, async (client) => {
        await lockOne(client, user, params.id);
        const b = body as Record<string, unknown>;
        await checkRefs(client, user, b);
        const extras = (await cfg.beforeUpdate?.(client, params.id, b)) ?? {};
        const cols = { ...(await columnsOf(b)), ...extras.columns };
        const names = Object.keys(cols);
        await client.query(
          `UPDATE ${cfg.table} SET ${names.map((n, i) => `${n} = $${i + 2}`).join(', ')} WHERE id = $1`,
          [params.id, ...names.map((n) => cols[n])],
        );
        await cfg.afterWrite?.(client, params.id);
        const row = await readOne(client, user, params.id);
        // Field names only: values may be secrets (passwords, camera credentials).
        await audit(client, {
          action: `${cfg.objectType}.update`,
          user,
          objectType: cfg.objectType,
          objectId: params.id,
          unitId: row.unit_id,
          ip: req.ip ?? null,
          detail: { fields: Object.keys(b), ...extras.audit },
        });
        return { ...row, ...extras.answer };
      }),
  );

  routes.add(
    {
      method: 'delete',
      path: `${cfg.path}/:id`,
      summary: cfg.retire ? `Delete a ${cfg.en} (204), or retire it when history refers to it (200, with what was kept)` : `Delete a ${cfg.en}`,
      tag: cfg.tag,
      roles: cfg.writeRoles,
      params: idParam,
      status: cfg.retire ? 200 : 204,
    },
    async ({ params, user, req }) =>
      withTransaction(pool, async (client) => {
        const row = await readOne(client, user, params.id);
        await lockOne(client, user, params.id);
        await cfg.beforeDelete?.(client, params.id);
        if (cfg.retire) {
          // The foreign keys decide: whatever history refers to the row makes the DELETE fail.
          await client.query('SAVEPOINT hard_delete');
          try {
            await client.query(`DELETE FROM ${cfg.table} WHERE id = $1`, [params.id]);
            await client.query('RELEASE SAVEPOINT hard_delete');
          } catch (err) {
            if ((err as { code?: string }).code !== '23503') throw err;
            await client.query('ROLLBACK TO SAVEPOINT hard_delete');
            await cfg.retire.onRetire?.(client, params.id);
            const r = await client.query<{ retired_at: Date }>(`UPDATE ${cfg.table} SET retired_at = now() WHERE id = $1 RETURNING retired_at`, [params.id]);
            const kept = await cfg.retire.kept(client, params.id);
            await audit(client, { action: `${cfg.objectType}.retire`, user, objectType: cfg.objectType, objectId: params.id, unitId: row.unit_id, ip: req.ip ?? null, detail: { kept } });
            return { id: params.id, retired: true, retired_at: r.rows[0]!.retired_at.toISOString(), kept };
          }
        } else {
          await client.query(`DELETE FROM ${cfg.table} WHERE id = $1`, [params.id]);
        }
        await audit(client, { action: `${cfg.objectType}.delete`, user, objectType: cfg.objectType, objectId: params.id, unitId: row.unit_id, ip: req.ip ?? null });
        return undefined;
      }),
  );
}

/** Owning-unit lookups shared by several resources. */
export const unitRef: Ref = { sql: 'SELECT path FROM units WHERE id = $1', zh: '单位', en: 'unit' };
