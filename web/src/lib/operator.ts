import { api, ApiError, session, signOut } from './api.ts';
import { countsText, type OpDict } from './operator-i18n.ts';

// Shared by the console's panels: the API's paged answers, field errors next to their inputs, the
// raw-text upload of the org import, and CSV export of what a list shows.

export interface Paged<T> {
  items: T[];
  limit: number;
  offset: number;
  next_offset: number | null;
}

export interface Unit {
  id: number;
  parent_id: number | null;
  level: string;
  name: string;
  code: string | null;
  child_count: number;
}

/** Page size of every console list: the server pages, the page never holds a county's thousands of rows. */
export const PAGE_SIZE = 20;

/**
 * The API's message per form field: a 400 names `body.<field>`, a refused reference names `field`.
 * Whatever names no field lands under '' (shown above the form).
 */
export function fieldErrors(err: unknown): Record<string, string> {
  if (!(err instanceof ApiError)) return { '': err instanceof Error ? err.message : String(err) };
  const out: Record<string, string> = {};
  const d = err.details;
  if (Array.isArray(d)) {
    for (const issue of d as Array<{ path?: string; message?: string }>) {
      const field = /^body\.([a-z_]+)/.exec(issue.path ?? '')?.[1];
      if (field && issue.message) out[field] = out[field] ? `${out[field]}; ${issue.message}` : issue.message;
    }
  } else if (d && typeof d === 'object' && 'field' in d && typeof (d as { field: unknown }).field === 'string') {
    out[(d as { field: string }).field] = err.message;
  }
  // A 400's own message is the general "invalid request": shown above the form with the fields' details.
  if (Object.keys(out).length === 0 || err.status === 400) out[''] = err.message;
  return out;
}

/** Posts a text body (CSV or JSON file) as it is; answers like `api`. */
export async function postText<T>(path: string, text: string, contentType: string): Promise<T> {
  const s = session();
  let res: Response;
  try {
    res = await fetch(path, { method: 'POST', headers: { 'content-type': contentType, ...(s ? { authorization: `Bearer ${s.token}` } : {}) }, body: text });
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

function csvCell(v: unknown): string {
  const s = v === null || v === undefined ? '' : typeof v === 'object' ? JSON.stringify(v) : String(v);
  // Quote what needs it; a leading = + - @ is neutralised so a spreadsheet does not run it as a formula.
  const safe = /^[=+\-@]/.test(s) ? `'${s}` : s;
  return /[",\n\r]/.test(safe) ? `"${safe.replace(/"/g, '""')}"` : safe;
}

/** Downloads rows as a UTF-8 CSV (with BOM, so spreadsheet programs read the Chinese right). */
export function downloadCsv(filename: string, columns: string[], rows: Array<Record<string, unknown>>): void {
  const text = [columns.join(','), ...rows.map((r) => columns.map((c) => csvCell(r[c])).join(','))].join('\r\n');
  const url = URL.createObjectURL(new Blob(['\ufeff', text], { type: 'text/csv;charset=utf-8' }));
  const a = document.createElement('a');
  a.href = url;
  a.download = filename;
  a.click();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

/** Local date-time for display. */
export function when(iso: string | null | undefined): string {
  return iso ? new Date(iso).toLocaleString('zh-CN', { hour12: false }) : '';
}

/** Thrown by a `latestOnly` guard when a newer request of the same list started meanwhile. */
export class Superseded extends Error {}

/**
 * Guards a list against out-of-order answers: a slow answer to an older request (the first page still
 * loading when the operator filters) must not overwrite a newer one. `latest(p)` settles as p does,
 * unless a later `latest` call started meanwhile; then it rejects with `Superseded`, which the
 * caller ignores.
 */
export function latestOnly(): <T>(request: Promise<T>) => Promise<T> {
  let seq = 0;
  return async <T>(request: Promise<T>): Promise<T> => {
    const mine = ++seq;
    try {
      const value = await request;
      if (mine !== seq) throw new Superseded();
      return value;
    } catch (err) {
      throw mine !== seq ? new Superseded() : err;
    }
  };
}

/**
 * Deletes a row and says what happened: gone, or retired with what was kept (evidence, history) —
 * the API answers 204 for a row nothing refers to, 200 with `kept` counts when it retires instead.
 */
export async function deleteAndSay(o: OpDict, path: string, name: string): Promise<string> {
  const r = await api<{ retired?: boolean; kept?: Record<string, number> } | undefined>('DELETE', path);
  return r?.retired ? `${o.keptAfterDelete} ${countsText(o, r.kept ?? {})}` : `${o.deletedDone}: ${name}`;
}
