/** Runs fn now and every intervalMs until stopped; a slow fn never overlaps itself. */
export function poll(fn: () => Promise<void>, intervalMs: number): () => void {
  let stopped = false;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const run = async () => {
    try {
      await fn();
    } catch (err) {
      console.warn('[poll]', (err as Error).message);
    }
    if (!stopped) timer = setTimeout(run, intervalMs);
  };
  void run();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}
