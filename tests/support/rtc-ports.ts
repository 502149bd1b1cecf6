import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

// RTC port ranges (mediasoup rtcMinPort..rtcMaxPort) for test SFU nodes that never overlap between
// test processes running at the same time, nor within one process. The span 50000-59999 is cut into
// blocks of 100 ports; a process claims whole blocks by creating a lock file per block (O_EXCL) named
// after the block and holding its pid. A lock whose process has died is taken over; a process's own
// locks are removed when it exits. Fixed ranges still written in some tests (42000-49999) lie below
// this span, so they cannot collide with claimed blocks either.

const FIRST_PORT = 50_000;
const BLOCK = 100;
const BLOCKS = 100; // 50000-59999
const DIR = path.join(os.tmpdir(), 'gr-rtc-ports');

const mine: string[] = [];
process.once('exit', () => {
  for (const f of mine) {
    try {
      fs.unlinkSync(f);
    } catch {
      /* already gone */
    }
  }
});

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Takes block `i` for this process: true if it was free (or its owner has died). */
function claim(i: number): boolean {
  const file = path.join(DIR, `${i}.lock`);
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      fs.writeFileSync(file, String(process.pid), { flag: 'wx' });
      mine.push(file);
      return true;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      const owner = Number(fs.readFileSync(file, 'utf8').trim());
      if (Number.isInteger(owner) && owner > 0 && alive(owner)) return false;
      // A stale lock (its process is gone): remove it once and try again; another process racing
      // for the same block loses at the O_EXCL create.
      try {
        fs.unlinkSync(file);
      } catch {
        /* someone else removed it */
      }
    }
  }
  return false;
}

function unclaim(i: number): void {
  const file = path.join(DIR, `${i}.lock`);
  const at = mine.indexOf(file);
  if (at < 0) return;
  mine.splice(at, 1);
  try {
    fs.unlinkSync(file);
  } catch {
    /* already gone */
  }
}

/**
 * A port range of at least `ports` ports (rounded up to whole blocks of 100) that no other test SFU
 * node of this or any concurrent test process uses. Held until `release()` or the process exits.
 */
export function rtcPortRange(ports = 400): { rtcMinPort: number; rtcMaxPort: number; release(): void } {
  fs.mkdirSync(DIR, { recursive: true });
  const need = Math.max(1, Math.ceil(ports / BLOCK));
  // Start at a place derived from the pid so concurrent processes rarely contend for the same blocks.
  const start = (process.pid * 7) % BLOCKS;
  for (let k = 0; k < BLOCKS; k++) {
    const first = (start + k) % BLOCKS;
    if (first + need > BLOCKS) continue;
    const got: number[] = [];
    for (let j = 0; j < need; j++) {
      if (!claim(first + j)) break;
      got.push(first + j);
    }
    if (got.length === need) {
      return { rtcMinPort: FIRST_PORT + first * BLOCK, rtcMaxPort: FIRST_PORT + (first + need) * BLOCK - 1, release: () => got.forEach(unclaim) };
    }
    // Partly claimed: give those blocks back and look further on.
    got.forEach(unclaim);
  }
  throw new Error(`no free RTC port range of ${ports} ports in ${FIRST_PORT}-${FIRST_PORT + BLOCK * BLOCKS - 1} (locks in ${DIR})`);
}
