import { HostList, hostEntryProblem } from './net/HostList.ts';

// The hosts where the deployment's own SFU nodes may run (SFU_NODE_HOSTS). A node's signalling URL
// is published to pages (meeting links are checked against it) and handed out with join tokens, so
// an operator registering a node must not be able to point it at a server of their choosing.

/** Checks one entry of the list: a hostname, `*.domain`, an IP, an IP/CIDR, or `loopback`; returns why not. */
export function sfuNodeHostProblem(entry: string): string | undefined {
  return hostEntryProblem(entry, ['loopback']);
}

export class SfuNodeHosts {
  readonly #list: HostList;

  /** From a comma-separated list (see sfuNodeHostProblem); throws on a bad entry. */
  constructor(list: string) {
    this.#list = new HostList(list, ['loopback'], 'SFU_NODE_HOSTS');
  }

  /** The list as configured, for messages. */
  get text(): string {
    return this.#list.text;
  }

  /** Loopback plus the address the API listens on: nodes on the same machine (the single-machine default). */
  static defaultFor(httpHost: string): string {
    return ['loopback', httpHost].join(',');
  }

  /** Whether an absolute ws(s):// URL points at one of the listed hosts (this origin's path always does). */
  allows(url: string): boolean {
    if (url.startsWith('/') && !url.startsWith('//')) return true;
    try {
      const u = new URL(url);
      if (u.protocol !== 'ws:' && u.protocol !== 'wss:') return false;
      return this.#list.has(u.hostname);
    } catch {
      return false;
    }
  }
}
