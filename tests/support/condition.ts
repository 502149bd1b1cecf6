/**
 * Resolves once `pred` holds, re-checked each time the owner calls the listeners in `listeners`
 * (a simulator does so on every message it receives); rejects with `timeoutMessage()` otherwise.
 */
export function waitForCondition(listeners: Set<() => void>, pred: () => boolean, timeoutMs: number, timeoutMessage: () => string): Promise<void> {
  if (pred()) return Promise.resolve();
  return new Promise<void>((resolve, reject) => {
    const check = () => {
      if (!pred()) return;
      clearTimeout(timer);
      listeners.delete(check);
      resolve();
    };
    const timer = setTimeout(() => {
      listeners.delete(check);
      reject(new Error(timeoutMessage()));
    }, timeoutMs);
    listeners.add(check);
  });
}
