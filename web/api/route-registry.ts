import express, { type Request, type Response } from 'express';
import { z } from 'zod';
import type { Role } from '../../infra/tokens.ts';
import { currentUser, type AuthUser } from './auth-context.ts';
import { jsonBodyAtMost } from './body-limits.ts';
import { forbidden, validationError } from './errors.ts';

// Routes are declared once with their zod schemas: the same declaration validates params, query and
// body on every request (nothing reaches a handler unchecked) and feeds the OpenAPI document.

export type Method = 'get' | 'post' | 'patch' | 'put' | 'delete';

const noParams = z.object({});
const noQuery = z.strictObject({});
const noBody = z.union([z.undefined(), z.strictObject({})]);

export interface RouteSpec<P extends z.ZodType, Q extends z.ZodType, B extends z.ZodType> {
  method: Method;
  /** Path below /api, express syntax (`/cameras/:id`). */
  path: string;
  summary: string;
  tag: string;
  /** No sign-in needed (login, OpenAPI). */
  public?: boolean;
  /** Roles allowed to call it; every signed-in role when absent. */
  roles?: readonly Role[];
  params?: P;
  query?: Q;
  body?: B;
  /** A JSON body limit below the API-wide one (bytes; 413 above it), checked after sign-in. */
  bodyLimit?: number;
  /** Documented request body when it is not JSON (the org import takes CSV too). */
  rawBody?: { contentTypes: string[]; description: string };
  status?: number;
  responses?: Record<string, string>;
}

export interface RouteContext<P, Q, B> {
  req: Request;
  res: Response;
  params: P;
  query: Q;
  body: B;
  /** The signed-in user (throws 401 on a public route without one). */
  readonly user: AuthUser;
}

const zh = z.locales.zhCN();

/**
 * Parses or throws a 400 whose issues read "中文 / English": on failure the input is parsed once more
 * with zod's Chinese messages (same issues, same order); messages already bilingual are kept.
 */
function parse(schema: z.ZodType, input: unknown, where: string): unknown {
  const r = schema.safeParse(input);
  if (r.success) return r.data;
  const zhIssues = schema.safeParse(input, { error: zh.localeError }).error?.issues ?? [];
  const issues = r.error.issues.map((issue, i) => {
    const chinese = zhIssues[i]?.message;
    const both = chinese && !issue.message.includes(' / ') && chinese !== issue.message;
    return { path: issue.path, message: both ? `${chinese} / ${issue.message}` : issue.message };
  });
  throw validationError(issues, where);
}

export type AnyRouteSpec = RouteSpec<z.ZodType, z.ZodType, z.ZodType>;

export class ApiRoutes {
  readonly router = express.Router();
  readonly specs: AnyRouteSpec[] = [];

  add<P extends z.ZodType = typeof noParams, Q extends z.ZodType = typeof noQuery, B extends z.ZodType = typeof noBody>(
    spec: RouteSpec<P, Q, B>,
    handler: (ctx: RouteContext<z.output<P>, z.output<Q>, z.output<B>>) => Promise<unknown>,
  ): void {
    this.specs.push(spec as unknown as AnyRouteSpec);
    const paramsSchema: z.ZodType = spec.params ?? noParams;
    const querySchema: z.ZodType = spec.query ?? noQuery;
    const bodySchema: z.ZodType = spec.body ?? noBody;
    const bodyWithin = spec.bodyLimit === undefined ? undefined : jsonBodyAtMost(spec.bodyLimit);
    this.router[spec.method](spec.path, async (req: Request, res: Response) => {
      if (!spec.public) {
        const user = currentUser(req);
        if (spec.roles && !spec.roles.includes(user.role)) throw forbidden();
      }
      if (bodyWithin) await bodyWithin(req, res);
      const params = parse(paramsSchema, req.params, 'params');
      const query = parse(querySchema, req.query, 'query');
      const body = parse(bodySchema, req.body, 'body');
      const result = await handler({
        req,
        res,
        params: params as z.output<P>,
        query: query as z.output<Q>,
        body: body as z.output<B>,
        get user() {
          return currentUser(req);
        },
      });
      // The handler answered itself (a streamed file), or dropped the connection.
      if (res.headersSent || res.destroyed) return;
      const status = spec.status ?? 200;
      if (result === undefined) res.status(status === 200 ? 204 : status).end();
      else res.status(status).json(result);
    });
  }
}

/** Positive integer id in a path. */
export const idParam = z.object({ id: z.coerce.number().int().positive().max(Number.MAX_SAFE_INTEGER) });

/**
 * Paging: `offset` for jumping to a page, or `after_id` (keyset: the rows after that id in the list's
 * order; ascending ids, the audit log descending) for walking
 * a long list, which costs the same on page 100 as on page 1.
 */
export const pageQuery = {
  limit: z.coerce.number().int().min(1).max(500).default(100),
  offset: z.coerce.number().int().min(0).max(1_000_000).default(0),
  after_id: z.coerce.number().int().min(0).max(Number.MAX_SAFE_INTEGER).optional(),
};

export interface Page<T> {
  items: T[];
  limit: number;
  offset: number;
  /** Offset of the next page, or null when this was the last. */
  next_offset: number | null;
  /** `after_id` for the next page, or null when this was the last. */
  next_after_id: number | null;
}

/** Handlers fetch limit+1 rows; the extra row only tells whether another page exists. */
export function page<T extends { id: number }>(rows: T[], limit: number, offset: number): Page<T> {
  const more = rows.length > limit;
  const items = more ? rows.slice(0, limit) : rows;
  return { items, limit, offset, next_offset: more ? offset + limit : null, next_after_id: more ? items[items.length - 1]!.id : null };
}
