import { execFile } from 'node:child_process';
import fs from 'node:fs';
import { promisify } from 'node:util';

const run = promisify(execFile);
const ip = (...args: string[]) => run('ip', args);

// A small lab network for cascade tests: one network namespace per SFU node, each with its own
// address on a bridge in the host namespace (so the host's Chromium reaches every node), and a real
// kernel rate limit (tbf) on a chosen node's link. The kernel here has no netem; delay and loss stay
// with the user-space link emulator.

// Every name carries a tag of this process (pid) so that a lab deletes only what it created, and
// two labs (two test processes) never share a bridge, a namespace, a veth or a subnet.
const TAG = (process.pid % 100000).toString(36);
const BRIDGE = `grbr${TAG}`;
const PREFIX = `gr${TAG}-`;
const SUBNET = `10.77.${process.pid % 250}`;

export interface LabNode {
  name: string;
  /** The network namespace the node's process runs in. */
  ns: string;
  ip: string;
  /** The host end of the node's veth pair: its counters are the node's link traffic. */
  hostVeth: string;
}

export class NetLab {
  readonly hostIp = `${SUBNET}.1`;
  readonly nodes = new Map<string, LabNode>();

  private constructor() {}

  /** Builds the lab (removing one this process left over first). Needs root. */
  static async create(names: readonly string[]): Promise<NetLab> {
    await NetLab.cleanup();
    const lab = new NetLab();
    await ip('link', 'add', BRIDGE, 'type', 'bridge');
    await ip('addr', 'add', `${lab.hostIp}/24`, 'dev', BRIDGE);
    await ip('link', 'set', BRIDGE, 'up');
    for (const [i, name] of names.entries()) {
      const node: LabNode = { name, ns: `${PREFIX}${name}`, ip: `${SUBNET}.${11 + i}`, hostVeth: `gv${TAG}${i}`.slice(0, 15) };
      await ip('netns', 'add', node.ns);
      await ip('link', 'add', node.hostVeth, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', node.ns);
      await ip('link', 'set', node.hostVeth, 'master', BRIDGE, 'up');
      await ip('-n', node.ns, 'addr', 'add', `${node.ip}/24`, 'dev', 'eth0');
      await ip('-n', node.ns, 'link', 'set', 'eth0', 'up');
      await ip('-n', node.ns, 'link', 'set', 'lo', 'up');
      lab.nodes.set(name, node);
    }
    return lab;
  }

  node(name: string): LabNode {
    const n = this.nodes.get(name);
    if (!n) throw new Error(`no lab node ${name}`);
    return n;
  }

  /** Limits the node's link to `rateBits` per second each way (tbf on both ends of its veth). */
  async shape(name: string, rateBits: number): Promise<void> {
    const n = this.node(name);
    const tbf = ['root', 'tbf', 'rate', `${rateBits}bit`, 'burst', '16kb', 'latency', '200ms'];
    await run('tc', ['qdisc', 'replace', 'dev', n.hostVeth, ...tbf]);
    await run('ip', ['netns', 'exec', n.ns, 'tc', 'qdisc', 'replace', 'dev', 'eth0', ...tbf]);
  }

  /** Packets the tbf on the node's link has dropped so far, towards the node (`down`) and from it (`up`). */
  async tbfDrops(name: string): Promise<{ down: number; up: number }> {
    const n = this.node(name);
    const parse = (out: string) => Number(/dropped (\d+)/.exec(out)?.[1] ?? NaN);
    const host = await run('tc', ['-s', 'qdisc', 'show', 'dev', n.hostVeth]);
    const inNs = await run('ip', ['netns', 'exec', n.ns, 'tc', '-s', 'qdisc', 'show', 'dev', 'eth0']);
    return { down: parse(host.stdout), up: parse(inNs.stdout) };
  }

  /** Bytes that went to the node (`down`) and came from it (`up`) over its link so far. */
  bytes(name: string): { down: number; up: number } {
    const stat = (what: string) => Number(fs.readFileSync(`/sys/class/net/${this.node(name).hostVeth}/statistics/${what}`, 'utf8'));
    return { down: stat('tx_bytes'), up: stat('rx_bytes') };
  }

  async close(): Promise<void> {
    await NetLab.cleanup();
  }

  /** Removes this process's namespaces and bridge only (never another lab's). */
  static async cleanup(): Promise<void> {
    const { stdout } = await ip('netns', 'list');
    for (const line of stdout.split('\n')) {
      const ns = line.split(' ')[0];
      if (ns?.startsWith(PREFIX)) await ip('netns', 'del', ns).catch(() => undefined);
    }
    await ip('link', 'del', BRIDGE).catch(() => undefined);
  }
}
