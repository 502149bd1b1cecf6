import type { KeyObject } from 'node:crypto';
import { z } from 'zod';
import type { Pool } from '../../../infra/db/pool.ts';
import { signJoinToken } from '../../../infra/tokens.ts';
import { audit } from '../audit.ts';
import { HttpError, inSubtree, type AuthUser } from '../auth-context.ts';
import { notFound } from '../errors.ts';
import { ApiRoutes } from '../route-registry.ts';
import { LOCAL_SFU, type SfuDirectory } from '../sfu-directory.ts';
import { JOIN_TOKEN_TTL_SECONDS } from '../join-token-ttl.ts';
import { createLogger } from '../../../infra/logger.ts';

// Face-to-face service calls. A station (village kiosk) queues for the nearest service centre above
// it that offers the service; clerks whose subtree holds the centre see the queue, accept or decline;
// both sides then get a join token for the 1:1 room `f2f-<id>` on their own nearest SFU node (the
// cascade joins the two nodes). Calls the caller cannot see are 404.

const CALLER_ROLES = ['secretary', 'operator', 'admin'] as const;
const CLERK_ROLES = ['clerk', 'leader', 'admin'] as const;
/** Bound on each centre's waiting line; the next caller is told the queue is full. */
export const MAX_QUEUE = 50;

const id = z.coerce.number().int().positive();
const serviceSchema = z.string().regex(/^[a-z_]{2,40}$/);

interface CallRow {
  id: number;
  state: 'queued' | 'accepted' | 'declined' | 'cancelled' | 'closed';
  service: string;
  record: boolean;
  station_id: number;
  station_name: string;
  station_unit_id: number;
  station_unit_path: string;
  centre_id: number;
  centre_name: string;
  centre_unit_path: string;
  caller_id: number | null;
  clerk_id: number | null;
  decline_reason: string | null;
  note: string | null;
  created_at: Date;
  accepted_at: Date | null;
  ended_at: Date | null;
  position: number | null;
}

const SELECT_CALL = `
  SELECT c.id, c.state, c.service, c.record, c.station_id, s.name AS station_name, su.id AS station_unit_id, su.path AS station_unit_path,
         c.centre_id, ce.name AS centre_name, cu.path AS centre_unit_path, c.caller_id, c.clerk_id,
         c.decline_reason, c.note, c.created_at, c.accepted_at, c.ended_at,
         CASE WHEN c.state = 'queued' THEN
           (SELECT count(*)::int FROM service_calls q WHERE q.centre_id = c.centre_id AND q.state = 'queued' AND q.id <= c.id)
         END AS position
    FROM service_calls c
    JOIN service_points s ON s.id = c.station_id JOIN units su ON su.id = s.unit_id
    JOIN service_points ce ON ce.id = c.centre_id JOIN units cu ON cu.id = ce.unit_id`;

function visible(user: AuthUser, call: CallRow): boolean {
  return inSubtree(user, call.station_unit_path) || inSubtree(user, call.centre_unit_path);
}

/** Whether the station is being recorded: off (not asked), pending (until its camera is in the room), on, or unavailable (no recorder here). */
export type RecordingState = 'off' | 'pending' | 'on' | 'unavailable';

/** Where a call's recording is asked for and stopped (recorder/RoomRecordings in the system process). */
export interface CallRecordings {
  record(request: { roomId: string; siteUnitId: number; unitId: number }): boolean;
  recording(roomId: string): unknown;
  stop(roomId: string): Promise<void>;
}

export interface ServiceCallRoutesOptions {
  /** Which SFU node each party joins; default: this process's /sfu. */
  directory?: SfuDirectory;
  /** Records calls that ask for it; without it, such calls say `recording: unavailable`. */
  recordings?: CallRecordings;
  /** Ends the call's room on every node when the call is closed. */
  endRoom?: (room: string) => void;
  /** Lifetime of join tokens (pages fetch a fresh one to rejoin); default 10 minutes. */
  joinTokenTtlSeconds?: number;
}

const roomOf = (call: { id: number }): string => `f2f-${call.id}`;

function present(call: CallRow, recordings?: CallRecordings) {
  const live = call.state === 'accepted';
  const recording: RecordingState = !call.record || !live ? 'off' : !recordings ? 'unavailable' : recordings.recording(roomOf(call)) ? 'on' : 'pending';
  return {
    id: call.id,
    state: call.state,
    service: call.service,
    record: call.record,
    recording,
    position: call.position,
    station: { id: call.station_id, name: call.station_name },
    centre: { id: call.centre_id, name: call.centre_name },
    decline_reason: call.decline_reason,
    note: call.note,
    created_at: call.created_at,
    accepted_at: call.accepted_at,
    ended_at: call.ended_at,
  };
}

export function createServiceCallRoutes(pool: Pool, joinKey: KeyObject, options: ServiceCallRoutesOptions = {}): ApiRoutes {
  const routes = new ApiRoutes();
  const { directory, recordings } = options;
  const ttl = options.joinTokenTtlSeconds ?? JOIN_TOKEN_TTL_SECONDS;
  const log = createLogger('service-calls');
  const show = (call: CallRow) => present(call, recordings);

  function recordIfAsked(call: CallRow): void {
    if (!recordings || !call.record || call.state !== 'accepted') return;
    if (!recordings.record({ roomId: roomOf(call), siteUnitId: call.station_unit_id, unitId: call.station_unit_id })) {
      log.warn({ call: call.id }, 'too many calls being recorded; this one is not');
    }
  }
  // Calls accepted before a restart are recorded again once their parties are back in the room.
  if (recordings) {
    pool.query<CallRow>(`${SELECT_CALL} WHERE c.state = 'accepted' AND c.record`).then(
      ({ rows }) => rows.forEach(recordIfAsked),
      (err: Error) => log.warn({ err: err.message }, 'could not resume recordings of open calls'),
    );
  }

  async function load(user: AuthUser, callId: number): Promise<CallRow> {
    const { rows } = await pool.query<CallRow>(`${SELECT_CALL} WHERE c.id = $1`, [callId]);
    const call = rows[0];
    if (!call || !visible(user, call)) throw notFound('服务呼叫', 'service call');
    return call;
  }

  async function joinFor(user: AuthUser, call: CallRow) {
    if (call.state !== 'accepted') return null;
    const side = user.id === call.caller_id ? 'station' : user.id === call.clerk_id ? 'centre' : null;
    if (!side) return null;
    const room = roomOf(call);
    const displayName = (side === 'station' ? call.station_name : `${call.centre_name} · ${user.displayName}`).slice(0, 64);
    // The station side joins as its station's unit (a town admin may call for a village station):
    // that is the site the recording follows.
    const unitId = side === 'station' ? call.station_unit_id : user.unitId;
    const token = await signJoinToken(joinKey, { userId: user.id, displayName, unitId, room, role: 'participant' }, ttl);
    const sfu = directory ? await directory.urlFor(side === 'station' ? call.station_unit_path : call.centre_unit_path) : LOCAL_SFU;
    return { room, token, sfu, expires_in: ttl };
  }

  routes.add(
    {
      method: 'post',
      path: '/service-calls',
      summary: 'A station asks for a face-to-face service; queued at the nearest centre above it offering the service',
      tag: 'service-calls',
      roles: CALLER_ROLES,
      body: z.strictObject({ stationId: id, service: serviceSchema, record: z.boolean().default(false) }),
      status: 201,
      responses: { '404': 'no such station in your subtree, or no centre offers the service', '409': 'already waiting, or the queue is full' },
    },
    async ({ body, user, req }) => {
      const { rows: st } = await pool.query<{ id: number; path: string }>(
        `SELECT s.id, u.path FROM service_points s JOIN units u ON u.id = s.unit_id WHERE s.id = $1 AND s.kind = 'station' AND s.retired_at IS NULL AND u.path LIKE $2`,
        [body.stationId, `${user.unitPath}%`],
      );
      const station = st[0];
      if (!station) throw notFound('服务站', 'service station');
      const { rows: ce } = await pool.query<{ id: number }>(
        `SELECT sp.id FROM service_points sp JOIN units u ON u.id = sp.unit_id
          WHERE sp.kind = 'centre' AND sp.retired_at IS NULL AND $1 LIKE u.path || '%' AND (cardinality(sp.services) = 0 OR $2 = ANY(sp.services))
          ORDER BY u.depth DESC LIMIT 1`,
        [station.path, body.service],
      );
      const centre = ce[0];
      if (!centre) throw new HttpError(404, 'no_centre', '上级没有提供该服务的服务中心 / no service centre above offers this service');
      const { rows: q } = await pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM service_calls WHERE centre_id = $1 AND state = 'queued'`, [centre.id]);
      if ((q[0]?.n ?? 0) >= MAX_QUEUE) throw new HttpError(409, 'queue_full', '排队人数已满,请稍后再试 / the queue is full, try again later');
      let callId: number;
      try {
        const { rows } = await pool.query<{ id: number }>(
          `INSERT INTO service_calls (station_id, centre_id, service, caller_id, record) VALUES ($1, $2, $3, $4, $5) RETURNING id`,
          [station.id, centre.id, body.service, user.id, body.record],
        );
        callId = rows[0]!.id;
      } catch (err) {
        if ((err as { code?: string }).code === '23505') {
          throw new HttpError(409, 'already_waiting', '本服务站已在排队或通话中 / this station is already waiting or in a call');
        }
        throw err;
      }
      await audit(pool, { action: 'service_call.create', user, objectType: 'service_call', objectId: callId, unitId: user.unitId, ip: req.ip ?? null, detail: { service: body.service } });
      return show(await load(user, callId));
    },
  );

  routes.add(
    {
      method: 'get',
      path: '/service-calls',
      summary: 'Calls of stations or centres in your subtree (a clerk\'s queue), newest open first',
      tag: 'service-calls',
      query: z.strictObject({ state: z.enum(['queued', 'accepted', 'declined', 'cancelled', 'closed']).optional(), centreId: id.optional() }),
    },
    async ({ query, user }) => {
      const where = ['(su.path LIKE $1 OR cu.path LIKE $1)'];
      const args: unknown[] = [`${user.unitPath}%`];
      if (query.state) where.push(`c.state = $${args.push(query.state)}`);
      if (query.centreId) where.push(`c.centre_id = $${args.push(query.centreId)}`);
      const { rows } = await pool.query<CallRow>(`${SELECT_CALL} WHERE ${where.join(' AND ')} ORDER BY c.id LIMIT 200`, args);
      return { calls: rows.map(show) };
    },
  );

  routes.add(
    { method: 'get', path: '/service-calls/:id', summary: 'One call: state, queue position, and a join token for its two parties once accepted', tag: 'service-calls', params: z.object({ id }) },
    async ({ params, user }) => {
      const call = await load(user, params.id);
      return { ...show(call), join: await joinFor(user, call) };
    },
  );

  /** Moves a call from one state to the next atomically; a lost race reads as 409. */
  async function transition(user: AuthUser, callId: number, from: CallRow['state'], set: string, args: unknown[], side: 'centre' | 'station') {
    const call = await load(user, callId);
    if (!inSubtree(user, side === 'centre' ? call.centre_unit_path : call.station_unit_path)) throw notFound('服务呼叫', 'service call');
    const { rowCount } = await pool.query(`UPDATE service_calls SET ${set} WHERE id = $1 AND state = $2`, [callId, from, ...args]);
    if (rowCount !== 1) throw new HttpError(409, 'wrong_state', `呼叫状态已变为“${call.state}” / the call is ${call.state}`);
    return load(user, callId);
  }

  routes.add(
    { method: 'post', path: '/service-calls/:id/accept', summary: 'A clerk takes a queued call', tag: 'service-calls', roles: CLERK_ROLES, params: z.object({ id }) },
    async ({ params, user, req }) => {
      const call = await transition(user, params.id, 'queued', `state = 'accepted', clerk_id = $3, accepted_at = now()`, [user.id], 'centre');
      await audit(pool, { action: 'service_call.accept', user, objectType: 'service_call', objectId: call.id, unitId: user.unitId, ip: req.ip ?? null });
      recordIfAsked(call);
      return { ...show(call), join: await joinFor(user, call) };
    },
  );

  routes.add(
    {
      method: 'post',
      path: '/service-calls/:id/decline',
      summary: 'A clerk declines a queued call with a reason the villager sees',
      tag: 'service-calls',
      roles: CLERK_ROLES,
      params: z.object({ id }),
      body: z.strictObject({ reason: z.string().trim().min(1).max(200) }),
    },
    async ({ params, body, user, req }) => {
      const call = await transition(user, params.id, 'queued', `state = 'declined', clerk_id = $3, decline_reason = $4, ended_at = now()`, [user.id, body.reason], 'centre');
      await audit(pool, { action: 'service_call.decline', user, objectType: 'service_call', objectId: call.id, unitId: user.unitId, ip: req.ip ?? null });
      return show(call);
    },
  );

  routes.add(
    { method: 'post', path: '/service-calls/:id/cancel', summary: 'The station leaves the queue', tag: 'service-calls', roles: CALLER_ROLES, params: z.object({ id }) },
    async ({ params, user }) => show(await transition(user, params.id, 'queued', `state = 'cancelled', ended_at = now()`, [], 'station')),
  );

  routes.add(
    {
      method: 'post',
      path: '/service-calls/:id/close',
      summary: 'Either party ends an accepted call; the clerk may leave a note',
      tag: 'service-calls',
      params: z.object({ id }),
      body: z.union([z.undefined(), z.strictObject({ note: z.string().trim().max(2000).optional() })]),
    },
    async ({ params, body, user, req }) => {
      const call = await load(user, params.id);
      if (user.id !== call.caller_id && user.id !== call.clerk_id) throw notFound('服务呼叫', 'service call');
      const side = user.id === call.clerk_id ? 'centre' : 'station';
      const note = side === 'centre' ? (body?.note ?? null) : null;
      const closed = await transition(user, params.id, 'accepted', `state = 'closed', ended_at = now(), note = COALESCE($3, note)`, [note], side);
      await audit(pool, { action: 'service_call.close', user, objectType: 'service_call', objectId: closed.id, unitId: user.unitId, ip: req.ip ?? null });
      // The recording stops first (its last segment is still stored), then both parties leave the
      // room on every node.
      recordings?.stop(roomOf(closed)).catch((err: Error) => log.warn({ call: closed.id, err: err.message }, 'stopping the recording failed'));
      try {
        options.endRoom?.(roomOf(closed));
      } catch (err) {
        log.warn({ call: closed.id, err: (err as Error).message }, 'could not end the call room');
      }
      return show(closed);
    },
  );

  return routes;
}
