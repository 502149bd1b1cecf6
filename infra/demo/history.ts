import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { withTransaction, type Pool } from '../db/pool.ts';

// A quarter of history for the demo city, so a newcomer's dashboard and reminder list look like a real
// city's (most branches done, a minority missing or flawed) instead of every branch overdue:
// sessions for every monthly and quarterly obligation each branch owes (branch_obligation_rules: committee
// meetings only where the branch has a committee, group meetings per group) from the start of the previous
// quarter up to `at`; about 88% held and passed, ~6% held but flawed (recording too short, or a 党员大会
// without quorum), ~6% missing (a few chronic branches miss most things). Each held session gets
// its verdicts (completion_checks, session_obligations), an attendance roll for meetings with a quorum
// rule consistent with the verdict, and an approved/submitted ledger. Written with a handful of
// set-based statements, deterministic (hashes of branch, obligation, period and the seed).
// Recordings: real short MP4 clips made once with ffmpeg are put in the recorder's storage for the
// `maxRecordings` most recent held sessions (one object each: the index's object keys are unique),
// with a shared thumbnail; evidence links of the other sessions are empty.

const run = promisify(execFile);

export interface HistoryStorage {
  readonly bucket: string;
  putFile(key: string, file: string, contentType: string): Promise<void>;
}

export interface HistoryOptions {
  at?: Date;
  seed?: number;
  storage?: HistoryStorage;
  /** Sessions given a real recording object in storage (default 300). */
  maxRecordings?: number;
  ffmpegPath?: string;
}

export interface HistorySummary {
  sessions: number;
  passed: number;
  flawed: number;
  missing: number;
  attendance: number;
  recordings: number;
}

/** Seconds of the demo clips (the index claims the session's length; the object is this short). */
const CLIP_S = 6;

async function makeClip(dir: string, ffmpeg: string): Promise<{ clip: string; thumb: string }> {
  const clip = path.join(dir, 'meeting.mp4');
  const thumb = path.join(dir, 'thumb.jpg');
  await run(ffmpeg, ['-y', '-hide_banner', '-loglevel', 'error', '-f', 'lavfi', '-i', `testsrc2=s=320x180:r=10:d=${CLIP_S}`,
    '-f', 'lavfi', '-i', `sine=f=330:d=${CLIP_S}`, '-shortest', '-c:v', 'libx264', '-preset', 'veryfast', '-pix_fmt', 'yuv420p',
    '-c:a', 'aac', '-b:a', '32k', '-movflags', '+faststart', clip]);
  await run(ffmpeg, ['-y', '-hide_banner', '-loglevel', 'error', '-i', clip, '-frames:v', '1', '-vf', 'scale=160:-2', thumb]);
  return { clip, thumb };
}

export async function generateDemoHistory(pool: Pool, opts: HistoryOptions = {}): Promise<HistorySummary> {
  const at = opts.at ?? new Date();
  const seed = String(opts.seed ?? 370700);
  const summary = await withTransaction(pool, async (c) => {
    const u = (tag: string) => `((hashtext(p.branch_id || ':' || p.obligation || ':' || coalesce(p.party_group_id, 0) || ':' || p.period_key || ':${tag}:' || $3) & 1023) / 1024.0)`;
    await c.query(
      `CREATE TEMP TABLE demo_plan ON COMMIT DROP AS
       WITH p AS (
         SELECT bor.branch_id, bor.unit_id, bor.obligation, bor.period, bor.min_duration_s, bor.due_from_month, g.id AS party_group_id,
                ps AS period_start, obligation_period_end(bor.period, ps) AS period_end, obligation_period_key(bor.period, ps) AS period_key
           FROM branch_obligation_rules bor
           LEFT JOIN party_groups g ON bor.scope = 'group' AND g.branch_id = bor.branch_id AND g.retired_at IS NULL
           CROSS JOIN LATERAL (
             SELECT (t AT TIME ZONE 'Asia/Shanghai') AS ps
               -- yearly items: last year's too (the obligations list the previous period of each kind)
               FROM generate_series(obligation_period_start(bor.period, obligation_period_start('quarter', obligation_period_start('quarter', $2::timestamptz) - interval '1 second')
                                      - CASE WHEN bor.period IN ('year', 'half_year') THEN obligation_period_length(bor.period) ELSE interval '0' END) AT TIME ZONE 'Asia/Shanghai',
                                    $1::timestamptz AT TIME ZONE 'Asia/Shanghai', obligation_period_length(bor.period)) t) s
          WHERE bor.enabled AND bor.required_count > 0
            AND (bor.scope <> 'group' OR g.id IS NOT NULL)
       ), scored AS (
         SELECT p.*, ${u('o')} AS uo, ${u('d')} AS ud,
                ((hashtext(p.branch_id || ':chronic:' || $3) & 1023) / 1024.0) AS ub,
                CASE WHEN p.due_from_month IS NOT NULL AND p.period = 'year'
                     THEN ((p.period_start AT TIME ZONE 'Asia/Shanghai') + make_interval(months => p.due_from_month - 1)) AT TIME ZONE 'Asia/Shanghai'
                     ELSE p.period_start END AS listed_from
           FROM p
       ), outcome AS (
         SELECT s.*,
                CASE WHEN (s.ub < 0.04 AND s.uo < 0.7) OR s.uo < 0.035 THEN 'missing'
                     WHEN s.uo >= 0.975 THEN 'short'
                     WHEN s.uo >= 0.945 AND s.obligation = 'member_meeting' THEN 'no_quorum'
                     ELSE 'passed' END AS outcome,
                -- 9:30 China Standard Time on a day between 15% and 85% into the period
                -- (a yearly item listed from its month, e.g. 组织生活会 in Q4: held after that month starts)
                (date_trunc('day', (s.listed_from + (0.15 + 0.7 * s.ud) * (s.period_end - s.listed_from)) AT TIME ZONE 'Asia/Shanghai')
                   + interval '9 hours 30 minutes') AT TIME ZONE 'Asia/Shanghai' AS starts_at
           FROM scored s
       )
       SELECT o.*, o.starts_at + make_interval(secs => o.min_duration_s + 900) AS ends_at,
              NULL::bigint AS camera_id, NULL::bigint AS session_id
         FROM outcome o`,
      [at, new Date(at.getTime()), seed],
    );
    // The room camera: the village station's, else (community branches) the parent town centre's.
    await c.query(
      `UPDATE demo_plan d SET camera_id = bc.cam
         FROM (SELECT b.id AS branch_id, coalesce(own.id, par.id) AS cam
                 FROM branches b JOIN units u ON u.id = b.unit_id
                 LEFT JOIN LATERAL (SELECT min(id) AS id FROM cameras WHERE unit_id = b.unit_id) own ON true
                 LEFT JOIN LATERAL (SELECT min(id) AS id FROM cameras WHERE unit_id = u.parent_id) par ON true) bc
        WHERE bc.branch_id = d.branch_id`);
    await c.query(`ANALYZE demo_plan`);
    // The history starts with the previous quarter.
    await c.query(`DELETE FROM demo_plan WHERE period IN ('month', 'quarter') AND period_start < obligation_period_start('quarter', obligation_period_start('quarter', $1::timestamptz) - interval '1 second')`, [at]);
    // Not yet held: sessions that would end after `at` (the current period is still open).
    await c.query(`DELETE FROM demo_plan WHERE ends_at + interval '1 hour' > $1`, [at]);
    const counts = (await c.query<{ missing: number; passed: number; flawed: number }>(
      `SELECT count(*) FILTER (WHERE outcome = 'missing')::int AS missing, count(*) FILTER (WHERE outcome = 'passed')::int AS passed,
              count(*) FILTER (WHERE outcome IN ('short', 'no_quorum'))::int AS flawed FROM demo_plan`)).rows[0]!;
    await c.query(`DELETE FROM demo_plan WHERE outcome = 'missing'`);
    await c.query(`UPDATE demo_plan SET session_id = nextval(pg_get_serial_sequence('meeting_sessions', 'id'))`);
    await c.query(
      `INSERT INTO meeting_sessions (id, branch_id, obligation, party_group_id, title, topic, starts_at, ends_at, camera_id,
                                     capture_requested_at, check_queued_at, state, origin, ledger_state, submitted_at, reviewed_at,
                                     minutes, chair_member_id)
       OVERRIDING SYSTEM VALUE
       SELECT d.session_id, d.branch_id, d.obligation, d.party_group_id, t.name_zh, t.name_zh || '：学习贯彻党的创新理论', d.starts_at, d.ends_at, d.camera_id,
              d.starts_at - interval '15 minutes', d.ends_at + interval '30 minutes', 'ended', 'planned',
              CASE WHEN d.ends_at < $1::timestamptz - interval '14 days' THEN 'approved' ELSE 'submitted' END,
              d.ends_at + interval '1 day',
              CASE WHEN d.ends_at < $1::timestamptz - interval '14 days' THEN d.ends_at + interval '5 days' END,
              '会议按议程进行，与会党员围绕主题发言讨论。',
              (SELECT m.id FROM members m WHERE m.branch_id = d.branch_id AND m.is_secretary LIMIT 1)
         FROM demo_plan d JOIN obligation_types t ON t.code = d.obligation`,
      [at],
    );
    // Attendance for meetings with a quorum rule: consistent with the verdict (> half of those who count
    // present when it passed, at most half when it failed for quorum). Probationary members attend too.
    const att = await c.query(
      `INSERT INTO session_attendance (session_id, member_id, status, reason, source, recorded_at)
       SELECT x.session_id, x.member_id,
              CASE WHEN x.present THEN 'present' WHEN x.h < 0.5 THEN 'leave' ELSE 'absent' END,
              CASE WHEN x.present THEN NULL WHEN x.h < 0.5 THEN '外出务工，已请假' ELSE '未到' END,
              CASE WHEN x.h < 0.1 THEN 'remote' WHEN x.h < 0.6 THEN 'kiosk' ELSE 'phone' END, x.starts_at
         FROM (
           SELECT d.session_id, d.starts_at, m.id AS member_id, ((hashtext(d.session_id || ':' || m.id) & 1023) / 1024.0) AS h,
                  CASE WHEN d.outcome = 'no_quorum'
                       THEN m.membership = 'full' AND rank() OVER w * 2 <= count(*) FILTER (WHERE m.membership = 'full') OVER (PARTITION BY d.session_id) - 1
                       ELSE (m.membership = 'full' AND rank() OVER w * 2 <= count(*) FILTER (WHERE m.membership = 'full') OVER (PARTITION BY d.session_id) + 2)
                            OR ((hashtext(d.session_id || ':' || m.id) & 1023) / 1024.0) < 0.8 END AS present
             FROM demo_plan d
             JOIN obligation_types t ON t.code = d.obligation AND t.quorum <> 'none'
             JOIN members m ON m.branch_id = d.branch_id AND m.left_at IS NULL
                           AND (t.quorum = 'full_members' OR (t.quorum = 'committee' AND m.committee_role IS NOT NULL)
                                OR (t.quorum = 'group' AND m.party_group_id = d.party_group_id))
           WINDOW w AS (PARTITION BY d.session_id ORDER BY (m.membership = 'full') DESC, m.id)
         ) x`,
    );
    await c.query(
      `INSERT INTO completion_checks (session_id, checked_at, passed, covered_s, required_s, reasons, measurements, pending, attempts)
       SELECT d.session_id, d.ends_at + interval '40 minutes', d.outcome = 'passed',
              CASE WHEN d.outcome = 'short' THEN d.min_duration_s / 2 ELSE d.min_duration_s + 900 END, d.min_duration_s,
              CASE d.outcome
                WHEN 'short' THEN jsonb_build_array(jsonb_build_object('code', 'too_short', 'message', '录像覆盖' || d.min_duration_s / 2 || '秒，少于要求的' || d.min_duration_s || '秒'))
                WHEN 'no_quorum' THEN jsonb_build_array(jsonb_build_object('code', 'no_quorum', 'message', d.obligation || ': 到会人数未超过应到党员半数'))
                ELSE '[]'::jsonb END,
              jsonb_build_object('demo', true), false, 1
         FROM demo_plan d`,
    );
    await c.query(
      `UPDATE session_obligations so SET passed = d.outcome = 'passed',
              reasons = CASE d.outcome
                WHEN 'short' THEN jsonb_build_array(jsonb_build_object('code', 'too_short', 'message', '录像覆盖' || d.min_duration_s / 2 || '秒，少于要求的' || d.min_duration_s || '秒'))
                WHEN 'no_quorum' THEN jsonb_build_array(jsonb_build_object('code', 'no_quorum', 'message', '到会人数未超过应到党员半数'))
                ELSE '[]'::jsonb END
         FROM demo_plan d WHERE so.session_id = d.session_id`,
    );
    return { sessions: counts.passed + counts.flawed, passed: counts.passed, flawed: counts.flawed, missing: counts.missing, attendance: att.rowCount ?? 0, recordings: 0 };
  });

  // Recordings of the most recent held sessions (those with a camera), real objects in storage.
  const storage = opts.storage;
  const max = opts.maxRecordings ?? 300;
  if (storage && max > 0) {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'demo-history-'));
    try {
      const { clip, thumb } = await makeClip(dir, opts.ffmpegPath ?? 'ffmpeg');
      const bytes = (await fs.stat(clip)).size;
      const thumbKey = 'demo/history/thumb.jpg';
      await storage.putFile(thumbKey, thumb, 'image/jpeg');
      const { rows } = await pool.query<{ id: number; camera_id: number; starts_at: Date; ends_at: Date; covered_s: number }>(
        `SELECT s.id, s.camera_id, s.starts_at, s.ends_at, c.covered_s FROM meeting_sessions s JOIN completion_checks c ON c.session_id = s.id
          WHERE s.camera_id IS NOT NULL AND c.measurements ? 'demo'
            AND NOT EXISTS (SELECT 1 FROM recording_segments r WHERE r.camera_id = s.camera_id AND r.ended_at > s.starts_at AND r.started_at < s.ends_at)
          ORDER BY s.starts_at DESC, s.id LIMIT $1`, [max]);
      for (const r of rows) {
        const key = `demo/history/session-${r.id}.mp4`;
        await storage.putFile(key, clip, 'video/mp4');
        // Indexed as the recorder would have, soon after the session (not a "late" upload).
        await pool.query(
          `INSERT INTO recording_segments (camera_id, started_at, ended_at, bytes, video_codec, audio_codec, bucket, object_key, thumb_key, evidence, created_at)
           VALUES ($1, $2, $3, $4, 'h264', 'aac', $5, $6, $7, true, $8)`,
          [r.camera_id, r.starts_at, new Date(r.starts_at.getTime() + r.covered_s * 1000), bytes, storage.bucket, key, thumbKey,
            new Date(r.ends_at.getTime() + 5 * 60_000)]);
      }
      summary.recordings = rows.length;
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  }
  return summary;
}
