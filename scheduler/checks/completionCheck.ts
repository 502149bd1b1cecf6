import { z } from 'zod';
import { withTransaction, type Pool, type PoolClient } from '../../infra/db/pool.ts';
import { createLogger } from '../../infra/logger.ts';
import type { SessionChecker } from '../service.ts';
import { probeMedia, type MediaMeasurement, type Stretch } from './mediaProbe.ts';
import type { SegmentSource } from './segmentSource.ts';
import { judgeQuorum, type QuorumVerdict } from './quorum.ts';

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

/** When a check that could not run is tried again, and what it may wait for. */
export const CheckRetry = z.object({
  /** Backoff between tries of a pending check: base * 2^(tries-1), capped. */
  retryBaseMs: z.number().int().positive().default(5 * 60_000),
  retryMaxMs: z.number().int().positive().default(6 * 3_600_000),
  /**
   * ffmpeg failing on a segment the store says is there (while ffmpeg itself works) is retried this
   * many times before the segment is judged unreadable.
   */
  maxProbeFailures: z.number().int().min(1).max(100).default(8),
  /**
   * A session whose window the index does not fully cover may still have segments in the recorder's
   * spool (S3 down at the recorder, backlog): not judged until this long after it ended.
   */
  uploadWaitMs: z.number().int().min(0).default(48 * 3_600_000),
  /** Tolerated gap between the index and the session window, seconds. */
  coverageToleranceS: z.number().min(0).default(2),
  ffmpegPath: z.string().min(1).default('ffmpeg'),
  probeTimeoutMs: z.number().int().min(1000).default(300_000),
  /** A store that does not answer within this is "unreachable". */
  storageTimeoutMs: z.number().int().min(100).default(30_000),
});
export type CheckRetry = z.input<typeof CheckRetry>;

export interface Reason {
  code:
    | 'no_recording' | 'too_short' | 'black' | 'frozen' | 'no_audio' | 'silent' | 'unreadable'
    // Per obligation: fewer than half of those who vote were present (条例 2018).
    | 'no_quorum'
    // Why a check is pending (not a verdict):
    | 'storage_unavailable' | 'checker_unavailable' | 'probe_failed' | 'awaiting_upload';
  message: string;
}

export interface CheckResult {
  passed: boolean;
  /** Could not check yet: no verdict, try again later. */
  pending: boolean;
  /** The pending outcome counts towards `maxProbeFailures` (ffmpeg failed on a stored segment). */
  probeFailed?: boolean;
  coveredS: number;
  requiredS: number;
  reasons: Reason[];
}

const withTimeout = <T>(p: Promise<T>, ms: number, what: string): Promise<T> =>
  new Promise<T>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`${what}: no answer in ${ms} ms`)), ms);
    p.then((v) => { clearTimeout(t); resolve(v); }, (e: unknown) => { clearTimeout(t); reject(e instanceof Error ? e : new Error(String(e))); });
  });

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

/**
 * Judges a session from the segments the recorder indexed for its camera and time. A check that
 * cannot run (store unreachable, ffmpeg crashed or timed out, recording still uploading) stores a
 * pending result, tried again with capped backoff; only a check that ran gives a verdict.
 */
export class CompletionChecker implements SessionChecker {
  private readonly t: z.infer<typeof CheckThresholds>;
  private readonly r: z.infer<typeof CheckRetry>;

  constructor(private readonly pool: Pool, private readonly source: SegmentSource, thresholds: CheckThresholds = {}, retry: CheckRetry = {}) {
    this.t = CheckThresholds.parse(thresholds);
    this.r = CheckRetry.parse(retry);
  }

  async check(sessionId: number, now: Date = new Date()): Promise<void> {
    const prev = (await this.pool.query<{ pending: boolean; attempts: number; probe_failures: number }>(
      `SELECT pending, attempts, probe_failures FROM completion_checks WHERE session_id = $1`, [sessionId])).rows[0];
    const result = await this.evaluate(sessionId, now, prev?.pending ? prev.probe_failures : 0);
    // Tries since the last verdict: a verdict after pending tries keeps their count, for the record.
    const attempts = prev?.pending ? prev.attempts + 1 : 1;
    const probeFailures = result.pending ? (prev?.pending ? prev.probe_failures : 0) + (result.probeFailed ? 1 : 0) : 0;
    const nextCheckAt = result.pending
      ? new Date(now.getTime() + Math.min(this.r.retryMaxMs, this.r.retryBaseMs * 2 ** (attempts - 1)))
      : null;
    // One transaction: the session's verdict and its kinds' verdicts are seen together (a reader, or
    // drain(), never finds the check settled while the kinds still hold the previous verdict).
    await withTransaction(this.pool, async (c) => {
      await c.query(
        `INSERT INTO completion_checks (session_id, passed, covered_s, required_s, reasons, measurements, pending, attempts, probe_failures, next_check_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
         ON CONFLICT (session_id) DO UPDATE SET checked_at = now(), passed = EXCLUDED.passed, covered_s = EXCLUDED.covered_s,
           required_s = EXCLUDED.required_s, reasons = EXCLUDED.reasons, measurements = EXCLUDED.measurements,
           pending = EXCLUDED.pending, attempts = EXCLUDED.attempts, probe_failures = EXCLUDED.probe_failures,
           next_check_at = EXCLUDED.next_check_at, requeued_at = NULL`,
        [sessionId, result.passed, result.coveredS, result.requiredS, JSON.stringify(result.reasons), JSON.stringify(result.measurements),
          result.pending, attempts, probeFailures, nextCheckAt],
      );
      await this.judgeKinds(c, sessionId, result);
    });
    const codes = result.reasons.map((r) => r.code);
    if (result.pending) log.warn({ sessionId, attempts, codes, nextCheckAt }, 'session could not be checked yet; will retry');
    else log.info({ sessionId, passed: result.passed, reasons: codes }, 'session checked');
  }

  /**
   * Per obligation of the session (session_obligations): the media reasons apply to every kind; a
   * quorum failure only to the kinds with a quorum rule (reason 'no_quorum'). A pending check leaves
   * every kind unjudged (NULL). completion_checks.passed becomes "every kind passed".
   * Quorum is judged only once attendance was taken for the session (any session_attendance row):
   * sessions recorded before the ledger existed, or imported without a roll, are judged on media alone
   * (measurements.quorum = 'not_recorded').
   */
  private async judgeKinds(db: PoolClient, sessionId: number, result: CheckResult): Promise<void> {
    // Kinds of sessions inserted before session_obligations (or by older code) get their row here.
    await db.query(
      `INSERT INTO session_obligations (session_id, obligation, party_group_id)
       SELECT id, obligation, party_group_id FROM meeting_sessions WHERE id = $1
       ON CONFLICT (session_id, obligation) DO NOTHING`, [sessionId]);
    if (result.pending) {
      await db.query(`UPDATE session_obligations SET passed = NULL, reasons = $2 WHERE session_id = $1`,
        [sessionId, JSON.stringify(result.reasons)]);
      return;
    }
    const taken = (await db.query(`SELECT 1 FROM session_attendance WHERE session_id = $1 LIMIT 1`, [sessionId])).rowCount ?? 0;
    const verdicts: QuorumVerdict[] = taken > 0 ? await judgeQuorum(db, sessionId) : [];
    const kinds = (await db.query<{ obligation: string }>(
      `SELECT obligation FROM session_obligations WHERE session_id = $1`, [sessionId])).rows;
    let all = kinds.length > 0;
    for (const k of kinds) {
      const v = verdicts.find((q) => q.obligation === k.obligation);
      const reasons: Reason[] = [...result.reasons];
      if (v && v.rule !== 'none' && !v.passed) {
        reasons.push({ code: 'no_quorum', message: v.message ?? `到会${v.present}人，应到${v.expected}人，未超过半数` });
      }
      const passed = reasons.length === 0;
      all &&= passed;
      await db.query(`UPDATE session_obligations SET passed = $3, reasons = $4 WHERE session_id = $1 AND obligation = $2`,
        [sessionId, k.obligation, passed, JSON.stringify(reasons)]);
    }
    const quorum = taken > 0 ? verdicts.map((v) => ({ obligation: v.obligation, rule: v.rule, expected: v.expected, present: v.present, passed: v.passed })) : 'not_recorded';
    const extra = verdicts.filter((v) => v.rule !== 'none' && !v.passed)
      .map((v) => ({ code: 'no_quorum', message: `${v.obligation}: ${v.message ?? ''}` }));
    await db.query(
      `UPDATE completion_checks SET passed = $2, reasons = reasons || $3::jsonb,
              measurements = measurements || jsonb_build_object('quorum', $4::jsonb)
        WHERE session_id = $1`,
      [sessionId, result.passed && all, JSON.stringify(extra), JSON.stringify(quorum)]);
  }

  /** ffmpeg decodes a synthetic input: if not, a failure says nothing about the recording. */
  private async ffmpegWorks(): Promise<boolean> {
    try {
      await probeMedia('testsrc2=s=64x48:r=5:d=1', { ffmpegPath: this.r.ffmpegPath, timeoutMs: 30_000, lavfi: true });
      return true;
    } catch {
      return false;
    }
  }

  async evaluate(sessionId: number, now: Date = new Date(), probeFailuresSoFar = 0): Promise<CheckResult & { measurements: Record<string, unknown> }> {
    const s = await this.pool.query<{ camera_id: number | null; starts_at: Date; ends_at: Date; min_duration_s: number | null; capture_state: string | null }>(
      // The longest minimum of the session's kinds (one session may count for several obligations).
      `SELECT s.camera_id, s.starts_at, s.ends_at, j.state AS capture_state,
              (SELECT max(bor.min_duration_s) FROM branch_obligation_rules bor
                WHERE bor.branch_id = s.branch_id
                  AND (bor.obligation = s.obligation
                       OR bor.obligation IN (SELECT so.obligation FROM session_obligations so WHERE so.session_id = s.id)))::int AS min_duration_s
         FROM meeting_sessions s
         LEFT JOIN capture_jobs j ON j.id = s.capture_job_id
        WHERE s.id = $1`,
      [sessionId],
    );
    const session = s.rows[0];
    if (!session) throw new Error(`session ${sessionId} not found`);
    if (session.min_duration_s === null) throw new Error(`session ${sessionId}: no applicable rule for its kinds`);
    const requiredS = session.min_duration_s;
    const none = (reasons: Reason[]) => ({ passed: false, pending: false, coveredS: 0, requiredS, reasons, measurements: {} });
    const pending = (code: Reason['code'], message: string, probeFailed = false, measurements: Record<string, unknown> = {}) =>
      ({ passed: false, pending: true, probeFailed, coveredS: 0, requiredS, reasons: [{ code, message }], measurements });
    if (session.camera_id === null) return none([{ code: 'no_recording', message: '会议未指定站点摄像头，无录像' }]);

    const segs = await this.pool.query<{ id: number; bucket: string; object_key: string; started_at: Date; ended_at: Date }>(
      `SELECT id, bucket, object_key, started_at, ended_at FROM recording_segments
        WHERE camera_id = $1 AND ended_at > $2 AND started_at < $3 ORDER BY started_at`,
      [session.camera_id, session.starts_at, session.ends_at],
    );
    // Segments may still be on their way (recorder spool, S3 outage at the recorder): a window the
    // index does not cover yet is not judged before the upload wait has passed.
    const windowS = (session.ends_at.getTime() - session.starts_at.getTime()) / 1000;
    const indexed = total(merge(segs.rows.map((g) => ({
      start: Math.max(0, (g.started_at.getTime() - session.starts_at.getTime()) / 1000),
      end: Math.min(windowS, (g.ended_at.getTime() - session.starts_at.getTime()) / 1000),
    })).filter((x) => x.end > x.start)));
    const mayStillUpload = indexed < windowS - this.r.coverageToleranceS
      && now.getTime() < session.ends_at.getTime() + this.r.uploadWaitMs
      && session.capture_state !== 'failed' && session.capture_state !== 'cancelled';
    const awaitingUpload = () => pending('awaiting_upload', `录像尚未完整上传（已索引${r1(indexed)}/${r1(windowS)}秒），稍后自动复核`, false, { indexedS: r1(indexed) });
    if (segs.rows.length === 0) {
      if (mayStillUpload) return awaitingUpload();
      return none([{ code: 'no_recording', message: '会议时段内未找到录像' }]);
    }

    const t0 = session.starts_at.getTime();
    const windowEnd = (session.ends_at.getTime() - t0) / 1000;
    const covered: Stretch[] = [];
    const black: Stretch[] = [];
    const frozen: Stretch[] = [];
    const silent: Stretch[] = [];
    let audioSeen = false;
    let unreadable = 0;
    const perSegment: Array<{ id: number; m?: MediaMeasurement; error?: string }> = [];
    let missing = 0;
    for (const seg of segs.rows) {
      const offset = (seg.started_at.getTime() - t0) / 1000;
      const ref = { id: seg.id, bucket: seg.bucket, objectKey: seg.object_key };
      let input: string;
      try {
        if (this.source.exists && !(await withTimeout(this.source.exists(ref), this.r.storageTimeoutMs, 'storage'))) {
          // Indexed but gone from the store: a fact about the evidence, not a passing fault.
          missing++;
          unreadable++;
          perSegment.push({ id: seg.id, error: 'missing from storage' });
          continue;
        }
        input = await withTimeout(this.source.inputFor(ref), this.r.storageTimeoutMs, 'storage');
      } catch (err) {
        return pending('storage_unavailable', `录像存储暂时无法访问，稍后自动复核（${String(err).slice(0, 120)}）`);
      }
      let m: MediaMeasurement;
      try {
        m = await probeMedia(input, { detectMinS: this.t.detectMinS, ffmpegPath: this.r.ffmpegPath, timeoutMs: this.r.probeTimeoutMs });
      } catch (err) {
        const why = String(err).slice(0, 200);
        if (!(await this.ffmpegWorks())) {
          return pending('checker_unavailable', `核验程序（ffmpeg）暂时不可用，稍后自动复核（${why}）`);
        }
        if (probeFailuresSoFar + 1 < this.r.maxProbeFailures) {
          return pending('probe_failed', `录像分析失败（第${probeFailuresSoFar + 1}次），稍后自动复核（${why}）`, true);
        }
        unreadable++;
        perSegment.push({ id: seg.id, error: why });
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
    if (coveredS === 0 && unreadable > 0) {
      reasons.push({ code: 'unreadable', message: missing > 0 ? `录像文件缺失或无法读取（${unreadable}段，其中缺失${missing}段）` : `录像文件无法读取（${unreadable}段）` });
    }
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
    if (reasons.length > 0 && mayStillUpload) return awaitingUpload();
    return {
      passed: reasons.length === 0,
      pending: false,
      coveredS: r1(coveredS),
      requiredS,
      reasons,
      measurements: {
        segments: perSegment.length,
        unreadable,
        missing,
        blackS: r1(total(blackM)),
        frozenS: r1(total(frozenM)),
        silentS: r1(total(silentM)),
        audio: audioSeen,
      },
    };
  }
}
