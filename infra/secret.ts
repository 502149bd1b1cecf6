import crypto, { type KeyObject } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { Config } from './config.ts';
import { generateKeyPair, type KeyPair } from './tokens.ts';

// One key per purpose, never one secret for two audiences: the API's access tokens are signed with a
// key derived (HKDF) from the master TOKEN_SECRET that only the API holds; the cascade's shared secret
// is a separate secret that SFU nodes hold. A node that holds the cascade secret cannot sign API tokens.

/**
 * The API's master secret: TOKEN_SECRET if set, otherwise one generated on first start and kept
 * (mode 0600) in the data folder. Only the API holds it; nothing signs with it directly.
 */
export function loadTokenSecret(dataDir: string, fromEnv?: string): string {
  return fromEnv ?? generatedSecret(dataDir, 'token-secret');
}

/** What a key derived from the master secret is for: its HKDF info label. */
export type KeyPurpose = 'api-access';

/** HKDF-SHA256 of the master with a distinct label per purpose: 32 bytes, base64url. */
export function deriveKey(master: string, purpose: KeyPurpose): string {
  return Buffer.from(crypto.hkdfSync('sha256', master, 'grassroots-av', `grassroots-av/${purpose}/v1`, 32)).toString('base64url');
}

/** The key that signs and checks the API's access tokens (audience `api`). */
export function loadAccessSecret(dataDir: string, masterFromEnv?: string): string {
  return deriveKey(loadTokenSecret(dataDir, masterFromEnv), 'api-access');
}

/**
 * The SFU nodes' shared cascade secret (SFU_NODE_AUTH=secret): SFU_CASCADE_SECRET if set, otherwise one
 * generated on first start into DATA_DIR/cascade-secret — copy it to every node's SFU_CASCADE_SECRET.
 * Never the API's secret: a village node holds it.
 */
export function loadCascadeSecret(dataDir: string, fromEnv?: string): string {
  return fromEnv ?? generatedSecret(dataDir, 'cascade-secret');
}

/** Every key of the combined system (infra/system.ts), each for one purpose. */
export interface SystemKeys {
  /** Signs and checks access tokens (audience `api`); derived from TOKEN_SECRET, held by the API only. */
  accessSecret: string;
  /** The SFU nodes' shared cascade secret (audience `sfu-node`); village nodes hold it. */
  cascadeSecret: string;
  /** The join-token key pair (audience `sfu-join`); nodes hold the public half. */
  join: KeyPair;
}

export function loadSystemKeys(config: Pick<Config, 'DATA_DIR' | 'TOKEN_SECRET' | 'SFU_CASCADE_SECRET' | 'JOIN_PRIVATE_KEY'>): SystemKeys {
  return {
    accessSecret: loadAccessSecret(config.DATA_DIR, config.TOKEN_SECRET),
    cascadeSecret: loadCascadeSecret(config.DATA_DIR, config.SFU_CASCADE_SECRET),
    join: loadJoinKeys(config.DATA_DIR, config.JOIN_PRIVATE_KEY),
  };
}

function generatedSecret(dataDir: string, name: string): string {
  const file = path.join(dataDir, name);
  try {
    return fs.readFileSync(file, 'utf8').trim();
  } catch {
    fs.mkdirSync(dataDir, { recursive: true });
    const secret = crypto.randomBytes(32).toString('base64url');
    fs.writeFileSync(file, secret, { mode: 0o600, flag: 'wx' });
    return secret;
  }
}

const JOIN_KEY_FILE = 'join-key.pem';
const JOIN_PUBLIC_KEY_FILE = 'join-key.pub.pem';

/**
 * The API's join-token key pair: JOIN_PRIVATE_KEY (PEM) if set, otherwise one generated on first start
 * and kept in the data folder, with its public half beside it (join-key.pub.pem) for SFU nodes.
 */
export function loadJoinKeys(dataDir: string, privatePemFromEnv?: string): KeyPair {
  return loadKeyPair(dataDir, JOIN_KEY_FILE, JOIN_PUBLIC_KEY_FILE, privatePemFromEnv);
}

/**
 * An SFU node's own key pair for its link to the parent (SFU_NODE_AUTH=key): SFU_NODE_KEY (PEM) or
 * generated into the data folder; its public half (node-key.pub.pem) goes to the parent's child-keys folder.
 */
export function loadNodeKeys(dataDir: string, privatePemFromEnv?: string): KeyPair {
  return loadKeyPair(dataDir, 'node-key.pem', 'node-key.pub.pem', privatePemFromEnv);
}

/** The public keys of a parent's children: `<nodeId>.pub.pem` in a folder, read when a child connects. */
export function childKeysIn(dir: string): (nodeId: string) => KeyObject | undefined {
  return (nodeId) => {
    if (!/^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,63}$/.test(nodeId)) return undefined;
    try {
      return crypto.createPublicKey(fs.readFileSync(path.join(dir, `${nodeId}.pub.pem`), 'utf8'));
    } catch {
      return undefined;
    }
  };
}

function loadKeyPair(dataDir: string, privateFile: string, publicFile: string, privatePemFromEnv?: string): KeyPair {
  const file = path.join(dataDir, privateFile);
  let pem = privatePemFromEnv;
  if (!pem) {
    try {
      pem = fs.readFileSync(file, 'utf8');
    } catch {
      fs.mkdirSync(dataDir, { recursive: true });
      pem = generateKeyPair().privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
      fs.writeFileSync(file, pem, { mode: 0o600, flag: 'wx' });
    }
  }
  const privateKey = crypto.createPrivateKey(pem);
  const publicKey = crypto.createPublicKey(privateKey);
  fs.mkdirSync(dataDir, { recursive: true });
  fs.writeFileSync(path.join(dataDir, publicFile), publicKey.export({ type: 'spki', format: 'pem' }));
  return { privateKey, publicKey };
}

/** What an SFU node checks join tokens with: JOIN_PUBLIC_KEY (PEM), or the key files in its data folder. */
export function loadJoinPublicKey(dataDir: string, publicPemFromEnv?: string): KeyObject {
  if (publicPemFromEnv) return crypto.createPublicKey(publicPemFromEnv);
  for (const [name, load] of [
    [JOIN_PUBLIC_KEY_FILE, (pem: string) => crypto.createPublicKey(pem)],
    [JOIN_KEY_FILE, (pem: string) => crypto.createPublicKey(crypto.createPrivateKey(pem))],
  ] as const) {
    try {
      return load(fs.readFileSync(path.join(dataDir, name), 'utf8'));
    } catch {
      // next
    }
  }
  throw new Error(`no join-token public key: set JOIN_PUBLIC_KEY to the API's ${JOIN_PUBLIC_KEY_FILE} (in its DATA_DIR)`);
}
