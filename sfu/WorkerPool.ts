import * as mediasoup from 'mediasoup';
import type { types } from 'mediasoup';
import type { Logger } from '../infra/logger.ts';
import { TypedEmitter } from './TypedEmitter.ts';

export interface WorkerPoolOptions {
  numWorkers: number;
  listenIp: string;
  announcedAddress?: string;
  /** Worker i's WebRtcServer listens on basePort + i (UDP and TCP); 0 = ephemeral ports. */
  webRtcBasePort: number;
  rtcMinPort: number;
  rtcMaxPort: number;
  logger: Logger;
}

/** One mediasoup Worker (a process) and the WebRtcServer that gives it a single media port. */
export interface WorkerSlot {
  readonly index: number;
  worker: types.Worker;
  webRtcServer: types.WebRtcServer;
  routers: number;
  /** A replacement worker is being started; the slot takes no new routers. */
  restarting: boolean;
}

export type WorkerPoolEvents = {
  /** A worker process died; its routers (and so their rooms) are gone. */
  workerdied: [slot: WorkerSlot, error: Error];
  /** A replacement worker is up in the same slot. */
  workerreplaced: [slot: WorkerSlot];
};

const RESTART_BACKOFF_MS = [100, 500, 2000, 5000];

/**
 * Keeps numWorkers mediasoup workers alive (one per core) and places routers on the least loaded.
 * A worker that dies is replaced in its slot (same WebRtcServer port) with backoff.
 */
export class WorkerPool extends TypedEmitter<WorkerPoolEvents> {
  readonly #options: WorkerPoolOptions;
  readonly #slots: WorkerSlot[] = [];
  #closed = false;
  #restarts = 0;

  constructor(options: WorkerPoolOptions) {
    super();
    this.#options = options;
  }

  get slots(): readonly WorkerSlot[] {
    return this.#slots;
  }

  get restarts(): number {
    return this.#restarts;
  }

  async start(): Promise<void> {
    for (let i = 0; i < this.#options.numWorkers; i++) {
      const { worker, webRtcServer } = await this.#spawn(i);
      const slot: WorkerSlot = { index: i, worker, webRtcServer, routers: 0, restarting: false };
      this.#slots.push(slot);
      this.#watch(slot);
    }
  }

  /** The slot with the fewest routers that is not restarting. */
  pick(): WorkerSlot {
    let best: WorkerSlot | undefined;
    for (const s of this.#slots) {
      if (s.restarting || s.worker.closed) continue;
      if (!best || s.routers < best.routers) best = s;
    }
    if (!best) throw new Error('no live mediasoup worker');
    return best;
  }

  close(): void {
    this.#closed = true;
    for (const s of this.#slots) s.worker.close();
  }

  async #spawn(index: number): Promise<{ worker: types.Worker; webRtcServer: types.WebRtcServer }> {
    const o = this.#options;
    const worker = await mediasoup.createWorker({
      logLevel: 'warn',
      rtcMinPort: o.rtcMinPort,
      rtcMaxPort: o.rtcMaxPort,
      appData: { slot: index },
    });
    const port = o.webRtcBasePort === 0 ? undefined : o.webRtcBasePort + index;
    const listen = (protocol: 'udp' | 'tcp'): types.TransportListenInfo => ({
      protocol,
      ip: o.listenIp,
      ...(o.announcedAddress ? { announcedAddress: o.announcedAddress } : {}),
      ...(port !== undefined ? { port } : {}),
    });
    const webRtcServer = await worker.createWebRtcServer({ listenInfos: [listen('udp'), listen('tcp')] });
    o.logger.info({ slot: index, pid: worker.pid, port }, 'mediasoup worker started');
    return { worker, webRtcServer };
  }

  #watch(slot: WorkerSlot): void {
    const worker = slot.worker;
    worker.on('died', (error) => {
      if (this.#closed) return;
      this.#options.logger.error({ slot: slot.index, pid: worker.pid, err: error.message }, 'mediasoup worker died');
      slot.restarting = true;
      slot.routers = 0;
      this.emit('workerdied', slot, error);
      void this.#replace(slot, 0);
    });
  }

  async #replace(slot: WorkerSlot, attempt: number): Promise<void> {
    const delay = RESTART_BACKOFF_MS[Math.min(attempt, RESTART_BACKOFF_MS.length - 1)]!;
    await new Promise((r) => setTimeout(r, delay));
    if (this.#closed) return;
    try {
      const { worker, webRtcServer } = await this.#spawn(slot.index);
      slot.worker = worker;
      slot.webRtcServer = webRtcServer;
      slot.restarting = false;
      this.#restarts++;
      this.#watch(slot);
      this.emit('workerreplaced', slot);
    } catch (err) {
      this.#options.logger.error({ slot: slot.index, err: (err as Error).message, attempt }, 'worker restart failed');
      void this.#replace(slot, attempt + 1);
    }
  }
}
