import {
  MAX_CONTROLLED_SITES,
  SignallingError,
  type ChairCommand,
  type ConferenceStateView,
  type ControlState,
  type Hand,
  type Stamp,
} from './protocol.ts';
import type { Peer } from './Peer.ts';
import type { Room } from './Room.ts';
import { TypedEmitter } from './TypedEmitter.ts';

/** What travels between nodes: the chair's register and/or some hands (each a register of its own). */
export interface ConferenceDelta {
  control?: ControlState;
  hands?: Hand[];
}

export type ConferenceControlEvents = {
  /** Something changed; `from` is the cascade link it came over (undefined: made on this node). */
  changed: [delta: ConferenceDelta, from: string | undefined];
  /** The meeting was ended (here or elsewhere in the conference); local peers are being removed. */
  ended: [reason: 'chair' | 'api'];
};

/**
 * How far ahead of this node's clock a neighbour's stamp may be. Every chair command and hand moves
 * the clock by one; a real conference stays far below this even when a node joins late (clock 0).
 */
export const MAX_CLOCK_JUMP = 1_000_000;

export const INITIAL_CONTROL: ControlState = {
  stamp: { clock: 0, node: '' },
  muteAll: false,
  unmuted: [],
  muted: [],
  spotlight: null,
  broadcast: null,
  ended: null,
  dais: [],
};

/** (clock, node) ordering: true when a is newer than b. */
export function newer(a: Stamp, b: Stamp): boolean {
  return a.clock > b.clock || (a.clock === b.clock && a.node > b.node);
}

/**
 * The chair's controls of one conference as held on one node: mute (all / per site), spotlight,
 * broadcast, raised hands, end. The state is replicated to every node of the cascade (last writer
 * wins by Lamport stamp, hands one register per site) and enforced by each node on its OWN
 * participants: their microphone producers are paused on the server while the chair's mute holds,
 * and a site cannot resume them (`forbidden`).
 */
export class ConferenceControl extends TypedEmitter<ConferenceControlEvents> {
  /** Writes made here are stamped with this id (the cascade node id). */
  nodeId = `node-${Math.random().toString(36).slice(2, 10)}`;
  readonly #room: Room;
  #state: ControlState = INITIAL_CONTROL;
  readonly #hands = new Map<string, Hand>();
  #clock = 0;
  /** Microphone producers this node paused for the chair (and so resumes when the chair lets go). */
  readonly #held = new Set<string>();
  #enforcing: Promise<void> = Promise.resolve();
  /** What each local page last heard: it is told again only when its own view changes. */
  readonly #lastView = new WeakMap<object, string>();

  constructor(room: Room) {
    super();
    this.#room = room;
  }

  get state(): ControlState {
    return this.#state;
  }

  get hands(): ReadonlyMap<string, Hand> {
    return this.#hands;
  }

  /**
   * Whether the chair holds this participant's microphone muted. Chairs are never muted. In a venue
   * every site is muted unless it holds the floor, is on the dais or was unmuted by the chair.
   */
  isMuted(peerId: string, role: string): boolean {
    if (role === 'chair') return false;
    const s = this.#state;
    if (s.broadcast !== null) return true;
    if (this.#room.layout === 'venue') {
      if (s.muted.includes(peerId)) return true;
      return !(s.spotlight === peerId || s.unmuted.includes(peerId) || s.dais.includes(peerId));
    }
    return s.muteAll ? !s.unmuted.includes(peerId) : s.muted.includes(peerId);
  }

  /** Whether the meeting has ended (joins are refused). */
  get ended(): boolean {
    return this.#state.ended !== null;
  }

  snapshot(): Required<ConferenceDelta> {
    return { control: this.#state, hands: [...this.#hands.values()] };
  }

  /** The state as one page sees it: in a venue, a site without the rotate right sees no lists of other sites. */
  view(peer: Pick<Peer, 'id'> & { claims: { role: string; rotate?: boolean | undefined } }): ConferenceStateView {
    const s = this.#state;
    const layout = this.#room.layout;
    const full = layout === 'open' || peer.claims.role === 'chair' || peer.claims.rotate === true;
    const hands = full
      ? [...this.#hands.values()]
          .filter((h) => h.raised)
          .sort((a, b) => a.at - b.at)
          .map(({ peerId, displayName, unitId, at }) => ({ peerId, displayName, unitId, at }))
      : [];
    return {
      muteAll: s.muteAll,
      unmuted: full ? s.unmuted : [],
      muted: full ? s.muted : [],
      spotlight: s.spotlight,
      broadcast: s.broadcast,
      ended: s.ended !== null,
      hands,
      selfMuted: this.isMuted(peer.id, peer.claims.role),
      floor: s.spotlight,
      dais: s.dais,
      layout,
      selfHand: this.#hands.get(peer.id)?.raised === true,
    };
  }

  /** The view for a page's join answer; later pushes compare with it. */
  initialView(peer: Peer): ConferenceStateView {
    const v = this.view(peer);
    this.#lastView.set(peer, JSON.stringify(v));
    return v;
  }

  /** The room became a venue: the muting rule changed, so microphones are held (or let go) and pages told. */
  layoutChanged(): void {
    this.#enforce();
    this.#notifyAll();
  }

  // --- made on this node ---

  /** A chair's command (the caller checked the role). */
  command(cmd: ChairCommand): void {
    if (this.ended) throw new SignallingError('forbidden', 'the meeting has ended');
    const s = this.#state;
    const venue = this.#room.layout === 'venue';
    const without = (list: string[], id: string) => list.filter((x) => x !== id);
    const withId = (list: string[], id: string) => {
      if (list.includes(id)) return list;
      if (list.length >= MAX_CONTROLLED_SITES) throw new SignallingError('busy', `at most ${MAX_CONTROLLED_SITES} sites`);
      return [...list, id];
    };
    let next: Omit<ControlState, 'stamp'>;
    switch (cmd.action) {
      case 'muteAll':
        next = { ...s, muteAll: true, unmuted: [], muted: [] };
        break;
      case 'unmuteAll':
        // A venue of hundreds of open microphones is noise: sites speak one at a time, given the floor.
        if (venue) throw new SignallingError('forbidden', 'a venue meeting cannot unmute every site; give the floor instead');
        next = { ...s, muteAll: false, unmuted: [], muted: [] };
        break;
      case 'mute':
        this.#requirePeer(cmd.peerId);
        next = { ...s, unmuted: without(s.unmuted, cmd.peerId), muted: s.muteAll && !venue ? s.muted : withId(s.muted, cmd.peerId) };
        break;
      case 'unmute':
        this.#requirePeer(cmd.peerId);
        next = { ...s, muted: without(s.muted, cmd.peerId), unmuted: s.muteAll || venue ? withId(s.unmuted, cmd.peerId) : s.unmuted };
        break;
      case 'giveFloor': {
        // One action: the site is on every stage, the only one heard, and its hand comes down.
        if (cmd.peerId === null) {
          next = { ...s, spotlight: null, unmuted: [] };
          break;
        }
        this.#requirePeer(cmd.peerId);
        next = { ...s, spotlight: cmd.peerId, unmuted: [cmd.peerId], muted: without(s.muted, cmd.peerId) };
        this.#setControl({ ...next, stamp: this.#tick() }, undefined);
        const h = this.#hands.get(cmd.peerId);
        if (h?.raised) this.#setHands([{ ...h, raised: false, stamp: this.#tick() }], undefined);
        return;
      }
      case 'setDais': {
        const ids = [...new Set(cmd.peerIds)];
        for (const id of ids) this.#requirePeer(id);
        next = { ...s, dais: ids };
        break;
      }
      case 'spotlight':
        if (cmd.peerId !== null) this.#requirePeer(cmd.peerId);
        next = { ...s, spotlight: cmd.peerId };
        break;
      case 'broadcast':
        if (cmd.producerId !== null && !this.#room.localProducer(cmd.producerId) && !this.#room.remote?.producer(cmd.producerId)) {
          throw new SignallingError('not_found', 'no such producer in this conference');
        }
        next = { ...s, broadcast: cmd.producerId };
        break;
      case 'lowerHand': {
        const h = this.#hands.get(cmd.peerId);
        if (h?.raised) this.#setHands([{ ...h, raised: false, stamp: this.#tick() }], undefined);
        return;
      }
      case 'endMeeting':
        next = { ...s, ended: 'chair' };
        break;
    }
    this.#setControl({ ...next, stamp: this.#tick() }, undefined);
  }

  /** The meetings API ended the meeting (through SfuNode.endRoom). */
  end(reason: 'chair' | 'api'): void {
    if (this.ended) return;
    this.#setControl({ ...this.#state, ended: reason, stamp: this.#tick() }, undefined);
  }

  raiseHand(peer: Peer, raised: boolean): void {
    if (this.ended) throw new SignallingError('forbidden', 'the meeting has ended');
    const h = this.#hands.get(peer.id);
    if (!raised && !h?.raised) return;
    if (raised && h?.raised) return;
    if (!h && this.#hands.size >= MAX_CONTROLLED_SITES) {
      this.#evictLowered();
      if (this.#hands.size >= MAX_CONTROLLED_SITES) throw new SignallingError('busy', `at most ${MAX_CONTROLLED_SITES} raised hands`);
    }
    const { displayName, unitId } = peer.info;
    this.#setHands([{ peerId: peer.id, displayName, unitId, raised, at: raised ? Date.now() : (h?.at ?? Date.now()), stamp: this.#tick() }], undefined);
  }

  /** A local participant left: its hand comes down everywhere. */
  peerLeft(peerId: string): void {
    const h = this.#hands.get(peerId);
    if (h?.raised) this.#setHands([{ ...h, raised: false, stamp: this.#tick() }], undefined);
  }

  // --- from the cascade ---

  /** Merges what a neighbour sent (openRoom snapshot or a change); returns what was new here. */
  merge(delta: ConferenceDelta, from: string): void {
    // A stamp far ahead of anything seen would win every later write (MAX_SAFE_INTEGER pins the
    // state for ever): such writes are dropped, not clamped, so a liar gains nothing.
    const plausible = (s: Stamp) => s.clock <= this.#clock + MAX_CLOCK_JUMP;
    const control = delta.control && plausible(delta.control.stamp) ? delta.control : undefined;
    const incoming = (delta.hands ?? []).filter((h) => plausible(h.stamp));
    if (control) this.#clock = Math.max(this.#clock, control.stamp.clock);
    for (const h of incoming) this.#clock = Math.max(this.#clock, h.stamp.clock);
    if (control && newer(control.stamp, this.#state.stamp)) this.#setControl(control, from);
    const hands = incoming.filter((h) => {
      const mine = this.#hands.get(h.peerId);
      return mine ? newer(h.stamp, mine.stamp) : true;
    });
    if (hands.length) this.#setHands(hands, from);
  }

  /** Applies the chair's mute to a participant's microphone producer as it is created (before it is announced). */
  async enforceOnNewProducer(peer: Peer, producer: { id: string; kind: string; paused: boolean; pause(): Promise<void> }): Promise<void> {
    if (producer.kind !== 'audio' || !this.isMuted(peer.id, peer.claims.role) || producer.paused) return;
    await producer.pause();
    this.#held.add(producer.id);
  }

  // --- internals ---

  #tick(): Stamp {
    this.#clock++;
    return { clock: this.#clock, node: this.nodeId };
  }

  #requirePeer(peerId: string): void {
    if (this.#room.hasPeer(peerId)) return;
    throw new SignallingError('not_found', 'no such site in this conference');
  }

  #evictLowered(): void {
    const lowered = [...this.#hands.values()].filter((h) => !h.raised).sort((a, b) => a.stamp.clock - b.stamp.clock);
    for (const h of lowered.slice(0, Math.max(1, lowered.length >> 1))) this.#hands.delete(h.peerId);
  }

  #setControl(state: ControlState, from: string | undefined): void {
    const wasEnded = this.ended;
    this.#state = state;
    this.emit('changed', { control: state }, from);
    this.#enforce();
    this.#notifyAll();
    if (!wasEnded && state.ended !== null) this.emit('ended', state.ended);
  }

  #setHands(hands: Hand[], from: string | undefined): void {
    for (const h of hands) {
      if (!this.#hands.has(h.peerId) && this.#hands.size >= MAX_CONTROLLED_SITES) {
        this.#evictLowered();
        if (this.#hands.size >= MAX_CONTROLLED_SITES) continue;
      }
      this.#hands.set(h.peerId, h);
    }
    this.emit('changed', { hands }, from);
    this.#notifyAll();
  }

  #notifyAll(): void {
    if (this.#room.router.closed) return;
    for (const p of this.#room.peers.values()) {
      const v = this.view(p);
      const key = JSON.stringify(v);
      if (this.#lastView.get(p) === key) continue;
      this.#lastView.set(p, key);
      p.notify('conferenceState', v);
    }
  }

  /** Pauses (or, when the chair lets go, resumes) this node's own participants' microphones. */
  #enforce(): void {
    this.#enforcing = this.#enforcing.then(async () => {
      if (this.#room.router.closed) return;
      const jobs: Promise<void>[] = [];
      for (const peer of this.#room.peers.values()) {
        const muted = this.isMuted(peer.id, peer.claims.role);
        for (const p of peer.producers.values()) {
          // Every audio producer of the site, not only what it calls its microphone.
          if (p.kind !== 'audio' || p.closed) continue;
          if (muted && !p.paused) {
            this.#held.add(p.id);
            jobs.push(peer.setPausedByChair(p.id, true));
          } else if (!muted && this.#held.delete(p.id) && p.paused) {
            jobs.push(peer.setPausedByChair(p.id, false));
          }
        }
      }
      // A broadcast film's own sound is what everyone should hear.
      const broadcaster = this.#state.broadcast === null ? undefined : this.#room.localProducer(this.#state.broadcast)?.info.peerId;
      for (const ingest of this.#room.ingests.values()) {
        if (ingest.producer.kind !== 'audio' || ingest.producer.closed) continue;
        const muted = ingest.peerInfo.peerId !== broadcaster && this.isMuted(ingest.id, 'participant');
        if (muted && !ingest.producer.paused) {
          this.#held.add(ingest.producer.id);
          jobs.push(ingest.pause());
        } else if (!muted && this.#held.delete(ingest.producer.id) && ingest.producer.paused) {
          jobs.push(ingest.resume());
        }
      }
      const results = await Promise.allSettled(jobs);
      for (const r of results) if (r.status === 'rejected') this.#room.logger.warn({ err: (r.reason as Error).message }, 'mute enforcement failed');
    });
  }
}
