import { z } from 'zod';
import type { Pool } from '../../infra/db/pool.ts';
import { createLogger } from '../../infra/logger.ts';
import type { SessionChecker } from '../service.ts';
import { probeMedia, type MediaMeasurement, type Stretch } from './mediaProbe.ts';
import type { SegmentSource } from './segmentSource.ts';

const log = createLogger('scheduler.check');

export const CheckThresholds = z.object({
  /** A session fails if any black / frozen stretch is at least this long, seconds. */
  maxBlackStretchS: z.number().positive().default(300),
  maxFrozenStretchS: z.number().positive().default(600),
  /** ... or if more than this share of the covered time is black / frozen / silent. */
  maxBlackShare: z.number().min(0).max(1).default(0.3),
  maxFrozenShare: z.number().min(0).max(1).default(0.5),
  maxSilentShare: z.number().min(0).max(1).default(0.8),
  detectMinS: z.number().positive().default(2),
});
export type CheckThresholds = z.input<typeof CheckThresholds>;

export interface Reason {
  code: 'no_recording' | 'too_short' | 'black' | 'frozen' | 'no_audio' | 'silent' | 'unreadable';
  message: string;
}

export interface CheckResult {
  passed: boolean;
  coveredS: number;
  requiredS: number;
  reasons: Reason[];
}

const total = (xs: Stretch[]) => xs.reduce((s, x) => s + (x.end - x.start), 0);
const longest = (xs: Stretch[]) => xs.reduce((m, x) => Math.max(m, x.end - x.start), 0);
const r1 = (x: number) => Math.round(x * 10) / 10;

/** Merges stretches that touch across segment boundaries (timeline in session seconds). */
function merge(xs: Stretch[], gap = 0.5): Stretch[] {
  const sorted = [...xs].sort((a, b) => a.start - b.start);
  const out: Stretch[] = [];
  for (const x of sorted) {
    const last = out.at(-1);
    if (last && x.start <= last.end + gap) last.end = Math.max(last.end, x.end);
    else out.push({ ...x });
  }
  return out;
}

/** Parts of `xs` not covered by `cut` (a black picture is also a still one; report it once, as black). */
function subtract(xs: Stretch[], cut: Stretch[]): Stretch[] {
  let out = xs.map((x) => ({ ...x }));
  for (const c of cut) {
    const next: Stretch[] = [];
    for (const x of out) {
      if (c.end <= x.start || c.start >= x.end) next.push(x);
      else {
        if (c.start > x.start) next.push({ start: x.start, end: c.start });
        if (c.end < x.end) next.push({ start: c.end, end: x.end });
      }
    }
    out = next;
  }
  return out.filter((x) => x.end - x.start > 0.05);
}

/** Judges a session from the segments the recorder indexed for its camera and time. */
export class CompletionChecker implements SessionChecker {
  private readonly t: z.infer<typeof CheckThresholds>;

  constructor(private readonly pool: Pool, private readonly source: SegmentSource, thresholds: CheckThresholds = {}) {
    this.t = CheckThresholds.parse(thresholds);
  }

  async check(sessionId: number): Promise<void> {
    const result = await this.evaluate(sessionId);
    await this.pool.query(
      `INSERT INTO completion_checks (session_id, passed, covered_s, required_s, reasons, measurements)
       VALUES ($1, $2, $3, $4, $5, $6)
       ON CONFLICT (session_id) DO UPDATE SET checked_at = now(), passed = EXCLUDED.passed, covered_s = EXCLUDED.covered_s,
         required_s = EXCLUDED.required_s, reasons = EXCLUDED.reasons, measurements = EXCLUDED.measurements`,
      [sessionId, result.passed, result.coveredS, result.requiredS, JSON.stringify(result.reasons), JSON.stringify(result.measurements)],
    );
    log.info({ sessionId, passed: result.passed, reasons: result.reasons.map((r) => r.code) }, 'session checked');
  }

  async evaluate(sessionId: number): Promise<CheckResult & { measurements: Record<string, unknown> }> {
    const s = await this.pool.query<{ camera_id: number | null; starts_at: Date; ends_at: Date; min_duration_s: number }>(
      `SELECT s.camera_id, s.starts_at, s.ends_at, bor.min_duration_s
         FROM meeting_sessions s
         JOIN branch_obligation_rules bor ON bor.branch_id = s.branch_id AND bor.obligation = s.obligation
        WHERE s.id = $1`,
      [sessionId],
    );
    const session = s.rows[0];
    if (!session) throw new Error(`session ${sessionId} not found`);
    const requiredS = session.min_duration_s;
    const none = (reasons: Reason[]) => ({ passed: false, coveredS: 0, requiredS, reasons, measurements: {} });
    if (session.camera_id === null) return none([{ code: 'no_recording', message: '会议未指定站点摄像头，无录像' }]);

    const segs = await this.pool.query<{ id: number; bucket: string; object_key: string; started_at: Date; ended_at: Date }>(
      `SELECT id, bucket, object_key, started_at, ended_at FROM recording_segments
        WHERE camera_id = $1 AND ended_at > $2 AND started_at < $3 ORDER BY started_at`,
      [session.camera_id, session.starts_at, session.ends_at],
    );
    if (segs.rows.length === 0) return none([{ code: 'no_recording', message: '会议时段内未找到录像' }]);

    const t0 = session.starts_at.getTime();
    const windowEnd = (session.ends_at.getTime() - t0) / 1000;
    const covered: Stretch[] = [];
    const black: Stretch[] = [];
    const frozen: Stretch[] = [];
    const silent: Stretch[] = [];
    let audioSeen = false;
    let unreadable = 0;
    const perSegment: Array<{ id: number; m?: MediaMeasurement; error?: string }> = [];
    for (const seg of segs.rows) {
      const offset = (seg.started_at.getTime() - t0) / 1000;
      let m: MediaMeasurement;
      try {
        m = await probeMedia(await this.source.inputFor({ id: seg.id, bucket: seg.bucket, objectKey: seg.object_key }), {
          detectMinS: this.t.detectMinS,
        });
      } catch (err) {
        unreadable++;
        perSegment.push({ id: seg.id, error: String(err).slice(0, 300) });
        continue;
      }
      perSegment.push({ id: seg.id, m });
      // What the file really holds, not what the index claims, clipped to the session.
      const indexLen = (seg.ended_at.getTime() - seg.started_at.getTime()) / 1000;
      const len = Math.min(indexLen, m.durationS);
      const clip = (x: Stretch): Stretch | null => {
        const a = Math.max(0, offset + x.start);
        const b = Math.min(windowEnd, offset + Math.min(x.end, len));
        return b > a ? { start: a, end: b } : null;
      };
      const c = clip({ start: 0, end: len });
      if (c) covered.push(c);
      if (!m.hasVideo && c) black.push(c);
      for (const x of m.black) { const y = clip(x); if (y) black.push(y); }
      for (const x of m.frozen) { const y = clip(x); if (y) frozen.push(y); }
      if (m.hasAudio) {
        audioSeen = true;
        for (const x of m.silent) { const y = clip(x); if (y) silent.push(y); }
      } else if (c) {
        silent.push(c);
      }
    }
    const cov = merge(covered);
    const coveredS = total(cov);
    const blackM = merge(black);
    const frozenM = subtract(merge(frozen), blackM);
    const silentM = merge(silent);
    const reasons: Reason[] = [];
    if (coveredS === 0 && unreadable > 0) reasons.push({ code: 'unreadable', message: `录像文件无法读取（${unreadable}段）` });
    if (coveredS < requiredS) {
      reasons.push({ code: 'too_short', message: `录像覆盖${r1(coveredS)}秒，少于要求的${requiredS}秒` });
    }
    if (coveredS > 0) {
      const lb = longest(blackM);
      if (lb >= this.t.maxBlackStretchS || total(blackM) > this.t.maxBlackShare * coveredS) {
        reasons.push({ code: 'black', message: `画面黑屏累计${r1(total(blackM))}秒（最长${r1(lb)}秒）` });
      }
      const lf = longest(frozenM);
      if (lf >= this.t.maxFrozenStretchS || total(frozenM) > this.t.maxFrozenShare * coveredS) {
        reasons.push({ code: 'frozen', message: `画面静止累计${r1(total(frozenM))}秒（最长${r1(lf)}秒）` });
      }
      if (!audioSeen) reasons.push({ code: 'no_audio', message: '录像没有音频' });
      else if (total(silentM) > this.t.maxSilentShare * coveredS) {
        reasons.push({ code: 'silent', message: `音频静音${Math.round((100 * total(silentM)) / coveredS)}%` });
      }
    }
    return {
      passed: reasons.length === 0,
      coveredS: r1(coveredS),
      requiredS,
      reasons,
      measurements: {
        segments: perSegment.length,
        unreadable,
        blackS: r1(total(blackM)),
        frozenS: r1(total(frozenM)),
        silentS: r1(total(silentM)),
        audio: audioSeen,
      },
    };
  }
}
