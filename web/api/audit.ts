import type { AuthUser } from './auth-context.ts';

// The one way to append to audit_log (logins, every view of a camera or recording, every change).
// Takes a pool or a transaction client, so a change and its audit row commit together.

export interface Queryable {
  query(text: string, values?: unknown[]): Promise<unknown>;
}

export interface AuditEntry {
  action: string; // e.g. login.ok, login.fail, camera.view, recording.view, camera.update
  user?: Pick<AuthUser, 'id' | 'username'> | null;
  /** For events without a signed-in user (a failed login): the name that was tried. */
  username?: string | null;
  objectType?: string;
  objectId?: string | number;
  unitId?: number | null;
  ip?: string | null;
  detail?: Record<string, unknown>;
}

export async function audit(db: Queryable, entry: AuditEntry): Promise<void> {
  await db.query(
    `INSERT INTO audit_log (user_id, username, action, object_type, object_id, unit_id, ip, detail)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
    [
      entry.user?.id ?? null,
      entry.user?.username ?? entry.username ?? null,
      entry.action,
      entry.objectType ?? null,
      entry.objectId === undefined ? null : String(entry.objectId),
      entry.unitId ?? null,
      entry.ip ?? null,
      JSON.stringify(entry.detail ?? {}),
    ],
  );
}
