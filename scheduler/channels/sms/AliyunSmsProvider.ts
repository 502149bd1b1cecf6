import dysmsModule from '@alicloud/dysmsapi20170525';
import { $OpenApiUtil } from '@alicloud/openapi-core';
import { z } from 'zod';
import { createLogger } from '../../../infra/logger.ts';
import type { ChannelResult, SendTracker, SmsProvider } from '../types.ts';
import type { TemplateResolver } from './TemplateResolver.ts';

// Alibaba Cloud SMS (dysmsapi 2017-05-25 SendSms) through the official SDK, which signs each request
// with ACS3-HMAC-SHA256. A template per reminder kind, the city's registered signature (SignName),
// the parameters as TemplateParam JSON. Throttling (isv.BUSINESS_LIMIT_CONTROL) is retried later.

const log = createLogger('scheduler.sms.aliyun');
const Dysms = dysmsModule.default;

export const AliyunSmsConfig = z.object({
  /** host[:port] of the API; dysmsapi.aliyuncs.com in production. */
  endpoint: z.string().min(1).default('dysmsapi.aliyuncs.com'),
  protocol: z.enum(['https', 'http']).default('https'),
  accessKeyId: z.string().min(1),
  accessKeySecret: z.string().min(1),
  signName: z.string().min(2).max(20),
  templates: z.object({ secretary: z.string().min(1), supervisor: z.string().min(1) }),
  /** After a flow-control answer, the send is retried no sooner than this. */
  throttleRetryMs: z.number().int().min(100).max(3_600_000).default(60_000),
});
export type AliyunSmsConfig = z.input<typeof AliyunSmsConfig>;

/** Error codes that are the account's or the number's flow control, not the message's fault. */
const throttled = new Set(['isv.BUSINESS_LIMIT_CONTROL', 'Throttling.User', 'isv.DAY_LIMIT_CONTROL']);

export class AliyunSmsProvider implements SmsProvider {
  readonly name = 'sms' as const;
  readonly kind = 'aliyun' as const;
  private readonly cfg: z.infer<typeof AliyunSmsConfig>;
  private readonly client: InstanceType<typeof Dysms>;

  constructor(config: AliyunSmsConfig, private readonly templates: TemplateResolver) {
    this.cfg = AliyunSmsConfig.parse(config);
    this.client = new Dysms(new $OpenApiUtil.Config({
      accessKeyId: this.cfg.accessKeyId, accessKeySecret: this.cfg.accessKeySecret, endpoint: this.cfg.endpoint, protocol: this.cfg.protocol,
      readTimeout: 10_000, connectTimeout: 5_000,
    }));
  }

  async send(address: string, _body: string, ref?: number, tracker?: SendTracker): Promise<ChannelResult> {
    const t = ref === undefined ? null : await this.templates(ref);
    if (!t) return { ok: false, retryable: false, reason: 'aliyun: no reminder for this send (templates need one)' };
    await tracker?.begin(1, null);
    await tracker?.submitting(1);
    const phone = address.replace(/^(\+?86|0086)(?=1\d{10}$)/, '');
    let body: { code?: string; message?: string; bizId?: string } | undefined;
    try {
      const resp = await this.client.sendSms(new dysmsModule.SendSmsRequest({
        phoneNumbers: phone, signName: this.cfg.signName, templateCode: this.cfg.templates[t.kind],
        templateParam: JSON.stringify(t.params), outId: ref === undefined ? undefined : String(ref),
      }));
      body = resp.body;
    } catch (err) {
      const e = err as { code?: string; message?: string; statusCode?: number };
      await tracker?.refused(1);
      // Signature or key refused, or the API unreachable: this provider cannot send now.
      log.warn({ code: e.code, status: e.statusCode }, 'aliyun SendSms failed');
      if (e.code && throttled.has(e.code)) return { ok: false, retryable: true, unavailable: true, retryAfterMs: this.cfg.throttleRetryMs, reason: `aliyun ${e.code}` };
      return { ok: false, retryable: true, unavailable: true, reason: `aliyun: ${e.code ?? ''} ${e.message ?? String(err)}`.trim() };
    }
    if (body?.code === 'OK') {
      const id = body.bizId ?? null;
      await tracker?.accepted(1, id);
      return { ok: true, parts: [{ providerMessageId: id }], total: 1 };
    }
    await tracker?.refused(1);
    if (body?.code && throttled.has(body.code)) {
      return { ok: false, retryable: true, unavailable: true, retryAfterMs: this.cfg.throttleRetryMs, reason: `aliyun ${body.code}: ${body.message ?? ''}` };
    }
    return { ok: false, retryable: false, reason: `aliyun ${body?.code ?? 'no code'}: ${body?.message ?? ''}` };
  }

  async close(): Promise<void> {
    // Stateless HTTPS calls: nothing to close.
  }
}
