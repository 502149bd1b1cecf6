import type { Gap, TimelineSegment } from './timeline.ts';

// An export joins the recorded pieces of a range end to end, so its duration is the time covered.
// For evidence the jumps must stay visible: the export plan says where in the file each gap falls,
// and becomes both the JSON sidecar and the MP4's chapters (one chapter per continuous piece, its
// title naming the gap before it).

export interface ExportPiece {
  segmentId: number;
  objectKey: string;
  videoCodec: string | null;
  /** Seconds into the segment where the piece starts / ends (ffconcat inpoint / outpoint). */
  inS: number;
  outS: number;
  /** Wall-clock bounds of the piece. */
  from: Date;
  to: Date;
  /** Where the piece starts in the exported file. */
  exportOffsetS: number;
}

export interface ExportGap extends Gap {
  /** Where in the exported file the jump falls (seconds). */
  exportOffsetS: number;
}

export interface ExportPlan {
  from: Date;
  to: Date;
  pieces: ExportPiece[];
  gaps: ExportGap[];
  coveredMs: number;
  /** The exported file's expected duration (= covered time). */
  durationS: number;
}

/**
 * Clips the segments to [from, to) without overlap (a segment starting before the previous one ended
 * contributes only what is new) and places the timeline's gaps in the export's own time.
 */
export function planExport(from: Date, to: Date, segments: TimelineSegment[], gaps: Gap[]): ExportPlan {
  const pieces: ExportPiece[] = [];
  let cursor = from.getTime();
  let offsetMs = 0;
  for (const s of segments) {
    const a = Math.max(s.startedAt.getTime(), cursor);
    const b = Math.min(s.endedAt.getTime(), to.getTime());
    if (b - a < 1) continue;
    pieces.push({
      segmentId: s.id, objectKey: s.objectKey, videoCodec: s.videoCodec,
      inS: (a - s.startedAt.getTime()) / 1000, outS: (b - s.startedAt.getTime()) / 1000,
      from: new Date(a), to: new Date(b), exportOffsetS: offsetMs / 1000,
    });
    offsetMs += b - a;
    cursor = b;
  }
  // A gap's place in the file: the covered time before it.
  const placed = gaps.map((g) => {
    let before = 0;
    for (const p of pieces) before += Math.max(0, Math.min(p.to.getTime(), g.from.getTime()) - p.from.getTime());
    return { ...g, exportOffsetS: before / 1000 };
  });
  return { from, to, pieces, gaps: placed, coveredMs: offsetMs, durationS: offsetMs / 1000 };
}

const hms = (d: Date): string => d.toISOString().slice(11, 19);

/** The sidecar: what the export covers, where each piece and gap is, in wall-clock and file time. */
export function exportSidecar(plan: ExportPlan, meta: { cameraId: number; cameraName: string; transcoded: boolean }): Record<string, unknown> {
  return {
    version: 1,
    camera: { id: meta.cameraId, name: meta.cameraName },
    from: plan.from.toISOString(),
    to: plan.to.toISOString(),
    requested_ms: plan.to.getTime() - plan.from.getTime(),
    covered_ms: plan.coveredMs,
    duration_s: Number(plan.durationS.toFixed(3)),
    video: meta.transcoded ? 'h264 (transcoded)' : 'stream copy',
    pieces: plan.pieces.map((p) => ({
      segment_id: p.segmentId, from: p.from.toISOString(), to: p.to.toISOString(),
      export_offset_s: Number(p.exportOffsetS.toFixed(3)), duration_s: Number(((p.to.getTime() - p.from.getTime()) / 1000).toFixed(3)),
    })),
    gaps: plan.gaps.map((g) => ({
      from: g.from.toISOString(), to: g.to.toISOString(), duration_ms: g.durationMs, export_offset_s: Number(g.exportOffsetS.toFixed(3)),
    })),
  };
}

// ffmetadata escapes '=', ';', '#', '\' and newlines with a backslash.
const esc = (s: string): string => s.replace(/[=;#\\\n]/g, (c) => `\\${c}`);

/** An FFMETADATA1 file: one chapter per continuous stretch, titled with its wall-clock span and the gap before it. */
export function chaptersMetadata(plan: ExportPlan, comment: string): string {
  const chapters: { start: number; end: number; from: Date; to: Date; gapMs: number }[] = [];
  let prevEnd = plan.from.getTime();
  for (const p of plan.pieces) {
    const jump = p.from.getTime() - prevEnd;
    const start = Math.round(p.exportOffsetS * 1000);
    const end = start + (p.to.getTime() - p.from.getTime());
    prevEnd = p.to.getTime();
    const last = chapters.at(-1);
    // Pieces with no gap between them (segment boundaries) share one chapter.
    if (last && jump <= 1000) {
      last.end = end;
      last.to = p.to;
    } else chapters.push({ start, end, from: p.from, to: p.to, gapMs: jump > 1000 ? jump : 0 });
  }
  const lines = [';FFMETADATA1', `comment=${esc(comment)}`];
  for (const c of chapters) {
    const span = `${hms(c.from)}–${hms(c.to)} UTC`;
    const s = Math.round(c.gapMs / 1000);
    const title = c.gapMs > 0 ? `中断 ${s} 秒后 ${span} / after a ${s} s gap` : `录像 ${span} / recorded`;
    lines.push('[CHAPTER]', 'TIMEBASE=1/1000', `START=${c.start}`, `END=${c.end}`, `title=${esc(title)}`);
  }
  return `${lines.join('\n')}\n`;
}
