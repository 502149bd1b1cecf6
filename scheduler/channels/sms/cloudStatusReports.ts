import type { DeliveryReceipt } from '../types.ts';

// Status reports pushed by cloud SMS, as the providers document them, turned into the receipts the
// dispatcher applies (the same DeliveryReceipt an SMPP or CMPP status report gives):
// - Alibaba Cloud SmsReport (HTTP batch push, a JSON array): { phone_number, send_time, report_time,
//   success: boolean, err_code ("DELIVERED" on success, else the carrier's code such as "MK:0001"),
//   err_msg, sms_size, biz_id (SendSms's BizId), out_id (SendSms's OutId: our send id) }.
// - Tencent Cloud "短信下发状态回调" (a JSON array): { user_receive_time, nationcode, mobile,
//   report_status: "SUCCESS" | "FAIL", errmsg ("DELIVRD" or the carrier's code), description,
//   sid (SendSms's SerialNo) }. Tencent does not echo SessionContext here, so sid alone matches.

export type CloudKind = 'aliyun' | 'tencent';
type Item = Record<string, unknown>;

const text = (it: Item, k: string, max: number): string | undefined => {
  const v = it[k];
  if (typeof v === 'string') return v.slice(0, max);
  if (typeof v === 'number' && Number.isFinite(v)) return String(v);
  return undefined;
};

/** Is this pushed item a status report (not a reply) in the provider's format? */
export function isStatusReport(kind: CloudKind, it: Item): boolean {
  return kind === 'aliyun' ? 'biz_id' in it && ('success' in it || 'err_code' in it) : 'sid' in it && 'report_status' in it;
}

/** The receipt a status report gives, or null when it lacks the message id (nothing could match it). */
export function receiptFromReport(kind: CloudKind, it: Item): DeliveryReceipt | null {
  if (kind === 'aliyun') {
    const id = text(it, 'biz_id', 64);
    if (!id) return null;
    const ok = it.success === true || it.success === 'true';
    const failed = it.success === false || it.success === 'false';
    const stat = text(it, 'err_code', 32) || (ok ? 'DELIVERED' : 'FAIL');
    const ref = text(it, 'out_id', 32);
    const phone = text(it, 'phone_number', 32);
    return {
      providerMessageId: id, delivered: ok, outcome: ok ? 'delivered' : failed ? 'failed' : 'interim', stat, err: text(it, 'err_msg', 200) ?? '',
      // OutId is our send id: it finds the part when SendSms's answer (with the BizId) was lost.
      ...(ref && /^\d{1,15}$/.test(ref) ? { sendRef: Number(ref) } : {}),
      ...(phone && /^\+?\d{11,16}$/.test(phone) ? { recipient: phone } : {}),
    };
  }
  const id = text(it, 'sid', 64);
  if (!id) return null;
  const status = text(it, 'report_status', 16)?.toUpperCase();
  const ok = status === 'SUCCESS';
  const mobile = text(it, 'mobile', 32);
  return {
    providerMessageId: id, delivered: ok, outcome: ok ? 'delivered' : status === 'FAIL' ? 'failed' : 'interim',
    stat: text(it, 'errmsg', 32) || status || 'UNKNOWN', err: text(it, 'description', 200) ?? '',
    ...(mobile && /^\d{11}$/.test(mobile) ? { recipient: mobile } : {}),
  };
}
