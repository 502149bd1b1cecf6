import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { SignJWT, decodeJwt, jwtVerify, errors as joseErrors } from 'jose';
import { z } from 'zod';

// Signed, scoped, expiring tokens. Three audiences: `api` (a signed-in user's session, HS256 with the
// API's secret), `sfu-join` (admission to one room; ES256: the API signs with its private key and SFU
// nodes hold only the public key, so no node can admit anyone itself) and `sfu-node` (a node to its
// parent, HS256 with the deployment's cascade secret). A token of one audience never passes for another.

const ISSUER = 'grassroots-av';

export const roleSchema = z.enum(['leader', 'clerk', 'supervisor', 'secretary', 'operator', 'admin']);
export type Role = z.infer<typeof roleSchema>;

export const roomIdSchema = z.string().regex(/^[A-Za-z0-9_-]{1,64}$/, 'room id: 1-64 of A-Z a-z 0-9 _ -');

export const joinClaimsSchema = z.object({
  userId: z.number().int().positive(),
  displayName: z.string().min(1).max(64),
  unitId: z.number().int().positive(),
  room: roomIdSchema,
  // What the holder may do in the room: a chair controls it, a site takes part, a viewer only watches.
  role: z.enum(['chair', 'participant', 'viewer']),
  // How the room is held: `open` (everyone sees everyone; absent = open) or `venue` (主会场/分会场: sites watch the
  // stage, join muted). The API decides it from the meeting's size and mode; a node makes a room venue for good.
  layout: z.enum(['open', 'venue']).optional(),
  // May consume any site of a venue conference (the chair's rotation 轮巡, supervisors watching from above).
  rotate: z.boolean().optional(),
});
export type JoinClaims = z.infer<typeof joinClaimsSchema>;

export const accessClaimsSchema = z.object({
  userId: z.number().int().positive(),
  username: z.string(),
  role: roleSchema,
  unitId: z.number().int().positive(),
});
export type AccessClaims = z.infer<typeof accessClaimsSchema>;

export class TokenError extends Error {
  constructor(
    message: string,
    readonly code: 'expired' | 'invalid',
  ) {
    super(message);
    this.name = 'TokenError';
  }
}

/** A shared secret (HS256) or one half of an ES256 key pair. */
type TokenKey = string | KeyObject;

function key(secret: TokenKey): Uint8Array | KeyObject {
  if (typeof secret !== 'string') return secret;
  if (secret.length < 32) throw new Error('token secret must be at least 32 characters');
  return new TextEncoder().encode(secret);
}

const algorithmOf = (k: TokenKey): 'HS256' | 'ES256' => (typeof k === 'string' ? 'HS256' : 'ES256');

async function sign(secret: TokenKey, audience: string, claims: Record<string, unknown>, ttlSeconds: number): Promise<string> {
  return new SignJWT(claims)
    .setProtectedHeader({ alg: algorithmOf(secret) })
    .setIssuer(ISSUER)
    .setAudience(audience)
    .setIssuedAt()
    .setExpirationTime(Math.floor(Date.now() / 1000) + ttlSeconds)
    .sign(key(secret));
}

async function verify<T>(secret: TokenKey, audience: string, token: string, schema: z.ZodType<T>, graceSeconds = 0): Promise<T> {
  try {
    const { payload } = await jwtVerify(token, key(secret), { issuer: ISSUER, audience, algorithms: [algorithmOf(secret)], ...(graceSeconds ? { clockTolerance: graceSeconds } : {}) });
    const parsed = schema.safeParse(payload);
    if (!parsed.success) throw new TokenError('token claims malformed', 'invalid');
    return parsed.data;
  } catch (err) {
    if (err instanceof TokenError) throw err;
    if (err instanceof joseErrors.JWTExpired) throw new TokenError('token expired', 'expired');
    throw new TokenError('token invalid', 'invalid');
  }
}

/** An ES256 (P-256) key pair: the API's for join tokens, or a node's for its link to the parent. */
export interface KeyPair {
  privateKey: KeyObject;
  publicKey: KeyObject;
}

export const generateKeyPair = (): KeyPair => generateKeyPairSync('ec', { namedCurve: 'P-256' });

/** Signed by the API with the private key. */
export const signJoinToken = (privateKey: KeyObject, claims: JoinClaims, ttlSeconds = 600): Promise<string> =>
  sign(privateKey, 'sfu-join', joinClaimsSchema.parse(claims), ttlSeconds);

/** Checked by SFU nodes with the public key; `graceSeconds` accepts a token that expired that long ago. */
export const verifyJoinToken = (publicKey: KeyObject, token: string, graceSeconds = 0): Promise<JoinClaims> =>
  verify(publicKey, 'sfu-join', token, joinClaimsSchema, graceSeconds);

export const signAccessToken = (secret: string, claims: AccessClaims, ttlSeconds = 8 * 3600): Promise<string> =>
  sign(secret, 'api', accessClaimsSchema.parse(claims), ttlSeconds);

const issuedAccessClaimsSchema = accessClaimsSchema.extend({ iat: z.number().int().nonnegative() });

/** The claims and when the token was issued (seconds): sessions older than a password change are refused. */
export async function verifyAccessToken(secret: string, token: string): Promise<AccessClaims & { issuedAt: number }> {
  const { iat, ...claims } = await verify(secret, 'api', token, issuedAccessClaimsSchema);
  return { ...claims, issuedAt: iat };
}

// Third audience, `sfu-node`: one SFU node proving itself to its parent on the cascade control link.
// Signed with the cascade secret shared by the nodes of a deployment.
export const nodeIdSchema = z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/, 'node id: 1-64 of A-Z a-z 0-9 _ . -');

export const nodeClaimsSchema = z.object({
  nodeId: nodeIdSchema,
  unitId: z.number().int().positive(),
});
export type NodeClaims = z.infer<typeof nodeClaimsSchema>;

/** Signed with the deployment's shared cascade secret (HS256), or with the node's own private key (ES256). */
export const signNodeToken = (key: string | KeyObject, claims: NodeClaims, ttlSeconds = 300): Promise<string> =>
  sign(key, 'sfu-node', nodeClaimsSchema.parse(claims), ttlSeconds);

/**
 * Checked with the shared secret, or — per-node keys — with the public key registered for the node id
 * the token claims: a node can only speak for itself.
 */
export async function verifyNodeToken(key: string | ((nodeId: string) => KeyObject | undefined), token: string): Promise<NodeClaims> {
  if (typeof key === 'string') return verify(key, 'sfu-node', token, nodeClaimsSchema);
  let claimed: unknown;
  try {
    claimed = decodeJwt(token).nodeId;
  } catch {
    throw new TokenError('token invalid', 'invalid');
  }
  const registered = typeof claimed === 'string' ? key(claimed) : undefined;
  if (!registered) throw new TokenError('no key registered for that node', 'invalid');
  return verify(registered, 'sfu-node', token, nodeClaimsSchema);
}
