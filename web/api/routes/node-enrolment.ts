import crypto from 'node:crypto';
import { z } from 'zod';
import { withTransaction, type Pool, type PoolClient } from '../../../infra/db/pool.ts';
import { checkNodeProof, keyFingerprint, nodeProofSchema, type NodeProof } from '../../../sfu/cascade/EnrolmentProof.ts';
import { writeChildKeyFiles } from '../../../sfu/cascade/EnrolmentKeys.ts';
import { HttpError, type AuthUser } from '../auth-context.ts';
import { audit } from '../audit.ts';
import { notFound } from '../errors.ts';
import { permissions } from '../permissions.ts';
import { idParam, type ApiRoutes } from '../route-registry.ts';
import { scopePattern } from '../scope.ts';

// Node enrolment (issue 14 item 3). An operator asks for a one-time code for a registered node; the
// code is shown once, stored only as its SHA-256, expires, and is used once. The node makes its own
// key pair and enrols its public key with the code (sfu/bin/enrol.ts); from then on its parent
// accepts it (sfu/cascade/EnrolmentKeys.ts reads the keys from here, or from the child-keys folder
// mirrored below). Revocation is read at the next connection attempt, and the live link is dropped
// when the parent is this process's node. Rotation: the node registers a pending key (proved with its
// active one), restarts on it whenever it likes (both are accepted), then activates it (proved with
// the new one). After enrolment a node proves itself with a signature over each request
// (EnrolmentProof.ts), never with a token that crossed a control link.

export interface NodeEnrolmentOptions {
  /** The API's own node's child-keys folder (SFU_CHILD_KEYS_DIR): enrolled keys are mirrored there. */
  childKeysDir?: string;
  /** Drops a revoked node's live link at once (the API's own cascade node); true if it had one. */
  onRevoke?: (cascadeId: string) => boolean;
  /** Lifetime of a code; default 24 hours. */
  codeTtlSeconds?: number;
}

/** A node counts as connected while its reports (every ~15 s) say its parent link is up. */
export const REPORT_FRESH_SECONDS = 60;
const ALPHABET = 'ABCDEFGHJKLMNPQRSTUVWXYZ23456789';

function newCode(): string {
  const bytes = crypto.randomBytes(25);
  const chars = [...bytes].map((b) => ALPHABET[b & 31]).join('');
  return chars.match(/.{5}/g)!.join('-');
}

const normalise = (code: string): string => code.toUpperCase().replace(/[^A-Z0-9]/g, '');
const hashCode = (code: string): string => crypto.createHash('sha256').update(normalise(code)).digest('hex');

const publicKeyPem = z
  .string()
  .max(1000)
  .refine((pem) => {
    try {
      const key = crypto.createPublicKey(pem);
      return key.asymmetricKeyType === 'ec' && key.asymmetricKeyDetails?.namedCurve === 'prime256v1';
    } catch {
      return false;
    }
  }, '须为P-256公钥(PEM) / must be a P-256 public key (PEM)');

const codeSchema = z.string().trim().min(10).max(64);
const reportSchema = z.strictObject({
  parent_connected: z.boolean(),
  children: z.array(z.string().max(64)).max(1000),
  rooms: z.number().int().min(0).max(1_000_000),
  peers: z.number().int().min(0).max(1_000_000),
  cpu_percent: z.number().min(0).max(100_000),
  load1: z.number().min(0).max(100_000).optional(),
  draining: z.boolean().optional(),
});

const codeRefused = {
  unknown: () => new HttpError(401, 'enrolment_code_invalid', '注册码无效 / the enrolment code is not valid'),
  used: () => new HttpError(409, 'enrolment_code_used', '注册码已使用过(每个只能用一次) / the enrolment code was used already (once only)'),
  expired: () => new HttpError(410, 'enrolment_code_expired', '注册码已过期，请操作员重新生成 / the enrolment code expired: ask the operator for a new one'),
};
const proofRefused = () => new HttpError(401, 'node_proof_invalid', '节点签名无效或节点已吊销 / the node signature is not valid, or the node was revoked');

interface NodeRow {
  id: number;
  unit_id: number;
  cascade_id: string | null;
  revoked_at: Date | null;
  name: string;
  signalling_url: string;
}

export function registerNodeEnrolmentRoutes(routes: ApiRoutes, pool: Pool, options: NodeEnrolmentOptions = {}): void {
  const ttl = options.codeTtlSeconds ?? 24 * 3600;

  /** Mirrors the node's keys into the API node's child-keys folder (after the change committed). */
  const mirror = async (nodeId: number): Promise<void> => {
    if (!options.childKeysDir) return;
    const { rows } = await pool.query<{ cascade_id: string; revoked: boolean; active: string | null; pending: string | null }>(
      `SELECT n.cascade_id, n.revoked_at IS NOT NULL AS revoked,
         (SELECT public_key FROM sfu_node_keys WHERE node_id = n.id AND state = 'active') AS active,
         (SELECT public_key FROM sfu_node_keys WHERE node_id = n.id AND state = 'pending') AS pending
       FROM sfu_nodes n WHERE n.id = $1 AND n.cascade_id IS NOT NULL`,
      [nodeId],
    );
    const r = rows[0];
    if (!r) return;
    writeChildKeyFiles(options.childKeysDir, r.cascade_id, r.revoked ? {} : { active: r.active ?? undefined, pending: r.pending ?? undefined });
  };

  /** The node if it is in the caller's subtree; otherwise 404 like a missing one. */
  const scopedNode = async (db: Pool | PoolClient, user: AuthUser, id: number, lock = false): Promise<NodeRow> => {
    const { rows } = await db.query<NodeRow>(
      `SELECT n.id, n.unit_id, n.cascade_id, n.revoked_at, n.name, n.signalling_url FROM sfu_nodes n JOIN units u ON u.id = n.unit_id
       WHERE n.id = $1 AND u.path LIKE $2 ${lock ? 'FOR UPDATE OF n' : ''}`,
      [id, scopePattern(user)],
    );
    if (!rows[0]) throw notFound('SFU节点', 'SFU node');
    return rows[0];
  };

  /** The node a proof claims to be, with the key states that may make it; 401 if none does. */
  const provenNode = async (client: PoolClient, proof: NodeProof, action: string, payload: unknown, states: readonly string[]): Promise<NodeRow & { keyState: string }> => {
    const { rows } = await client.query<NodeRow>(
      `SELECT id, unit_id, cascade_id, revoked_at, name, signalling_url FROM sfu_nodes WHERE cascade_id = $1 AND revoked_at IS NULL FOR UPDATE`,
      [proof.node_id],
    );
    const node = rows[0];
    if (!node) throw proofRefused();
    const keys = await client.query<{ public_key: string; state: string }>(`SELECT public_key, state FROM sfu_node_keys WHERE node_id = $1 AND state = ANY($2)`, [node.id, states]);
    const i = checkNodeProof(keys.rows.map((k) => crypto.createPublicKey(k.public_key)), proof, action, payload);
    if (i < 0) throw proofRefused();
    return { ...node, keyState: keys.rows[i]!.state };
  };

  routes.add(
    {
      method: 'post',
      path: '/sfu-nodes/:id/enrolment-code',
      summary: 'A one-time enrolment code for a node (shown once; stored hashed; earlier unused codes stop working)',
      tag: 'sfu nodes',
      roles: permissions.writeSfuNodes,
      params: idParam,
      status: 201,
    },
    async ({ params, user, req }) => {
      const code = newCode();
      const result = await withTransaction(pool, async (client) => {
        const node = await scopedNode(client, user, params.id, true);
        const cascadeId = node.cascade_id ?? `node-${node.id}`;
        if (!node.cascade_id) await client.query('UPDATE sfu_nodes SET cascade_id = $2 WHERE id = $1', [node.id, cascadeId]);
        await client.query('UPDATE sfu_node_enrolment_codes SET expires_at = now() WHERE node_id = $1 AND used_at IS NULL AND expires_at > now()', [node.id]);
        const { rows } = await client.query<{ expires_at: Date }>(
          `INSERT INTO sfu_node_enrolment_codes (node_id, code_hash, expires_at, created_by) VALUES ($1, $2, now() + make_interval(secs => $3), $4) RETURNING expires_at`,
          [node.id, hashCode(code), ttl, user.id],
        );
        await audit(client, { action: 'sfu_node.enrolment_code', user, objectType: 'sfu_node', objectId: node.id, unitId: node.unit_id, ip: req.ip ?? null, detail: { cascade_id: cascadeId } });
        return { node_id: node.id, cascade_id: cascadeId, code, expires_at: rows[0]!.expires_at.toISOString() };
      });
      return result;
    },
  );

  routes.add(
    {
      method: 'post',
      path: '/node-enrolment/enrol',
      summary: "A node enrols its public key with a one-time code (no sign-in: the code is the node's credential, once)",
      tag: 'sfu nodes',
      public: true,
      body: z.strictObject({ code: codeSchema, public_key: publicKeyPem }),
      responses: { '401': 'unknown code', '409': 'code used already', '410': 'code expired' },
    },
    async ({ body, req }) => {
      const result = await withTransaction(pool, async (client) => {
        const { rows } = await client.query<{ id: number; node_id: number; used: boolean; expired: boolean }>(
          `SELECT id, node_id, used_at IS NOT NULL AS used, expires_at <= now() AS expired FROM sfu_node_enrolment_codes WHERE code_hash = $1 FOR UPDATE`,
          [hashCode(body.code)],
        );
        const row = rows[0];
        if (!row) throw codeRefused.unknown();
        if (row.used) throw codeRefused.used();
        if (row.expired) throw codeRefused.expired();
        await client.query('UPDATE sfu_node_enrolment_codes SET used_at = now() WHERE id = $1', [row.id]);
        // A new enrolment replaces whatever keys the node had (a replaced box), and lifts a revocation.
        await client.query(`UPDATE sfu_node_keys SET state = 'retired', ended_at = now() WHERE node_id = $1 AND state IN ('active', 'pending')`, [row.node_id]);
        await client.query(`INSERT INTO sfu_node_keys (node_id, public_key, state, activated_at) VALUES ($1, $2, 'active', now())`, [row.node_id, body.public_key]);
        const node = await client.query<NodeRow & { parent_cascade_id: string | null; parent_url: string | null }>(
          `UPDATE sfu_nodes n SET revoked_at = NULL FROM sfu_nodes me LEFT JOIN sfu_nodes p ON p.id = me.parent_node_id
           WHERE n.id = $1 AND me.id = n.id
           RETURNING n.id, n.unit_id, n.cascade_id, n.name, n.signalling_url, p.cascade_id AS parent_cascade_id, p.signalling_url AS parent_url`,
          [row.node_id],
        );
        const n = node.rows[0]!;
        const fingerprint = keyFingerprint(crypto.createPublicKey(body.public_key));
        await audit(client, { action: 'sfu_node.enrol', objectType: 'sfu_node', objectId: n.id, unitId: n.unit_id, ip: req.ip ?? null, detail: { cascade_id: n.cascade_id, key: fingerprint } });
        return {
          dbId: n.id,
          node_id: n.cascade_id!,
          unit_id: n.unit_id,
          name: n.name,
          signalling_url: n.signalling_url,
          key_fingerprint: fingerprint,
          parent: n.parent_url ? { node_id: n.parent_cascade_id, cascade_url: cascadeUrlOf(n.parent_url) } : null,
        };
      });
      const { dbId, ...answer } = result;
      await mirror(dbId);
      return answer;
    },
  );

  routes.add(
    {
      method: 'post',
      path: '/node-enrolment/rotate',
      summary: 'A node registers a second (pending) key, proved with its active key; both are accepted until it activates',
      tag: 'sfu nodes',
      public: true,
      body: z.strictObject({ proof: nodeProofSchema, public_key: publicKeyPem }),
    },
    async ({ body, req }) => {
      const node = await withTransaction(pool, async (client) => {
        const n = await provenNode(client, body.proof, 'rotate', { public_key: body.public_key }, ['active']);
        await client.query(`UPDATE sfu_node_keys SET state = 'retired', ended_at = now() WHERE node_id = $1 AND state = 'pending'`, [n.id]);
        await client.query(`INSERT INTO sfu_node_keys (node_id, public_key, state) VALUES ($1, $2, 'pending')`, [n.id, body.public_key]);
        await audit(client, { action: 'sfu_node.key_pending', objectType: 'sfu_node', objectId: n.id, unitId: n.unit_id, ip: req.ip ?? null, detail: { key: keyFingerprint(crypto.createPublicKey(body.public_key)) } });
        return n;
      });
      await mirror(node.id);
      return { node_id: node.cascade_id, state: 'pending' };
    },
  );

  routes.add(
    {
      method: 'post',
      path: '/node-enrolment/activate',
      summary: 'A node makes its pending key the active one (proved with the pending key); the old key stops working',
      tag: 'sfu nodes',
      public: true,
      body: z.strictObject({ proof: nodeProofSchema }),
    },
    async ({ body, req }) => {
      const node = await withTransaction(pool, async (client) => {
        const n = await provenNode(client, body.proof, 'activate', null, ['pending']);
        await client.query(`UPDATE sfu_node_keys SET state = 'retired', ended_at = now() WHERE node_id = $1 AND state = 'active'`, [n.id]);
        await client.query(`UPDATE sfu_node_keys SET state = 'active', activated_at = now() WHERE node_id = $1 AND state = 'pending'`, [n.id]);
        await audit(client, { action: 'sfu_node.key_active', objectType: 'sfu_node', objectId: n.id, unitId: n.unit_id, ip: req.ip ?? null });
        return n;
      });
      await mirror(node.id);
      return { node_id: node.cascade_id, state: 'active' };
    },
  );

  routes.add(
    {
      method: 'post',
      path: '/node-enrolment/report',
      summary: "A node's state and load (parent link, children, rooms, peers, CPU), signed with its key, for the console",
      tag: 'sfu nodes',
      public: true,
      body: z.strictObject({ proof: nodeProofSchema, report: reportSchema }),
    },
    async ({ body }) => {
      await withTransaction(pool, async (client) => {
        const n = await provenNode(client, body.proof, 'report', body.report, ['active', 'pending']);
        await client.query('UPDATE sfu_nodes SET last_seen_at = now(), last_report = $2 WHERE id = $1', [n.id, JSON.stringify(body.report)]);
      });
      return undefined;
    },
  );

  routes.add(
    {
      method: 'post',
      path: '/node-enrolment/child-keys',
      summary: "An enrolled parent node reads its enrolled children's public keys (active and pending; none for revoked nodes)",
      tag: 'sfu nodes',
      public: true,
      body: z.strictObject({ proof: nodeProofSchema }),
    },
    async ({ body }) => {
      const client = await pool.connect();
      try {
        const parent = await provenNode(client, body.proof, 'child-keys', null, ['active', 'pending']);
        const { rows } = await client.query<{ cascade_id: string; keys: string[] }>(
          `SELECT n.cascade_id, array_agg(k.public_key ORDER BY k.state) AS keys FROM sfu_nodes n JOIN sfu_node_keys k ON k.node_id = n.id
           WHERE n.parent_node_id = $1 AND n.revoked_at IS NULL AND n.cascade_id IS NOT NULL AND k.state IN ('active', 'pending')
           GROUP BY n.cascade_id ORDER BY n.cascade_id`,
          [parent.id],
        );
        return { node_id: parent.cascade_id, children: rows.map((r) => ({ node_id: r.cascade_id, keys: r.keys })) };
      } finally {
        client.release();
      }
    },
  );

  routes.add(
    {
      method: 'post',
      path: '/sfu-nodes/:id/revoke',
      summary: "Revokes a node's keys: refused at its next connection attempt (its live link is dropped where this API's node is its parent)",
      tag: 'sfu nodes',
      roles: permissions.writeSfuNodes,
      params: idParam,
    },
    async ({ params, user, req }) => {
      const node = await withTransaction(pool, async (client) => {
        const n = await scopedNode(client, user, params.id, true);
        await client.query('UPDATE sfu_nodes SET revoked_at = COALESCE(revoked_at, now()) WHERE id = $1', [n.id]);
        await client.query(`UPDATE sfu_node_keys SET state = 'revoked', ended_at = now() WHERE node_id = $1 AND state IN ('active', 'pending')`, [n.id]);
        await client.query('UPDATE sfu_node_enrolment_codes SET expires_at = now() WHERE node_id = $1 AND used_at IS NULL AND expires_at > now()', [n.id]);
        await audit(client, { action: 'sfu_node.revoke', user, objectType: 'sfu_node', objectId: n.id, unitId: n.unit_id, ip: req.ip ?? null, detail: { cascade_id: n.cascade_id } });
        return n;
      });
      await mirror(node.id);
      const dropped = node.cascade_id && options.onRevoke ? options.onRevoke(node.cascade_id) : false;
      return { node_id: node.id, cascade_id: node.cascade_id, revoked: true, link_dropped: dropped };
    },
  );

  routes.add(
    {
      method: 'get',
      path: '/sfu-nodes/:id/enrolment',
      summary: "A node's enrolment: keys (fingerprints, states), its latest code's expiry, revocation, last report",
      tag: 'sfu nodes',
      params: idParam,
    },
    async ({ params, user }) => {
      const node = await scopedNode(pool, user, params.id);
      const [keys, code, seen] = await Promise.all([
        pool.query<{ public_key: string; state: string; created_at: Date; activated_at: Date | null; ended_at: Date | null }>(
          'SELECT public_key, state, created_at, activated_at, ended_at FROM sfu_node_keys WHERE node_id = $1 ORDER BY id DESC LIMIT 20',
          [node.id],
        ),
        pool.query<{ expires_at: Date; used_at: Date | null; created_at: Date }>(
          'SELECT expires_at, used_at, created_at FROM sfu_node_enrolment_codes WHERE node_id = $1 ORDER BY id DESC LIMIT 1',
          [node.id],
        ),
        pool.query<{ last_seen_at: Date | null; last_report: unknown; fresh: boolean }>(
          `SELECT last_seen_at, last_report, COALESCE(last_seen_at > now() - make_interval(secs => $2), false) AS fresh FROM sfu_nodes WHERE id = $1`,
          [node.id, REPORT_FRESH_SECONDS],
        ),
      ]);
      const s = seen.rows[0]!;
      const report = s.last_report as { parent_connected?: boolean } | null;
      return {
        node_id: node.id,
        cascade_id: node.cascade_id,
        revoked_at: node.revoked_at?.toISOString() ?? null,
        enrolled: keys.rows.some((k) => k.state === 'active'),
        keys: keys.rows.map((k) => ({
          state: k.state,
          fingerprint: keyFingerprint(crypto.createPublicKey(k.public_key)),
          created_at: k.created_at.toISOString(),
          activated_at: k.activated_at?.toISOString() ?? null,
          ended_at: k.ended_at?.toISOString() ?? null,
        })),
        code: code.rows[0] ? { expires_at: code.rows[0].expires_at.toISOString(), used_at: code.rows[0].used_at?.toISOString() ?? null } : null,
        last_seen_at: s.last_seen_at?.toISOString() ?? null,
        connected: !node.revoked_at && s.fresh && report?.parent_connected === true,
        report: s.last_report ?? null,
      };
    },
  );
}

/** The parent's cascade endpoint: the same server as its signalling URL, path /cascade. */
function cascadeUrlOf(signallingUrl: string): string {
  const u = new URL(signallingUrl);
  u.pathname = '/cascade';
  u.search = '';
  return u.toString();
}
