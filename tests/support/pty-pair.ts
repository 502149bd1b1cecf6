import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';

export interface PtyPair {
  a: string;
  b: string;
  close(): Promise<void>;
}

/** Two connected pseudo-terminals (socat), like a serial cable between the driver and a terminal. */
export async function openPtyPair(): Promise<PtyPair> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'pty-'));
  const a = path.join(dir, 'a');
  const b = path.join(dir, 'b');
  const child: ChildProcess = spawn('socat', ['-d', '-d', `pty,raw,echo=0,link=${a}`, `pty,raw,echo=0,link=${b}`], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  const close = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await exited;
    }
    await fs.rm(dir, { recursive: true, force: true });
  };
  try {
    await new Promise<void>((resolve, reject) => {
      let log = '';
      const t = setTimeout(() => reject(new Error(`socat not ready: ${log}`)), 10_000);
      child.stderr!.on('data', (d: Buffer) => {
        log += d.toString();
        if (log.includes('starting data transfer loop')) {
          clearTimeout(t);
          resolve();
        }
      });
      child.once('exit', (code) => {
        clearTimeout(t);
        reject(new Error(`socat exited ${code}: ${log}`));
      });
      child.once('error', reject);
    });
  } catch (err) {
    await close();
    throw err;
  }
  return { a, b, close };
}
