import { Gauge, Histogram, type Registry } from 'prom-client';
import type { Recorder } from './Recorder.ts';

/**
 * The recorder's alert metrics, computed at scrape time: a storage fault (spool disk full or failing:
 * no new capture starts) and segments quarantined (failed too often; an operator must look), plus
 * the spool's backlog, and the host's load and lease state.
 */
export function registerRecorderMetrics(registry: Registry, recorder: Recorder): void {
  const registers = [registry];
  new Gauge({ name: 'recorder_storage_fault', help: '1 while the spool disk is full or refuses writes (no new capture starts)', registers, collect() { this.set(recorder.storageFault ? 1 : 0); } });
  new Gauge({ name: 'recorder_quarantined_segments', help: 'Segments set aside since start after failing too often (see recorder_quarantine)', registers, collect() { this.set(recorder.spool.quarantinedSegments); } });
  new Gauge({ name: 'recorder_spool_segments', help: 'Segments waiting in the spool', registers, collect() { this.set(recorder.spool.pendingSegments); } });
  new Gauge({ name: 'recorder_running_jobs', help: 'Capture jobs this recorder host runs now (its load; claims go to the least loaded host)', registers, collect() { this.set(recorder.runningJobs); } });
  new Gauge({ name: 'recorder_lease_fenced', help: '1 while captures are stopped because the job leases could not be renewed (another host may take them over)', registers, collect() { this.set(recorder.leaseFenced ? 1 : 0); } });
  new Gauge({ name: 'recorder_spool_bytes', help: 'Bytes waiting in the spool', registers, collect() { this.set(recorder.spool.pendingBytes); } });
  // Where a segment's time goes between ffmpeg closing it and its index row (the capacity question:
  // close -> S3 within one segment length when a county's meetings start together).
  const buckets = [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32];
  const stages = new Histogram({ name: 'recorder_segment_stage_seconds', help: 'Seconds per spool stage of each indexed segment (queued, verify, upload_wait, upload, finish_wait, images, index)', labelNames: ['stage'], buckets, registers });
  const stored = new Histogram({ name: 'recorder_segment_close_to_stored_seconds', help: 'Seconds from a segment closing to its media object stored in S3', buckets, registers });
  const names = { queuedMs: 'queued', verifyMs: 'verify', uploadWaitMs: 'upload_wait', uploadMs: 'upload', finishWaitMs: 'finish_wait', imagesMs: 'images', indexMs: 'index' } as const;
  recorder.spool.on('stages', (t) => {
    for (const [k, stage] of Object.entries(names)) stages.observe({ stage }, t[k as keyof typeof names] / 1000);
  });
  recorder.on('indexed', (seg) => stored.observe(seg.closeToStoredMs / 1000));
}
