/**
 * Bounds on the browsers' signalling (/sfu) of one node. The defaults suit a county node: hundreds
 * of village kiosks, many of them behind one NAT address of the county network, plus desks and
 * viewers. Behind a reverse proxy every browser has the proxy's address: raise the per-address cap
 * to the node cap there, and let the proxy limit per client.
 */
export interface SignallingLimits {
  /** A connection must send a valid join within this time, or it is closed. */
  joinDeadlineMs: number;
  /** The node pings every session this often; one that has not answered the previous ping is closed (its site leaves). */
  pingIntervalMs: number;
  /** Open /sfu connections on the node; more are refused with 503. */
  maxConnections: number;
  /** Open /sfu connections from one remote address; more are refused with 429. */
  maxConnectionsPerAddress: number;
  /** Token bucket per connection: sustained requests per second, and the burst. */
  requestsPerSecond: number;
  requestBurst: number;
}

export const DEFAULT_SIGNALLING_LIMITS: SignallingLimits = {
  joinDeadlineMs: 10_000,
  pingIntervalMs: 15_000,
  maxConnections: 5000,
  maxConnectionsPerAddress: 1000,
  requestsPerSecond: 30,
  requestBurst: 60,
};
