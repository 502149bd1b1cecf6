import { MAX_REMOTE_PEERS_PER_LINK, MAX_REMOTE_PEERS_PER_NODE, MAX_REMOTE_PRODUCERS_PER_LINK, MAX_REMOTE_PRODUCERS_PER_NODE } from './protocol.ts';

type Kind = 'peers' | 'producers';

/**
 * What neighbours may make this node remember, over all its conferences: bounded per link (one child
 * cannot fill the node) and per node. A conference itself is not capped: a city meeting lists every
 * site at the root, as many as the links below it carry.
 */
export class CatalogBudget {
  readonly #perLink = new Map<string, { peers: number; producers: number }>();
  readonly #total = { peers: 0, producers: 0 };
  readonly #limits: { link: Record<Kind, number>; node: Record<Kind, number> };

  constructor(limits?: Partial<{ link: Partial<Record<Kind, number>>; node: Partial<Record<Kind, number>> }>) {
    this.#limits = {
      link: { peers: MAX_REMOTE_PEERS_PER_LINK, producers: MAX_REMOTE_PRODUCERS_PER_LINK, ...limits?.link },
      node: { peers: MAX_REMOTE_PEERS_PER_NODE, producers: MAX_REMOTE_PRODUCERS_PER_NODE, ...limits?.node },
    };
  }

  /** Takes one entry for a link; false (nothing taken) when the link's or the node's bound is reached. */
  take(linkId: string, kind: Kind): boolean {
    let l = this.#perLink.get(linkId);
    if (!l) this.#perLink.set(linkId, (l = { peers: 0, producers: 0 }));
    if (l[kind] >= this.#limits.link[kind] || this.#total[kind] >= this.#limits.node[kind]) return false;
    l[kind]++;
    this.#total[kind]++;
    return true;
  }

  give(linkId: string, kind: Kind): void {
    const l = this.#perLink.get(linkId);
    if (!l || l[kind] === 0) return;
    l[kind]--;
    this.#total[kind]--;
    if (l.peers === 0 && l.producers === 0) this.#perLink.delete(linkId);
  }

  get total(): Readonly<Record<Kind, number>> {
    return this.#total;
  }

  used(linkId: string): Readonly<Record<Kind, number>> {
    return this.#perLink.get(linkId) ?? { peers: 0, producers: 0 };
  }
}
