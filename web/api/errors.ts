import type { ErrorRequestHandler, RequestHandler } from 'express';
import { HttpError } from './auth-context.ts';
import { createLogger } from '../../infra/logger.ts';

// Every failure leaves as `{ error: { code, message, details? } }` with a bilingual message; database
// constraint errors become 4xx answers instead of 500s, and nothing about other subtrees leaks.

const log = createLogger('api');

export interface ErrorBody {
  error: { code: string; message: string; details?: unknown };
}

/** The answer for anything outside the caller's subtree as well as anything missing: the two look alike. */
export function notFound(zh = '对象', en = 'object', details?: unknown): HttpError {
  return new HttpError(404, 'not_found', `${zh}不存在 / ${en} not found`, details);
}

export function forbidden(): HttpError {
  return new HttpError(403, 'forbidden', '无权执行此操作 / your role may not do this');
}

type Issues = ReadonlyArray<{ path: readonly PropertyKey[]; message: string }>;

/** A 400 listing each problem with its field path; takes a ZodError or already-worded issues. */
export function validationError(error: Issues | { issues: Issues }, where: string): HttpError {
  const issues: Issues = 'issues' in error ? error.issues : error;
  return new HttpError(
    400,
    'invalid_request',
    `请求参数无效 / invalid ${where}`,
    issues.map((i) => ({ path: [where, ...i.path.map(String)].join('.'), message: i.message })),
  );
}

interface PgError {
  code?: string;
  constraint?: string;
  detail?: string;
}

function fromPostgres(err: PgError): HttpError | undefined {
  switch (err.code) {
    case '23505':
      return new HttpError(409, 'conflict', '数据重复 / already exists', { constraint: err.constraint });
    case '23503':
      return new HttpError(409, 'in_use', '仍被其他数据引用或引用不存在 / still referenced, or references a missing row', { constraint: err.constraint });
    case '23514':
    case '22P02':
    case '22001':
      return new HttpError(422, 'rejected', '数据不符合约束 / value rejected by a constraint', { constraint: err.constraint });
    case 'P0001':
      return new HttpError(422, 'rejected', '数据不符合规则 / value rejected by a rule');
    default:
      return undefined;
  }
}

export const notFoundHandler: RequestHandler = (req, res) => {
  if (!req.complete) res.setHeader('Connection', 'close');
  res.status(404).json({ error: { code: 'no_route', message: '接口不存在 / no such route' } } satisfies ErrorBody);
};

export const errorHandler: ErrorRequestHandler = (err: unknown, req, res, _next) => {
  let e: HttpError | undefined;
  if (err instanceof HttpError) e = err;
  else if (typeof err === 'object' && err !== null) {
    const withType = err as { type?: string; status?: number };
    // body-parser failures: malformed JSON, too large, wrong charset
    if (withType.type === 'entity.parse.failed') e = new HttpError(400, 'malformed_body', '请求体不是有效的JSON / body is not valid JSON');
    else if (withType.type === 'entity.too.large') e = new HttpError(413, 'too_large', '请求体过大 / body too large');
    else if (typeof withType.status === 'number' && withType.status >= 400 && withType.status < 500) {
      e = new HttpError(withType.status, 'bad_request', '请求无效 / bad request');
    } else e = fromPostgres(err as PgError);
  }
  if (!e) {
    log.error({ err, method: req.method, url: req.originalUrl }, 'unhandled API error');
    e = new HttpError(500, 'internal', '服务器内部错误 / internal error');
  }
  if (res.headersSent) return;
  // Refused before its body was read (401, 403, 413…): close rather than drain what is still coming.
  if (!req.complete) res.setHeader('Connection', 'close');
  const body: ErrorBody = { error: { code: e.code, message: e.message } };
  if (e.details !== undefined) body.error.details = e.details;
  res.status(e.status).json(body);
};
