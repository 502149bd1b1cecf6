import crypto from 'node:crypto';

// Answering an RTSP camera's Basic or Digest challenge (RFC 2617 as RTSP cameras use it), from this
// process only: the camera's password never reaches ffmpeg's argv or a log.

export type Challenge = { scheme: 'basic' } | { scheme: 'digest'; realm: string; nonce: string; qop: string | undefined; opaque: string | undefined; algorithm: string | undefined };

/** The challenge a 401 offers (Digest preferred), from its WWW-Authenticate values. */
export function parseChallenge(values: string[]): Challenge | undefined {
  const digest = values.find((v) => /^digest\s/i.test(v));
  if (digest) {
    const p: Record<string, string> = {};
    for (const m of digest.slice(7).matchAll(/(\w+)=(?:"([^"]*)"|([^,\s]*))/g)) p[m[1]!.toLowerCase()] = m[2] ?? m[3] ?? '';
    if (p.realm === undefined || p.nonce === undefined) return undefined;
    return { scheme: 'digest', realm: p.realm, nonce: p.nonce, qop: p.qop, opaque: p.opaque, algorithm: p.algorithm };
  }
  return values.some((v) => /^basic/i.test(v)) ? { scheme: 'basic' } : undefined;
}

const md5 = (s: string): string => crypto.createHash('md5').update(s).digest('hex');

/** The Authorization header answering `challenge` for one request (nc: the nonce's use count, 1-based). */
export function authorizationHeader(challenge: Challenge, method: string, uri: string, user: string, pass: string, nc: number): string {
  if (challenge.scheme === 'basic') return `Basic ${Buffer.from(`${user}:${pass}`).toString('base64')}`;
  const ha1 = md5(`${user}:${challenge.realm}:${pass}`);
  const ha2 = md5(`${method}:${uri}`);
  const parts = [`username="${user}"`, `realm="${challenge.realm}"`, `nonce="${challenge.nonce}"`, `uri="${uri}"`];
  if (challenge.qop && /(^|,)\s*auth\s*(,|$)/.test(challenge.qop)) {
    const n = nc.toString(16).padStart(8, '0');
    const cnonce = crypto.randomBytes(8).toString('hex');
    parts.push(`response="${md5(`${ha1}:${challenge.nonce}:${n}:${cnonce}:auth:${ha2}`)}"`, 'qop=auth', `nc=${n}`, `cnonce="${cnonce}"`);
  } else parts.push(`response="${md5(`${ha1}:${challenge.nonce}:${ha2}`)}"`);
  if (challenge.opaque !== undefined) parts.push(`opaque="${challenge.opaque}"`);
  if (challenge.algorithm) parts.push(`algorithm=${challenge.algorithm}`);
  return `Digest ${parts.join(', ')}`;
}
