import type { Pool } from '../../../infra/db/pool.ts';
import { periodOf } from '../../../scheduler/reminders/plan.ts';
import { notFound } from '../errors.ts';
import { idParam, type ApiRoutes } from '../route-registry.ts';

// In-app to-dos beside SMS/Beidou: reminders for secretaries and supervisors, ledgers to review,
// postponements to decide. Each belongs to a unit and a role; a user sees those of their own unit and role.

interface TodoRow {
  id: number; kind: string; title_zh: string | null; title_en: string | null; object_type: string | null; object_id: string | null;
  due_at: Date | null; created_at: Date; done_at: Date | null; reminder_id: number | null;
}

const out = (t: TodoRow) => ({
  id: Number(t.id), kind: t.kind, titleZh: t.title_zh, titleEn: t.title_en, objectType: t.object_type, objectId: t.object_id,
  dueAt: t.due_at, createdAt: t.created_at, doneAt: t.done_at, reminderId: t.reminder_id === null ? null : Number(t.reminder_id),
});

export function registerTodoRoutes(routes: ApiRoutes, pool: Pool): void {
  const tag = 'todos';
  routes.add(
    { method: 'get', path: '/todos', summary: 'Open to-dos of the caller\'s unit and role', tag },
    async ({ user }) => {
      const { rows } = await pool.query<TodoRow>(
        // A reminder's to-do goes away by itself once its period is done (sessions passed) or postponed.
        `SELECT t.id, t.kind, t.title_zh, t.title_en, t.object_type, t.object_id, t.due_at, t.created_at, t.done_at, t.reminder_id
           FROM todos t LEFT JOIN reminders r ON r.id = t.reminder_id
          WHERE t.unit_id = $1 AND t.role = $2 AND t.done_at IS NULL
            AND (r.id IS NULL OR (
              (SELECT count(*) FROM meeting_sessions s JOIN session_obligations so ON so.session_id = s.id
                 LEFT JOIN completion_checks c ON c.session_id = s.id
                WHERE s.branch_id = r.branch_id AND so.obligation = r.obligation AND NOT s.cancelled
                  AND (r.party_group_id IS NULL OR so.party_group_id = r.party_group_id)
                  AND s.starts_at >= obligation_period_start(${periodOf('r')}, r.period_end - interval '1 second')
                  AND s.starts_at < r.period_end AND coalesce(so.passed, c.passed, false)) < r.required_count
              AND NOT EXISTS (SELECT 1 FROM obligation_postponements op
                               WHERE op.branch_id = r.branch_id AND op.obligation = r.obligation AND op.state = 'approved'
                                 AND coalesce(op.party_group_id, 0) = coalesce(r.party_group_id, 0) AND op.period_key = r.period_key)))
          ORDER BY t.due_at NULLS LAST, t.id LIMIT 500`,
        [user.unitId, user.role],
      );
      return { items: rows.map(out) };
    },
  );
  routes.add(
    { method: 'post', path: '/todos/:id/done', summary: 'Mark one of the caller\'s to-dos done', tag, params: idParam },
    async ({ params, user }) => {
      const { rows } = await pool.query<TodoRow>(
        `UPDATE todos SET done_at = coalesce(done_at, now()) WHERE id = $1 AND unit_id = $2 AND role = $3
         RETURNING id, kind, title_zh, title_en, object_type, object_id, due_at, created_at, done_at, reminder_id`,
        [params.id, user.unitId, user.role],
      );
      if (!rows[0]) throw notFound('待办', 'to-do');
      return out(rows[0]);
    },
  );
}
