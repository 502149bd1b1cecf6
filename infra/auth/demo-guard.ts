import net from 'node:net';
import type { Pool } from '../db/pool.ts';
import { DEMO_PASSWORD } from '../demo/generate.ts';
import { verifyPassword } from './password.ts';

// The embedded database starts with the demo organisation, whose password is published in the
// README and the log. That is fine on this machine and nowhere else: a process listening beyond
// loopback refuses to start while accounts still sign in with it (ALLOW_DEMO_PASSWORDS=true overrides).

export function isLoopbackHost(host: string): boolean {
  if (host === 'localhost') return true;
  if (net.isIPv4(host)) return host.startsWith('127.');
  return host === '::1';
}

/** Throws if `host` is not loopback and the most shared password hashes still accept the demo password. */
export async function refuseDemoPasswordsBeyondLoopback(pool: Pool, host: string, allow: boolean): Promise<void> {
  if (allow || isLoopbackHost(host)) return;
  // Demo accounts share one hash; three checks cover it whatever else the table holds.
  const { rows } = await pool.query<{ password_hash: string; n: number }>(
    `SELECT password_hash, count(*)::int AS n FROM users WHERE NOT disabled GROUP BY password_hash ORDER BY count(*) DESC LIMIT 3`,
  );
  for (const r of rows) {
    if (await verifyPassword(DEMO_PASSWORD, r.password_hash)) {
      throw new Error(
        `演示账号仍使用公开的演示密码(${r.n} 个账号),不能在 ${host} 上对外提供服务 / ${r.n} account(s) still sign in with the published demo password: ` +
          `refusing to listen on ${host}. Change their passwords (or disable them), listen on 127.0.0.1, or set ALLOW_DEMO_PASSWORDS=true for a closed test network.`,
      );
    }
  }
}
