import express, { type Request, type RequestHandler, type Response } from 'express';
import { HttpError } from './auth-context.ts';

// Body size limits, in bytes, per kind of route; a body declared larger than its route's limit is
// refused from its Content-Length before a byte of it is read (body-parser would drain it first).

/** Public routes (sign-in): a name and a password. */
export const PUBLIC_BODY_LIMIT = 4 * 1024;
/** JSON of signed-in users (the largest, a meeting's hand-picked sites, is ~10 kB). */
export const JSON_BODY_LIMIT = 256 * 1024;
/** The org import's CSV or JSON file (a whole city's tree as CSV is ~2 MB). */
export const ORG_IMPORT_BODY_LIMIT = 20 * 1024 * 1024;
/** A capture job (two instants, two rolls, a session, a flag). */
export const CAPTURE_JOB_BODY_LIMIT = 16 * 1024;

export function tooLarge(): HttpError {
  return new HttpError(413, 'too_large', '请求体过大 / body too large');
}

/** Refuses a request whose declared Content-Length exceeds `limit`, without reading its body. */
export function declaredSizeAtMost(limit: number): RequestHandler {
  return (req, _res, next) => {
    const declared = Number(req.headers['content-length'] ?? 0);
    if (declared > limit) throw tooLarge();
    next();
  };
}

/**
 * Holds one route's JSON body to `limit`, below the API-wide JSON_BODY_LIMIT its parser may already
 * have read it with: a body declared larger is refused from its Content-Length; one already parsed
 * (sent chunked, without a length) by its size re-serialised; one not read yet (a router mounted
 * without the API's parser) is read with `limit`. Refusals are 413 too_large.
 */
export function jsonBodyAtMost(limit: number): (req: Request, res: Response) => Promise<void> {
  const parser = express.json({ limit });
  return async (req, res) => {
    if (Number(req.headers['content-length'] ?? 0) > limit) throw tooLarge();
    if (req.body !== undefined) {
      if (Buffer.byteLength(JSON.stringify(req.body) ?? '') > limit) throw tooLarge();
      return;
    }
    await new Promise<void>((resolve, reject) => parser(req, res, (err?: unknown) => (err ? reject(err) : resolve())));
  };
}
