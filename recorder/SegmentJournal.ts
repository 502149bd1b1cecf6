import fs from 'node:fs';
import path from 'node:path';
import type { ClosedSegment, SegmentSource } from './types.ts';

/** Context a run's segments inherit when they have to be recovered after a crash. */
export interface RunContext {
  source: SegmentSource;
  captureJobId: number | null;
  sessionId: number | null;
  evidence: boolean;
}

export type JournalEntry =
  | { t: 'run'; runId: string; dir: string; inputStartMs: number; ctx: RunContext }
  | { t: 'runEnd'; runId: string }
  | { t: 'seg'; seg: ClosedSegment }
  | { t: 'done'; id: string }
  | { t: 'rejected'; id: string; reason: string }
  | { t: 'dropped'; id: string };

export interface OpenRun {
  runId: string;
  dir: string;
  inputStartMs: number;
  ctx: RunContext;
}

export interface JournalState {
  /** Runs that never recorded their end: the recorder died while ffmpeg was writing them. */
  openRuns: OpenRun[];
  /** Segments closed but not yet indexed (or rejected/dropped), in journal order. */
  pending: ClosedSegment[];
  /** Every segment id the journal has seen (to skip ones already handled). */
  known: Set<string>;
}

/**
 * Append-only JSON-lines journal of the spool. Every state change is appended before it is acted
 * on, so a recorder killed at any point can rebuild its queue: a segment is "pending" from its `seg`
 * line until a `done`/`rejected`/`dropped` line. Compacted on open.
 */
export class SegmentJournal {
  readonly file: string;
  #fd: number;
  #lines = 0;

  private constructor(file: string, fd: number) {
    this.file = file;
    this.#fd = fd;
  }

  static open(file: string): { journal: SegmentJournal; state: JournalState } {
    fs.mkdirSync(path.dirname(file), { recursive: true });
    const state = SegmentJournal.#replay(file);
    // Compact: rewrite only what is still live, atomically.
    const tmp = `${file}.tmp`;
    const lines: string[] = [];
    for (const r of state.openRuns) lines.push(JSON.stringify({ t: 'run', ...r } satisfies JournalEntry));
    for (const s of state.pending) lines.push(JSON.stringify({ t: 'seg', seg: s } satisfies JournalEntry));
    fs.writeFileSync(tmp, lines.length ? `${lines.join('\n')}\n` : '');
    fs.renameSync(tmp, file);
    const j = new SegmentJournal(file, fs.openSync(file, 'a'));
    j.#lines = lines.length;
    return { journal: j, state };
  }

  static #replay(file: string): JournalState {
    const runs = new Map<string, OpenRun>();
    const segs = new Map<string, ClosedSegment>();
    const known = new Set<string>();
    let text = '';
    try {
      text = fs.readFileSync(file, 'utf8');
    } catch {
      // No journal yet: a fresh spool.
    }
    for (const line of text.split('\n')) {
      if (!line.trim()) continue;
      let e: JournalEntry;
      try {
        e = JSON.parse(line) as JournalEntry;
      } catch {
        continue; // a line torn by a crash mid-write
      }
      switch (e.t) {
        case 'run':
          runs.set(e.runId, { runId: e.runId, dir: e.dir, inputStartMs: e.inputStartMs, ctx: e.ctx });
          break;
        case 'runEnd':
          runs.delete(e.runId);
          break;
        case 'seg':
          known.add(e.seg.id);
          segs.set(e.seg.id, e.seg);
          break;
        case 'done':
        case 'rejected':
        case 'dropped':
          known.add(e.id);
          segs.delete(e.id);
          break;
      }
    }
    return { openRuns: [...runs.values()], pending: [...segs.values()], known };
  }

  append(e: JournalEntry): void {
    fs.writeSync(this.#fd, `${JSON.stringify(e)}\n`);
    this.#lines++;
  }

  get lines(): number {
    return this.#lines;
  }

  close(): void {
    try {
      fs.closeSync(this.#fd);
    } catch {
      // already closed
    }
  }
}
