import type { Agent } from 'node:http';
import type { Pool } from '../../../infra/db/pool.ts';
import { createLogger } from '../../../infra/logger.ts';
import type { Channel, ChannelResult, SendTracker, SmsProvider, SmsProviderEvents } from '../types.ts';
import { SmppChannel } from '../SmppChannel.ts';
import { CmppChannel } from './CmppChannel.ts';
import { AliyunSmsProvider } from './AliyunSmsProvider.ts';
import { TencentSmsProvider } from './TencentSmsProvider.ts';
import { dbTemplateResolver, type TemplateResolver } from './TemplateResolver.ts';

// The 'sms' channel of a deployment with several providers: for each send, the providers configured
// (sms_providers) at the nearest unit above the branch that has any — a city's, or a county's own —
// in their priority order. A provider that cannot take the message (down, throttled, per-number limit,
// refused) hands it to the next; the signature is the one of that unit's row (text providers get it as
// 【…】 in front of the text, cloud providers as SignName with the template of the reminder's kind).

const log = createLogger('scheduler.sms.router');

export interface ProviderRow {
  id: number; unit_id: number; name: string; kind: 'smpp' | 'cmpp' | 'aliyun' | 'tencent'; priority: number; signature: string;
  rate_per_s: number; settings: Record<string, unknown>; templates: Record<string, string>; credentials: Record<string, unknown>; updated_at: Date;
}

export interface SmsRouterOptions {
  /** Used where no unit above the branch has providers (e.g. the SMPP_* environment). */
  fallback?: Channel;
  /** For tests: an HTTP agent for the cloud SDKs (local API stand-in). */
  agent?: Agent;
  templates?: TemplateResolver;
  /** A provider whose rate limit would make a send wait longer than this is skipped for now. */
  maxRateWaitMs?: number;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** 【signature】 in front of a text that has none. */
export const withSignature = (body: string, signature: string) => (body.startsWith('【') ? body : `【${signature}】${body}`);

export class SmsRouter implements Channel {
  readonly name = 'sms' as const;
  private readonly instances = new Map<number, { updatedAt: number; provider: SmsProvider }>();
  private readonly nextSlot = new Map<number, number>();
  private readonly templates: TemplateResolver;

  constructor(private readonly pool: Pool, private readonly events: SmsProviderEvents, private readonly opts: SmsRouterOptions = {}) {
    this.templates = opts.templates ?? dbTemplateResolver(pool);
  }

  /** The providers for a send, in fallback order. */
  async providersFor(sendId: number): Promise<ProviderRow[]> {
    const { rows } = await this.pool.query<ProviderRow>(
      `WITH anc AS (
         SELECT a.id, t.depth FROM message_sends s JOIN reminders r ON r.id = s.reminder_id JOIN branches b ON b.id = r.branch_id
           JOIN units u ON u.id = b.unit_id
           CROSS JOIN LATERAL unnest(string_to_array(rtrim(u.path, '.'), '.')::bigint[]) AS a(id) JOIN units t ON t.id = a.id
          WHERE s.id = $1
       ), owner AS (
         SELECT anc.id FROM anc WHERE EXISTS (SELECT 1 FROM sms_providers p WHERE p.unit_id = anc.id AND p.enabled)
          ORDER BY anc.depth DESC LIMIT 1
       )
       SELECT p.id, p.unit_id, p.name, p.kind, p.priority, p.signature, p.rate_per_s, p.settings, p.templates, p.credentials, p.updated_at
         FROM sms_providers p JOIN owner ON owner.id = p.unit_id WHERE p.enabled ORDER BY p.priority`,
      [sendId],
    );
    return rows;
  }

  private instance(row: ProviderRow): SmsProvider {
    const have = this.instances.get(row.id);
    if (have && have.updatedAt === row.updated_at.getTime()) return have.provider;
    if (have) void have.provider.close().catch(() => undefined); // settings changed: a new connection
    const s = row.settings;
    const c = row.credentials;
    const tpl = { secretary: String(row.templates.secretary ?? ''), supervisor: String(row.templates.supervisor ?? '') };
    let provider: SmsProvider;
    switch (row.kind) {
      case 'smpp': {
        const ch = new SmppChannel({ ...(s as object), systemId: String(c.systemId ?? ''), password: String(c.password ?? '') } as never, this.events.onReceipt, this.events.onMo);
        ch.start();
        provider = ch;
        break;
      }
      case 'cmpp':
        provider = new CmppChannel({ ...(s as object), sharedSecret: String(c.sharedSecret ?? '') } as never, this.events);
        break;
      case 'aliyun':
        provider = new AliyunSmsProvider({ ...(s as object), accessKeyId: String(c.accessKeyId ?? ''), accessKeySecret: String(c.accessKeySecret ?? ''), signName: row.signature, templates: tpl } as never, this.templates);
        break;
      case 'tencent':
        provider = new TencentSmsProvider({ ...(s as object), secretId: String(c.secretId ?? ''), secretKey: String(c.secretKey ?? ''), signName: row.signature, templates: tpl } as never, this.templates, this.opts.agent);
        break;
    }
    this.instances.set(row.id, { updatedAt: row.updated_at.getTime(), provider });
    return provider;
  }

  /** Per-provider rate: sends are spaced 1/rate seconds apart; false when the wait would be too long. */
  private async slot(row: ProviderRow): Promise<boolean> {
    const now = Date.now();
    const at = Math.max(now, this.nextSlot.get(row.id) ?? 0);
    if (at - now > (this.opts.maxRateWaitMs ?? 5000)) return false;
    this.nextSlot.set(row.id, at + 1000 / row.rate_per_s);
    if (at > now) await sleep(at - now);
    return true;
  }

  /** Whether any unit has providers, re-read every 10 s: a deployment on SMPP_* alone pays no look-up per send. */
  private async anyProviders(): Promise<boolean> {
    const now = Date.now();
    if (this.anyCache && now - this.anyCache.at < 10_000) return this.anyCache.value;
    const { rows } = await this.pool.query<{ any: boolean }>(`SELECT EXISTS (SELECT 1 FROM sms_providers WHERE enabled) AS any`);
    this.anyCache = { at: now, value: rows[0]?.any === true };
    return this.anyCache.value;
  }

  private anyCache: { at: number; value: boolean } | null = null;

  async send(address: string, body: string, ref?: number, tracker?: SendTracker): Promise<ChannelResult> {
    const rows = ref === undefined || !(await this.anyProviders()) ? [] : await this.providersFor(ref);
    if (rows.length === 0) {
      if (this.opts.fallback) return this.opts.fallback.send(address, body, ref, tracker);
      return { ok: false, retryable: false, reason: 'no SMS provider configured for this unit' };
    }
    let last: ChannelResult = { ok: false, retryable: true, unavailable: true, reason: 'no provider free' };
    for (const row of rows) {
      if (!(await this.slot(row))) {
        last = { ok: false, retryable: true, unavailable: true, retryAfterMs: 1000, reason: `${row.name}: rate limit` };
        continue;
      }
      let r: ChannelResult;
      try {
        const p = this.instance(row);
        r = await p.send(address, row.kind === 'smpp' || row.kind === 'cmpp' ? withSignature(body, row.signature) : body, ref, tracker);
      } catch (err) {
        // A provider row whose settings do not parse: skip it, say so.
        r = { ok: false, retryable: false, reason: `${row.name}: ${(err as Error).message.slice(0, 200)}` };
      }
      await this.note(ref!, row, r);
      if (r.ok || r.uncertain) return r; // an uncertain part stays with its provider (its receipt may confirm it)
      log.info({ sendId: ref, provider: row.name, reason: r.reason }, 'provider did not take the message; next');
      last = r;
    }
    return last;
  }

  private async note(sendId: number, row: ProviderRow, r: ChannelResult): Promise<void> {
    await this.pool.query(`UPDATE message_sends SET provider = $2 WHERE id = $1`, [sendId, `${row.kind}:${row.name}`]);
    if (!r.ok) {
      await this.pool.query(`INSERT INTO message_send_events (send_id, state, detail) VALUES ($1, 'provider', $2)`, [sendId, `${row.kind}:${row.name}: ${r.reason}`.slice(0, 500)]);
    }
  }

  async close(): Promise<void> {
    await Promise.all([...this.instances.values()].map((i) => i.provider.close().catch(() => undefined)));
    this.instances.clear();
  }
}
