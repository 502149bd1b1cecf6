import os from 'node:os';
import path from 'node:path';
import { z } from 'zod';

// Every duration is configurable so tests can scale the real-world values (10 s segments, minutes of
// outage) down to seconds without changing behaviour.
export const recorderConfigSchema = z.object({
  /** Local directory for segments being written and the upload spool + journal. */
  spoolDir: z.string().default(path.join(os.tmpdir(), 'grassroots-av-recorder')),
  segmentSeconds: z.number().positive().max(3600).default(10),
  /** ffmpeg RTSP socket I/O timeout. */
  rtspTimeoutMs: z.number().int().positive().default(5_000),
  /** No ffmpeg progress for this long = stalled; the watchdog kills and restarts it. */
  stallTimeoutMs: z.number().int().positive().default(15_000),
  restartBackoffMinMs: z.number().int().positive().default(1_000),
  /** While a camera is down, ask it (RTSP DESCRIBE) this often, and restart at once when it answers. */
  cameraProbeIntervalMs: z.number().int().positive().default(2_000),
  restartBackoffMaxMs: z.number().int().positive().default(30_000),
  /** A run that lived this long resets the backoff. */
  healthyRunMs: z.number().int().positive().default(30_000),
  /** 'auto': copy audio MP4 can hold, transcode other audio to AAC; 'drop': record video only. */
  audio: z.enum(['auto', 'drop']).default('auto'),
  spoolMaxBytes: z.number().int().positive().default(2 * 1024 ** 3),
  spoolMaxSegments: z.number().int().positive().default(10_000),
  /** Below this much free space on the spool disk the recorder is in a storage fault: no new capture starts. */
  spoolMinFreeBytes: z.number().int().min(0).default(100 * 1024 ** 2),
  /** How often the spool disk's free space is measured. */
  diskCheckMs: z.number().int().positive().default(2_000),
  uploadConcurrency: z.number().int().min(1).max(64).default(4),
  /** ffprobe and thumbnail ffmpegs the spool runs at once (CPU-bound; default half the cores, at least 2). */
  toolConcurrency: z.number().int().min(1).max(64).default(Math.max(2, Math.floor(os.availableParallelism() / 2))),
  /**
   * Capture starts spread over up to this long (per camera by a fixed fraction of it), within the time
   * left before the window opens: cameras whose meetings start together do not start their ffmpegs, close
   * their segments or make their first review images all at the same instant. 0: start at once.
   */
  startSpreadMs: z.number().int().min(0).default(4_000),
  uploadRetryMinMs: z.number().int().positive().default(500),
  uploadRetryMaxMs: z.number().int().positive().default(15_000),
  /** Attempts (upload, index) before a segment is quarantined: transient failures (S3 or database down). */
  uploadMaxAttempts: z.number().int().min(1).default(5_760),
  /** Attempts before quarantine when the database refuses the row itself (e.g. its camera is gone). */
  permanentErrorAttempts: z.number().int().min(1).default(3),
  /** ffprobe tries per verification before "could not probe" is retried like an upload failure. */
  probeAttempts: z.number().int().min(1).max(20).default(4),
  probeRetryMs: z.number().int().positive().default(500),
  thumbnails: z.boolean().default(true),
  /** Review images at most this often per camera (and for each new ffmpeg run); segments between share them. 0: every segment. */
  thumbnailEverySeconds: z.number().min(0).default(30),
  /** Review images from keyframes only (decodes a fraction of the video). */
  thumbnailKeyframesOnly: z.boolean().default(true),
  /** ffprobe every closed segment (the old way); false: the first of each ffmpeg run, then a structural MP4 check. */
  probeEverySegment: z.boolean().default(false),
  /** Index rows gathered for up to this long into one INSERT (0: one INSERT per segment). */
  indexBatchMs: z.number().int().min(0).max(5_000).default(50),
  /** Segment media goes to S3 as a streamed presigned PUT (false: the SDK's buffered, hashed putObject). */
  streamUploads: z.boolean().default(true),
  /** Review images asked for within this long are decoded by one ffmpeg (0: one ffmpeg per segment). */
  imageBatchMs: z.number().int().min(0).max(5_000).default(100),
  stripFrames: z.number().int().min(1).max(32).default(6),
  thumbWidth: z.number().int().min(16).max(1920).default(320),
  stripFrameWidth: z.number().int().min(16).max(640).default(120),
  /** How often capture_jobs is polled (also woken directly by scheduleCapture). */
  jobPollMs: z.number().int().positive().default(1_000),
  /** Start ffmpeg this long before a job's pre-roll so connecting does not eat into the window. */
  startLeadMs: z.number().int().min(0).default(5_000),
  /** Two segments further apart than this are separated by a gap. */
  gapToleranceMs: z.number().int().min(0).default(1_000),
  /** A claimed capture job's lease: a host that stops renewing loses its jobs to another host after this. */
  leaseMs: z.number().int().min(1_000).default(25_000),
  /** How often held leases are renewed; a host that could not renew for leaseMs - heartbeatMs stops its captures. */
  leaseHeartbeatMs: z.number().int().min(100).default(5_000),
  /** A due job the least-loaded host has not claimed within this long may be claimed by any host. */
  claimGraceMs: z.number().int().min(0).default(5_000),
  /** Names this recorder in capture_jobs.recorder_id; keep it stable across restarts of one host. */
  recorderId: z.string().min(1).default(os.hostname()),
  /** Recordings older than this are deleted (meeting evidence never). 0 disables age retention. */
  retentionMaxAgeDays: z.number().min(0).default(90),
  /** The disk whose free space triggers the emergency purge (the S3 data dir on one machine); unset = off. */
  retentionDiskPath: z.string().optional(),
  retentionMinFreeBytes: z.number().int().min(0).default(5 * 1024 ** 3),
  retentionIntervalMs: z.number().int().positive().default(10 * 60_000),
  bucket: z.string().min(3).default('recordings'),
  ffmpegPath: z.string().default('ffmpeg'),
  ffprobePath: z.string().default('ffprobe'),
});

export type RecorderConfig = z.infer<typeof recorderConfigSchema>;
export type RecorderConfigInput = z.input<typeof recorderConfigSchema>;

export function recorderConfig(input: RecorderConfigInput = {}): RecorderConfig {
  return recorderConfigSchema.parse(input);
}
