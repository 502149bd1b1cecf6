import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

/** Scheduler processes (`scheduler/main.ts`) a test starts and kills; `killAll` ends those still running. */
export class SchedulerProcesses {
  readonly #children = new Set<ChildProcess>();

  /** Starts one and resolves when it says it is ready (IPC), or rejects if it exits first. */
  start(env: Record<string, string>, logLevel = 'warn'): Promise<ChildProcess> {
    const child = spawn(process.execPath, ['--import', 'tsx', 'scheduler/main.ts'], {
      cwd: repo,
      env: { ...process.env, ...env, NODE_ENV: 'test', LOG_LEVEL: logLevel },
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    this.#children.add(child);
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('scheduler did not become ready')), 30_000);
      child.on('message', (m: unknown) => {
        if ((m as { type?: string }).type === 'ready') {
          clearTimeout(t);
          resolve(child);
        }
      });
      child.on('exit', (code) => {
        clearTimeout(t);
        reject(new Error(`scheduler exited early (${code})`));
      });
    });
  }

  killAll(): void {
    for (const c of this.#children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  }
}
