import http from 'node:http';
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import type { AddressInfo, LookupFunction } from 'node:net';

// A local stand-in for the Alibaba Cloud SMS API (dysmsapi 2017-05-25) and the Tencent Cloud SMS API
// (sms 2021-01-11), written from the providers' public documentation, not from their SDKs:
// - Alibaba "V3 request signature" (ACS3-HMAC-SHA256): CanonicalRequest = method \n URI \n sorted
//   RFC 3986 query \n "name:value\n" for each signed header (host, x-acs-*, content-type) \n signed
//   header names \n hex SHA-256 of the body (also in x-acs-content-sha256); StringToSign =
//   "ACS3-HMAC-SHA256\n" + hex SHA-256(CanonicalRequest); Signature = hex HMAC-SHA256(secret, StringToSign).
//   SendSms answers {Code, Message, BizId, RequestId}; flow control is Code isv.BUSINESS_LIMIT_CONTROL.
// - Tencent "Signature v3" (TC3-HMAC-SHA256): CanonicalRequest = method \n / \n query \n
//   "content-type:...\nhost:...\n" \n "content-type;host" \n hex SHA-256(payload); StringToSign =
//   "TC3-HMAC-SHA256\n" + X-TC-Timestamp + "\n" + date/service/tc3_request + "\n" + hex SHA-256(CanonicalRequest);
//   key = HMAC(HMAC(HMAC("TC3" + SecretKey, date), service), "tc3_request"). Errors are
//   {Response: {Error: {Code, Message}, RequestId}}; per-number results in Response.SendStatusSet.
// The Tencent SDK signs the host name without the port (the API is always on 443), so the Host
// header's port is ignored here.

export interface CloudTemplate { id: string; kind: 'aliyun' | 'tencent'; params: string[] }

export interface CloudSmsOptions {
  aliyun?: { accessKeyId: string; accessKeySecret: string };
  tencent?: { secretId: string; secretKey: string; smsSdkAppId: string };
  /** Registered (approved) signatures. */
  signatures: string[];
  templates: CloudTemplate[];
  /** Answer this many SendSms calls with isv.BUSINESS_LIMIT_CONTROL before accepting. */
  aliyunThrottleFirst?: number;
  /** Answer this many SendSms calls with RequestLimitExceeded before accepting. */
  tencentRequestLimitFirst?: number;
  /** Numbers (11 digits) that hit LimitExceeded.PhoneNumberDailyLimit at Tencent. */
  tencentDailyLimited?: string[];
}

export interface CloudMessage {
  provider: 'aliyun' | 'tencent'; phone: string; sign: string; template: string; params: Record<string, string> | string[]; id: string;
  /** Alibaba OutId / Tencent SessionContext as sent (the caller's own reference). */
  ref?: string;
  /** When the server accepted it (ms since the epoch), to check a sender's rate. */
  at: number;
}

/** How a message ended at the handset, for a pushed status report. */
export interface ReportOutcome { delivered: boolean; code?: string; text?: string }

const rfc3986 = (s: string) => encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
const sha256hex = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');
const same = (a: string, b: string) => a.length === b.length && timingSafeEqual(Buffer.from(a), Buffer.from(b));

/** Parameters of the secretary reminder template (what the scheduler fills in). */
export const SECRETARY_TEMPLATE_PARAMS = ['branch', 'period', 'item', 'done', 'required', 'deadline'];

/** The demo accounts, signatures and templates the cloud SMS tests register (a county's and the city's). */
export function demoCloudSmsOptions(extra: Partial<CloudSmsOptions> = {}): CloudSmsOptions {
  return {
    aliyun: { accessKeyId: 'LTAI-test', accessKeySecret: 'ali-secret' },
    tencent: { secretId: 'AKID-test', secretKey: 'tc-secret', smsSdkAppId: '1400000001' },
    signatures: ['昌乐县委组织部', '潍坊市委组织部'],
    templates: [
      { id: 'SMS_1001', kind: 'aliyun', params: SECRETARY_TEMPLATE_PARAMS }, { id: 'SMS_1002', kind: 'aliyun', params: ['unit', 'branch', 'period', 'item', 'done', 'required'] },
      { id: '200001', kind: 'tencent', params: SECRETARY_TEMPLATE_PARAMS }, { id: '200002', kind: 'tencent', params: ['u', 'b', 'p', 'i', 'd', 'r'] },
    ],
    ...extra,
  };
}

/** The Tencent SDK derives the service from the host name, so it is kept and only resolved to the local server. */
const localLookup: LookupFunction = (_host, opts, cb) => {
  if ((opts as { all?: boolean }).all) (cb as unknown as (e: null, a: Array<{ address: string; family: number }>) => void)(null, [{ address: '127.0.0.1', family: 4 }]);
  else cb(null, '127.0.0.1', 4);
};
/** An HTTP agent that sends the providers' SDKs to this machine. */
export const localCloudAgent = new http.Agent({ lookup: localLookup });

export class CloudSmsServer {
  private server: http.Server | null = null;
  readonly accepted: CloudMessage[] = [];
  /** Every call with what the server concluded (signature ok / error code). */
  readonly calls: Array<{ provider: 'aliyun' | 'tencent'; signatureOk: boolean; code: string }> = [];
  private readonly nonces = new Set<string>();
  private aliyunThrottled = 0;
  private tencentLimited = 0;
  private seq = 0;
  port = 0;

  constructor(private readonly opts: CloudSmsOptions) {}

  async start(): Promise<number> {
    this.server = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const body = Buffer.concat(chunks);
        const send = (status: number, json: unknown) => {
          res.writeHead(status, { 'content-type': 'application/json;charset=utf-8' });
          res.end(JSON.stringify(json));
        };
        try {
          if (req.headers['x-acs-action']) return send(...this.aliyun(req, body));
          if (req.headers['x-tc-action']) return send(...this.tencent(req, body));
          send(404, { error: 'unknown API' });
        } catch (err) {
          send(500, { error: String(err) });
        }
      });
    });
    await new Promise<void>((r) => this.server!.listen(0, '127.0.0.1', () => r()));
    this.port = (this.server.address() as AddressInfo).port;
    return this.port;
  }

  private aliyun(req: http.IncomingMessage, body: Buffer): [number, unknown] {
    const requestId = `req-${++this.seq}`;
    const fail = (status: number, code: string, message: string, signatureOk = false): [number, unknown] => {
      this.calls.push({ provider: 'aliyun', signatureOk, code });
      return [status, { Code: code, Message: message, RequestId: requestId }];
    };
    const auth = /^ACS3-HMAC-SHA256 Credential=([^,]+),SignedHeaders=([^,]+),Signature=([0-9a-f]+)$/.exec(String(req.headers.authorization ?? ''));
    if (!auth) return fail(400, 'IncompleteSignature', 'The request signature does not conform to Aliyun standards.');
    const [, akId, signedHeaders, signature] = auth as unknown as [string, string, string, string];
    const cred = this.opts.aliyun;
    if (!cred || akId !== cred.accessKeyId) return fail(404, 'InvalidAccessKeyId.NotFound', 'Specified access key is not found.');
    const url = new URL(req.url ?? '/', 'http://x');
    const query = [...url.searchParams.entries()].map(([k, v]) => [rfc3986(k), rfc3986(v)] as const).sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
    const names = signedHeaders.split(';');
    const hashedPayload = sha256hex(body);
    if (req.headers['x-acs-content-sha256'] !== hashedPayload) return fail(400, 'SignatureDoesNotMatch', 'x-acs-content-sha256 does not match the body.');
    const canonical = [
      req.method ?? 'POST', url.pathname || '/', query.map(([k, v]) => `${k}=${v}`).join('&'),
      names.map((n) => `${n}:${String(req.headers[n] ?? '').trim()}\n`).join(''), signedHeaders, hashedPayload,
    ].join('\n');
    const expected = createHmac('sha256', cred.accessKeySecret).update(`ACS3-HMAC-SHA256\n${sha256hex(canonical)}`).digest('hex');
    if (!names.includes('host') || !names.includes('x-acs-date') || !same(expected, signature)) {
      return fail(400, 'SignatureDoesNotMatch', 'Specified signature is not matched with our calculation.');
    }
    const date = Date.parse(String(req.headers['x-acs-date'] ?? ''));
    if (!Number.isFinite(date) || Math.abs(Date.now() - date) > 15 * 60_000) return fail(400, 'InvalidTimeStamp.Expired', 'Specified time stamp or date value is expired.', true);
    const nonce = String(req.headers['x-acs-signature-nonce'] ?? '');
    if (!nonce || this.nonces.has(nonce)) return fail(400, 'SignatureNonceUsed', 'Specified signature nonce was used already.', true);
    this.nonces.add(nonce);
    if (req.headers['x-acs-action'] !== 'SendSms' || req.headers['x-acs-version'] !== '2017-05-25') return fail(404, 'InvalidAction.NotFound', 'Specified api is not found.', true);
    const q = Object.fromEntries(url.searchParams.entries());
    const form = new URLSearchParams(body.toString('utf8'));
    for (const [k, v] of form) q[k] = v;
    if (!this.opts.signatures.includes(q.SignName ?? '')) return fail(200, 'isv.SMS_SIGNATURE_ILLEGAL', '签名不合法(不存在或被拉黑)', true);
    const tpl = this.opts.templates.find((t) => t.kind === 'aliyun' && t.id === q.TemplateCode);
    if (!tpl) return fail(200, 'isv.SMS_TEMPLATE_ILLEGAL', '模板不合法(不存在或被拉黑)', true);
    let params: Record<string, string>;
    try {
      params = JSON.parse(q.TemplateParam ?? '{}') as Record<string, string>;
    } catch {
      return fail(200, 'isv.INVALID_JSON_PARAM', 'JSON参数不合法，只接受字符串值', true);
    }
    if (tpl.params.some((p) => typeof params[p] !== 'string')) return fail(200, 'isv.TEMPLATE_MISSING_PARAMETERS', '模板缺少变量', true);
    if (!/^1\d{10}$/.test(q.PhoneNumbers ?? '')) return fail(200, 'isv.MOBILE_NUMBER_ILLEGAL', '非法手机号', true);
    if (this.aliyunThrottled < (this.opts.aliyunThrottleFirst ?? 0)) {
      this.aliyunThrottled++;
      return fail(200, 'isv.BUSINESS_LIMIT_CONTROL', '触发分钟级流控Permits:1', true);
    }
    const id = `${900619746936498 + this.seq}^0`;
    this.accepted.push({ provider: 'aliyun', phone: q.PhoneNumbers!, sign: q.SignName!, template: tpl.id, params, id, at: Date.now(), ...(q.OutId ? { ref: q.OutId } : {}) });
    this.calls.push({ provider: 'aliyun', signatureOk: true, code: 'OK' });
    return [200, { Code: 'OK', Message: 'OK', BizId: id, RequestId: requestId }];
  }

  private tencent(req: http.IncomingMessage, body: Buffer): [number, unknown] {
    const requestId = `tc-${++this.seq}`;
    const error = (code: string, message: string, signatureOk = false): [number, unknown] => {
      this.calls.push({ provider: 'tencent', signatureOk, code });
      return [200, { Response: { Error: { Code: code, Message: message }, RequestId: requestId } }];
    };
    const auth = /^TC3-HMAC-SHA256 Credential=([^/]+)\/(\d{4}-\d{2}-\d{2})\/([a-z]+)\/tc3_request, SignedHeaders=([a-z;-]+), Signature=([0-9a-f]{64})$/.exec(String(req.headers.authorization ?? ''));
    if (!auth) return error('AuthFailure.SignatureFailure', 'The provided credentials could not be validated.');
    const [, secretId, date, service, signedHeaders, signature] = auth as unknown as [string, string, string, string, string, string];
    const cred = this.opts.tencent;
    if (!cred || secretId !== cred.secretId) return error('AuthFailure.SecretIdNotFound', 'The SecretId is not found.');
    const ts = Number(req.headers['x-tc-timestamp']);
    if (!Number.isFinite(ts) || Math.abs(Date.now() / 1000 - ts) > 300) return error('AuthFailure.SignatureExpire', 'Signature expired.');
    if (new Date(ts * 1000).toISOString().slice(0, 10) !== date || service !== 'sms') return error('AuthFailure.SignatureFailure', 'Credential scope does not match.');
    const header = (n: string) => (n === 'host' ? String(req.headers.host ?? '').replace(/:\d+$/, '') : String(req.headers[n] ?? '').trim());
    const url = new URL(req.url ?? '/', 'http://x');
    const canonical = [
      req.method ?? 'POST', url.pathname, url.search.slice(1),
      signedHeaders.split(';').map((n) => `${n}:${header(n).toLowerCase()}\n`).join(''), signedHeaders, sha256hex(body),
    ].join('\n');
    const hmac = (key: Buffer | string, msg: string) => createHmac('sha256', key).update(msg).digest();
    const kSigning = hmac(hmac(hmac(`TC3${cred.secretKey}`, date), service), 'tc3_request');
    const expected = createHmac('sha256', kSigning).update(`TC3-HMAC-SHA256\n${ts}\n${date}/${service}/tc3_request\n${sha256hex(canonical)}`).digest('hex');
    if (!signedHeaders.split(';').includes('host') || !same(expected, signature)) return error('AuthFailure.SignatureFailure', 'The provided credentials could not be validated because of exceeding request size limit, please use new signature method `TC3-HMAC-SHA256`.');
    if (req.headers['x-tc-action'] !== 'SendSms' || req.headers['x-tc-version'] !== '2021-01-11') return error('InvalidAction', 'The action does not exist.', true);
    const p = JSON.parse(body.toString('utf8')) as { PhoneNumberSet?: string[]; SmsSdkAppId?: string; SignName?: string; TemplateId?: string; TemplateParamSet?: string[]; SessionContext?: string };
    if (p.SmsSdkAppId !== cred.smsSdkAppId) return error('FailedOperation.SmsSdkAppIdVerifyFail', 'SdkAppId verification failed.', true);
    if (!this.opts.signatures.includes(p.SignName ?? '')) return error('FailedOperation.SignatureIncorrectOrUnapproved', '签名未审批或格式错误', true);
    const tpl = this.opts.templates.find((t) => t.kind === 'tencent' && t.id === p.TemplateId);
    if (!tpl) return error('FailedOperation.TemplateIncorrectOrUnapproved', '模板未审批或内容不匹配', true);
    if ((p.TemplateParamSet ?? []).length !== tpl.params.length) return error('InvalidParameterValue.TemplateParameterFormatError', '模板参数个数不匹配', true);
    if (this.tencentLimited < (this.opts.tencentRequestLimitFirst ?? 0)) {
      this.tencentLimited++;
      return error('RequestLimitExceeded', '请求的次数超过了频率限制', true);
    }
    const set = (p.PhoneNumberSet ?? []).map((phone) => {
      const national = phone.replace(/^\+86/, '');
      if (this.opts.tencentDailyLimited?.includes(national)) {
        return { SerialNo: '', PhoneNumber: phone, Fee: 0, SessionContext: '', Code: 'LimitExceeded.PhoneNumberDailyLimit', Message: '单个手机号日下发短信条数超过设定的上限', IsoCode: 'CN' };
      }
      const id = `2640:${1000000 + this.seq}`;
      this.accepted.push({ provider: 'tencent', phone: national, sign: p.SignName!, template: tpl.id, params: p.TemplateParamSet ?? [], id, at: Date.now(), ...(p.SessionContext ? { ref: p.SessionContext } : {}) });
      return { SerialNo: id, PhoneNumber: phone, Fee: 1, SessionContext: '', Code: 'Ok', Message: 'send success', IsoCode: 'CN' };
    });
    this.calls.push({ provider: 'tencent', signatureOk: true, code: set[0]?.Code ?? 'Ok' });
    return [200, { Response: { SendStatusSet: set, RequestId: requestId } }];
  }

  /**
   * A status report for an accepted message, in the provider's documented push format:
   * Alibaba SmsReport { phone_number, send_time, report_time, success, err_code ("DELIVERED" or the
   * carrier's code), err_msg, sms_size, biz_id, out_id }; Tencent 短信下发状态回调 { user_receive_time,
   * nationcode, mobile, report_status (SUCCESS/FAIL), errmsg ("DELIVRD" or the code), description, sid }.
   */
  static report(m: CloudMessage, o: ReportOutcome): Record<string, unknown> {
    const now = new Date(Date.now() + 8 * 3_600_000).toISOString().slice(0, 19).replace('T', ' '); // Beijing time, as they write it
    if (m.provider === 'aliyun') {
      return {
        phone_number: m.phone, send_time: now, report_time: now, success: o.delivered,
        err_code: o.code ?? (o.delivered ? 'DELIVERED' : 'MK:0001'), err_msg: o.text ?? (o.delivered ? '用户接收成功' : '用户关机或不在服务区'),
        sms_size: '1', biz_id: m.id, out_id: m.ref ?? '',
      };
    }
    return {
      user_receive_time: now, nationcode: '86', mobile: m.phone, report_status: o.delivered ? 'SUCCESS' : 'FAIL',
      errmsg: o.code ?? (o.delivered ? 'DELIVRD' : 'MK:0001'), description: o.text ?? (o.delivered ? '用户短信送达成功' : '用户关机'), sid: m.id,
    };
  }

  /** Pushes status reports to a callback URL as the provider does (POST, a JSON array); returns the answer. */
  async pushReports(url: string, reports: Array<Record<string, unknown>>): Promise<{ status: number; body: unknown }> {
    const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json;charset=utf-8' }, body: JSON.stringify(reports) });
    const text = await res.text();
    let body: unknown = text;
    try {
      body = JSON.parse(text);
    } catch {
      // not JSON: kept as text
    }
    return { status: res.status, body };
  }

  async stop(): Promise<void> {
    await new Promise<void>((r) => (this.server ? this.server.close(() => r()) : r()));
  }
}
