import { z } from 'zod';
import type { CameraNetworks } from '../../infra/net/CameraNetworks.ts';

// Field schemas shared by several routes; limits mirror the database's CHECK constraints so a bad
// value is refused with a field name before it reaches PostgreSQL.

export const id = z.number().int().positive().max(Number.MAX_SAFE_INTEGER);
export const idQuery = z.coerce.number().int().positive().max(Number.MAX_SAFE_INTEGER);
export const boolQuery = z.enum(['true', 'false']).transform((v) => v === 'true');
export const name = z.string().trim().min(1).max(100);
export const mobile = z.string().regex(/^\+?[0-9]{5,20}$/, '手机号格式无效 / mobile: 5-20 digits, optional +');
export const beidouCard = z.string().regex(/^[0-9]{6,8}$/, '北斗卡号为6-8位数字 / Beidou card: 6-8 digits');
export const channel = z.enum(['sms', 'beidou']);
const CREDENTIAL_PARAM = /(?:^|[/?&;_.#])(?:user(?:name)?|usr|login(?:use)?|pass(?:word|wd)?|pwd|psw|loginpas)=/i;

/** Whether an address carries user or password parameters (shown to everyone who may list it). */
export function hasCredentialParam(url: string): boolean {
  const rest = url.replace(/^rtsps?:\/\/[^/?#]*/i, '');
  let decoded = rest;
  try {
    decoded = decodeURIComponent(rest);
  } catch {
    // not percent-decodable: the raw text is checked
  }
  return CREDENTIAL_PARAM.test(rest) || CREDENTIAL_PARAM.test(decoded);
}

function parsesWithoutUserinfo(url: string): boolean {
  try {
    const u = new URL(url);
    return u.username === '' && u.password === '' && u.hostname !== '';
  } catch {
    return false;
  }
}

/** RTSP URL without user:password@ — credentials travel in their own write-only fields. */
export const rtspUrl = z
  .string()
  .max(500)
  .regex(/^rtsps?:\/\/[^/?#@\s]+(?:[/?#]\S*)?$/, { message: 'RTSP地址须为 rtsp(s)://host[:port]/path 且不含账号密码 / rtsp(s)://host[:port]/path, no user:password@', abort: true })
  .refine(parsesWithoutUserinfo, 'RTSP地址无法解析 / the RTSP address cannot be parsed')
  // Credentials in the address (?user=..&password=.., or a path such as /user=admin_password=..)
  // would be shown to everyone who may list cameras.
  .refine((s) => !hasCredentialParam(s), 'RTSP地址不得含账号密码参数，请填写用户名和密码栏 / no user or password parameters in the address: use the username and password fields');
/** A camera's snapshot address (ONVIF GetSnapshotUri): http(s), no user:password@, no credential parameters. */
export const snapshotUrl = z
  .string()
  .max(500)
  .regex(/^https?:\/\/[^/?#@\s]+(?:[/?#]\S*)?$/, { message: '抓图地址须为 http(s)://host[:port]/path 且不含账号密码 / snapshot: http(s)://host[:port]/path, no user:password@', abort: true })
  .refine((s) => !hasCredentialParam(s), '抓图地址不得含账号密码参数 / no user or password parameters in the snapshot address');
/** A camera address (rtspUrl, snapshotUrl) whose IP, if it names one, is in CAMERA_NETWORKS; names are checked when connecting. */
export function inCameraNetworks<T extends z.ZodString>(schema: T, networks: CameraNetworks): T {
  return schema.superRefine((url, ctx) => {
    let host = '';
    try {
      host = new URL(url).hostname;
    } catch {
      return;
    }
    const refusal = networks.literalRefusal(host);
    if (refusal) ctx.addIssue({ code: 'custom', message: refusal });
  });
}
export const wsUrl = z.string().max(500).regex(/^wss?:\/\/[^\s/?#]+(?:[/?#]\S*)?$/, '须为 ws(s):// 地址 / must be a ws(s):// URL');
export const password = z.string().min(8, '密码至少8位 / password: at least 8 characters').max(128);
export const username = z.string().regex(/^[A-Za-z0-9_.-]{3,64}$/, '用户名为3-64位字母数字._- / username: 3-64 of A-Z a-z 0-9 . _ -');
