import { Gauge, type Registry } from 'prom-client';
import type { Recorder } from './Recorder.ts';

/**
 * The recorder's alert metrics, computed at scrape time: a storage fault (spool disk full or failing:
 * no new capture starts) and segments quarantined (failed too often; an operator must look), plus
 * the spool's backlog.
 */
export function registerRecorderMetrics(registry: Registry, recorder: Recorder): void {
  const registers = [registry];
  new Gauge({ name: 'recorder_storage_fault', help: '1 while the spool disk is full or refuses writes (no new capture starts)', registers, collect() { this.set(recorder.storageFault ? 1 : 0); } });
  new Gauge({ name: 'recorder_quarantined_segments', help: 'Segments set aside since start after failing too often (see recorder_quarantine)', registers, collect() { this.set(recorder.spool.quarantinedSegments); } });
  new Gauge({ name: 'recorder_spool_segments', help: 'Segments waiting in the spool', registers, collect() { this.set(recorder.spool.pendingSegments); } });
  new Gauge({ name: 'recorder_spool_bytes', help: 'Bytes waiting in the spool', registers, collect() { this.set(recorder.spool.pendingBytes); } });
}
