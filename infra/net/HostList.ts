import net from 'node:net';

// A configured list of hosts: hostnames, `*.domain`, IPs, IP/CIDRs and named ranges (`loopback`,
// `private`, ...). Used where the deployment says which hosts the server may point at or talk to
// (SFU_NODE_HOSTS, CAMERA_NETWORKS).

/** The ranges a list may name by a word. */
export const NAMED_RANGES: Readonly<Record<string, readonly string[]>> = {
  loopback: ['127.0.0.0/8', '::1/128', 'localhost'],
  // RFC 1918, carrier-grade NAT (a 4G camera on a carrier's private APN) and IPv6 unique local.
  // Not link-local: 169.254.169.254 is a cloud's metadata service.
  private: ['10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16', '100.64.0.0/10', 'fc00::/7'],
};

/** Checks one entry: a hostname, `*.domain`, an IP, an IP/CIDR, or one of `names`; returns why not. */
export function hostEntryProblem(entry: string, names: readonly string[]): string | undefined {
  if (names.includes(entry)) return undefined;
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

/** An IPv4-mapped IPv6 address (::ffff:a.b.c.d, or as URL parsing writes it, ::ffff:7f00:1) as IPv4. */
export function unmapped(address: string): string {
  const a = address.toLowerCase();
  const dotted = /^::ffff:(\d{1,3}(?:\.\d{1,3}){3})$/.exec(a);
  if (dotted) return dotted[1]!;
  const hex = /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/.exec(a);
  if (hex) {
    const hi = parseInt(hex[1]!, 16);
    const lo = parseInt(hex[2]!, 16);
    return [hi >> 8, hi & 255, lo >> 8, lo & 255].join('.');
  }
  return address;
}

export class HostList {
  readonly #addresses = new net.BlockList();
  readonly #names = new Set<string>();
  readonly #suffixes: string[] = [];
  /** The list as configured, for messages. */
  readonly text: string;

  /** From a comma-separated list; `names` are the named ranges this list may use. Throws on a bad entry. */
  constructor(list: string, names: readonly string[], setting: string) {
    const entries = list.split(',').map((e) => e.trim().toLowerCase()).filter((e) => e !== '');
    this.text = entries.join(',');
    for (const entry of entries.flatMap((e) => (names.includes(e) ? (NAMED_RANGES[e] ?? []) : [e]))) {
      const problem = hostEntryProblem(entry, []);
      if (problem) throw new Error(`${setting}: "${entry}": ${problem}`);
      const [addr = '', bits] = entry.split('/');
      const family = net.isIP(addr);
      if (family) this.#addresses.addSubnet(addr, bits === undefined ? (family === 6 ? 128 : 32) : Number(bits), family === 6 ? 'ipv6' : 'ipv4');
      else if (entry.startsWith('*.')) this.#suffixes.push(entry.slice(1));
      else this.#names.add(entry);
    }
  }

  /** Whether an IP address is in one of the listed ranges. */
  hasAddress(address: string): boolean {
    const a = unmapped(address.replace(/^\[(.*)\]$/, '$1'));
    const family = net.isIP(a);
    return family !== 0 && this.#addresses.check(a, family === 6 ? 'ipv6' : 'ipv4');
  }

  /** Whether a hostname is listed by name (or `*.domain`). */
  hasName(host: string): boolean {
    const h = host.toLowerCase();
    return this.#names.has(h) || this.#suffixes.some((s) => h.endsWith(s));
  }

  /** An IP by its ranges, a name by the listed names. */
  has(host: string): boolean {
    const h = host.toLowerCase().replace(/^\[(.*)\]$/, '$1');
    return net.isIP(h) ? this.hasAddress(h) : this.hasName(h);
  }
}
