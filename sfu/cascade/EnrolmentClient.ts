import crypto, { type KeyObject } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { generateKeyPair } from '../../infra/tokens.ts';
import { EnrolmentError } from './EnrolmentError.ts';
import { signNodeProof } from './EnrolmentProof.ts';

// The node's side of enrolment (sfu/bin/enrol.ts): it makes its key pair itself, so the private key
// never leaves the box; the API only ever sees the public half. Files in the node's DATA_DIR:
//   node-key.pem        the key the node dials its parent with (SFU_NODE_AUTH=key reads it)
//   node-key.prev.pem   the one before a rotation, kept until the new one is activated
//   enrolment.json      what the API answered: node id, unit, parent's cascade URL

export const enrolmentRecordSchema = z.object({
  api: z.string(),
  node_id: z.string(),
  unit_id: z.number().int().positive(),
  name: z.string(),
  signalling_url: z.string(),
  key_fingerprint: z.string(),
  parent: z.object({ node_id: z.string().nullable(), cascade_url: z.string() }).nullable(),
});
export type EnrolmentRecord = z.infer<typeof enrolmentRecordSchema>;

export interface NodeReport {
  parent_connected: boolean;
  children: string[];
  rooms: number;
  peers: number;
  cpu_percent: number;
  load1?: number;
  /** Emptying for an upgrade: the API's routing sends nobody new here. */
  draining?: boolean;
}

const KEY_FILE = 'node-key.pem';
const PREV_KEY_FILE = 'node-key.prev.pem';
const RECORD_FILE = 'enrolment.json';

export class EnrolmentClient {
  readonly #api: string;
  readonly #dir: string;

  /** `api`: the API's base URL (https://city.example:8443); `dataDir`: the node's DATA_DIR. */
  constructor(api: string, dataDir: string) {
    this.#api = api.replace(/\/+$/, '');
    this.#dir = dataDir;
  }

  /** The client of a node already enrolled (its DATA_DIR holds enrolment.json naming the API). */
  static fromDataDir(dataDir: string): EnrolmentClient {
    const record = enrolmentRecordSchema.parse(JSON.parse(fs.readFileSync(path.join(dataDir, RECORD_FILE), 'utf8')));
    return new EnrolmentClient(record.api, dataDir);
  }

  get keyFile(): string {
    return path.join(this.#dir, KEY_FILE);
  }

  /** The key the node dials with now (read from disk each time: rotation swaps the file). */
  currentKey(): KeyObject {
    return crypto.createPrivateKey(fs.readFileSync(this.keyFile, 'utf8'));
  }

  record(): EnrolmentRecord {
    return enrolmentRecordSchema.parse(JSON.parse(fs.readFileSync(path.join(this.#dir, RECORD_FILE), 'utf8')));
  }

  /** Makes a key pair, enrols its public half with the one-time code; the key is written only on success. */
  async enrol(code: string): Promise<EnrolmentRecord> {
    const pair = generateKeyPair();
    const answer = await this.#post('/api/node-enrolment/enrol', { code, public_key: pem(pair.publicKey) });
    const record = enrolmentRecordSchema.parse({ ...(answer as object), api: this.#api });
    fs.mkdirSync(this.#dir, { recursive: true });
    writeAtomic(this.keyFile, pair.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(), 0o600);
    writeAtomic(path.join(this.#dir, 'node-key.pub.pem'), pem(pair.publicKey), 0o644);
    writeAtomic(path.join(this.#dir, RECORD_FILE), JSON.stringify(record, null, 2), 0o644);
    return record;
  }

  /**
   * Registers a new key as pending (proved with the current one), then dials with it: the parent
   * accepts both until activate() retires the old one, so the link never goes without a valid key.
   */
  async rotate(): Promise<void> {
    const current = this.currentKey();
    const { node_id: nodeId } = this.record();
    const pair = generateKeyPair();
    const payload = { public_key: pem(pair.publicKey) };
    await this.#post('/api/node-enrolment/rotate', { proof: signNodeProof(current, nodeId, 'rotate', payload), ...payload });
    writeAtomic(path.join(this.#dir, PREV_KEY_FILE), current.export({ type: 'pkcs8', format: 'pem' }).toString(), 0o600);
    writeAtomic(this.keyFile, pair.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(), 0o600);
    writeAtomic(path.join(this.#dir, 'node-key.pub.pem'), pem(pair.publicKey), 0o644);
  }

  /** Makes the new key the only one (proved with it); the previous key file is removed. */
  async activate(): Promise<void> {
    const { node_id: nodeId } = this.record();
    await this.#post('/api/node-enrolment/activate', { proof: signNodeProof(this.currentKey(), nodeId, 'activate', null) });
    fs.rmSync(path.join(this.#dir, PREV_KEY_FILE), { force: true });
  }

  /** The node's state and load for the operator's console. */
  async report(report: NodeReport): Promise<void> {
    const { node_id: nodeId } = this.record();
    await this.#post('/api/node-enrolment/report', { proof: signNodeProof(this.currentKey(), nodeId, 'report', report), report });
  }

  /** The public keys of this node's enrolled children, as the API holds them now. */
  async childKeys(): Promise<Array<{ node_id: string; keys: string[] }>> {
    const { node_id: nodeId } = this.record();
    const answer = (await this.#post('/api/node-enrolment/child-keys', { proof: signNodeProof(this.currentKey(), nodeId, 'child-keys', null) })) as { children: Array<{ node_id: string; keys: string[] }> };
    return answer.children;
  }

  async #post(route: string, body: unknown): Promise<unknown> {
    const res = await fetch(this.#api + route, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(15_000),
    });
    const text = await res.text();
    let parsed: unknown;
    try {
      parsed = text ? JSON.parse(text) : undefined;
    } catch {
      parsed = undefined;
    }
    if (!res.ok) {
      const err = (parsed as { error?: { code?: string; message?: string } } | undefined)?.error;
      throw new EnrolmentError(res.status, err?.code ?? 'http_error', err?.message ?? `HTTP ${res.status}`);
    }
    return parsed;
  }
}

const pem = (key: KeyObject): string => key.export({ type: 'spki', format: 'pem' }).toString();

function writeAtomic(file: string, data: string, mode: number): void {
  fs.writeFileSync(`${file}.tmp`, data, { mode });
  fs.renameSync(`${file}.tmp`, file);
}
