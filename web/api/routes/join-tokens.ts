import type { KeyObject } from 'node:crypto';
import { z } from 'zod';
import type { Pool } from '../../../infra/db/pool.ts';
import { roomIdSchema, signJoinToken, type JoinClaims, type Role } from '../../../infra/tokens.ts';
import { audit } from '../audit.ts';
import type { ApiRoutes } from '../route-registry.ts';

// Signed, short-lived, room-scoped admission tokens for the SFU.
// Policy for now (documented, deliberately simple): any signed-in user may join a room they name;
// leaders chair it, every other role takes part. Rooms are not yet bound to units, so there is no
// subtree check on the room itself; the token carries the user's unit for the SFU to use later.

export const JOIN_TOKEN_TTL_SECONDS = 600;

export function roomRoleFor(role: Role): JoinClaims['role'] {
  return role === 'leader' ? 'chair' : 'participant';
}

export function registerJoinTokenRoutes(routes: ApiRoutes, pool: Pool, joinKey: KeyObject): void {
  routes.add(
    {
      method: 'post',
      path: '/rooms/:room/join-token',
      summary: 'Issue a signed join token for one SFU room (leader: chair; others: participant)',
      tag: 'rooms',
      params: z.object({ room: roomIdSchema }),
      body: z.union([z.undefined(), z.strictObject({})]),
      status: 201,
    },
    async ({ params, user, req }) => {
      const role = roomRoleFor(user.role);
      const token = await signJoinToken(
        joinKey,
        { userId: user.id, displayName: user.displayName.slice(0, 64), unitId: user.unitId, room: params.room, role },
        JOIN_TOKEN_TTL_SECONDS,
      );
      await audit(pool, { action: 'room.join_token', user, objectType: 'room', objectId: params.room, unitId: user.unitId, ip: req.ip ?? null, detail: { role } });
      return { token, room: params.room, role, expires_in: JOIN_TOKEN_TTL_SECONDS };
    },
  );
}
