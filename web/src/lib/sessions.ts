// The 三会一课 pages' client side: shapes of the sessions/ledger API (issue 16) and small helpers.
import { ApiError, session } from './api.ts';

export interface Session {
  id: number;
  branchId: number;
  branchName: string;
  unitId: number;
  unitName: string;
  obligation: string;
  kinds: string[];
  partyGroupId: number | null;
  topic: string | null;
  agenda: string | null;
  startsAt: string;
  endsAt: string;
  cameraId: number | null;
  state: 'planned' | 'running' | 'ended' | 'cancelled';
  origin: string;
  chairName?: string | null;
  minutes: string | null;
  ledgerState: 'draft' | 'submitted' | 'approved' | 'returned';
  ledgerNote: string | null;
  present?: number;
  checkPassed?: boolean | null;
}

export interface QuorumVerdict { obligation: string; rule: string; expected: number; present: number; passed: boolean; message?: string }

export interface SessionDetail {
  session: Session;
  kinds: { obligation: string; nameZh?: string; nameEn?: string; passed: boolean | null; reasons: unknown }[];
  expected: { memberId: number; name: string; membership: string }[];
  attendance: { memberId: number; name: string; status: 'present' | 'absent' | 'leave'; reason: string | null; source: string }[];
  quorum: QuorumVerdict[];
  check: { passed: boolean; reasons: unknown; coveredS: number; requiredS: number } | null;
  ledger: { state: string; note: string | null; minutes: string | null };
  photos: { offsetS: number; url: string }[];
}

export interface KindOption { obligation: string; nameZh: string; nameEn: string; scope: string; quorum: string }

/** PUT is not in lib/api's client; same token, same bilingual errors. */
export async function apiPut<T>(path: string, body: unknown): Promise<T> {
  const s = session();
  const res = await fetch(path, {
    method: 'PUT',
    headers: { 'content-type': 'application/json', ...(s ? { authorization: `Bearer ${s.token}` } : {}) },
    body: JSON.stringify(body),
  });
  const data = (await res.json().catch(() => ({}))) as { error?: { code: string; message: string } };
  if (!res.ok) throw new ApiError(res.status, data.error?.code ?? 'http', data.error?.message ?? `HTTP ${res.status}`);
  return data as T;
}

/** Public (not signed-in) JSON call for the phone pages. */
export async function publicApi<T>(method: 'GET' | 'POST', path: string, body?: unknown): Promise<T> {
  const res = await fetch(path, {
    method,
    headers: body !== undefined ? { 'content-type': 'application/json' } : {},
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  const data = (await res.json().catch(() => ({}))) as { error?: { code: string; message: string } };
  if (!res.ok) throw new ApiError(res.status, data.error?.code ?? 'http', data.error?.message ?? `HTTP ${res.status}`);
  return data as T;
}

/** A value for <input type="datetime-local"> in the browser's zone. */
export function localInput(d: Date): string {
  const p = (n: number) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

export function fmtTime(iso: string, lang: 'zh' | 'en'): string {
  return new Date(iso).toLocaleString(lang === 'zh' ? 'zh-CN' : 'en-GB', { hour12: false });
}

/** Hash query of routes like #/ledger/12?from=..&to=.. */
export function hashQuery(): URLSearchParams {
  const h = location.hash;
  const i = h.indexOf('?');
  return new URLSearchParams(i >= 0 ? h.slice(i + 1) : '');
}
