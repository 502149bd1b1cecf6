import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import type { z } from 'zod';

// One configuration file per host (CONFIG_FILE, e.g. /etc/grassroots-av/sfu.env): KEY=VALUE lines in
// the subset of systemd's EnvironmentFile syntax that both read the same way (comments, optional
// quotes, no `export`, no line continuations). Values set in the process environment win over the
// file's, so an operator can override one key for one run. A key ending in _FILE names a file whose
// content (trailing newline removed) is the value of the key without the suffix: secrets stay in
// root-only files (or systemd credentials) instead of the configuration file.

/** Keys a host file may set besides those of the role's schema (runtime and deploy keys). */
const ALWAYS_KNOWN = ['HEALTH_PORT', 'HEALTH_HOST', 'RECORDER_CONFIG'];
/** Read by Node or the logger before any file is: they belong in the unit's environment. */
const PROCESS_ONLY = new Set(['NODE_ENV', 'LOG_LEVEL', 'NODE_EXTRA_CA_CERTS', 'NODE_OPTIONS']);

export class HostConfigError extends Error {}

export interface HostFileEntry {
  key: string;
  value: string;
  line: number;
}

/** Parses a host file; a malformed line is an error naming the file and line. */
export function parseHostFile(text: string, file: string): HostFileEntry[] {
  const out: HostFileEntry[] = [];
  const seen = new Map<string, number>();
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#') || line.startsWith(';')) return;
    const m = /^([A-Z][A-Z0-9_]*)=(.*)$/.exec(line);
    if (!m) throw new HostConfigError(`${file}:${i + 1}: expected KEY=VALUE with an upper-case KEY, got "${line.slice(0, 60)}"`);
    const key = m[1]!;
    let value = m[2]!;
    const q = value[0];
    if ((q === '"' || q === "'") && value.length >= 2 && value.endsWith(q)) value = value.slice(1, -1);
    else if (q === '"' || q === "'") throw new HostConfigError(`${file}:${i + 1}: ${key}: unterminated quote`);
    const prev = seen.get(key);
    if (prev !== undefined) throw new HostConfigError(`${file}:${i + 1}: ${key}: set twice (first on line ${prev})`);
    seen.set(key, i + 1);
    out.push({ key, value, line: i + 1 });
  });
  return out;
}

function distance(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array<number>(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) d[0]![j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      d[i]![j] = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
  }
  return d[a.length]![b.length]!;
}

/**
 * The environment with CONFIG_FILE's settings beneath it (none: `env` unchanged). Unknown keys are
 * refused (a misspelt key would otherwise silently fall back to its default), as are *_FILE secrets
 * that cannot be read.
 */
export function withHostConfigFile(env: NodeJS.ProcessEnv, knownKeys: readonly string[]): NodeJS.ProcessEnv {
  const file = env.CONFIG_FILE;
  if (!file) return env;
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw new HostConfigError(`CONFIG_FILE: cannot read ${file}: ${(err as Error).message}`);
  }
  const known = new Set([...knownKeys, ...ALWAYS_KNOWN]);
  const merged: NodeJS.ProcessEnv = {};
  for (const { key, value, line } of parseHostFile(text, file)) {
    // A known key ending in _FILE is a path setting itself (TLS_CERT_FILE); otherwise KEY_FILE holds KEY's value.
    const target = key.endsWith('_FILE') && !known.has(key) ? key.slice(0, -5) : key;
    if (PROCESS_ONLY.has(target)) throw new HostConfigError(`${file}:${line}: ${key}: read when the process starts, before this file: set it in the unit (systemctl edit grassroots-av-<role>: [Service] Environment=${target}=...)`);
    if (!known.has(target)) {
      const near = [...known].filter((k) => distance(k, target) <= 2);
      throw new HostConfigError(`${file}:${line}: ${key}: unknown setting${near.length ? ` (did you mean ${near.join(' or ')}?)` : ''}`);
    }
    if (target !== key) {
      const secretPath = path.resolve(path.dirname(file), value);
      try {
        merged[target] = fs.readFileSync(secretPath, 'utf8').replace(/\r?\n$/, '');
      } catch (err) {
        throw new HostConfigError(`${file}:${line}: ${key}: cannot read ${secretPath}: ${(err as Error).message}`);
      }
    } else {
      merged[key] = value;
    }
  }
  checkExternalServices({ ...merged, ...(env.NODE_EXTRA_CA_CERTS ? { NODE_EXTRA_CA_CERTS: env.NODE_EXTRA_CA_CERTS } : {}) }, file);
  return { ...merged, ...env };
}

const LOOPBACK_HOSTS = new Set(['localhost', '127.0.0.1', '::1', '[::1]']);

/**
 * What a deployment across hosts must say explicitly about its external PostgreSQL: a server beyond
 * loopback needs `sslmode` in DATABASE_URL (verify-full with sslrootcert for the organisation's CA,
 * or disable on a closed network, as a decision and not by omission); named certificate files must exist.
 */
export function checkExternalServices(values: NodeJS.ProcessEnv, file: string): void {
  const dbUrl = values.DATABASE_URL;
  if (dbUrl !== undefined) {
    let u: URL;
    try {
      u = new URL(dbUrl);
    } catch {
      throw new HostConfigError(`${file}: DATABASE_URL: not a URL (postgres://user@host:5432/db?sslmode=verify-full)`);
    }
    if (u.protocol !== 'postgres:' && u.protocol !== 'postgresql:') throw new HostConfigError(`${file}: DATABASE_URL: must start with postgres:// or postgresql://`);
    const mode = u.searchParams.get('sslmode');
    const host = u.hostname.toLowerCase();
    const local = LOOPBACK_HOSTS.has(host) || (net.isIP(host) === 4 && host.startsWith('127.')) || host.startsWith('/');
    if (!local && mode === null) throw new HostConfigError(`${file}: DATABASE_URL: a server beyond loopback needs sslmode=verify-full (with sslrootcert=<CA file>) or, on a closed network, sslmode=disable`);
    if (mode !== null && !['disable', 'require', 'verify-ca', 'verify-full', 'no-verify', 'prefer'].includes(mode)) throw new HostConfigError(`${file}: DATABASE_URL: sslmode=${mode} is not one of disable, require, verify-ca, verify-full`);
    for (const p of ['sslrootcert', 'sslcert', 'sslkey']) {
      const f = u.searchParams.get(p);
      if (f && !fs.existsSync(f)) throw new HostConfigError(`${file}: DATABASE_URL: ${p} ${f} does not exist`);
    }
  }
  const ca = values.NODE_EXTRA_CA_CERTS;
  if (ca && !fs.existsSync(ca)) throw new HostConfigError(`${file}: NODE_EXTRA_CA_CERTS: ${ca} does not exist`);
}

/**
 * Parses a role's settings (its own zod schema) from the environment and its host file; a wrong value
 * is an error naming the key and the file it came from.
 */
export function parseRoleSettings<S extends z.ZodObject>(schema: S, env: NodeJS.ProcessEnv, extraKeys: readonly string[] = []): z.infer<S> {
  const merged = withHostConfigFile(env, [...Object.keys(schema.shape), ...extraKeys]);
  const parsed = schema.safeParse(merged);
  if (parsed.success) return parsed.data;
  const from = env.CONFIG_FILE ? ` (from ${env.CONFIG_FILE} or the environment)` : '';
  const lines = parsed.error.issues.map((i) => `  ${i.path.join('.')}: ${i.message}`);
  throw new HostConfigError(`invalid configuration${from}:\n${lines.join('\n')}`);
}
