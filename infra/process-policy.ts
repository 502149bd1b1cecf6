import type { Logger } from './logger.ts';

/**
 * What a process does with an error nobody handled (an uncaught exception, an unhandled rejection)
 * while it is NOT shutting down: log it at fatal with its stack and context, then exit non-zero.
 *
 * Why exit rather than carry on: after an uncaught exception Node makes no promise about the state
 * of the program (a room half-updated, a request chain never settled, a socket never closed), and a
 * media node that limps on can hold sites in a meeting that no longer works, or leak until the host
 * falls over. A clean restart by the service manager (systemd `Restart=always`, the container
 * runtime) costs the sites a rejoin of a few seconds — the pages rejoin with a fresh token by
 * themselves — and is visible in the logs and the restart counter. This is a backstop: every socket,
 * stream and child process has its own 'error' handler, so no client can reach this on purpose.
 *
 * `shuttingDown`: while it returns true the entry point's own shutdown handling decides (connections
 * cut by our own shutdown are expected there).
 */
export function installProcessPolicy(log: Logger, opts: { shuttingDown?: () => boolean } = {}): void {
  const fatal = (kind: 'uncaughtException' | 'unhandledRejection', reason: unknown): void => {
    if (opts.shuttingDown?.()) return;
    const err = reason instanceof Error ? reason : new Error(String(reason));
    const code = (err as Error & { code?: unknown }).code;
    log.fatal({ kind, err, code, pid: process.pid, uptimeS: Math.round(process.uptime()) }, 'unhandled error: exiting so the service manager restarts this process');
    // Non-zero: the service manager restarts us and counts it.
    process.exitCode = 70; // EX_SOFTWARE
    process.exit(70);
  };
  process.on('uncaughtException', (err) => fatal('uncaughtException', err));
  process.on('unhandledRejection', (reason) => fatal('unhandledRejection', reason));
}
