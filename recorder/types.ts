/** Where a segment came from: a camera, or a conference room recorded through the SFU. */
export type SegmentSource =
  | { kind: 'camera'; cameraId: number; unitId: number }
  | { kind: 'room'; roomId: string; unitId: number };

/** A segment file ffmpeg closed: which run, where, and its wall-clock bounds (epoch milliseconds). */
export interface SegmentFile {
  runId: string;
  seq: number;
  file: string;
  startedAt: number;
  endedAt: number;
  bytes: number;
}

/** A segment ffmpeg has finished writing, waiting in the spool to be verified, uploaded and indexed. */
export interface ClosedSegment extends SegmentFile {
  /** `${runId}-${seq}`: stable across recorder restarts, so re-processing never duplicates. */
  id: string;
  source: SegmentSource;
  captureJobId: number | null;
  sessionId: number | null;
  evidence: boolean;
}

/** A segment as it stands in recording_segments. */
export interface IndexedSegment {
  id: number;
  segmentId: string;
  cameraId: number | null;
  roomId: string | null;
  captureJobId: number | null;
  startedAt: Date;
  endedAt: Date;
  bytes: number;
  videoCodec: string | null;
  audioCodec: string | null;
  bucket: string;
  objectKey: string;
  thumbKey: string | null;
  stripKey: string | null;
  evidence: boolean;
  /** Milliseconds from the segment closing (ffmpeg list entry) to its row existing. */
  closeToIndexedMs: number;
  /** Milliseconds from the segment closing to its media object being stored in S3. */
  closeToStoredMs: number;
}
