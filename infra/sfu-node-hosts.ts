import net from 'node:net';

// The hosts where the deployment's own SFU nodes may run (SFU_NODE_HOSTS). A node's signalling URL
// is published to pages (meeting links are checked against it) and handed out with join tokens, so
// an operator registering a node must not be able to point it at a server of their choosing.

/** Loopback, always meant by the word `loopback` in the list. */
const LOOPBACK: readonly string[] = ['127.0.0.0/8', '::1/128', 'localhost'];

/** Checks one entry of the list: a hostname, `*.domain`, an IP, an IP/CIDR, or `loopback`; returns why not. */
export function sfuNodeHostProblem(entry: string): string | undefined {
  if (entry === 'loopback') return undefined;
  const [addr = '', bits, extra] = entry.split('/');
  const family = net.isIP(addr);
  if (family) {
    if (extra !== undefined) return 'one "/" at most';
    if (bits !== undefined && !(/^\d{1,3}$/.test(bits) && Number(bits) <= (family === 6 ? 128 : 32))) return 'bad prefix length';
    return undefined;
  }
  if (bits !== undefined) return 'a prefix length needs an IP address';
  const name = entry.startsWith('*.') ? entry.slice(2) : entry;
  return /^(?=.{1,253}$)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*$/i.test(name) ? undefined : 'not a hostname';
}

export class SfuNodeHosts {
  readonly #addresses = new net.BlockList();
  readonly #names = new Set<string>();
  readonly #suffixes: string[] = [];
  /** The list as configured, for messages. */
  readonly text: string;

  /** From a comma-separated list (see sfuNodeHostProblem); throws on a bad entry. */
  constructor(list: string) {
    const entries = list.split(',').map((e) => e.trim().toLowerCase()).filter((e) => e !== '');
    this.text = entries.join(',');
    for (const entry of entries.flatMap((e) => (e === 'loopback' ? LOOPBACK : [e]))) {
      const problem = sfuNodeHostProblem(entry);
      if (problem) throw new Error(`SFU_NODE_HOSTS: "${entry}": ${problem}`);
      const [addr = '', bits] = entry.split('/');
      const family = net.isIP(addr);
      if (family) this.#addresses.addSubnet(addr, bits === undefined ? (family === 6 ? 128 : 32) : Number(bits), family === 6 ? 'ipv6' : 'ipv4');
      else if (entry.startsWith('*.')) this.#suffixes.push(entry.slice(1));
      else this.#names.add(entry);
    }
  }

  /** Loopback plus the address the API listens on: nodes on the same machine (the single-machine default). */
  static defaultFor(httpHost: string): string {
    return ['loopback', httpHost].join(',');
  }

  /** Whether an absolute ws(s):// URL points at one of the listed hosts (this origin's path always does). */
  allows(url: string): boolean {
    if (url.startsWith('/') && !url.startsWith('//')) return true;
    let host: string;
    try {
      const u = new URL(url);
      if (u.protocol !== 'ws:' && u.protocol !== 'wss:') return false;
      host = u.hostname.toLowerCase().replace(/^\[(.*)\]$/, '$1');
    } catch {
      return false;
    }
    const family = net.isIP(host);
    if (family) return this.#addresses.check(host, family === 6 ? 'ipv6' : 'ipv4');
    return this.#names.has(host) || this.#suffixes.some((s) => host.endsWith(s));
  }
}
