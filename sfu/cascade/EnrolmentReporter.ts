import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Logger } from '../../infra/logger.ts';
import type { SfuNode } from '../SfuNode.ts';
import { EnrolmentClient, type NodeReport } from './EnrolmentClient.ts';

// An enrolled node tells the API, every `intervalMs`, whether its parent link is up and how loaded it
// is (rooms, peers, children, this process's CPU): the operator's console shows it as the node's
// state. Signed with the node's key; a failed report is logged (bounded) and the next one tries again.

export class EnrolmentReporter {
  readonly #node: SfuNode;
  readonly #client: EnrolmentClient;
  readonly #log: Logger;
  #timer: NodeJS.Timeout | undefined;
  #cpu = process.cpuUsage();
  #at = process.hrtime.bigint();
  #failures = 0;

  readonly #onDraining = (): void => void this.reportNow();
  #sending: Promise<void> = Promise.resolve();

  constructor(node: SfuNode, client: EnrolmentClient, logger: Logger) {
    this.#node = node;
    this.#client = client;
    this.#log = logger;
  }

  snapshot(): NodeReport {
    const cpu = process.cpuUsage(this.#cpu);
    const now = process.hrtime.bigint();
    const wallUs = Number(now - this.#at) / 1000;
    this.#cpu = process.cpuUsage();
    this.#at = now;
    let peers = 0;
    for (const room of this.#node.rooms.values()) peers += room.peers.size;
    return {
      parent_connected: this.#node.cascade?.parentConnected ?? false,
      children: this.#node.cascade?.children ?? [],
      rooms: this.#node.rooms.size,
      peers,
      cpu_percent: wallUs > 0 ? Math.round(((cpu.user + cpu.system) / wallUs) * 1000) / 10 : 0,
      load1: Math.round(os.loadavg()[0]! * 100) / 100,
      draining: this.#node.drain.draining,
    };
  }

  /**
   * Reports now, after any report still on its way: reports sent side by side could land out of order,
   * and an older "not draining" arriving last would send people to a draining node again.
   */
  reportNow(): Promise<void> {
    const next = this.#sending.then(() => this.#send());
    this.#sending = next;
    return next;
  }

  async #send(): Promise<void> {
    try {
      await this.#client.report(this.snapshot());
      this.#failures = 0;
    } catch (err) {
      // Once, then every 20th: an API that is down must not fill the log.
      if (this.#failures++ % 20 === 0) this.#log.warn({ err: (err as Error).message }, 'node report to the API failed');
    }
  }

  start(intervalMs = 15_000): void {
    if (this.#timer) return;
    void this.reportNow();
    this.#timer = setInterval(() => void this.reportNow(), intervalMs);
    this.#timer.unref();
    // Said at once, not at the next tick: routing must stop sending people here before the upgrade.
    this.#node.drain.on('draining', this.#onDraining);
  }

  /** A standalone node enrolled through the API (DATA_DIR/enrolment.json) reports; others do nothing. */
  static startIfEnrolled(node: SfuNode, dataDir: string, logger: Logger, intervalMs = 15_000): EnrolmentReporter | undefined {
    if (!fs.existsSync(path.join(dataDir, 'enrolment.json'))) return undefined;
    const reporter = new EnrolmentReporter(node, EnrolmentClient.fromDataDir(dataDir), logger);
    reporter.start(intervalMs);
    return reporter;
  }

  stop(): void {
    this.#node.drain.off('draining', this.#onDraining);
    clearInterval(this.#timer);
    this.#timer = undefined;
  }
}
