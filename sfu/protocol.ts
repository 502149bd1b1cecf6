import { z } from 'zod';

// The signalling protocol between browsers (mediasoup-client) and an SFU node, over one WebSocket.
// Client -> server: requests { id, method, data }. Server -> client: responses { type: 'response',
// id, ok, data | error } and notifications { type: 'notification', method, data }.
// Every request is validated here before anything touches mediasoup; mediasoup then validates the
// RTP semantics itself and its errors are answered, never thrown to the process.

/** Largest request the node will parse; a larger one is answered with `too_large`. */
export const MAX_REQUEST_BYTES = 64 * 1024;

const id = z.string().min(1).max(64);
const uuid = z.string().uuid();
const shortStr = z.string().max(256);
const paramValue = z.union([z.string().max(256), z.number(), z.boolean()]);
const codecParams = z.record(z.string().max(64), paramValue).refine((o) => Object.keys(o).length <= 32, 'too many codec parameters');
const rtcpFeedback = z.object({ type: shortStr, parameter: shortStr.optional() });

const rtpCodecCapability = z.object({
  kind: z.enum(['audio', 'video']),
  mimeType: shortStr,
  preferredPayloadType: z.number().int().min(0).max(127).optional(),
  clockRate: z.number().int().positive(),
  channels: z.number().int().min(1).max(8).optional(),
  parameters: codecParams.optional(),
  rtcpFeedback: z.array(rtcpFeedback).max(32).optional(),
});

const headerExtensionCapability = z.object({
  kind: z.enum(['audio', 'video']),
  uri: shortStr,
  preferredId: z.number().int().min(1).max(255),
  preferredEncrypt: z.boolean().optional(),
  direction: z.enum(['sendrecv', 'sendonly', 'recvonly', 'inactive']).optional(),
});

export const rtpCapabilitiesSchema = z.object({
  codecs: z.array(rtpCodecCapability).max(64).optional(),
  headerExtensions: z.array(headerExtensionCapability).max(64).optional(),
});

const rtpCodecParameters = z.object({
  mimeType: shortStr,
  payloadType: z.number().int().min(0).max(127),
  clockRate: z.number().int().positive(),
  channels: z.number().int().min(1).max(8).optional(),
  parameters: codecParams.optional(),
  rtcpFeedback: z.array(rtcpFeedback).max(32).optional(),
});

const rtpEncoding = z.object({
  ssrc: z.number().int().nonnegative().optional(),
  rid: shortStr.optional(),
  codecPayloadType: z.number().int().optional(),
  rtx: z.object({ ssrc: z.number().int().nonnegative() }).optional(),
  dtx: z.boolean().optional(),
  scalabilityMode: shortStr.optional(),
  scaleResolutionDownBy: z.number().optional(),
  maxBitrate: z.number().optional(),
  maxFramerate: z.number().optional(),
  adaptivePtime: z.boolean().optional(),
  priority: shortStr.optional(),
  networkPriority: shortStr.optional(),
});

export const rtpParametersSchema = z.object({
  mid: shortStr.optional(),
  codecs: z.array(rtpCodecParameters).min(1).max(32),
  headerExtensions: z
    .array(z.object({ uri: shortStr, id: z.number().int().min(1).max(255), encrypt: z.boolean().optional(), parameters: codecParams.optional() }))
    .max(32)
    .optional(),
  encodings: z.array(rtpEncoding).max(8).optional(),
  rtcp: z.object({ cname: shortStr.optional(), reducedSize: z.boolean().optional(), mux: z.boolean().optional() }).optional(),
  msid: shortStr.optional(),
});

export const dtlsParametersSchema = z.object({
  role: z.enum(['auto', 'client', 'server']).optional(),
  fingerprints: z
    .array(z.object({ algorithm: z.enum(['sha-1', 'sha-224', 'sha-256', 'sha-384', 'sha-512']), value: z.string().max(256) }))
    .min(1)
    .max(8),
});

export const mediaSourceSchema = z.enum(['camera', 'microphone', 'screen', 'film']);
export type MediaSource = z.infer<typeof mediaSourceSchema>;

/** Bound on per-site lists of the conference state (muted / unmuted sites, raised hands). */
export const MAX_CONTROLLED_SITES = 1000;

const entity = z.string().min(1).max(64);

/** How a room is held: everyone sees everyone, or sites watch the stage (主会场 / 分会场). */
export const layoutSchema = z.enum(['open', 'venue']);
export type Layout = z.infer<typeof layoutSchema>;

/** Simulcast spatial layer a consumer asks for: 0 lowest .. 2 highest. */
export const layerSchema = z.union([z.literal(0), z.literal(1), z.literal(2)]);
export type SpatialLayer = z.infer<typeof layerSchema>;
/** Demand for a producer: the highest layer anyone wants, -1 when nobody consumes it. */
export type LayerDemand = -1 | SpatialLayer;

/** At most this many dais sites (named by the chair, seen by every site). */
export const MAX_DAIS = 4;
/** Bounds of the rotation requests. */
export const MAX_SITE_PRODUCERS_PEERS = 50;
export const MAX_WARM_PRODUCERS = 25;

/** What the chair can do to the whole conference (every node of the cascade). */
export const chairCommandSchema = z.discriminatedUnion('action', [
  z.object({ action: z.literal('muteAll') }),
  z.object({ action: z.literal('unmuteAll') }),
  z.object({ action: z.literal('mute'), peerId: entity }),
  z.object({ action: z.literal('unmute'), peerId: entity }),
  z.object({ action: z.literal('spotlight'), peerId: entity.nullable() }),
  z.object({ action: z.literal('broadcast'), producerId: entity.nullable() }),
  z.object({ action: z.literal('lowerHand'), peerId: entity }),
  z.object({ action: z.literal('endMeeting') }),
  // Venue floor control: the floor site is on every site's stage and the only site heard (null: take it back).
  z.object({ action: z.literal('giveFloor'), peerId: entity.nullable() }),
  z.object({ action: z.literal('setDais'), peerIds: z.array(entity).max(MAX_DAIS) }),
]);
export type ChairCommand = z.infer<typeof chairCommandSchema>;

/** Last-writer-wins stamp: a Lamport clock and the id of the node that wrote. */
export const stampSchema = z.object({ clock: z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER), node: z.string().max(64) });
export type Stamp = z.infer<typeof stampSchema>;

/** The chair's part of the conference state: one register, last writer wins by its stamp. */
export const controlStateSchema = z.object({
  stamp: stampSchema,
  /** Every microphone but the chairs' muted, except the sites in `unmuted`. */
  muteAll: z.boolean(),
  unmuted: z.array(entity).max(MAX_CONTROLLED_SITES),
  /** Sites muted one by one (when not muteAll). */
  muted: z.array(entity).max(MAX_CONTROLLED_SITES),
  /** The site every page shows large (roll call steps it through the sites). */
  spotlight: entity.nullable(),
  /** One producer (a film or the chair's screen) shown to every site; all microphones but the chairs' muted. */
  broadcast: entity.nullable(),
  /** Who ended the meeting, once it is ended. */
  ended: z.enum(['chair', 'api']).nullable(),
  /** Dais sites: on every site's stage and heard (venue). Absent from older nodes: none. */
  dais: z.array(entity).max(MAX_DAIS).default([]),
});
export type ControlState = z.infer<typeof controlStateSchema>;

/** One site's hand: a register of its own, last writer wins (the site raises, it or the chair lowers). */
export const handSchema = z.object({
  peerId: entity,
  displayName: z.string().max(64),
  unitId: z.number().int().nonnegative(),
  raised: z.boolean(),
  /** When it was raised (ms since epoch at the site's node): the queue order. */
  at: z.number().nonnegative(),
  stamp: stampSchema,
});
export type Hand = z.infer<typeof handSchema>;

const req = <M extends string, D extends z.ZodType>(method: M, data: D) =>
  z.object({ id, method: z.literal(method), data });

export const requestSchema = z.discriminatedUnion('method', [
  // rtpCapabilities may come with join or, once the device has loaded the router's, afterwards.
  req('join', z.object({ token: z.string().min(1).max(4096), rtpCapabilities: rtpCapabilitiesSchema.optional() })),
  req('setRtpCapabilities', z.object({ rtpCapabilities: rtpCapabilitiesSchema })),
  req('createTransport', z.object({ direction: z.enum(['send', 'recv']) })),
  req('connectTransport', z.object({ transportId: uuid, dtlsParameters: dtlsParametersSchema })),
  req('restartIce', z.object({ transportId: uuid })),
  req('produce', z.object({ transportId: uuid, kind: z.enum(['audio', 'video']), rtpParameters: rtpParametersSchema, source: mediaSourceSchema })),
  req('closeProducer', z.object({ producerId: uuid })),
  req('pauseProducer', z.object({ producerId: uuid })),
  req('resumeProducer', z.object({ producerId: uuid })),
  req('consume', z.object({ producerId: uuid, layer: layerSchema.optional() })),
  req('setConsumerLayer', z.object({ consumerId: uuid, layer: layerSchema })),
  req('closeConsumer', z.object({ consumerId: uuid })),
  // Rotation (chair / rotate claim only): the producers of the sites on a page of tiles, and warming the next page.
  req('siteProducers', z.object({ peerIds: z.array(entity).min(1).max(MAX_SITE_PRODUCERS_PEERS) })),
  req('warm', z.object({ producerIds: z.array(uuid).max(MAX_WARM_PRODUCERS) })),
  // Plain RTP (no ICE/DTLS), only where the node option plainRtp is on.
  req('createPlainTransport', z.object({ direction: z.enum(['send', 'recv']) })),
  req('connectPlainTransport', z.object({ transportId: uuid, ip: z.union([z.ipv4(), z.ipv6()]), port: z.number().int().min(1).max(65535) })),
  req('pauseConsumer', z.object({ consumerId: uuid })),
  req('resumeConsumer', z.object({ consumerId: uuid })),
  req('leave', z.object({}).optional().default({})),
  // Chair controls (only role 'chair'; others are answered `forbidden`).
  req('chairCommand', chairCommandSchema),
  // A site asks to speak (or withdraws); the chair sees the queue.
  req('raiseHand', z.object({ raised: z.boolean() })),
]);

export type Request = z.infer<typeof requestSchema>;
export type Method = Request['method'];
export type RequestData<M extends Method> = Extract<Request, { method: M }>['data'];

export type ErrorCode =
  | 'bad_json'
  | 'bad_request'
  | 'too_large'
  | 'rate_limited'
  | 'busy'
  | 'unauthorized'
  | 'token_expired'
  | 'not_joined'
  | 'already_joined'
  | 'not_found'
  | 'forbidden'
  | 'cannot_consume'
  | 'media_error'
  | 'internal';

export interface ErrorBody {
  code: ErrorCode;
  message: string;
}

export type ServerMessage =
  | { type: 'response'; id: string | null; ok: true; data: unknown }
  | { type: 'response'; id: string | null; ok: false; error: ErrorBody }
  | { type: 'notification'; method: NotificationMethod; data: unknown };

export interface PeerInfo {
  peerId: string;
  displayName: string;
  unitId: number;
  role: 'chair' | 'participant' | 'viewer';
}

export interface ProducerInfo {
  producerId: string;
  peerId: string;
  kind: 'audio' | 'video';
  source: MediaSource;
  paused: boolean;
}

/** The conference state as a page sees it. */
export interface ConferenceStateView {
  muteAll: boolean;
  unmuted: string[];
  muted: string[];
  spotlight: string | null;
  broadcast: string | null;
  ended: boolean;
  /** Raised hands, oldest first. */
  hands: Array<{ peerId: string; displayName: string; unitId: number; at: number }>;
  selfMuted: boolean;
  /** The site holding the floor (= spotlight). */
  floor: string | null;
  dais: string[];
  layout: Layout;
  /** This peer's own hand is raised. */
  selfHand: boolean;
}

/** What a page of a venue room should consume now (its own producers left out). */
export interface StageView {
  peers: PeerInfo[];
  producers: ProducerInfo[];
}

/** One site of a rotation page (`siteProducers`). */
export interface SiteProducers {
  peerId: string;
  displayName: string;
  unitId: number;
  producers: ProducerInfo[];
}

/** Notifications the node pushes, and their payloads. */
export interface Notifications {
  peerJoined: PeerInfo;
  peerLeft: { peerId: string };
  newProducer: ProducerInfo;
  producerClosed: { producerId: string };
  producerPaused: { producerId: string };
  producerResumed: { producerId: string };
  consumerClosed: { consumerId: string; producerId: string };
  /** Hold this consumer's media `delayMs` before playing it: repairs across a long cascade link need it (0: the browser's own). */
  playoutDelay: { consumerId: string; delayMs: number };
  /** The conference state changed (or was sent on join); `selfMuted`: this peer's microphone is held muted by the chair. */
  conferenceState: ConferenceStateView;
  /** The chair (or the meetings API) ended the meeting; the peer has been removed from the room. */
  meetingEnded: { reason: 'chair' | 'api' };
  /** The room's media worker was lost; rejoin with the same token to restore media. */
  reconnect: { reason: 'worker-died' | 'node-shutdown' };
  /** Venue rooms: what this page should consume now (sent whenever it changes). */
  stage: StageView;
  /** Sites joined in the whole conference (at most one a second, only when changed). */
  counts: { joined: number };
  /** To a publisher: the highest simulcast layer anyone consumes of its producer (-1: nobody). */
  layerDemand: { producerId: string; maxSpatialLayer: LayerDemand };
}
export type NotificationMethod = keyof Notifications;

/** Raised inside request handlers; answered to the client as `{ ok: false, error }`. */
export class SignallingError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'SignallingError';
  }
}
