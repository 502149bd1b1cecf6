import crypto, { type KeyObject } from 'node:crypto';
import { z } from 'zod';

// A node's calls to the API after enrolment (rotate, activate, report) carry a signature made with
// the node's own private key over the action, the node id, the time and the body. It is not a cascade
// node token: a token seen on a control link cannot be replayed to register a key at the API.

const LABEL = 'grassroots-av/node-api/v1';
/** How far a proof's time may be from the API's clock. */
export const PROOF_SKEW_MS = 5 * 60_000;

export const nodeProofSchema = z.strictObject({
  node_id: z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/),
  at: z.number().int().positive(),
  signature: z.string().regex(/^[A-Za-z0-9_-]{40,200}$/),
});
export type NodeProof = z.infer<typeof nodeProofSchema>;

function message(action: string, nodeId: string, at: number, payload: unknown): Buffer {
  return Buffer.from(`${LABEL}\n${action}\n${nodeId}\n${at}\n${JSON.stringify(payload ?? null)}`);
}

export function signNodeProof(privateKey: KeyObject, nodeId: string, action: string, payload: unknown, now = Date.now()): NodeProof {
  const signature = crypto.sign('sha256', message(action, nodeId, now, payload), { key: privateKey, dsaEncoding: 'ieee-p1363' }).toString('base64url');
  return { node_id: nodeId, at: now, signature };
}

/** Which of `keys` made the proof (its index), or -1: wrong key, other action/body, or too old. */
export function checkNodeProof(keys: readonly KeyObject[], proof: NodeProof, action: string, payload: unknown, now = Date.now()): number {
  if (Math.abs(now - proof.at) > PROOF_SKEW_MS) return -1;
  const data = message(action, proof.node_id, proof.at, payload);
  const sig = Buffer.from(proof.signature, 'base64url');
  return keys.findIndex((key) => {
    try {
      return crypto.verify('sha256', data, { key, dsaEncoding: 'ieee-p1363' }, sig);
    } catch {
      return false;
    }
  });
}

/** Short fingerprint of a public key (SHA-256 of its SPKI DER), for the console and logs. */
export function keyFingerprint(publicKey: KeyObject): string {
  const hex = crypto.createHash('sha256').update(publicKey.export({ type: 'spki', format: 'der' })).digest('hex');
  return hex.slice(0, 16).replace(/(.{4})(?!$)/g, '$1:');
}
