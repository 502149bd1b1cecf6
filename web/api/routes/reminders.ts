import { z } from 'zod';
import { withTransaction, type Pool, type PoolClient } from '../../../infra/db/pool.ts';
import { HttpError } from '../auth-context.ts';
import { audit } from '../audit.ts';
import { signatureProblem } from '../../../scheduler/reminders/messages.ts';
import { recordReply } from '../../../scheduler/replies/ReplyInbox.ts';
import { timingSafeEqual } from 'node:crypto';
import { SmppConfig } from '../../../scheduler/channels/SmppChannel.ts';
import { CmppConfig } from '../../../scheduler/channels/sms/CmppChannel.ts';
import { AliyunSmsConfig } from '../../../scheduler/channels/sms/AliyunSmsProvider.ts';
import { TencentSmsConfig } from '../../../scheduler/channels/sms/TencentSmsProvider.ts';
import { ApiRoutes, idParam, page, pageQuery } from '../route-registry.ts';
import { requireUnitInScope, scopePattern } from '../scope.ts';
import { notFound } from '../errors.ts';
import { idQuery } from '../schemas.ts';
import { createLogger } from '../../../infra/logger.ts';
import { enqueueReceipts, type ReceiptJob } from '../../../scheduler/jobs/queue.ts';
import { isStatusReport, receiptFromReport } from '../../../scheduler/channels/sms/cloudStatusReports.ts';

const log = createLogger('api.sms-callback');

// The reminders the scheduler decided for branches in a subtree, newest first, each with the
// messages sent for it (channel, delivery state, failure reason) — what a supervisor checks when a
// branch is overdue. Read-only; the scheduler writes these tables.

interface ReminderRow {
  id: number;
  branch_id: number;
  branch_name: string;
  unit_id: number;
  unit_name: string;
  obligation: string;
  period_key: string;
  period_end: Date;
  step: string;
  target: string;
  created_at: Date;
  sends: Array<{ id: number; channel: string; state: string; failure_reason: string | null; parts: number; delivered_at: string | null }>;
}

export function createReminderRoutes(pool: Pool): ApiRoutes {
  const routes = new ApiRoutes();
  routes.add(
    {
      method: 'get',
      path: '/reminders',
      summary: 'Reminders sent for branches under a unit (default: yours), with each message\'s delivery state',
      tag: 'scheduler',
      roles: ['leader', 'supervisor', 'admin', 'secretary'],
      query: z.strictObject({ under: idQuery.optional(), target: z.enum(['secretary', 'supervisor']).optional(), ...pageQuery }),
    },
    async ({ query, user }) => {
      const root = query.under ? await requireUnitInScope(pool, user, query.under, 'under') : { path: user.unitPath };
      const args: unknown[] = [`${root.path}%`, query.limit + 1, query.offset];
      const target = query.target ? `AND r.target = $${args.push(query.target)}` : '';
      const { rows } = await pool.query<ReminderRow>(
        `SELECT r.id, b.id AS branch_id, b.name AS branch_name, u.id AS unit_id, u.name AS unit_name, r.obligation, r.period_key,
                r.period_end, r.step, r.target, r.created_at,
                COALESCE((SELECT json_agg(json_build_object('id', s.id, 'channel', s.channel, 'state', s.state,
                                  'failure_reason', s.failure_reason, 'parts', s.parts, 'delivered_at', s.delivered_at) ORDER BY s.id)
                            FROM message_sends s WHERE s.reminder_id = r.id), '[]') AS sends
           FROM reminders r JOIN branches b ON b.id = r.branch_id JOIN units u ON u.id = b.unit_id
          WHERE u.path LIKE $1 ${target}
          ORDER BY r.id DESC LIMIT $2 OFFSET $3`,
        args,
      );
      return page(
        rows.map((r) => ({
          id: r.id,
          branch: { id: r.branch_id, name: r.branch_name },
          unit: { id: r.unit_id, name: r.unit_name },
          obligation: r.obligation,
          period_key: r.period_key,
          period_end: r.period_end,
          step: r.step,
          target: r.target,
          created_at: r.created_at,
          sends: r.sends,
        })),
        query.limit,
        query.offset,
      );
    },
  );
  routes.add(
    {
      method: 'get',
      path: '/reminders/:id/delivery',
      summary: 'Delivery of one reminder: every attempt with provider, parts, receipts and events, and the replies it got',
      tag: 'scheduler',
      roles: ['leader', 'supervisor', 'admin', 'secretary'],
      params: idParam,
    },
    async ({ params, user }) => {
      const rem = await pool.query<{ id: number; branch_id: number; branch_name: string; obligation: string; period_key: string; step: string; target: string; created_at: Date }>(
        `SELECT r.id, r.branch_id, b.name AS branch_name, r.obligation, r.period_key, r.step, r.target, r.created_at
           FROM reminders r JOIN branches b ON b.id = r.branch_id JOIN units u ON u.id = b.unit_id
          WHERE r.id = $1 AND u.path LIKE $2`,
        [params.id, scopePattern(user)],
      );
      const r = rem.rows[0];
      if (!r) throw notFound('提醒', 'reminder');
      const sends = await pool.query<{
        id: number; channel: string; provider: string | null; address: string; state: string; attempts: number; parts: number;
        failure_reason: string | null; fallback_of: number | null; created_at: Date; sent_at: Date | null; delivered_at: Date | null;
        part_rows: Array<{ part_no: number; state: string; provider_message_id: string | null; detail: string | null }>;
        receipts: Array<{ part_no: number; stat: string; err: string | null; received_at: string }>;
        events: Array<{ at: string; state: string; detail: string | null }>;
      }>(
        `SELECT s.id, s.channel, s.provider, s.address, s.state, s.attempts, s.parts, s.failure_reason, s.fallback_of, s.created_at, s.sent_at, s.delivered_at,
                coalesce((SELECT json_agg(json_build_object('part_no', p.part_no, 'state', p.state, 'provider_message_id', p.provider_message_id, 'detail', p.detail) ORDER BY p.part_no)
                            FROM message_send_parts p WHERE p.send_id = s.id), '[]') AS part_rows,
                coalesce((SELECT json_agg(json_build_object('part_no', x.part_no, 'stat', x.stat, 'err', x.err, 'received_at', x.received_at) ORDER BY x.id)
                            FROM message_send_receipts x WHERE x.send_id = s.id), '[]') AS receipts,
                coalesce((SELECT json_agg(json_build_object('at', e.at, 'state', e.state, 'detail', e.detail) ORDER BY e.id)
                            FROM message_send_events e WHERE e.send_id = s.id), '[]') AS events
           FROM message_sends s WHERE s.reminder_id = $1 ORDER BY s.id`,
        [r.id],
      );
      const replies = await pool.query<{ id: number; channel: string; from_address: string; body: string; received_at: Date; outcome: string; scheduled_for: string | null; postponement_id: number | null; postponement_state: string | null }>(
        `SELECT rr.id, rr.channel, rr.from_address, rr.body, rr.received_at, rr.outcome, to_char(rr.scheduled_for, 'YYYY-MM-DD') AS scheduled_for,
                rr.postponement_id, op.state AS postponement_state
           FROM reminder_replies rr LEFT JOIN obligation_postponements op ON op.id = rr.postponement_id
          WHERE rr.reminder_id = $1 ORDER BY rr.received_at, rr.id`,
        [r.id],
      );
      return {
        reminder: {
          id: Number(r.id), branch: { id: Number(r.branch_id), name: r.branch_name }, obligation: r.obligation, periodKey: r.period_key,
          step: r.step, target: r.target, createdAt: r.created_at,
        },
        attempts: sends.rows.map((s) => ({
          id: Number(s.id), channel: s.channel, provider: s.provider, address: maskAddress(s.address), state: s.state, attempts: s.attempts,
          parts: s.parts, failureReason: s.failure_reason, fallbackOf: s.fallback_of === null ? null : Number(s.fallback_of),
          createdAt: s.created_at, sentAt: s.sent_at, deliveredAt: s.delivered_at,
          partStates: s.part_rows.map((p) => ({ partNo: p.part_no, state: p.state, providerMessageId: p.provider_message_id, detail: p.detail })),
          receipts: s.receipts.map((x) => ({ partNo: x.part_no, stat: x.stat, err: x.err, receivedAt: x.received_at })),
          events: s.events,
        })),
        replies: replies.rows.map((x) => ({
          id: Number(x.id), channel: x.channel, from: maskAddress(x.from_address), text: x.body, receivedAt: x.received_at, outcome: x.outcome,
          scheduledFor: x.scheduled_for, postponementId: x.postponement_id === null ? null : Number(x.postponement_id), postponementState: x.postponement_state,
        })),
      };
    },
  );
  registerSmsProviderRoutes(routes, pool);
  registerCloudCallbackRoutes(routes, pool);
  return routes;
}

/**
 * Replies pushed by cloud SMS (Alibaba "SmsUp" messages, Tencent reply callbacks) to
 * /api/sms/callback/:id/:token, where :id is the provider row and :token its write-only callbackToken
 * credential (the providers sign nothing we could check, so the URL is the secret). Each reply goes to
 * recordReply like an SMPP or CMPP MO. Status reports (Alibaba SmsReport, Tencent 下发状态回调) go to
 * the scheduler through its job queue (scheduler-sms-receipt), whose dispatcher applies them as it does
 * SMPP/CMPP receipts (delivered, or failed and the fallback). If they cannot be queued the answer is
 * 503, so the provider pushes again (both retry a push that is not answered 200).
 */
function registerCloudCallbackRoutes(routes: ApiRoutes, pool: Pool): void {
  routes.add(
    {
      method: 'post', path: '/sms/callback/:id/:token', tag: 'scheduler', public: true,
      // Anonymous: the API's parser skips it, so the route reads its own JSON, bounded (100 items).
      bodyLimit: 64 * 1024,
      summary: 'Cloud SMS push of replies and status reports (Alibaba SmsUp / SmsReport, Tencent reply / status callbacks)',
      params: z.strictObject({ id: z.coerce.number().int().positive().max(Number.MAX_SAFE_INTEGER), token: z.string().min(16).max(128) }),
      body: z.union([z.array(z.record(z.string().max(64), z.unknown())).max(100), z.record(z.string().max(64), z.unknown())]),
    },
    async ({ params, body }) => {
      const row = await pool.query<{ kind: string; token: string | null }>(
        `SELECT kind, credentials->>'callbackToken' AS token FROM sms_providers WHERE id = $1 AND kind IN ('aliyun', 'tencent')`, [params.id]);
      const p = row.rows[0];
      const given = Buffer.from(params.token);
      if (!p?.token || given.length !== Buffer.byteLength(p.token) || !timingSafeEqual(given, Buffer.from(p.token))) throw notFound('回调', 'callback');
      const items = Array.isArray(body) ? body : [body];
      let recorded = 0;
      const reports: ReceiptJob[] = [];
      for (const it of items) {
        if (isStatusReport(p.kind as 'aliyun' | 'tencent', it)) {
          const receipt = receiptFromReport(p.kind as 'aliyun' | 'tencent', it);
          if (receipt) reports.push({ provider: params.id, receipt });
          else log.warn({ provider: params.id }, 'cloud SMS status report without a message id ignored');
          continue;
        }
        const str = (k: string) => (typeof it[k] === 'string' ? (it[k] as string) : typeof it[k] === 'number' ? String(it[k]) : undefined);
        // Alibaba SmsUp: phone_number, content, send_time, sequence_id. Tencent reply: mobile, text, time, (sign, extend).
        const from = str('phone_number') ?? str('mobile');
        const text = str('content') ?? str('text');
        if (!from || text === undefined) continue; // a status report, or nothing we know
        const t = typeof it.time === 'number' ? new Date(it.time * 1000) : str('send_time') ? new Date(`${str('send_time')!.replace(' ', 'T')}+08:00`) : new Date();
        const id = str('sequence_id') ?? (typeof it.time === 'number' ? `${from}:${it.time}` : undefined);
        await recordReply(pool, { channel: 'sms', from, text: text.slice(0, 1000), receivedAt: Number.isNaN(t.getTime()) ? new Date() : t, ...(id ? { providerMessageId: `${p.kind}:${id}` } : {}) });
        recorded++;
      }
      if (reports.length > 0) {
        try {
          await enqueueReceipts(pool, reports);
        } catch (err) {
          log.error({ err: String(err), provider: params.id, reports: reports.length }, 'cloud SMS status reports not queued');
          throw new HttpError(503, 'reports_not_queued', '状态报告暂时无法处理，请稍后重推 / status reports cannot be taken now, push again later');
        }
      }
      const extra = reports.length > 0 ? { reports: reports.length } : {};
      return p.kind === 'aliyun' ? { code: 0, msg: '成功', recorded, ...extra } : { result: 0, errmsg: 'OK', recorded, ...extra };
    },
  );
}

const providerKinds = ['smpp', 'cmpp', 'aliyun', 'tencent'] as const;
// What each kind needs besides the row's own fields; credentials are write-only.
const credentialKeys: Record<(typeof providerKinds)[number], string[]> = {
  smpp: ['systemId', 'password'], cmpp: ['sharedSecret'], aliyun: ['accessKeyId', 'accessKeySecret'], tencent: ['secretId', 'secretKey'],
};
const ProviderBody = z.strictObject({
  name: z.string().trim().min(1).max(40),
  kind: z.enum(providerKinds),
  priority: z.number().int().min(1).max(20),
  enabled: z.boolean().default(true),
  signature: z.string().trim().min(2).max(22),
  ratePerS: z.number().int().min(1).max(1000).default(10),
  settings: z.record(z.string().max(40), z.union([z.string().max(200), z.number(), z.boolean()])).default({}),
  templates: z.strictObject({ secretary: z.string().max(40), supervisor: z.string().max(40) }).partial().default({}),
  /** Omitted: keep what is stored for the provider of that name. */
  credentials: z.record(z.string().max(40), z.string().max(200)).optional(),
});

interface ProviderDbRow {
  id: number; name: string; kind: string; priority: number; enabled: boolean; signature: string; rate_per_s: number;
  settings: Record<string, unknown>; templates: Record<string, string>; credential_keys: string[]; updated_at: Date;
}

const providerOut = (r: ProviderDbRow) => ({
  id: Number(r.id), name: r.name, kind: r.kind, priority: r.priority, enabled: r.enabled, signature: r.signature, ratePerS: r.rate_per_s,
  settings: r.settings, templates: r.templates, credentialsSet: r.credential_keys, updatedAt: r.updated_at,
});

async function listProviders(db: Pool | PoolClient, unitId: number): Promise<ProviderDbRow[]> {
  // credentials themselves are never selected: only which keys are set.
  const { rows } = await db.query<ProviderDbRow>(
    `SELECT id, name, kind, priority, enabled, signature, rate_per_s, settings, templates,
            ARRAY(SELECT jsonb_object_keys(credentials) ORDER BY 1) AS credential_keys, updated_at
       FROM sms_providers WHERE unit_id = $1 ORDER BY priority`, [unitId]);
  return rows;
}

/** SMS providers of a unit (a city, or a county with its own): order = fallback order; signature per unit. */
function registerSmsProviderRoutes(routes: ApiRoutes, pool: Pool): void {
  routes.add(
    {
      method: 'get', path: '/units/:id/sms-providers', tag: 'scheduler', roles: ['admin', 'leader', 'supervisor'], params: idParam,
      summary: 'SMS providers of a unit in fallback order (credentials are never returned)',
    },
    async ({ params, user }) => {
      const unit = await requireUnitInScope(pool, user, params.id);
      return { unitId: Number(unit.id), providers: (await listProviders(pool, unit.id)).map(providerOut) };
    },
  );
  routes.add(
    {
      method: 'put', path: '/units/:id/sms-providers', tag: 'scheduler', roles: ['admin'], params: idParam,
      summary: 'Replace the SMS providers of a unit (order, signature, templates, rate; credentials write-only)',
      body: z.strictObject({ providers: z.array(ProviderBody).max(10) }),
    },
    async ({ params, body, user, req }) =>
      withTransaction(pool, async (c) => {
        const unit = await requireUnitInScope(c, user, params.id);
        const names = new Set<string>();
        const prios = new Set<number>();
        const existing = await c.query<{ name: string; credentials: Record<string, string> }>(`SELECT name, credentials FROM sms_providers WHERE unit_id = $1 FOR UPDATE`, [unit.id]);
        const stored = new Map(existing.rows.map((r) => [r.name, r.credentials]));
        for (const [i, p] of body.providers.entries()) {
          const field = `providers.${i}`;
          if (names.has(p.name) || prios.has(p.priority)) throw new HttpError(422, 'duplicate_provider', '名称和顺序不得重复 / names and priorities must be unique', { field });
          names.add(p.name);
          prios.add(p.priority);
          const problem = signatureProblem(p.signature);
          if (problem) throw new HttpError(422, 'bad_signature', problem, { field: `${field}.signature` });
          const creds = p.credentials ?? stored.get(p.name) ?? {};
          const missing = credentialKeys[p.kind].filter((k) => !creds[k]);
          if (missing.length) throw new HttpError(422, 'credentials_required', `缺少凭据：${missing.join('、')} / credentials missing: ${missing.join(', ')}`, { field: `${field}.credentials` });
          if ((p.kind === 'aliyun' || p.kind === 'tencent') && (!p.templates.secretary || !p.templates.supervisor)) {
            throw new HttpError(422, 'templates_required', '云短信须为书记提醒和督办各配置模板 / cloud SMS needs a template for each reminder kind', { field: `${field}.templates` });
          }
          // The settings as the provider will read them, so a row that could never connect is refused now.
          const schema = { smpp: SmppConfig, cmpp: CmppConfig, aliyun: AliyunSmsConfig, tencent: TencentSmsConfig }[p.kind];
          const parsed = schema.safeParse({ ...p.settings, ...creds, signName: p.signature.replace(/^【|】$/g, ''), templates: p.templates });
          if (!parsed.success) {
            const issue = parsed.error.issues[0]!;
            throw new HttpError(422, 'bad_settings', `服务商设置无效：${issue.path.join('.')} / invalid provider settings: ${issue.path.join('.')} ${issue.message}`, { field: `${field}.settings` });
          }
        }
        await c.query(`DELETE FROM sms_providers WHERE unit_id = $1`, [unit.id]);
        for (const p of body.providers) {
          await c.query(
            `INSERT INTO sms_providers (unit_id, name, kind, priority, enabled, signature, rate_per_s, settings, templates, credentials)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
            [unit.id, p.name, p.kind, p.priority, p.enabled, p.signature.replace(/^【|】$/g, ''), p.ratePerS, JSON.stringify(p.settings),
              JSON.stringify(p.templates), JSON.stringify(p.credentials ?? stored.get(p.name) ?? {})],
          );
        }
        // The audit records what changed, never the credentials.
        await audit(c, { user, action: 'sms_providers.set', objectType: 'unit', objectId: unit.id, unitId: unit.id, ip: req.ip,
          detail: { providers: body.providers.map((p) => ({ name: p.name, kind: p.kind, priority: p.priority, signature: p.signature, credentialsChanged: p.credentials !== undefined })) } });
        return { unitId: Number(unit.id), providers: (await listProviders(c, unit.id)).map(providerOut) };
      }),
  );
}

/** A handset number with its middle four digits hidden (138****0001), as operators show them; cards as they are. */
function maskAddress(a: string): string {
  return /^\d{11}$/.test(a) ? `${a.slice(0, 3)}****${a.slice(7)}` : a;
}
