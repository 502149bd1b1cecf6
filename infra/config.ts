import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { z } from 'zod';
import { nodeIdSchema } from './tokens.ts';
import { sfuNodeHostProblem } from './sfu-node-hosts.ts';
import { cameraNetworkProblem } from './net/CameraNetworks.ts';
import { withHostConfigFile } from './deploy/host-config.ts';

// Publicly known credentials of S3 servers' out-of-the-box setups: never accepted.
const WELL_KNOWN_S3_CREDENTIALS = new Set(['S3RVER', 'minioadmin', 'minio', 'minio123', 'admin', 'password']);

const NAMED_RANGES = new Set(['loopback', 'linklocal', 'uniquelocal']);

/** Express `trust proxy`, validated: false, a hop count, or proxy addresses — never a blanket `true`. */
const trustProxySchema = z
  .string()
  .trim()
  .transform((v, ctx): false | number | string => {
    if (v === 'false' || v === '' || v === '0') return false;
    if (/^\d{1,2}$/.test(v)) return Number(v);
    const parts = v.split(',').map((p) => p.trim());
    for (const p of parts) {
      const [addr = '', bits, extra] = p.split('/');
      const family = net.isIP(addr);
      const okBits = bits === undefined || (/^\d{1,3}$/.test(bits) && Number(bits) <= (family === 6 ? 128 : 32));
      if (!NAMED_RANGES.has(p) && (!family || !okBits || extra !== undefined)) {
        ctx.addIssue({ code: 'custom', message: `"${p}": give false, a hop count, or proxy IPs/CIDRs (or loopback, linklocal, uniquelocal); "true" would let any client forge its address` });
        return z.NEVER;
      }
    }
    return parts.join(',');
  });

/** An optional comma-separated host list (infra/net/HostList.ts), each entry checked by `problem`. */
function hostListSetting(problem: (entry: string) => string | undefined, give: string) {
  return z.string().trim().superRefine((v, ctx) => {
    for (const e of v.split(',').map((p) => p.trim().toLowerCase()).filter((p) => p !== '')) {
      const why = problem(e);
      if (why) ctx.addIssue({ code: 'custom', message: `"${e}": ${why} (give ${give})` });
    }
  }).optional();
}

// Every setting has an embedded default so `npm start` works on one machine with nothing set;
// production points DATABASE_URL and S3_* at real servers.
const schema = z.object({
  DATA_DIR: z.string().default(path.resolve('.data')),
  DATABASE_URL: z.string().url().optional(),
  HTTP_PORT: z.coerce.number().int().min(0).max(65535).default(8080),
  HTTP_HOST: z.string().default('127.0.0.1'),
  // Beyond loopback, the API refuses to start while accounts still have the published demo password
  // (infra/auth/demo-guard.ts); `true` allows it on a closed test network.
  ALLOW_DEMO_PASSWORDS: z.enum(['true', 'false']).default('false'),
  // The API's master secret (only the API holds it): its access-token key is derived from it (HKDF,
  // label grassroots-av/api-access/v1). Generated and kept in DATA_DIR/token-secret if unset.
  TOKEN_SECRET: z.string().min(32).optional(),
  // Client addresses (audit, sign-in limits) behind a reverse proxy: `false` (default: no proxy, the
  // socket's address counts and X-Forwarded-For is ignored), a hop count (`1`: one proxy in front), or
  // the proxy's addresses: comma-separated IPs/CIDRs or loopback, linklocal, uniquelocal. Never `true`.
  TRUST_PROXY: trustProxySchema.default(false),
  // Join tokens (admission to SFU rooms) are ES256: the API signs with JOIN_PRIVATE_KEY (generated into
  // DATA_DIR if unset), SFU nodes check with JOIN_PUBLIC_KEY (PEM; or the key files in their DATA_DIR).
  JOIN_PRIVATE_KEY: z.string().optional(),
  JOIN_PUBLIC_KEY: z.string().optional(),
  SFU_HTTP_PORT: z.coerce.number().int().min(0).max(65535).default(4443),
  SFU_NUM_WORKERS: z.coerce.number().int().min(1).max(64).default(os.availableParallelism()),
  SFU_LISTEN_IP: z.string().default('127.0.0.1'),
  SFU_ANNOUNCED_IP: z.string().optional(),
  SFU_RTC_PORT: z.coerce.number().int().min(0).max(65535).default(40000),
  SFU_RTC_MIN_PORT: z.coerce.number().int().min(1024).max(65535).default(40100),
  SFU_RTC_MAX_PORT: z.coerce.number().int().min(1024).max(65535).default(40999),
  // The node's place in the five-level tree: SFU_NODE_ID + SFU_UNIT_ID make it a cascade node;
  // SFU_PARENT_URL (ws://parent:port/cascade) gives it a parent; SFU_CASCADE_SECRET is shared by the
  // deployment's nodes (SFU_NODE_AUTH=secret; default: generated into DATA_DIR/cascade-secret). It must
  // differ from TOKEN_SECRET: village nodes hold it.
  SFU_NODE_ID: nodeIdSchema.optional(),
  SFU_UNIT_ID: z.coerce.number().int().positive().optional(),
  SFU_PARENT_URL: z.string().url().optional(),
  SFU_CASCADE_SECRET: z.string().min(32).optional(),
  SFU_PIPE_ANNOUNCED_IP: z.string().optional(),
  // `secret`: nodes prove themselves to their parent with the shared cascade secret; `key`: each with
  // its own key pair (SFU_NODE_KEY or DATA_DIR/node-key.pem), a parent accepting only children whose
  // public key is in SFU_CHILD_KEYS_DIR (default DATA_DIR/child-keys) as <nodeId>.pub.pem.
  SFU_NODE_AUTH: z.enum(['secret', 'key']).default('secret'),
  SFU_NODE_KEY: z.string().optional(),
  SFU_CHILD_KEYS_DIR: z.string().optional(),
  // `grant`: a child opening a conference here must show a join token for it (see sfu/cascade/CascadeNode.ts).
  SFU_ADMISSION: z.enum(['grant', 'open']).default('grant'),
  // Which node the API sends a browser to: `local` (this process's /sfu, the single-machine default)
  // or `nearest` (the registered node of the person's unit or its nearest ancestor, from sfu_nodes).
  SFU_ROUTING: z.enum(['local', 'nearest']).default('local'),
  // Where the deployment's SFU nodes may run: comma-separated hostnames, *.domain, IPs, IP/CIDRs or
  // `loopback` (default: loopback and HTTP_HOST). A node registered elsewhere is refused, and a stored
  // one elsewhere is neither published to pages nor handed out with join tokens.
  SFU_NODE_HOSTS: hostListSetting(sfuNodeHostProblem, 'hostnames, *.domain, IPs, IP/CIDRs or loopback'),
  // Where the server may connect on a camera's behalf (test now, ONVIF, live views, recordings):
  // comma-separated IPs, IP/CIDRs, hostnames, *.domain, `private` (RFC 1918, 100.64/10, fc00::/7) or
  // `loopback`. Default: private, plus loopback when HTTP_HOST is loopback. A camera address outside
  // it is refused when typed and never connected to.
  CAMERA_NETWORKS: hostListSetting(cameraNetworkProblem, 'IPs, IP/CIDRs, hostnames, *.domain, private or loopback'),
  // Bounds on browsers' signalling per node (defaults in sfu/SignallingLimits.ts). Behind a reverse
  // proxy every browser has the proxy's address: set SFU_MAX_CONNECTIONS_PER_ADDRESS = SFU_MAX_CONNECTIONS.
  SFU_MAX_CONNECTIONS: z.coerce.number().int().positive().optional(),
  SFU_MAX_CONNECTIONS_PER_ADDRESS: z.coerce.number().int().positive().optional(),
  SFU_JOIN_DEADLINE_MS: z.coerce.number().int().min(1000).optional(),
  SFU_PING_INTERVAL_MS: z.coerce.number().int().min(1000).optional(),
  // Plain RTP (no ICE/DTLS) for hardware terminals and gateways on a trusted network, and the scale tests'
  // synthetic sites: `createPlainTransport` is refused unless this is 1.
  SFU_PLAIN_RTP: z.enum(['0', '1']).default('0').transform((v) => v === '1'),
  // Capacity of this node's uplink to its parent in kbit/s (a satellite or 3G village line): video crosses such a
  // link as single-layer streams chosen to fit. Absent: uncapped (every encoded simulcast layer is piped).
  SFU_UPLINK_KBPS: z.coerce.number().int().min(64).max(10_000_000).optional(),
  // Meetings with more sites than this are held as main venue / branch venues (sites watch the stage, join
  // muted, take the floor from the chair); smaller ones let everyone see everyone.
  MEETING_OPEN_MAX_SITES: z.coerce.number().int().min(0).max(100_000).default(8),
  // How often the chair's rotation (轮巡) steps by default, in seconds.
  MEETING_ROTATION_SECONDS: z.coerce.number().int().min(3).max(600).default(10),
  // Bearer token Prometheus shows for /metrics; without it /metrics answers only this host's un-proxied requests.
  METRICS_TOKEN: z.string().min(16).optional(),
  // Films a chair can broadcast to a meeting (default DATA_DIR/films; the demo puts one there).
  FILMS_DIR: z.string().optional(),
  S3_ENDPOINT: z.string().optional(),
  S3_PORT: z.coerce.number().int().optional(),
  S3_USE_SSL: z.enum(['true', 'false']).default('false'),
  // Credentials of the S3_ENDPOINT server: required with it, no fixed default (the embedded server
  // makes its own).
  S3_ACCESS_KEY: z.string().default(''),
  S3_SECRET_KEY: z.string().default(''),
  S3_BUCKET: z.string().default('recordings'),
  // Which roles `npm start` (infra/system.ts) runs inside itself besides the API, pages and SFU node:
  // `recorder,scheduler` on one machine; `none` on an api host of a deployment across hosts (infra/deploy/).
  EMBEDDED_ROLES: z.string().trim().default('recorder,scheduler').transform((v, ctx) => {
    const roles = v === 'none' || v === '' ? [] : v.split(',').map((r) => r.trim());
    for (const r of roles) if (r !== 'recorder' && r !== 'scheduler') ctx.addIssue({ code: 'custom', message: `"${r}": give recorder, scheduler, both comma-separated, or none` });
    return roles;
  }),
  // HTTPS and WSS (infra/tls/): `auto` serves TLS when HTTP_HOST is not loopback, with the operator's
  // TLS_CERT_FILE/TLS_KEY_FILE (and TLS_CA_FILE to publish at /tls/ca.pem) or a leaf from a local CA made in
  // DATA_DIR/tls for HTTP_HOST and TLS_HOSTNAMES (comma-separated extra names/addresses).
  TLS_MODE: z.enum(['auto', 'on', 'off']).default('auto'),
  TLS_CERT_FILE: z.string().optional(),
  TLS_KEY_FILE: z.string().optional(),
  TLS_CA_FILE: z.string().optional(),
  TLS_HOSTNAMES: z.string().optional(),
  // A wss:// SFU_PARENT_URL is checked against SFU_PARENT_FINGERPRINT (SHA-256 of the parent's CA or leaf
  // certificate, AB:CD:…) or SFU_PARENT_CA_FILE; with neither, against the system's trusted CAs.
  SFU_PARENT_FINGERPRINT: z.string().regex(/^([0-9A-Fa-f]{2}:){31}[0-9A-Fa-f]{2}$/, 'SHA-256 fingerprint AB:CD:… (32 bytes)').optional(),
  SFU_PARENT_CA_FILE: z.string().optional(),
  // TURN (infra/turn/): pages get short-lived TURN REST credentials with their join (username
  // `<expiry>:<userId>`, HMAC-SHA1 with TURN_SECRET). TURN_START=true runs Debian's coturn here.
  TURN_ENABLED: z.enum(['true', 'false']).default('false'),
  TURN_URLS: z.string().optional(),
  TURN_SECRET: z.string().min(16).optional(),
  TURN_TTL_SECONDS: z.coerce.number().int().min(60).max(86400).default(21600),
  TURN_START: z.enum(['true', 'false']).default('true'),
  TURN_LISTEN_IP: z.string().optional(),
  TURN_PORT: z.coerce.number().int().min(1).max(65535).default(3478),
  TURN_TLS_PORT: z.coerce.number().int().min(1).max(65535).default(5349),
  // Where browsers reach the store (scheme://host[:port]); presigned playback and thumbnail URLs are signed for it.
  S3_PUBLIC_URL: z.string().url().refine((u) => /^https?:\/\/[^/?#@]+\/?$/.test(u), 'scheme://host[:port] only').optional(),
}).superRefine((c, ctx) => {
  if (c.TOKEN_SECRET !== undefined && c.SFU_CASCADE_SECRET === c.TOKEN_SECRET) {
    ctx.addIssue({ code: 'custom', path: ['SFU_CASCADE_SECRET'], message: 'must differ from TOKEN_SECRET: SFU nodes hold the cascade secret, only the API the token secret' });
  }
  if ((c.TLS_CERT_FILE === undefined) !== (c.TLS_KEY_FILE === undefined)) ctx.addIssue({ code: 'custom', path: ['TLS_KEY_FILE'], message: 'give TLS_CERT_FILE and TLS_KEY_FILE together' });
  if (c.TURN_ENABLED === 'true' && !c.TURN_SECRET) ctx.addIssue({ code: 'custom', path: ['TURN_SECRET'], message: 'required with TURN_ENABLED=true (at least 16 characters, shared with the TURN server)' });
  if (c.S3_ENDPOINT) {
    for (const k of ['S3_ACCESS_KEY', 'S3_SECRET_KEY'] as const) {
      if (c[k].length < 3 || WELL_KNOWN_S3_CREDENTIALS.has(c[k])) ctx.addIssue({ code: 'custom', path: [k], message: 'required with S3_ENDPOINT, and not a well-known default' });
    }
  }
});

export type Config = z.infer<typeof schema>;
/** Every key of the configuration (a host file may set only these and its role's own). */
export const CONFIG_KEYS: readonly string[] = Object.keys(schema.shape);

export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  // CONFIG_FILE: the host's configuration file beneath the environment (infra/deploy/host-config.ts).
  const parsed = schema.safeParse(withHostConfigFile(env, Object.keys(schema.shape)));
  if (!parsed.success) {
    const lines = parsed.error.issues.map((i) => `  ${i.path.join('.')}: ${i.message}`);
    throw new Error(`invalid configuration${env.CONFIG_FILE ? ` (${env.CONFIG_FILE} or the environment)` : ''}:\n${lines.join('\n')}`);
  }
  return parsed.data;
}
