import type { ControlState, PeerInfo, ProducerInfo } from './protocol.ts';

/** At most this many video producers are on a venue's stage, whatever the number of sites. */
export const MAX_STAGE_VIDEO = 3;

/** What every site of a venue room watches: the chair, the floor, the dais, the broadcast. */
export interface Stage {
  readonly peerIds: ReadonlySet<string>;
  readonly producerIds: ReadonlySet<string>;
  readonly peers: readonly PeerInfo[];
  readonly producers: readonly ProducerInfo[];
}

export const EMPTY_STAGE: Stage = { peerIds: new Set(), producerIds: new Set(), peers: [], producers: [] };

/** What the stage is computed from: the room's view of the conference (local and remote). */
export interface StageInput {
  control: ControlState;
  /** Chair peers of the conference, in a stable order (the first one's camera leads). */
  chairs: PeerInfo[];
  peer(peerId: string): PeerInfo | undefined;
  producersOf(peerId: string): ProducerInfo[];
  producer(producerId: string): ProducerInfo | undefined;
}

/**
 * The stage of a venue room. Video, at most MAX_STAGE_VIDEO, in priority order: the first chair's
 * camera, the floor's camera, the broadcast video, then chair screens/films and dais cameras filling
 * the free slots. Audio: every audio producer of a stage peer (chairs, floor, dais, the broadcast's
 * peer). Pure: the Room decides when to recompute and whom to tell.
 */
export function computeStage(input: StageInput): Stage {
  const { control } = input;
  const peers = new Map<string, PeerInfo>();
  const addPeer = (p: PeerInfo | undefined) => {
    if (p && !peers.has(p.peerId)) peers.set(p.peerId, p);
  };
  for (const c of input.chairs) addPeer(c);
  const floor = control.spotlight === null ? undefined : input.peer(control.spotlight);
  addPeer(floor);
  const dais = control.dais.map((id) => input.peer(id)).filter((p): p is PeerInfo => p !== undefined);
  for (const d of dais) addPeer(d);
  const broadcast = control.broadcast === null ? undefined : input.producer(control.broadcast);
  const broadcastPeer = broadcast ? input.peer(broadcast.peerId) : undefined;
  addPeer(broadcastPeer);

  const video: ProducerInfo[] = [];
  const take = (p: ProducerInfo | undefined) => {
    if (p && p.kind === 'video' && video.length < MAX_STAGE_VIDEO && !video.includes(p)) video.push(p);
  };
  const camera = (peerId: string | undefined) => (peerId === undefined ? undefined : input.producersOf(peerId).find((p) => p.kind === 'video' && p.source === 'camera'));
  const firstChair = input.chairs[0];
  take(camera(firstChair?.peerId));
  take(camera(floor?.peerId));
  take(broadcast);
  for (const c of input.chairs) for (const p of input.producersOf(c.peerId)) if (p.source === 'screen' || p.source === 'film') take(p);
  for (const d of dais) take(camera(d.peerId));

  const audio: ProducerInfo[] = [];
  for (const p of peers.values()) for (const pr of input.producersOf(p.peerId)) if (pr.kind === 'audio') audio.push(pr);
  if (broadcast?.kind === 'audio' && !audio.some((a) => a.producerId === broadcast.producerId)) audio.push(broadcast);

  const producers = [...video, ...audio];
  // Only peers that have something on stage, or hold a role on it (a chair before its camera is up).
  return {
    peerIds: new Set(peers.keys()),
    producerIds: new Set(producers.map((p) => p.producerId)),
    peers: [...peers.values()],
    producers,
  };
}

/** Whether two stages name the same peers and producers. */
export function sameStage(a: Stage, b: Stage): boolean {
  if (a.peerIds.size !== b.peerIds.size || a.producerIds.size !== b.producerIds.size) return false;
  for (const id of a.peerIds) if (!b.peerIds.has(id)) return false;
  for (const id of a.producerIds) if (!b.producerIds.has(id)) return false;
  return true;
}
