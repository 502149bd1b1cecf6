import type { Agent } from 'node:http';
import tencentSms from 'tencentcloud-sdk-nodejs-sms';
import { z } from 'zod';
import { createLogger } from '../../../infra/logger.ts';
import type { ChannelResult, SendTracker, SmsProvider } from '../types.ts';
import type { TemplateResolver } from './TemplateResolver.ts';

// Tencent Cloud SMS (sms 2021-01-11 SendSms) through the official SDK, which signs with TC3-HMAC-SHA256.
// Templates take positional parameters (TemplateParamSet), in the order below per reminder kind.
// RequestLimitExceeded (the API's rate) is retried later; LimitExceeded.PhoneNumberDailyLimit and the
// other per-number limits cannot succeed today on this provider: the send moves on (next provider / Beidou).

const log = createLogger('scheduler.sms.tencent');
const SmsClient = tencentSms.sms.v20210111.Client;

export const TencentSmsConfig = z.object({
  endpoint: z.string().min(1).default('sms.tencentcloudapi.com'),
  protocol: z.enum(['https://', 'http://']).default('https://'),
  region: z.string().default('ap-guangzhou'),
  secretId: z.string().min(1),
  secretKey: z.string().min(1),
  smsSdkAppId: z.string().min(1),
  signName: z.string().min(2).max(20),
  templates: z.object({ secretary: z.string().min(1), supervisor: z.string().min(1) }),
  throttleRetryMs: z.number().int().min(100).max(3_600_000).default(60_000),
});
export type TencentSmsConfig = z.input<typeof TencentSmsConfig>;

export const templateOrder: Record<'secretary' | 'supervisor', string[]> = {
  secretary: ['branch', 'period', 'item', 'done', 'required', 'deadline'],
  supervisor: ['unit', 'branch', 'period', 'item', 'done', 'required'],
};

const retryLater = new Set(['RequestLimitExceeded', 'LimitExceeded.AppCountryOrRegionDailyLimit', 'InternalError.Timeout']);

export class TencentSmsProvider implements SmsProvider {
  readonly name = 'sms' as const;
  readonly kind = 'tencent' as const;
  private readonly cfg: z.infer<typeof TencentSmsConfig>;
  private readonly client: InstanceType<typeof SmsClient>;

  /** `agent`: for tests, an HTTP agent whose lookup points the API name at a local server. */
  constructor(config: TencentSmsConfig, private readonly templates: TemplateResolver, agent?: Agent) {
    this.cfg = TencentSmsConfig.parse(config);
    this.client = new SmsClient({
      credential: { secretId: this.cfg.secretId, secretKey: this.cfg.secretKey },
      region: this.cfg.region,
      profile: { signMethod: 'TC3-HMAC-SHA256', httpProfile: { endpoint: this.cfg.endpoint, protocol: this.cfg.protocol, reqTimeout: 10, ...(agent ? { agent } : {}) } },
    });
  }

  async send(address: string, _body: string, ref?: number, tracker?: SendTracker): Promise<ChannelResult> {
    const t = ref === undefined ? null : await this.templates(ref);
    if (!t) return { ok: false, retryable: false, reason: 'tencent: no reminder for this send (templates need one)' };
    await tracker?.begin(1, null);
    await tracker?.submitting(1);
    const national = address.replace(/^(\+?86|0086)(?=1\d{10}$)/, '');
    let status: { Code?: string; Message?: string; SerialNo?: string } | undefined;
    try {
      const resp = await this.client.SendSms({
        PhoneNumberSet: [`+86${national}`], SmsSdkAppId: this.cfg.smsSdkAppId, SignName: this.cfg.signName,
        TemplateId: this.cfg.templates[t.kind], TemplateParamSet: templateOrder[t.kind].map((k) => t.params[k] ?? ''),
        SessionContext: ref === undefined ? '' : String(ref),
      });
      status = resp.SendStatusSet?.[0];
    } catch (err) {
      const e = err as { code?: string; message?: string; httpCode?: number };
      await tracker?.refused(1);
      log.warn({ code: e.code, status: e.httpCode }, 'tencent SendSms failed');
      if (e.code && retryLater.has(e.code)) return { ok: false, retryable: true, unavailable: true, retryAfterMs: this.cfg.throttleRetryMs, reason: `tencent ${e.code}` };
      return { ok: false, retryable: true, unavailable: true, reason: `tencent: ${e.code ?? ''} ${e.message ?? String(err)}`.trim() };
    }
    if (status?.Code === 'Ok') {
      const id = status.SerialNo ?? null;
      await tracker?.accepted(1, id);
      return { ok: true, parts: [{ providerMessageId: id }], total: 1 };
    }
    await tracker?.refused(1);
    const code = status?.Code ?? 'no status';
    if (retryLater.has(code)) return { ok: false, retryable: true, unavailable: true, retryAfterMs: this.cfg.throttleRetryMs, reason: `tencent ${code}` };
    // Per-number limits (LimitExceeded.PhoneNumberDailyLimit...) and template/signature faults: not today, not here.
    return { ok: false, retryable: false, reason: `tencent ${code}: ${status?.Message ?? ''}` };
  }

  async close(): Promise<void> {
    // Stateless HTTPS calls: nothing to close.
  }
}
