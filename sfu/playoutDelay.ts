// Above this round trip a hint is sent; below it the browser's own jitter buffer copes.
const PLAYOUT_HINT_MIN_RTT_MS = 150;
const PLAYOUT_HINT_MAX_MS = 3_000;

/**
 * How long a browser should hold a remote stream before playing it so that losses repaired across
 * the cascade (NACK/RTX over a long link, e.g. a satellite hop) arrive in time: the browser sees only
 * its own short round trip to this node and would otherwise give up on the packet and ask for a
 * keyframe (a freeze of one more round trip). 0: no hint (terrestrial links need none).
 */
export function playoutDelayForRepair(rttMs: number | undefined): number {
  if (rttMs === undefined || rttMs < PLAYOUT_HINT_MIN_RTT_MS) return 0;
  // Two round trips: a retransmission (or its NACK) lost on the same link needs a second one.
  return Math.min(PLAYOUT_HINT_MAX_MS, Math.round(rttMs * 2 + 50));
}
