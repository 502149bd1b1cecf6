import crypto from 'node:crypto';
import type { IncomingMessage } from 'node:http';

// AWS Signature Version 4 check for the embedded S3 server (s3rver checks none): a request passes
// only if it is signed with the installation's key, in its headers (SDK calls) or in a presigned
// URL's query (playback, exports) that has not expired.

interface KoaContext {
  req: IncomingMessage;
  status: number;
  body: unknown;
  type: string;
}

const sha256 = (s: string | Buffer): string => crypto.createHash('sha256').update(s).digest('hex');
const hmac = (key: string | Buffer, s: string): Buffer => crypto.createHmac('sha256', key).update(s).digest();

/** RFC 3986 encoding as SigV4 wants it. */
const enc = (s: string): string => encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);

function decode(s: string): string {
  try {
    return decodeURIComponent(s.replace(/\+/g, '%20'));
  } catch {
    return s;
  }
}

function canonicalQuery(pairs: Array<[string, string]>): string {
  return pairs
    .map(([k, v]) => [enc(k), enc(v)] as const)
    .sort(([a, x], [b, y]) => (a < b ? -1 : a > b ? 1 : x < y ? -1 : x > y ? 1 : 0))
    .map(([k, v]) => `${k}=${v}`)
    .join('&');
}

interface Parsed {
  accessKey: string;
  scope: string;
  date: string;
  amzDate: string;
  signedHeaders: string[];
  signature: string;
  payloadHash: string;
  query: Array<[string, string]>;
}

function parse(req: IncomingMessage, path: string, rawQuery: string): Parsed | string {
  const query: Array<[string, string]> = rawQuery
    ? rawQuery.split('&').filter(Boolean).map((p) => {
        const i = p.indexOf('=');
        return (i < 0 ? [decode(p), ''] : [decode(p.slice(0, i)), decode(p.slice(i + 1))]) as [string, string];
      })
    : [];
  const q = new Map(query);
  const auth = req.headers.authorization;
  if (auth) {
    const m = /^AWS4-HMAC-SHA256 Credential=([^/]+)\/([^,]+), ?SignedHeaders=([^,]+), ?Signature=([0-9a-f]{64})$/.exec(auth);
    if (!m) return 'unsupported Authorization';
    const amzDate = String(req.headers['x-amz-date'] ?? '');
    return { accessKey: m[1]!, scope: m[2]!, date: m[2]!.split('/')[0]!, amzDate, signedHeaders: m[3]!.split(';'), signature: m[4]!, payloadHash: String(req.headers['x-amz-content-sha256'] ?? sha256('')), query };
  }
  if (q.get('X-Amz-Algorithm') === 'AWS4-HMAC-SHA256') {
    const cred = q.get('X-Amz-Credential') ?? '';
    const i = cred.indexOf('/');
    const amzDate = q.get('X-Amz-Date') ?? '';
    const expires = Number(q.get('X-Amz-Expires') ?? '0');
    const t = Date.parse(amzDate.replace(/^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/, '$1-$2-$3T$4:$5:$6Z'));
    if (!Number.isFinite(t) || !(expires > 0) || Date.now() > t + expires * 1000) return 'presigned URL expired';
    return {
      accessKey: cred.slice(0, i),
      scope: cred.slice(i + 1),
      date: cred.slice(i + 1).split('/')[0] ?? '',
      amzDate,
      signedHeaders: (q.get('X-Amz-SignedHeaders') ?? 'host').split(';'),
      signature: q.get('X-Amz-Signature') ?? '',
      payloadHash: 'UNSIGNED-PAYLOAD',
      query: query.filter(([k]) => k !== 'X-Amz-Signature'),
    };
  }
  void path;
  return 'request not signed';
}

export function sigV4Gate(creds: { accessKey: string; secretKey: string }): (ctx: KoaContext, next: () => Promise<void>) => Promise<void> {
  return async (ctx, next) => {
    const req = ctx.req;
    const url = req.url ?? '/';
    const qi = url.indexOf('?');
    const path = qi < 0 ? url : url.slice(0, qi);
    const p = parse(req, path, qi < 0 ? '' : url.slice(qi + 1));
    let why = typeof p === 'string' ? p : undefined;
    if (typeof p !== 'string') {
      if (p.accessKey !== creds.accessKey) why = 'unknown access key';
      else {
        const headers = p.signedHeaders
          .map((h) => {
            const v = req.headers[h];
            return `${h}:${(Array.isArray(v) ? v.join(',') : (v ?? '')).trim().replace(/\s+/g, ' ')}\n`;
          })
          .join('');
        const canonical = [req.method ?? 'GET', path, canonicalQuery(p.query), headers, p.signedHeaders.join(';'), p.payloadHash].join('\n');
        const toSign = ['AWS4-HMAC-SHA256', p.amzDate, p.scope, sha256(canonical)].join('\n');
        const [, region = '', service = '', term = ''] = p.scope.split('/');
        const key = hmac(hmac(hmac(hmac(`AWS4${creds.secretKey}`, p.date), region), service), term);
        const expected = hmac(key, toSign).toString('hex');
        const ok = p.signature.length === expected.length && crypto.timingSafeEqual(Buffer.from(p.signature), Buffer.from(expected));
        if (!ok) why = 'signature does not match';
      }
    }
    if (why) {
      ctx.status = 403;
      ctx.type = 'application/xml';
      ctx.body = `<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied</Code><Message>${why}</Message></Error>`;
      return;
    }
    await next();
  };
}
