import { z } from 'zod';
import { roomIdSchema } from '../../infra/tokens.ts';
import { MAX_CONTROLLED_SITES, controlStateSchema, handSchema, mediaSourceSchema, rtpParametersSchema, type PeerInfo, type ProducerInfo } from '../protocol.ts';

// The control protocol between an SFU node and its parent, over one WebSocket (`/cascade`),
// authenticated at upgrade with a node token. Both ends speak the same messages:
//   { t: 'req', id, m, d }  ->  { t: 'res', id, ok: true, d } | { t: 'res', id, ok: false, e }
//   { t: 'ntf', m, d }
// Catalog messages (openRoom, peers and producers coming and going) are applied in arrival order;
// `subscribe` requests run beside them so one slow upstream pipe does not stall the catalog.
// Every message is validated here; the bounds below cap what one neighbour can make a node hold.

/** Largest control message (a catalog chunk of 2,000 entries is ~300 KB). */
export const MAX_CONTROL_MESSAGE_BYTES = 4 * 1024 * 1024;
/**
 * Entries (peers + producers) one catalog message carries: an openRoom snapshot beyond this goes on
 * in `catalog` notifications, so a 10,000-site conference attaches within the message bound.
 */
export const CATALOG_CHUNK = 2000;
/**
 * What one received catalog message may list (each array): more than we send, so a node of the previous
 * version (up to 5,000 peers / 10,000 producers in one openRoom) still attaches; 4 MiB bounds it anyway.
 */
export const MAX_CATALOG_MESSAGE_ENTRIES = 10_000;
/** What one neighbour may make a node hold (all conferences together), and the whole node. */
export const MAX_REMOTE_PEERS_PER_LINK = 50_000;
export const MAX_REMOTE_PRODUCERS_PER_LINK = 100_000;
export const MAX_REMOTE_PEERS_PER_NODE = 200_000;
export const MAX_REMOTE_PRODUCERS_PER_NODE = 200_000;
/** Largest subtree count a child may claim (a city has ~10,000 sites; anything far beyond is a lie). */
export const MAX_SITE_COUNT = 1_000_000;

const entityId = z.string().min(1).max(64);

export const pipeInfoSchema = z.object({
  ip: z.union([z.ipv4(), z.ipv6()]),
  port: z.number().int().min(1).max(65535),
  srtp: z.object({
    cryptoSuite: z.enum(['AEAD_AES_256_GCM', 'AEAD_AES_128_GCM', 'AES_CM_128_HMAC_SHA1_80', 'AES_CM_128_HMAC_SHA1_32']),
    keyBase64: z.string().min(1).max(128),
  }),
});
export type PipeInfo = z.infer<typeof pipeInfoSchema>;

export const peerInfoSchema = z.object({
  peerId: entityId,
  displayName: z.string().min(1).max(64),
  unitId: z.number().int().positive(),
  role: z.enum(['chair', 'participant', 'viewer']),
}) satisfies z.ZodType<PeerInfo>;

export const producerInfoSchema = z.object({
  producerId: entityId,
  peerId: entityId,
  kind: z.enum(['audio', 'video']),
  source: mediaSourceSchema,
  paused: z.boolean(),
}) satisfies z.ZodType<ProducerInfo>;

/** The chair's controls and raised hands (see ConferenceControl); merged last-writer-wins. */
const conferenceSchema = z.object({
  control: controlStateSchema.optional(),
  hands: z.array(handSchema).max(MAX_CONTROLLED_SITES).optional(),
});

/** Chair peers' join tokens, by peer id: sent only towards the parent, which verifies them. */
const proofToken = z.string().min(1).max(4096);
const chairProofsSchema = z.record(entityId, proofToken).refine((o) => Object.keys(o).length <= 100, 'too many chair proofs');

const chunk = {
  peers: z.array(peerInfoSchema).max(MAX_CATALOG_MESSAGE_ENTRIES),
  producers: z.array(producerInfoSchema).max(MAX_CATALOG_MESSAGE_ENTRIES),
};
const snapshot = {
  ...chunk,
  // Optional so that a node of the previous version still attaches.
  conference: conferenceSchema.optional(),
  /** `venue` (sites watch the stage; children are told only the stage) or `open` (absent = open). */
  layout: z.enum(['open', 'venue']).optional(),
};
const layer = z.number().int().min(-1).max(2);
const siteCount = z.number().int().nonnegative().max(MAX_SITE_COUNT);

const reqId = z.number().int().nonnegative();
const req = <M extends string, D extends z.ZodType>(m: M, d: D) => z.object({ t: z.literal('req'), id: reqId, m: z.literal(m), d });
const ntf = <M extends string, D extends z.ZodType>(m: M, d: D) => z.object({ t: z.literal('ntf'), m: z.literal(m), d });
const room = roomIdSchema;

export const requestSchemas = {
  /** Child -> parent: attach a conference; both sides exchange pipe endpoints and catalogs. */
  // `grant`: a join token for this room someone at or below the child was admitted with (see CascadeNode).
  // `capacityKbps` + `plain`: the child's uplink is capped; video crosses it single-layer over a PlainTransport pair.
  openRoom: z.object({
    room,
    pipe: pipeInfoSchema,
    grant: z.string().max(4096).optional(),
    chairProofs: chairProofsSchema.optional(),
    capacityKbps: z.number().int().min(16).max(10_000_000).optional(),
    plain: pipeInfoSchema.optional(),
    ...snapshot,
  }),
  /** Either way, towards a producer's origin: start piping it over this link. */
  subscribe: z.object({ room, producerId: entityId }),
};
export const responseSchemas = {
  openRoom: z.object({ pipe: pipeInfoSchema, plain: pipeInfoSchema.optional(), ...snapshot }),
  /** `single`: one layer, sent over the link's PlainTransport (capped links); produce it there. */
  // `repairMs`: the worst round trip a loss of this stream needs to be repaired on its way to the answering node.
  subscribe: z.object({ kind: z.enum(['audio', 'video']), rtpParameters: rtpParametersSchema, paused: z.boolean(), single: z.literal(true).optional(), repairMs: z.number().int().min(0).max(60_000).optional() }),
};
export const notificationSchemas = {
  /** Child -> parent: the child no longer takes part in the conference. */
  closeRoom: z.object({ room }),
  /** Parent -> child: the parent's room is gone (e.g. its worker died); attach again. */
  roomClosed: z.object({ room }),
  /** Stop piping a producer over this link (the last consumer beyond it left). */
  unsubscribe: z.object({ room, producerId: entityId }),
  peerAdded: z.object({ room, peer: peerInfoSchema, chairProof: proofToken.optional() }),
  peerRemoved: z.object({ room, peerId: entityId }),
  producerAdded: z.object({ room, producer: producerInfoSchema }),
  producerRemoved: z.object({ room, producerId: entityId }),
  producerPaused: z.object({ room, producerId: entityId, paused: z.boolean() }),
  /** The conference state changed (chair command, hand): flooded like the catalog. */
  conference: z.object({ room, ...conferenceSchema.shape }),
  /** The rest of an openRoom snapshot (either way), applied in order after it. Chairs' proofs only upwards. */
  catalog: z.object({ room, ...chunk, chairProofs: chairProofsSchema.optional() }),
  /** Towards a producer's origin: the highest layer anyone beyond this link wants of it (-1 = nobody). */
  demand: z.object({ room, producerId: entityId, layer }),
  /** Either way: the room became a venue after the link attached (venue is sticky; never back to open). */
  layout: z.object({ room, layout: z.literal('venue') }),
  /** Child -> parent: sites (chairs and participants) at and below the child. */
  count: z.object({ room, sites: siteCount }),
  /** Parent -> child: sites in the whole conference. */
  total: z.object({ room, sites: siteCount }),
};

export type RequestMethod = keyof typeof requestSchemas;
export type NotificationMethod = keyof typeof notificationSchemas;
export type RequestData<M extends RequestMethod> = z.infer<(typeof requestSchemas)[M]>;
export type ResponseData<M extends RequestMethod> = z.infer<(typeof responseSchemas)[M]>;
export type NotificationData<M extends NotificationMethod> = z.infer<(typeof notificationSchemas)[M]>;

export const incomingSchema = z.discriminatedUnion('t', [
  z.discriminatedUnion('m', [req('openRoom', requestSchemas.openRoom), req('subscribe', requestSchemas.subscribe)]),
  z.discriminatedUnion('m', [
    ntf('closeRoom', notificationSchemas.closeRoom),
    ntf('roomClosed', notificationSchemas.roomClosed),
    ntf('unsubscribe', notificationSchemas.unsubscribe),
    ntf('peerAdded', notificationSchemas.peerAdded),
    ntf('peerRemoved', notificationSchemas.peerRemoved),
    ntf('producerAdded', notificationSchemas.producerAdded),
    ntf('producerRemoved', notificationSchemas.producerRemoved),
    ntf('producerPaused', notificationSchemas.producerPaused),
    ntf('conference', notificationSchemas.conference),
    ntf('catalog', notificationSchemas.catalog),
    ntf('demand', notificationSchemas.demand),
    ntf('layout', notificationSchemas.layout),
    ntf('count', notificationSchemas.count),
    ntf('total', notificationSchemas.total),
  ]),
  z.object({
    t: z.literal('res'),
    id: reqId,
    ok: z.boolean(),
    d: z.unknown().optional(),
    e: z.object({ code: z.string().max(32), message: z.string().max(300) }).optional(),
  }),
]);
export type Incoming = z.infer<typeof incomingSchema>;
export type IncomingRequest = Extract<Incoming, { t: 'req' }>;
export type IncomingNotification = Extract<Incoming, { t: 'ntf' }>;

export type CascadeErrorCode = 'bad_request' | 'not_found' | 'busy' | 'media_error' | 'timeout' | 'closed' | 'forbidden';

/** Raised by handlers and by `request()`; carried over the link as `{ ok: false, e }`. */
export class CascadeError extends Error {
  constructor(
    readonly code: CascadeErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'CascadeError';
  }
}
