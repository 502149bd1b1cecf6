import type { Pool } from '../infra/db/pool.ts';

export interface TimelineSegment {
  id: number;
  startedAt: Date;
  endedAt: Date;
  bytes: number;
  videoCodec: string | null;
  audioCodec: string | null;
  objectKey: string;
  thumbKey: string | null;
  stripKey: string | null;
  evidence: boolean;
  captureJobId: number | null;
}

export interface Gap {
  from: Date;
  to: Date;
  durationMs: number;
}

export interface Timeline {
  from: Date;
  to: Date;
  segments: TimelineSegment[];
  /** Stretches of [from, to) that no segment covers, longer than the tolerance. */
  gaps: Gap[];
  coveredMs: number;
}

export type TimelineSubject = { cameraId: number } | { roomId: string };

/** Segments overlapping [from, to) in time order, and the gaps between them (gaps are data). */
export async function listTimeline(
  pool: Pool,
  subject: TimelineSubject,
  from: Date,
  to: Date,
  gapToleranceMs = 1000,
  opts: { unitPathPrefix?: string } = {},
): Promise<Timeline> {
  const byCamera = 'cameraId' in subject;
  const params: unknown[] = [byCamera ? subject.cameraId : subject.roomId, from, to];
  let scope = '';
  if (opts.unitPathPrefix !== undefined) {
    params.push(`${opts.unitPathPrefix}%`);
    scope = ' AND unit_id IN (SELECT id FROM units WHERE path LIKE $4)';
  }
  const res = await pool.query<{
    id: number; started_at: Date; ended_at: Date; bytes: number; video_codec: string | null; audio_codec: string | null;
    object_key: string; thumb_key: string | null; strip_key: string | null; evidence: boolean; capture_job_id: number | null;
  }>(
    `SELECT id, started_at, ended_at, bytes, video_codec, audio_codec, object_key, thumb_key, strip_key, evidence, capture_job_id
       FROM recording_segments
      WHERE ${byCamera ? 'camera_id = $1' : 'room_id = $1'} AND started_at < $3 AND ended_at > $2${scope}
      ORDER BY started_at, id
      LIMIT 20000`,
    params,
  );
  const segments: TimelineSegment[] = res.rows.map((r) => ({
    id: Number(r.id), startedAt: r.started_at, endedAt: r.ended_at, bytes: Number(r.bytes), videoCodec: r.video_codec,
    audioCodec: r.audio_codec, objectKey: r.object_key, thumbKey: r.thumb_key, stripKey: r.strip_key, evidence: r.evidence,
    captureJobId: r.capture_job_id === null ? null : Number(r.capture_job_id),
  }));
  const gaps: Gap[] = [];
  let cursor = from.getTime();
  let covered = 0;
  for (const s of segments) {
    const a = Math.max(s.startedAt.getTime(), from.getTime());
    const b = Math.min(s.endedAt.getTime(), to.getTime());
    if (a - cursor > gapToleranceMs) gaps.push({ from: new Date(cursor), to: new Date(a), durationMs: a - cursor });
    if (b > cursor) {
      covered += b - Math.max(a, cursor);
      cursor = b;
    }
  }
  if (to.getTime() - cursor > gapToleranceMs) gaps.push({ from: new Date(cursor), to, durationMs: to.getTime() - cursor });
  return { from, to, segments, gaps, coveredMs: covered };
}
