import type { LayerDemand } from './protocol.ts';

/**
 * Per producer, the highest simulcast layer anyone wants of it here: this node's own video consumers
 * (by consumer id) and each cascade link beyond which someone consumes it (by link id, reported by
 * the cascade). -1 = nobody. Publishers stop encoding layers above the demand.
 */
export class LayerDemandTable {
  readonly #local = new Map<string, Map<string, LayerDemand>>();
  readonly #links = new Map<string, Map<string, LayerDemand>>();

  /** Sets (layer >= 0) or clears (-1) one entry; returns whether local() or demand() of the producer changed. */
  setLocal(producerId: string, consumerId: string, layer: LayerDemand): boolean {
    return this.#set(this.#local, producerId, consumerId, layer);
  }

  setLink(producerId: string, linkId: string, layer: LayerDemand): boolean {
    return this.#set(this.#links, producerId, linkId, layer);
  }

  local(producerId: string): LayerDemand {
    return max(this.#local.get(producerId));
  }

  demand(producerId: string): LayerDemand {
    return Math.max(max(this.#local.get(producerId)), max(this.#links.get(producerId))) as LayerDemand;
  }

  /** The producer is gone: every entry about it is dropped. */
  forget(producerId: string): void {
    this.#local.delete(producerId);
    this.#links.delete(producerId);
  }

  /** Producers with any entry (metrics, tests). */
  get size(): number {
    return new Set([...this.#local.keys(), ...this.#links.keys()]).size;
  }

  #set(table: Map<string, Map<string, LayerDemand>>, producerId: string, key: string, layer: LayerDemand): boolean {
    const beforeLocal = this.local(producerId);
    const before = this.demand(producerId);
    let entries = table.get(producerId);
    if (layer < 0) {
      if (!entries?.delete(key)) return false;
      if (entries.size === 0) table.delete(producerId);
    } else {
      if (!entries) table.set(producerId, (entries = new Map()));
      entries.set(key, layer);
    }
    return this.local(producerId) !== beforeLocal || this.demand(producerId) !== before;
  }
}

function max(entries: ReadonlyMap<string, LayerDemand> | undefined): LayerDemand {
  let m: LayerDemand = -1;
  if (entries) for (const l of entries.values()) if (l > m) m = l;
  return m;
}
