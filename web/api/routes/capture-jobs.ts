import { z } from 'zod';
import { withTransaction, type Pool } from '../../../infra/db/pool.ts';
import type { Role } from '../../../infra/tokens.ts';
import { FAILURE_TEXT, type CaptureFailureReason } from '../../../recorder/CaptureFailure.ts';
import { audit } from '../audit.ts';
import { HttpError, inSubtree } from '../auth-context.ts';
import { notFound } from '../errors.ts';
import { idParam, page, pageQuery, type ApiRoutes } from '../route-registry.ts';
import { scopePattern } from '../scope.ts';

// Capture jobs as data (issue 15): what each job did — state, why it failed, how much of its window
// it covered, which recorder host holds it — listed and read within the caller's subtree (404
// outside), and cancelled by the roles that may schedule them (audited).

const CANCEL_ROLES: readonly Role[] = ['leader', 'supervisor', 'operator', 'admin'];
const STATES = ['scheduled', 'recording', 'done', 'partial', 'failed', 'cancelled'] as const;


const listQuery = z.strictObject({
  ...pageQuery,
  camera_id: z.coerce.number().int().positive().max(Number.MAX_SAFE_INTEGER).optional(),
  unit_id: z.coerce.number().int().positive().max(Number.MAX_SAFE_INTEGER).optional(),
  state: z.enum(STATES).optional(),
  /** Jobs whose window overlaps [from, to). */
  from: z.coerce.date().optional(),
  to: z.coerce.date().optional(),
});

const cancelBody = z.union([z.undefined(), z.strictObject({ note: z.string().trim().max(500).optional() })]);

interface JobRow {
  id: number;
  camera_id: number;
  camera_name: string;
  unit_id: number;
  unit_name: string;
  unit_path: string;
  session_id: number | null;
  starts_at: Date;
  ends_at: Date;
  pre_roll_s: number;
  post_roll_s: number;
  state: string;
  reason: string | null;
  error: string | null;
  covered_s: number;
  evidence: boolean;
  recorder_id: string | null;
  lease_until: Date | null;
  takeovers: number;
  started_capture_at: Date | null;
  finished_at: Date | null;
  created_at: Date;
}

const SELECT = `SELECT j.id, j.camera_id, c.name AS camera_name, c.unit_id, u.name AS unit_name, u.path AS unit_path, j.session_id,
         j.starts_at, j.ends_at, j.pre_roll_s, j.post_roll_s, j.state, j.reason, j.error, j.covered_s, j.evidence,
         j.recorder_id, j.lease_until, j.takeovers, j.started_capture_at, j.finished_at, j.created_at
    FROM capture_jobs j JOIN cameras c ON c.id = j.camera_id JOIN units u ON u.id = c.unit_id`;

function present(r: JobRow) {
  const windowS = (r.ends_at.getTime() - r.starts_at.getTime()) / 1000 + r.pre_roll_s + r.post_roll_s;
  return {
    id: Number(r.id),
    camera_id: Number(r.camera_id),
    camera_name: r.camera_name,
    unit_id: Number(r.unit_id),
    unit_name: r.unit_name,
    session_id: r.session_id === null ? null : Number(r.session_id),
    starts_at: r.starts_at.toISOString(),
    ends_at: r.ends_at.toISOString(),
    pre_roll_s: r.pre_roll_s,
    post_roll_s: r.post_roll_s,
    window_s: windowS,
    covered_s: Math.round(Number(r.covered_s) * 10) / 10,
    state: r.state,
    reason: r.reason,
    // One vocabulary with live inspection's tiles: words an operator can act on, Chinese first.
    reason_text: r.reason && r.reason in FAILURE_TEXT ? FAILURE_TEXT[r.reason as CaptureFailureReason] : null,
    // ffmpeg's words, without any address (a relay token or a camera URL is nobody's business here).
    detail: r.error?.replace(/[a-z][a-z0-9+.-]*:\/\/\S+/gi, '[url]') ?? null,
    evidence: r.evidence,
    recorder_id: r.recorder_id,
    lease_until: r.lease_until?.toISOString() ?? null,
    takeovers: r.takeovers,
    started_capture_at: r.started_capture_at?.toISOString() ?? null,
    finished_at: r.finished_at?.toISOString() ?? null,
    created_at: r.created_at.toISOString(),
  };
}

export function registerCaptureJobRoutes(routes: ApiRoutes, pool: Pool): void {
  const tag = 'recordings';

  routes.add(
    {
      method: 'get',
      path: '/capture-jobs',
      summary: 'Capture jobs of cameras in your subtree: state, failure reason, covered seconds of the window, recorder host (filters: camera, unit, state, window overlap; paged)',
      tag,
      query: listQuery,
      responses: { '404': 'camera_id or unit_id not in your subtree' },
    },
    async ({ query, user }) => {
      let prefix = scopePattern(user);
      if (query.unit_id !== undefined) {
        const u = await pool.query<{ path: string }>('SELECT path FROM units WHERE id = $1', [query.unit_id]);
        if (!u.rows[0] || !inSubtree(user, u.rows[0].path)) throw notFound('单位', 'unit', { field: 'unit_id' });
        prefix = `${u.rows[0].path}%`;
      }
      if (query.camera_id !== undefined) {
        const c = await pool.query<{ path: string }>('SELECT u.path FROM cameras c JOIN units u ON u.id = c.unit_id WHERE c.id = $1', [query.camera_id]);
        if (!c.rows[0] || !inSubtree(user, c.rows[0].path)) throw notFound('摄像机', 'camera', { field: 'camera_id' });
      }
      if (query.from && query.to && query.to <= query.from) throw new HttpError(400, 'invalid_range', '结束时间须晚于开始时间 / to must be after from');
      const args: unknown[] = [prefix];
      const where = ['u.path LIKE $1'];
      const add = (sql: string, v: unknown): void => {
        args.push(v);
        where.push(sql.replace('?', `$${args.length}`));
      };
      if (query.camera_id !== undefined) add('j.camera_id = ?', query.camera_id);
      if (query.state) add('j.state = ?', query.state);
      if (query.from) add("j.ends_at + make_interval(secs => j.post_roll_s) > ?", query.from);
      if (query.to) add("j.starts_at - make_interval(secs => j.pre_roll_s) < ?", query.to);
      // Newest first; keyset walks down by id.
      if (query.after_id !== undefined) add('j.id < ?', query.after_id);
      args.push(query.limit + 1, query.after_id !== undefined ? 0 : query.offset);
      const { rows } = await pool.query<JobRow>(
        `${SELECT} WHERE ${where.join(' AND ')} ORDER BY j.id DESC LIMIT $${args.length - 1} OFFSET $${args.length}`,
        args,
      );
      return page(rows.map(present), query.limit, query.offset);
    },
  );

  const requireJob = async (id: number, user: Parameters<typeof inSubtree>[0]): Promise<JobRow> => {
    const { rows } = await pool.query<JobRow>(`${SELECT} WHERE j.id = $1`, [id]);
    const r = rows[0];
    if (!r || !inSubtree(user, r.unit_path)) throw notFound('录制任务', 'capture job');
    return r;
  };

  routes.add(
    { method: 'get', path: '/capture-jobs/:id', summary: 'One capture job of your subtree and its outcome', tag, params: idParam },
    async ({ params, user }) => present(await requireJob(params.id, user)),
  );

  routes.add(
    {
      method: 'post',
      path: '/capture-jobs/:id/cancel',
      summary: 'Cancel a scheduled or running capture job of your subtree (leader, supervisor, operator, admin; audited); segments already recorded are kept',
      tag,
      roles: CANCEL_ROLES,
      params: idParam,
      body: cancelBody,
      bodyLimit: 4096,
      responses: { '409': 'the job has already finished (not_open)' },
    },
    async ({ params, body, user, req }) => {
      const job = await requireJob(params.id, user);
      // The cancel and its audit row commit together.
      await withTransaction(pool, async (db) => {
        const { rows } = await db.query<{ id: number }>(
          `UPDATE capture_jobs SET state = 'cancelled', finished_at = now(), lease_until = NULL, cancelled_by = $2,
                  error = COALESCE($3, 'cancelled by ' || $4)
            WHERE id = $1 AND state IN ('scheduled', 'recording') RETURNING id`,
          [job.id, user.id, body?.note ?? null, user.username],
        );
        if (!rows[0]) throw new HttpError(409, 'not_open', `录制任务已结束（${job.state}） / the capture job has already finished (${job.state})`);
        await audit(db, {
          action: 'capture.cancel',
          user,
          objectType: 'capture_job',
          objectId: job.id,
          unitId: Number(job.unit_id),
          ip: req.ip ?? null,
          detail: { camera_id: Number(job.camera_id), was: job.state, note: body?.note ?? null },
        });
      });
      return present(await requireJob(job.id, user));
    },
  );
}
