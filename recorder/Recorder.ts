import { EventEmitter } from 'node:events';
import fs from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import type { Pool } from '../infra/db/pool.ts';
import { createLogger, type Logger } from '../infra/logger.ts';
import type { ObjectStorage } from '../infra/storage/ObjectStorage.ts';
import { recorderConfig, type RecorderConfig, type RecorderConfigInput } from './config.ts';
import ffmpeg from 'fluent-ffmpeg';
import { ffmpegCommandPath, fileSize, recoverUnlisted, redact, SegmentCapture, type RawSegment } from './SegmentCapture.ts';
import { SegmentJournal, type RunContext } from './SegmentJournal.ts';
import { Retention } from './Retention.ts';
import { SegmentSpool } from './SegmentSpool.ts';
import { JobLease, type LeasedJobRow } from './JobLease.ts';
import type { CaptureFailure } from './CaptureFailure.ts';
import { probeCamera } from './CameraProbe.ts';
import type { ClosedSegment, IndexedSegment } from './types.ts';

export interface RecorderEvents {
  indexed: [IndexedSegment];
  rejected: [ClosedSegment, string];
  dropped: [ClosedSegment];
  captureStarted: [cameraId: number];
  captureStopped: [cameraId: number];
  jobState: [jobId: number, state: CaptureJobState];
  /** The spool disk refuses writes (ENOSPC, EIO): no new capture starts until it recovers. */
  storageFault: [code: string];
  storageRecovered: [];
  quarantined: [ClosedSegment, string];
}

/** `recording` is the running state; a finished job is done, partial (part of its window) or failed (nothing). */
export type CaptureJobState = 'scheduled' | 'recording' | 'done' | 'partial' | 'failed' | 'cancelled';

export const captureRequestSchema = z
  .object({
    cameraId: z.number().int().positive(),
    sessionId: z.number().int().positive().nullable().default(null),
    startsAt: z.coerce.date(),
    endsAt: z.coerce.date(),
    preRollS: z.number().int().min(0).max(3600).default(0),
    postRollS: z.number().int().min(0).max(3600).default(0),
    evidence: z.boolean().default(false),
  })
  .refine((r) => r.endsAt > r.startsAt, { message: 'endsAt must be after startsAt' });
export type CaptureRequest = z.input<typeof captureRequestSchema>;

export interface CaptureJob {
  id: number;
  cameraId: number;
  sessionId: number | null;
  startsAt: Date;
  endsAt: Date;
  preRollS: number;
  postRollS: number;
  state: CaptureJobState;
  evidence: boolean;
}

interface CameraRow {
  id: number;
  unit_id: number;
  rtsp_url: string;
  username: string | null;
  password: string | null;
  /** The camera's RTSP transport (tcp, udp, or auto: TCP then UDP); read per run. */
  rtsp_transport?: 'tcp' | 'udp' | 'auto';
}

interface ActiveCamera {
  cameraId: number;
  unitId: number;
  capture: SegmentCapture;
  jobs: Map<number, CaptureJob>;
  /** Wall-clock end of the newest closed segment: capture stops only once the window is covered. */
  coveredUntil: number;
  /** The newest reason the camera gave for not recording (SegmentCapture's `failure`, or a run's end). */
  lastFailure: CaptureFailure | undefined;
  /** Set while the capture waits for its place in the start spread (see startDelayMs). */
  startTimer: NodeJS.Timeout | undefined;
}

/** Time left before a window opens that a capture needs for connecting (RTSP, ffmpeg's stream analysis). */
const CONNECT_ALLOWANCE_MS = 2_000;

/**
 * How long to hold a camera's capture start: a fixed fraction of the spread per camera (golden-ratio
 * sequence, so any set of camera ids lands spread out), never past the window's opening less the
 * connect allowance. A window already open starts at once.
 */
export function startDelayMs(cameraId: number, spreadMs: number, msUntilWindow: number): number {
  const room = Math.min(spreadMs, msUntilWindow - CONNECT_ALLOWANCE_MS);
  if (!(room > 0)) return 0;
  const fraction = (cameraId * 0.6180339887498949) % 1;
  return Math.floor(room * fraction);
}

/**
 * fluent-ffmpeg asks `ffmpeg -encoders` and `ffmpeg -formats` before a command runs, caching the
 * answer only once the first reply is in: 64 captures starting together would each spawn both (the
 * largest single cost of the start-up burst in a CPU profile). Asked once here, before any capture.
 */
export async function warmFfmpegCapabilities(ffmpegPath: string): Promise<void> {
  const cmd = ffmpeg().setFfmpegPath(ffmpegCommandPath(ffmpegPath));
  await new Promise<void>((resolve) => cmd.availableEncoders(() => cmd.availableFormats(() => resolve())));
}

/** Intervals this host recorded per camera, kept until their jobs are judged (bounded). */
const RECENT_PER_CAMERA = 4_096;

export interface RecorderOptions {
  pool: Pool;
  storage: ObjectStorage;
  config?: RecorderConfigInput;
  log?: Logger;
}

/** The RTSP URL ffmpeg uses, with credentials from the camera row. Never logged or sent to clients. */
export function cameraPullUrl(row: { rtsp_url: string; username: string | null; password: string | null }): string {
  const u = new URL(row.rtsp_url);
  if (row.username) {
    u.username = encodeURIComponent(row.username);
    u.password = encodeURIComponent(row.password ?? '');
  }
  return u.toString();
}

/**
 * The recorder: runs capture jobs from capture_jobs (start at starts_at - pre-roll, stop at
 * ends_at + post-roll), one segmenting ffmpeg per camera, and feeds every closed segment through the
 * journal-backed spool into S3 and recording_segments. A restarted recorder resumes from its journal:
 * segments left in the spool are uploaded, runs its predecessor died in are recovered from ffmpeg's
 * own segment list, and jobs still inside their window are picked up again.
 */
export class Recorder extends EventEmitter<RecorderEvents> {
  readonly config: RecorderConfig;
  readonly #pool: Pool;
  readonly #log: Logger;
  readonly #journal: SegmentJournal;
  readonly #spool: SegmentSpool;
  readonly #cameras = new Map<number, ActiveCamera>();
  readonly #finishing = new Set<number>();
  readonly #lease: JobLease;
  /** Segments (start, end) this host closed per camera, for jobs' covered seconds before indexing ends. */
  readonly #recent = new Map<number, Array<[number, number]>>();
  /** Failures seen per camera after its capture stopped, for jobs finished later. */
  readonly #failures = new Map<number, CaptureFailure>();
  #fenced = false;
  #timer: NodeJS.Timeout | undefined;
  #diskTimer: NodeJS.Timeout | undefined;
  #heartbeatTimer: NodeJS.Timeout | undefined;
  #diskFault: string | undefined;
  #reportedFault: string | undefined;
  #retentionTimer: NodeJS.Timeout | undefined;
  #ticking: Promise<void> | undefined;
  #tickAgain = false;
  #closed = false;
  /** Journal closed: capture events arriving later are left for the next start to recover. */
  #shut = false;

  private constructor(opts: RecorderOptions, config: RecorderConfig, journal: SegmentJournal, log: Logger) {
    super();
    this.config = config;
    this.#pool = opts.pool;
    this.#log = log;
    this.#journal = journal;
    this.#spool = new SegmentSpool({ pool: opts.pool, storage: opts.storage, journal, config, log });
    this.#lease = new JobLease({ pool: opts.pool, recorderId: config.recorderId, leaseMs: config.leaseMs, heartbeatMs: config.leaseHeartbeatMs, claimGraceMs: config.claimGraceMs, log });
    this.#spool.on('indexed', (s) => this.emit('indexed', s));
    this.#spool.on('rejected', (s, r) => this.emit('rejected', s, r));
    this.#spool.on('dropped', (s) => this.emit('dropped', s));
    this.#spool.on('quarantined', (s, r) => this.emit('quarantined', s, r));
    journal.on('fault', () => this.#updateFault());
    journal.on('recovered', () => this.#updateFault());
  }

  /** Set while the spool disk refuses writes or is nearly full (ENOSPC, EIO, ...). */
  get storageFault(): string | undefined {
    return this.#journal.fault ?? this.#diskFault;
  }

  /** Emits the transitions of the storage fault state (the alert) and resumes when it clears. */
  #updateFault(): void {
    const now = this.storageFault;
    if (now === this.#reportedFault) return;
    this.#reportedFault = now;
    if (now) {
      this.#log.error({ code: now, spoolDir: this.config.spoolDir }, 'spool disk full or failing: not starting new captures until it recovers');
      this.emit('storageFault', now);
    } else {
      this.#log.warn('spool disk usable again');
      this.emit('storageRecovered');
      this.wake();
    }
  }

  async #checkDisk(): Promise<void> {
    try {
      const s = await fs.promises.statfs(this.config.spoolDir);
      this.#diskFault = s.bavail * s.bsize < this.config.spoolMinFreeBytes ? 'ENOSPC' : undefined;
    } catch (err) {
      this.#diskFault = (err as NodeJS.ErrnoException).code ?? 'EIO';
    }
    this.#updateFault();
  }

  static async start(opts: RecorderOptions): Promise<Recorder> {
    const config = recorderConfig(opts.config);
    const log = opts.log ?? createLogger('recorder');
    fs.mkdirSync(config.spoolDir, { recursive: true });
    await opts.storage.ensureBucket().catch((err: Error) => log.warn({ err: err.message }, 'bucket check failed; uploads will retry'));
    await warmFfmpegCapabilities(config.ffmpegPath).catch((err: Error) => log.warn({ err: err.message }, 'could not ask ffmpeg for its capabilities'));
    const { journal, state } = await SegmentJournal.open(path.join(config.spoolDir, 'journal.jsonl'));
    const rec = new Recorder(opts, config, journal, log);
    // Runs the previous process died in: stop any ffmpeg it left, then take what ffmpeg finished.
    for (const run of state.openRuns) {
      killLeftoverFfmpeg(run.dir);
      const recovered = await recoverRun(run.dir, run.inputStartMs, run.runId, state.known, config.ffprobePath);
      for (const r of recovered) rec.#spool.enqueue(toClosed(r, run.ctx));
      journal.append({ t: 'runEnd', runId: run.runId });
      log.info({ runId: run.runId, recovered: recovered.length }, 'recovered segments of an interrupted run');
    }
    for (const seg of state.pending) rec.#spool.enqueue(seg, true);
    rec.#timer = setInterval(() => {
      rec.#fenceIfStale();
      rec.wake();
    }, Math.min(config.jobPollMs, Math.max(100, Math.floor(config.leaseHeartbeatMs / 2))));
    rec.#heartbeatTimer = setInterval(() => {
      rec.#lease.renew(!rec.storageFault, rec.runningJobs).catch((err: Error) => log.warn({ err: err.message }, 'capture lease renewal failed'));
    }, config.leaseHeartbeatMs);
    await rec.#checkDisk();
    rec.#diskTimer = setInterval(() => void rec.#checkDisk(), config.diskCheckMs);
    if (config.retentionMaxAgeDays > 0 || config.retentionDiskPath) {
      const retention = new Retention({
        pool: opts.pool,
        storage: opts.storage,
        maxAgeMs: config.retentionMaxAgeDays > 0 ? config.retentionMaxAgeDays * 86_400_000 : Number.MAX_SAFE_INTEGER,
        minFreeBytes: config.retentionDiskPath ? config.retentionMinFreeBytes : 0,
        diskPath: config.retentionDiskPath ?? config.spoolDir,
        log,
      });
      let running = false;
      rec.#retentionTimer = setInterval(() => {
        if (running) return;
        running = true;
        retention
          .sweep()
          .catch((err: Error) => log.warn({ err: err.message }, 'retention sweep failed'))
          .finally(() => (running = false));
      }, config.retentionIntervalMs);
    }
    rec.wake();
    return rec;
  }

  /** Jobs this host runs now (attached to a camera it records). */
  get runningJobs(): number {
    return [...this.#cameras.values()].reduce((n, c) => n + c.jobs.size, 0);
  }

  /** True while captures are stopped because the leases could not be renewed (database unreachable). */
  get leaseFenced(): boolean {
    return this.#fenced;
  }

  get spool(): SegmentSpool {
    return this.#spool;
  }

  /** Inserts a capture job (the scheduler inserts rows directly; this is the same thing as an API). */
  async scheduleCapture(req: CaptureRequest): Promise<CaptureJob> {
    const r = captureRequestSchema.parse(req);
    const res = await this.#pool.query(
      `INSERT INTO capture_jobs (camera_id, session_id, starts_at, ends_at, pre_roll_s, post_roll_s, evidence)
       VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING *`,
      [r.cameraId, r.sessionId, r.startsAt, r.endsAt, r.preRollS, r.postRollS, r.evidence],
    );
    this.wake();
    return jobFromRow(res.rows[0] as JobRow);
  }

  async cancelCapture(jobId: number): Promise<void> {
    await this.#pool.query(`UPDATE capture_jobs SET state = 'cancelled', finished_at = now(), lease_until = NULL WHERE id = $1 AND state IN ('scheduled', 'recording')`, [jobId]);
    this.wake();
  }

  /** Re-reads capture_jobs now instead of at the next poll. */
  wake(): void {
    if (this.#closed) return;
    if (this.#ticking) {
      this.#tickAgain = true;
      return;
    }
    this.#ticking = this.#tick()
      .catch((err: Error) => this.#log.warn({ err: err.message }, 'capture job poll failed'))
      .finally(() => {
        this.#ticking = undefined;
        if (this.#tickAgain) {
          this.#tickAgain = false;
          this.wake();
        }
      });
  }

  async #tick(): Promise<void> {
    const leadS = this.config.startLeadMs / 1000;
    // Renew our leases, claim due jobs by load, then read the jobs we hold now (leased).
    const held = await this.#lease.sync(leadS, !this.storageFault, this.runningJobs);
    if (this.#fenced && !this.#lease.mustFence()) {
      this.#fenced = false;
      this.#log.warn('leases renewed again: resuming captures');
    }
    if (this.#fenced) return;
    const res = { rows: held };
    res.rows.sort((a, b) => a.starts_at.getTime() - b.starts_at.getTime());
    const now = Date.now();
    const wanted = new Map<number, CaptureJob[]>();
    for (const row of res.rows) {
      const job = jobFromRow(row);
      const end = job.endsAt.getTime() + job.postRollS * 1000;
      if (now >= end) {
        // Window over: it stays attached to its camera until that capture has flushed, then closes.
        this.#finishing.add(job.id);
        continue;
      }
      const list = wanted.get(job.cameraId) ?? [];
      list.push(job);
      wanted.set(job.cameraId, list);
    }
    // Cancelled jobs disappear from the query: drop them from their camera.
    for (const cam of this.#cameras.values()) {
      for (const id of cam.jobs.keys()) if (!res.rows.some((r) => Number(r.id) === id)) cam.jobs.delete(id);
    }
    // A job whose window was shortened (session ended early) is no longer wanted: its attached copy
    // must see the new end, or the camera records on to the planned one.
    for (const row of res.rows) {
      const job = jobFromRow(row);
      for (const cam of this.#cameras.values()) if (cam.jobs.has(job.id)) cam.jobs.set(job.id, job);
    }
    for (const [cameraId, jobs] of wanted) {
      let cam = this.#cameras.get(cameraId);
      // A full spool disk: leave the jobs scheduled; they start when the disk takes writes again.
      if (!cam && this.storageFault) continue;
      if (!cam) {
        const opensAt = Math.min(...jobs.map((j) => j.startsAt.getTime() - j.preRollS * 1000));
        cam = await this.#startCamera(cameraId, startDelayMs(cameraId, this.config.startSpreadMs, opensAt - now));
      }
      if (!cam) {
        for (const j of jobs) await this.#setJobState(j.id, 'failed', 'camera not found or disabled', 'not_found', 0);
        continue;
      }
      for (const j of jobs) {
        const known = cam.jobs.has(j.id);
        cam.jobs.set(j.id, j); // the window may have changed since (a session ended early)
        if (!known && j.state === 'scheduled') await this.#setJobState(j.id, 'recording');
      }
    }
    // Cameras with no job left in their window: stop (flushing the last segment), then close jobs.
    const stopping: ActiveCamera[] = [];
    for (const cam of [...this.#cameras.values()]) {
      const live = [...cam.jobs.values()].filter((j) => now < j.endsAt.getTime() + j.postRollS * 1000);
      if (live.length > 0) continue;
      // ffmpeg's clock lags wall time a little: keep going until a closed segment reaches the window
      // end (at most one more segment), bounded in case the camera is down at that moment.
      const graceMs = 2 * this.config.segmentSeconds * 1000 + 5_000;
      const windowEnd = Math.max(0, ...[...cam.jobs.values()].map((j) => j.endsAt.getTime() + j.postRollS * 1000));
      // A camera waiting out a backoff has no segment in flight: nothing to wait for.
      if (cam.coveredUntil < windowEnd && now < windowEnd + graceMs && cam.capture.state !== 'backoff') continue;
      this.#cameras.delete(cam.cameraId);
      clearTimeout(cam.startTimer);
      stopping.push(cam);
    }
    // Stopped together: a county's meetings end at once, and each ffmpeg takes a moment to flush its
    // last segment; one after another, the last camera would record on for minutes and no job would
    // be polled meanwhile.
    await Promise.all(
      stopping.map(async (cam) => {
        await cam.capture.stop();
        if (cam.lastFailure) this.#failures.set(cam.cameraId, cam.lastFailure);
        this.emit('captureStopped', cam.cameraId);
        for (const j of cam.jobs.values()) await this.#finishJob(j, cam.lastFailure);
      }),
    );
    for (const id of [...this.#finishing]) {
      if ([...this.#cameras.values()].some((c) => c.jobs.has(id))) continue;
      const row = res.rows.find((r) => Number(r.id) === id);
      if (row) await this.#finishJob(jobFromRow(row), this.#failures.get(Number(row.camera_id)));
      else this.#finishing.delete(id);
    }
  }

  /** Stops every capture when our leases may run out unrenewed: another host may start them then. */
  #fenceIfStale(): void {
    if (this.#fenced || this.#closed || !this.#lease.mustFence()) return;
    this.#fenced = true;
    this.#log.error({ leaseMs: this.config.leaseMs }, 'capture leases not renewed in time: stopping captures so another recorder can take them over');
    for (const cam of [...this.#cameras.values()]) {
      this.#cameras.delete(cam.cameraId);
      clearTimeout(cam.startTimer);
      void cam.capture.stop(500).then(() => this.emit('captureStopped', cam.cameraId));
    }
  }

  /**
   * Judges a job whose window is over: covered seconds of its window (segments indexed by any host,
   * plus those this host closed and may still be uploading); nothing = failed with the reason, part
   * of it = partial.
   */
  async #finishJob(job: CaptureJob, failure: CaptureFailure | undefined): Promise<void> {
    this.#finishing.delete(job.id);
    const ws = job.startsAt.getTime() - job.preRollS * 1000;
    const we = job.endsAt.getTime() + job.postRollS * 1000;
    const rows = await this.#pool.query<{ s: Date; e: Date }>(
      'SELECT started_at AS s, ended_at AS e FROM recording_segments WHERE camera_id = $1 AND ended_at > $2 AND started_at < $3',
      [job.cameraId, new Date(ws), new Date(we)],
    );
    const intervals: Array<[number, number]> = rows.rows.map((r) => [r.s.getTime(), r.e.getTime()]);
    for (const iv of this.#recent.get(job.cameraId) ?? []) intervals.push(iv);
    const coveredMs = Math.min(we - ws, coveredWithin(intervals, ws, we, this.config.gapToleranceMs));
    const missingMs = we - ws - coveredMs;
    let state: CaptureJobState = 'done';
    let why = failure;
    if (coveredMs <= 0) {
      state = 'failed';
      why ??= await this.#diagnose(job.cameraId);
    } else if (missingMs > this.config.gapToleranceMs) state = 'partial';
    else why = undefined;
    await this.#setJobState(job.id, state, why?.detail, why?.reason, coveredMs / 1000);
  }

  async #diagnose(cameraId: number): Promise<CaptureFailure> {
    const r = await this.#pool.query<CameraRow>('SELECT id, unit_id, rtsp_url, username, password FROM cameras WHERE id = $1', [cameraId]);
    const row = r.rows[0];
    if (!row) return { reason: 'unreachable', detail: 'camera not found', at: new Date() };
    // The capture never said why (its window ended before a run did): ask the camera once.
    try {
      const p = await probeCamera(cameraPullUrl(row), { timeoutMs: this.config.rtspTimeoutMs });
      return p.ok ? { reason: 'no_media', detail: 'the camera answers but sent no media in the window', at: new Date() } : p.failure;
    } catch (err) {
      return { reason: 'unreachable', detail: redact((err as Error).message).slice(0, 300), at: new Date() };
    }
  }

  async #setJobState(jobId: number, state: CaptureJobState, error?: string, reason?: CaptureFailure['reason'], coveredS?: number): Promise<void> {
    const res = await this.#pool.query(
      `UPDATE capture_jobs SET state = $2, error = COALESCE($3, error), reason = COALESCE($5, reason), covered_s = COALESCE($6, covered_s),
              started_capture_at = CASE WHEN $2 = 'recording' THEN COALESCE(started_capture_at, now()) ELSE started_capture_at END,
              finished_at = CASE WHEN $2 IN ('done', 'partial', 'failed') THEN now() ELSE finished_at END,
              lease_until = CASE WHEN $2 IN ('done', 'partial', 'failed') THEN NULL ELSE lease_until END
        WHERE id = $1 AND state IN ('scheduled', 'recording') AND (recorder_id IS NULL OR recorder_id = $4)`,
      [jobId, state, error ?? null, this.config.recorderId, reason ?? null, coveredS ?? null],
    );
    if (res.rowCount) this.emit('jobState', jobId, state);
  }

  async #startCamera(cameraId: number, delayMs = 0): Promise<ActiveCamera | undefined> {
    const res = await this.#pool.query<CameraRow>('SELECT id, unit_id, rtsp_url, username, password FROM cameras WHERE id = $1 AND enabled AND retired_at IS NULL', [cameraId]);
    const row = res.rows[0];
    if (!row) return undefined;
    const label = `camera ${cameraId}`;
    const capture = new SegmentCapture({
      name: `camera-${cameraId}`,
      dir: path.join(this.config.spoolDir, `camera-${cameraId}`),
      config: this.config,
      log: this.#log,
      input: async () => {
        // Re-read every run so a changed URL or password takes effect on the next restart.
        const r = await this.#pool.query<CameraRow>('SELECT id, unit_id, rtsp_url, username, password, rtsp_transport FROM cameras WHERE id = $1', [cameraId]);
        const c = r.rows[0] ?? row;
        return {
          url: cameraPullUrl(c),
          ...(c.rtsp_transport ? { rtspTransport: c.rtsp_transport } : {}),
          label,
          inputOptions: [
            '-rtsp_transport', 'tcp',
            '-timeout', String(this.config.rtspTimeoutMs * 1000),
            '-use_wallclock_as_timestamps', '1',
            '-fflags', '+genpts+discardcorrupt',
          ],
        };
      },
    });
    const cam: ActiveCamera = { cameraId, unitId: Number(row.unit_id), capture, jobs: new Map(), coveredUntil: 0, lastFailure: this.#failures.get(cameraId), startTimer: undefined };
    this.#failures.delete(cameraId);
    capture.on('segment', (raw) => {
      cam.coveredUntil = Math.max(cam.coveredUntil, raw.endedAt);
      const list = this.#recent.get(cameraId) ?? [];
      list.push([raw.startedAt, raw.endedAt]);
      if (list.length > RECENT_PER_CAMERA) list.splice(0, list.length - RECENT_PER_CAMERA);
      this.#recent.set(cameraId, list);
    });
    // The capture's own account of why a run got no media: the job's reason if its window falls short.
    capture.on('failure', (f) => {
      cam.lastFailure = f;
    });
    this.attachCapture(capture, (startMs, endMs) => this.#contextFor(cam, startMs, endMs));
    this.#cameras.set(cameraId, cam);
    if (delayMs > 0) {
      cam.startTimer = setTimeout(() => {
        cam.startTimer = undefined;
        capture.start();
        this.emit('captureStarted', cameraId);
      }, delayMs);
    } else {
      capture.start();
      this.emit('captureStarted', cameraId);
    }
    return cam;
  }

  /**
   * Feeds a capture's segments through the journal and spool: used for cameras and for captures the
   * recorder does not run itself (conference recordings). `context` names the source and job.
   */
  attachCapture(capture: SegmentCapture, context: (startMs: number, endMs: number) => RunContext): void {
    const runs = new Set<string>();
    // After close() the journal is shut: anything still arriving stays in its run folder, and the
    // next start recovers it from ffmpeg's segment list (the run is still open in the journal).
    capture.on('run', (run) => {
      if (this.#shut) return;
      runs.add(run.runId);
      this.#journal.append({ t: 'run', runId: run.runId, dir: run.dir, inputStartMs: run.inputStartMs, ctx: context(Date.now(), Date.now()) });
    });
    capture.on('segment', (raw) => {
      if (!this.#shut) this.#spool.enqueue(toClosed(raw, context(raw.startedAt, raw.endedAt)));
    });
    capture.on('runEnded', ({ runId }) => {
      if (runs.delete(runId) && !this.#shut) this.#journal.append({ t: 'runEnd', runId });
    });
  }

  /** The job a segment belongs to: the earliest active job whose window it overlaps. */
  #contextFor(cam: ActiveCamera, startMs: number, endMs: number): RunContext {
    let best: CaptureJob | undefined;
    let evidence = false;
    for (const j of cam.jobs.values()) {
      const ws = j.startsAt.getTime() - j.preRollS * 1000;
      const we = j.endsAt.getTime() + j.postRollS * 1000;
      if (endMs <= ws || startMs >= we) continue;
      evidence ||= j.evidence;
      if (!best || j.startsAt < best.startsAt) best = j;
    }
    return {
      source: { kind: 'camera', cameraId: cam.cameraId, unitId: cam.unitId },
      captureJobId: best?.id ?? null,
      sessionId: best?.sessionId ?? null,
      evidence,
    };
  }

  /**
   * Stops everything. With `drain`, captures are stopped cleanly (last segment flushed) and the spool
   * is emptied first; without, whatever is waiting stays journalled for the next start.
   */
  async close(opts: { drain?: boolean; drainTimeoutMs?: number } = {}): Promise<void> {
    this.#closed = true;
    clearInterval(this.#timer);
    clearInterval(this.#diskTimer);
    clearInterval(this.#heartbeatTimer);
    clearInterval(this.#retentionTimer);
    await this.#ticking;
    for (const c of this.#cameras.values()) clearTimeout(c.startTimer);
    await Promise.all([...this.#cameras.values()].map((c) => c.capture.stop()));
    this.#cameras.clear();
    // Hand our jobs back at once (an upgrade or stop): another host, or this one restarted, goes on.
    await this.#lease.release().catch((err: Error) => this.#log.warn({ err: err.message }, 'could not release capture leases'));
    if (opts.drain) {
      await Promise.race([this.#spool.idle(), new Promise((r) => setTimeout(r, opts.drainTimeoutMs ?? 30_000))]);
    }
    this.#shut = true;
    this.#spool.close();
    this.#journal.close();
  }
}

type JobRow = LeasedJobRow;

/**
 * Milliseconds of [from, to) covered by the union of the intervals, where a hole of at most `joinMs`
 * between two of them counts as covered (the timeline calls only longer holes gaps; ffmpeg leaves a
 * few milliseconds between segments, which over an hour would otherwise add up to a false `partial`).
 */
export function coveredWithin(intervals: Array<[number, number]>, from: number, to: number, joinMs = 0): number {
  const clipped = intervals
    .map(([s, e]) => [Math.max(s, from), Math.min(e, to)] as [number, number])
    .filter(([s, e]) => e > s)
    .sort((a, b) => a[0] - b[0]);
  let total = 0;
  let curS = -Infinity;
  let curE = -Infinity;
  for (const [s, e] of clipped) {
    if (s > curE + joinMs) {
      if (curE > curS) total += curE - curS;
      curS = s;
      curE = e;
    } else curE = Math.max(curE, e);
  }
  if (curE > curS) total += curE - curS;
  return total;
}

function jobFromRow(r: JobRow): CaptureJob {
  return {
    id: Number(r.id),
    cameraId: Number(r.camera_id),
    sessionId: r.session_id === null ? null : Number(r.session_id),
    startsAt: r.starts_at,
    endsAt: r.ends_at,
    preRollS: r.pre_roll_s,
    postRollS: r.post_roll_s,
    state: r.state,
    evidence: r.evidence,
  };
}

export function toClosed(raw: RawSegment, ctx: RunContext): ClosedSegment {
  return {
    id: `${raw.runId}-${raw.seq}`,
    runId: raw.runId,
    seq: raw.seq,
    file: raw.file,
    startedAt: raw.startedAt,
    endedAt: raw.endedAt,
    bytes: raw.bytes,
    source: ctx.source,
    captureJobId: ctx.captureJobId,
    sessionId: ctx.sessionId,
    evidence: ctx.evidence,
  };
}

/** Kills an ffmpeg a dead recorder left behind in `dir`, if it is still running. */
function killLeftoverFfmpeg(dir: string): void {
  let pid: number;
  try {
    pid = Number(fs.readFileSync(path.join(dir, 'ffmpeg.pid'), 'utf8'));
  } catch {
    return;
  }
  try {
    // Only if that pid is still an ffmpeg writing into this very folder (pids get reused).
    const cmdline = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    if (cmdline.includes(dir)) process.kill(pid, 'SIGKILL');
  } catch {
    // gone already
  }
}

/** Segments of an interrupted run that the journal has not seen: listed ones, then unlisted partials. */
async function recoverRun(dir: string, inputStartMs: number, runId: string, known: Set<string>, ffprobePath: string): Promise<RawSegment[]> {
  const out: RawSegment[] = [];
  const listed = new Set<string>();
  let lastEnd = inputStartMs;
  let text = '';
  try {
    text = fs.readFileSync(path.join(dir, 'list.csv'), 'utf8');
  } catch {
    // no segment finished in that run
  }
  for (const line of text.split('\n')) {
    const [name, s, e] = line.trim().split(',');
    if (!name || s === undefined || e === undefined) continue;
    listed.add(name);
    const seq = Number(/seg_(\d+)\.mp4$/.exec(name)?.[1] ?? 0);
    const startedAt = Math.round(inputStartMs + Number(s) * 1000);
    const endedAt = Math.round(inputStartMs + Number(e) * 1000);
    lastEnd = Math.max(lastEnd, endedAt);
    if (known.has(`${runId}-${seq}`)) continue;
    const file = path.join(dir, name);
    const bytes = fileSize(file);
    if (bytes === undefined) continue;
    if (endedAt > startedAt && bytes > 0) out.push({ runId, seq, file, startedAt, endedAt, bytes, recovered: false });
  }
  for (const r of await recoverUnlisted(dir, listed, lastEnd, runId, ffprobePath)) {
    if (!known.has(`${runId}-${r.seq}`)) out.push(r);
  }
  return out;
}
