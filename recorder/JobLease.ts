import type { Pool } from '../infra/db/pool.ts';
import type { Logger } from '../infra/logger.ts';

/** A capture_jobs row as the recorder reads it. */
export interface LeasedJobRow {
  id: number;
  camera_id: number;
  session_id: number | null;
  starts_at: Date;
  ends_at: Date;
  pre_roll_s: number;
  post_roll_s: number;
  state: 'scheduled' | 'recording' | 'done' | 'partial' | 'failed' | 'cancelled';
  evidence: boolean;
}

export interface JobLeaseOptions {
  pool: Pool;
  recorderId: string;
  /** How long a claim holds without renewal; another host takes the job over after it. */
  leaseMs: number;
  /** How often held leases are renewed (well below leaseMs). */
  heartbeatMs: number;
  /** A due job the least-loaded host has not claimed within this long is claimed by any host. */
  claimGraceMs: number;
  log: Logger;
}

const OPEN = `('scheduled', 'recording')`;
/** Claims per poll: bounded so one host cannot grab a whole backlog before the load is re-read. */
const MAX_CLAIMS_PER_SYNC = 8;

/**
 * Capture jobs held with a lease. Each recorder host registers in recorder_hosts, renews the leases
 * of the jobs it runs every heartbeat, and claims due jobs whose lease is free or stale, but only
 * while it is among the least loaded live hosts (fewest leased jobs) — except for cameras it already
 * records (one RTSP session per camera) and jobs nobody picked up within the grace. A host that cannot
 * renew must stop its captures before its leases run out (`mustFence`), so a taker never overlaps it.
 */
export class JobLease {
  readonly #o: JobLeaseOptions;
  #renewing: Promise<void> | undefined;
  /** Local time the last successful renewal was sent: held leases are valid until this + leaseMs. */
  #renewedSentAt = 0;

  constructor(opts: JobLeaseOptions) {
    // A lease must survive a missed heartbeat, or a healthy host fences itself on one slow query.
    if (opts.heartbeatMs * 2 > opts.leaseMs) throw new Error(`recorder leaseHeartbeatMs (${opts.heartbeatMs}) must be at most half of leaseMs (${opts.leaseMs})`);
    this.#o = opts;
  }

  get leaseMs(): number {
    return this.#o.leaseMs;
  }

  /**
   * True once held leases may expire within one heartbeat and the last renewal is that old: the
   * captures must stop now, because another host may start the same jobs at lease expiry.
   */
  mustFence(now = Date.now()): boolean {
    if (this.#renewedSentAt === 0) return false;
    return now >= this.#renewedSentAt + this.#o.leaseMs - this.#o.heartbeatMs;
  }

  /**
   * Heartbeat: the host row (alive, its load, whether it takes new jobs) and the leases of every job
   * it holds. Runs on its own timer so a slow poll (a capture stopping) cannot delay it.
   */
  async renew(accepting: boolean, runningJobs: number): Promise<void> {
    if (this.#renewing) return this.#renewing;
    this.#renewing = this.#renewOnce(accepting, runningJobs).finally(() => {
      this.#renewing = undefined;
    });
    return this.#renewing;
  }

  async #renewOnce(accepting: boolean, runningJobs: number): Promise<void> {
    const o = this.#o;
    const sentAt = Date.now();
    await o.pool.query(
      `INSERT INTO recorder_hosts (id, heartbeat_at, running_jobs, accepting) VALUES ($1, now(), $2, $3)
       ON CONFLICT (id) DO UPDATE SET heartbeat_at = now(), running_jobs = $2, accepting = $3`,
      [o.recorderId, runningJobs, accepting],
    );
    // Renews only leases still ours: one another host took over stays with that host.
    await o.pool.query(
      `UPDATE capture_jobs SET lease_until = now() + make_interval(secs => $2)
        WHERE recorder_id = $1 AND state IN ${OPEN} AND lease_until IS NOT NULL`,
      [o.recorderId, o.leaseMs / 1000],
    );
    this.#renewedSentAt = sentAt;
  }

  /** One poll: claims (if `accepting`) and the due jobs this host holds now. */
  async sync(leadS: number, accepting: boolean, runningJobs: number): Promise<LeasedJobRow[]> {
    const o = this.#o;
    if (this.#renewedSentAt === 0) await this.renew(accepting, runningJobs);
    if (accepting) {
      for (let i = 0; i < MAX_CLAIMS_PER_SYNC; i++) {
        const claimed = await this.#claimOne(leadS);
        if (!claimed) break;
      }
    }
    const held = await o.pool.query<LeasedJobRow>(
      `SELECT id, camera_id, session_id, starts_at, ends_at, pre_roll_s, post_roll_s, state, evidence FROM capture_jobs
        WHERE recorder_id = $1 AND state IN ${OPEN} AND lease_until > now()
          AND starts_at - make_interval(secs => pre_roll_s + $2) <= now()`,
      [o.recorderId, leadS],
    );
    return held.rows;
  }

  async #claimOne(leadS: number): Promise<boolean> {
    const o = this.#o;
    const res = await o.pool.query<{ id: number; previous: string | null }>(
      `WITH live AS (
         SELECT h.id FROM recorder_hosts h
          WHERE h.accepting AND h.heartbeat_at > now() - make_interval(secs => $3)
       ), load AS (
         SELECT live.id, (SELECT count(*) FROM capture_jobs l
                           WHERE l.recorder_id = live.id AND l.state IN ${OPEN} AND l.lease_until > now())::int AS n
           FROM live
       ), cand AS (
         SELECT j.id, j.recorder_id AS previous FROM capture_jobs j
          WHERE j.state IN ${OPEN}
            AND (j.lease_until IS NULL OR j.lease_until <= now())
            AND j.starts_at - make_interval(secs => j.pre_roll_s + $1) <= now()
            AND (
              -- one RTSP session per camera: a camera this host records keeps its jobs here
              EXISTS (SELECT 1 FROM capture_jobs o WHERE o.camera_id = j.camera_id AND o.recorder_id = $2
                        AND o.state IN ${OPEN} AND o.lease_until > now())
              OR (NOT EXISTS (SELECT 1 FROM capture_jobs o WHERE o.camera_id = j.camera_id AND o.recorder_id <> $2
                                AND o.state IN ${OPEN} AND o.lease_until > now())
                  AND (coalesce((SELECT n FROM load WHERE id = $2), 0) <= coalesce((SELECT min(n) FROM load WHERE id <> $2), 2147483647)
                       -- nobody else picked it up within the grace after it became claimable: any host does
                       OR GREATEST(j.starts_at - make_interval(secs => j.pre_roll_s + $1), j.created_at, coalesce(j.lease_until, '-infinity'))
                          + make_interval(secs => $4) <= now()))
            )
          ORDER BY j.starts_at, j.id
          LIMIT 1
          FOR UPDATE OF j SKIP LOCKED
       )
       UPDATE capture_jobs j
          SET recorder_id = $2, lease_until = now() + make_interval(secs => $3),
              takeovers = j.takeovers + CASE WHEN cand.previous IS NOT NULL AND cand.previous <> $2 THEN 1 ELSE 0 END
         FROM cand WHERE j.id = cand.id
       RETURNING j.id, cand.previous`,
      [leadS, o.recorderId, o.leaseMs / 1000, o.claimGraceMs / 1000],
    );
    const row = res.rows[0];
    if (!row) return false;
    if (row.previous && row.previous !== o.recorderId) o.log.warn({ jobId: Number(row.id), from: row.previous }, 'took over a capture job whose lease ran out');
    return true;
  }

  /** Clean shutdown: hand held jobs back at once (another host, or this one restarted, continues). */
  async release(): Promise<void> {
    await this.#o.pool.query(`UPDATE capture_jobs SET lease_until = now() WHERE recorder_id = $1 AND state IN ${OPEN}`, [this.#o.recorderId]);
    await this.#o.pool.query('UPDATE recorder_hosts SET accepting = false, running_jobs = 0 WHERE id = $1', [this.#o.recorderId]);
  }
}
