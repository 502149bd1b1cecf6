// The API client of the pages: a bearer token kept for the browser tab, JSON in and out, and
// errors carrying the API's bilingual message.

export interface SessionUser {
  id: number;
  username: string;
  display_name: string;
  role: 'leader' | 'clerk' | 'supervisor' | 'secretary' | 'operator' | 'admin';
  unit_id: number;
  /** An admin set this password: the account must choose its own before anything else. */
  must_change_password?: boolean;
}

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    /** The API's `error.details`: field paths of a 400, the field of a 404 reference, an import's line issues. */
    readonly details?: unknown,
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

const KEY = 'session';

export function session(): { token: string; user: SessionUser } | null {
  const raw = sessionStorage.getItem(KEY);
  return raw ? (JSON.parse(raw) as { token: string; user: SessionUser }) : null;
}

/** Replaces the signed-in user kept for the tab, and its token when the API issued a new one (a password change ends older sessions). */
export function saveSessionUser(user: SessionUser, token?: string): void {
  const s = session();
  if (s) sessionStorage.setItem(KEY, JSON.stringify({ token: token ?? s.token, user }));
}

export function signOut(): void {
  sessionStorage.removeItem(KEY);
}

export async function api<T>(method: 'GET' | 'POST' | 'PATCH' | 'DELETE', path: string, body?: unknown): Promise<T> {
  const s = session();
  let res: Response;
  try {
    res = await fetch(path, {
      method,
      headers: { ...(body !== undefined ? { 'content-type': 'application/json' } : {}), ...(s ? { authorization: `Bearer ${s.token}` } : {}) },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    });
  } catch {
    throw new ApiError(0, 'network', '网络连接失败,请检查网络 / network unreachable');
  }
  const data = (await res.json().catch(() => ({}))) as { error?: { code: string; message: string; details?: unknown } };
  if (!res.ok) {
    if (res.status === 401 && s) signOut();
    throw new ApiError(res.status, data.error?.code ?? 'http', data.error?.message ?? `HTTP ${res.status}`, data.error?.details);
  }
  return data as T;
}

export async function signIn(username: string, password: string): Promise<SessionUser> {
  let r: { token: string; user: SessionUser } | undefined;
  // 19:25, every kiosk of a county behind one NAT address: the API checks at most a few dozen
  // passwords from one address at a time and asks the rest to come back in a moment. That is not a
  // wrong password, so the page waits and asks again instead of showing an error.
  for (let attempt = 0; !r; attempt++) {
    try {
      r = await api<{ token: string; user: SessionUser }>('POST', '/api/auth/login', { username, password });
    } catch (err) {
      if (!(err instanceof ApiError) || err.code !== 'sign_in_busy' || attempt >= 20) throw err;
      const wait = (err.details as { retry_after_ms?: number } | undefined)?.retry_after_ms ?? 1000;
      await new Promise((res) => setTimeout(res, wait + Math.random() * 1000));
    }
  }
  sessionStorage.setItem(KEY, JSON.stringify({ token: r.token, user: r.user }));
  return r.user;
}

/** ws(s):// URL for an SFU path the API hands out (same origin unless absolute). */
export function sfuUrl(pathOrUrl: string): string {
  if (/^wss?:\/\//.test(pathOrUrl)) return pathOrUrl;
  return `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}${pathOrUrl}`;
}

/** A fresh join token for a face-to-face call's room (for a rejoin); fails once the call is over. */
export async function freshCallToken(callId: number, endedMessage: string): Promise<string> {
  const cur = await api<{ join: { token: string } | null }>('GET', `/api/service-calls/${callId}`);
  if (!cur.join) throw new Error(endedMessage);
  return cur.join.token;
}

/**
 * The SFU URL a meeting link names, if it is one of this system's nodes (this origin's /sfu or one the
 * API publishes at /api/sfu-endpoints); null otherwise. A link must not send a kiosk's camera and
 * microphone to a server somebody else chose.
 */
export async function trustedSfuUrl(fromLink: string | null): Promise<string | null> {
  const own = sfuUrl('/sfu');
  let wanted: string;
  try {
    wanted = new URL(sfuUrl(fromLink ?? '/sfu')).href;
  } catch {
    return null;
  }
  if (!/^wss?:$/.test(new URL(wanted).protocol)) return null;
  if (wanted === new URL(own).href) return own;
  try {
    const res = await fetch('/api/sfu-endpoints', { cache: 'no-store' });
    if (!res.ok) return null;
    const { endpoints } = (await res.json()) as { endpoints?: unknown };
    const known = Array.isArray(endpoints) ? endpoints.filter((e): e is string => typeof e === 'string') : [];
    const normal = (u: string): string | null => {
      try {
        return new URL(sfuUrl(u)).href;
      } catch {
        return null;
      }
    };
    return known.some((e) => normal(e) === wanted) ? wanted : null;
  } catch {
    return null;
  }
}
