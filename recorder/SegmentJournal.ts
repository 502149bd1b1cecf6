import { EventEmitter } from 'node:events';
import fs from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';
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
  | { t: 'dropped'; id: string }
  | { t: 'quarantined'; id: string; reason: string };

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

export interface SegmentJournalOptions {
  /** Compact once this many lines were appended since the last compaction (and most are dead). */
  compactAfterLines?: number;
  /** Lines held in memory while the disk refuses writes; past it the next recovery compacts instead. */
  maxBacklogLines?: number;
  /** How often a faulted journal tries its disk again. */
  retryMs?: number;
}

export interface SegmentJournalEvents {
  /** The disk refused a write (ENOSPC, EIO, ...): the journal holds lines in memory and retries. */
  fault: [code: string];
  /** Writes succeed again; everything held was written. */
  recovered: [];
}

/**
 * Append-only JSON-lines journal of the spool. Every state change is appended (and fdatasync'ed)
 * before it is acted on, so a recorder killed at any point can rebuild its queue: a segment is
 * "pending" from its `seg` line until a `done`/`rejected`/`dropped`/`quarantined` line. The live
 * state is also kept in memory, so the file is compacted whenever it has grown mostly dead, and a
 * disk that refuses writes is a state (`fault`), never an exception: lines wait in memory and are
 * written, or superseded by a compaction, when the disk takes writes again.
 */
export class SegmentJournal extends EventEmitter<SegmentJournalEvents> {
  readonly file: string;
  #fd: number | undefined;
  #lines = 0;
  #sinceCompaction = 0;
  #compactions = 0;
  readonly #runs = new Map<string, OpenRun>();
  readonly #segs = new Map<string, ClosedSegment>();
  /** Ids handled inside still-open runs: a restart must not recover them from ffmpeg's list again. */
  readonly #handledInRun = new Map<string, Set<string>>();
  #backlog: string[] = [];
  #mustCompact = false;
  #fault: string | undefined;
  #retryTimer: NodeJS.Timeout | undefined;
  #closed = false;
  readonly #compactAfter: number;
  readonly #maxBacklog: number;
  readonly #retryMs: number;

  private constructor(file: string, opts: SegmentJournalOptions) {
    super();
    this.file = file;
    this.#compactAfter = opts.compactAfterLines ?? 10_000;
    this.#maxBacklog = opts.maxBacklogLines ?? 50_000;
    this.#retryMs = opts.retryMs ?? 1_000;
  }

  /** Reads the journal line by line (any size), then compacts it. */
  static async open(file: string, opts: SegmentJournalOptions = {}): Promise<{ journal: SegmentJournal; state: JournalState }> {
    fs.mkdirSync(path.dirname(file), { recursive: true });
    const j = new SegmentJournal(file, opts);
    const known = new Set<string>();
    if (fs.existsSync(file)) {
      const rl = readline.createInterface({ input: fs.createReadStream(file, { encoding: 'utf8' }), crlfDelay: Infinity });
      for await (const line of rl) {
        if (!line.trim()) continue;
        let e: JournalEntry;
        try {
          e = JSON.parse(line) as JournalEntry;
        } catch {
          continue; // a line torn by a crash mid-write
        }
        if (e.t === 'seg') known.add(e.seg.id);
        else if (e.t !== 'run' && e.t !== 'runEnd') known.add(e.id);
        j.#apply(e);
      }
    }
    const state: JournalState = { openRuns: [...j.#runs.values()], pending: [...j.#segs.values()], known };
    try {
      j.#compact();
    } catch (err) {
      // A full disk at start: run on, holding lines in memory until it takes writes again.
      j.#enterFault(err as NodeJS.ErrnoException);
      j.#mustCompact = true;
    }
    return { journal: j, state };
  }

  /** Keeps the in-memory live state that a compaction writes out. */
  #apply(e: JournalEntry): void {
    switch (e.t) {
      case 'run':
        this.#runs.set(e.runId, { runId: e.runId, dir: e.dir, inputStartMs: e.inputStartMs, ctx: e.ctx });
        break;
      case 'runEnd':
        this.#runs.delete(e.runId);
        this.#handledInRun.delete(e.runId);
        break;
      case 'seg':
        this.#segs.set(e.seg.id, e.seg);
        break;
      default: {
        const seg = this.#segs.get(e.id);
        this.#segs.delete(e.id);
        if (seg && this.#runs.has(seg.runId)) {
          let set = this.#handledInRun.get(seg.runId);
          if (!set) this.#handledInRun.set(seg.runId, (set = new Set()));
          set.add(e.id);
        }
      }
    }
  }

  append(e: JournalEntry): void {
    this.#apply(e);
    if (this.#closed) return;
    this.#lines++;
    this.#sinceCompaction++;
    const line = `${JSON.stringify(e)}\n`;
    if (this.#fault) {
      this.#hold(line);
      return;
    }
    try {
      if (this.#sinceCompaction >= this.#compactAfter && this.#sinceCompaction > 2 * (this.#segs.size + this.#runs.size)) {
        this.#compact();
        return;
      }
      writeAll(this.#fd!, line);
      fs.fdatasyncSync(this.#fd!);
    } catch (err) {
      this.#enterFault(err as NodeJS.ErrnoException);
      this.#hold(line);
    }
  }

  #hold(line: string): void {
    if (this.#mustCompact) return; // the compaction on recovery writes the live state anyway
    this.#backlog.push(line);
    if (this.#backlog.length > this.#maxBacklog) {
      this.#backlog = [];
      this.#mustCompact = true;
    }
  }

  #enterFault(err: NodeJS.ErrnoException): void {
    const code = err.code ?? 'EIO';
    const first = this.#fault === undefined;
    this.#fault = code;
    if (first) this.emit('fault', code);
    if (!this.#retryTimer && !this.#closed) {
      this.#retryTimer = setInterval(() => this.#retry(), this.#retryMs);
      this.#retryTimer.unref();
    }
  }

  #retry(): void {
    try {
      if (this.#mustCompact) this.#compact();
      else if (this.#backlog.length > 0) {
        // A torn partial line from the failed write may precede: start on a fresh line.
        writeAll(this.#fd!, `\n${this.#backlog.join('')}`);
        fs.fdatasyncSync(this.#fd!);
      }
    } catch {
      return; // still refused: try again later
    }
    this.#backlog = [];
    this.#mustCompact = false;
    this.#fault = undefined;
    clearInterval(this.#retryTimer);
    this.#retryTimer = undefined;
    this.emit('recovered');
  }

  /** Rewrites only what is live, atomically (temporary file, fsync, rename). */
  #compact(): void {
    const tmp = `${this.file}.tmp`;
    const out: string[] = [];
    for (const r of this.#runs.values()) {
      out.push(JSON.stringify({ t: 'run', ...r } satisfies JournalEntry));
      for (const id of this.#handledInRun.get(r.runId) ?? []) out.push(JSON.stringify({ t: 'done', id } satisfies JournalEntry));
    }
    for (const s of this.#segs.values()) out.push(JSON.stringify({ t: 'seg', seg: s } satisfies JournalEntry));
    const fd = fs.openSync(tmp, 'w');
    try {
      if (out.length) writeAll(fd, `${out.join('\n')}\n`);
      fs.fsyncSync(fd);
    } catch (err) {
      fs.closeSync(fd);
      fs.rmSync(tmp, { force: true });
      throw err;
    }
    fs.closeSync(fd);
    fs.renameSync(tmp, this.file);
    if (this.#fd !== undefined) fs.closeSync(this.#fd);
    this.#fd = fs.openSync(this.file, 'a');
    this.#lines = out.length;
    this.#sinceCompaction = 0;
    this.#compactions++;
  }

  /** Lines in the file (as far as this process knows). */
  get lines(): number {
    return this.#lines;
  }

  get compactions(): number {
    return this.#compactions;
  }

  /** The errno code while the disk refuses writes; undefined when healthy. */
  get fault(): string | undefined {
    return this.#fault;
  }

  close(): void {
    this.#closed = true;
    clearInterval(this.#retryTimer);
    this.#retryTimer = undefined;
    if (this.#backlog.length > 0 || this.#mustCompact) {
      try {
        if (this.#mustCompact) this.#compact();
        else fs.writeSync(this.#fd!, `\n${this.#backlog.join('')}`);
      } catch {
        // still refused: the next start recovers from ffmpeg's segment lists and the index
      }
    }
    try {
      if (this.#fd !== undefined) fs.closeSync(this.#fd);
    } catch {
      // already closed
    }
    this.#fd = undefined;
  }
}

/** A short write is a full disk too (writeSync reports it by count, not by error). */
function writeAll(fd: number, text: string): void {
  const buf = Buffer.from(text);
  const n = fs.writeSync(fd, buf);
  if (n < buf.length) throw Object.assign(new Error(`short write (${n} of ${buf.length} bytes)`), { code: 'ENOSPC' });
}
