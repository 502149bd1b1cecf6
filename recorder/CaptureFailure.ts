/**
 * Why a camera pull (capture run, live ingest, "test now") got no media, as an operator can act on
 * it: a wrong password is not an offline camera. Shared by SegmentCapture's `failure` event, the
 * live API's answers and the camera-return probe.
 */
export type CaptureFailureReason = 'auth' | 'not_found' | 'unsupported_transport' | 'unreachable' | 'no_media';

export interface CaptureFailure {
  reason: CaptureFailureReason;
  /** Short, credential-free text (an RTSP status line or socket error) for logs and the UI. */
  detail: string;
  at: Date;
}

export const CAPTURE_FAILURE_REASONS: readonly CaptureFailureReason[] = ['auth', 'not_found', 'unsupported_transport', 'unreachable', 'no_media'];

/** Chinese first, English second: what a tile or job list says for each reason. */
export const FAILURE_TEXT: Record<CaptureFailureReason, string> = {
  auth: '用户名或密码错误 / wrong user name or password',
  not_found: '码流地址不存在 / stream path not found',
  unsupported_transport: '摄像机不支持该传输方式 / camera refuses this RTSP transport',
  unreachable: '摄像机离线或无法连接 / camera offline or unreachable',
  no_media: '已连接但没有视频数据 / connected but no media arrives',
};

/** An RTSP response status as a failure reason (undefined for success). */
export function reasonForRtspStatus(status: number): CaptureFailureReason | undefined {
  if (status >= 200 && status < 300) return undefined;
  if (status === 401 || status === 403) return 'auth';
  if (status === 404 || status === 454) return 'not_found';
  if (status === 461) return 'unsupported_transport';
  return 'unreachable';
}

/**
 * Classifies what ffmpeg printed before it gave up. Returns undefined when its output says nothing
 * decisive (a bare timeout, a stream that just ended): the caller then asks the camera itself
 * (recorder/CameraProbe) whether it is there.
 */
export function classifyFfmpegOutput(lines: readonly string[], at = new Date()): CaptureFailure | undefined {
  const mk = (reason: CaptureFailureReason, line: string): CaptureFailure => ({ reason, detail: clean(line), at });
  // Last decisive line wins: ffmpeg may retry a transport before it fails for good.
  for (let i = lines.length - 1; i >= 0; i--) {
    const line = lines[i]!;
    const st = /method \w+ failed: (\d{3})/.exec(line) ?? /Server returned (\d{3})/.exec(line);
    if (st) {
      const r = reasonForRtspStatus(Number(st[1]));
      if (r) return mk(r, line);
    }
    // ffmpeg's own words for RTSP statuses: 461 -> EPROTONOSUPPORT, 5xx -> "5XX Server Error".
    if (/Unsupported transport|Protocol not supported/i.test(line)) return mk('unsupported_transport', line);
    if (/5XX Server Error/i.test(line)) return mk('unreachable', line);
    if (/401 Unauthorized|Unauthorized \(authorization failed\)/i.test(line)) return mk('auth', line);
    if (/404 Not Found|Stream not found/i.test(line)) return mk('not_found', line);
    if (/Connection refused|No route to host|Network is unreachable|Name or service not known|Host is unreachable|ECONNREFUSED|EHOSTUNREACH|ENOTFOUND/i.test(line)) return mk('unreachable', line);
  }
  return undefined;
}

/** One line, no URL credentials, bounded. */
function clean(line: string): string {
  return line.replace(/([a-z][a-z0-9+.-]*:\/\/)[^@\s/]+@/gi, '$1***@').trim().slice(0, 300);
}
