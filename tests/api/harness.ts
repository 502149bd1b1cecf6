import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import { createApiApp, type ApiDeps } from '../../web/api/app.ts';
import { createTestDatabase, type TestDatabase } from '../support/database.ts';
import { SfuNodeHosts } from '../../infra/sfu-node-hosts.ts';

// A real API on a free port over a fresh, migrated PostgreSQL database, called with fetch.

export const TEST_SECRET = 'test-secret-test-secret-test-secret-0123';

export interface ApiResponse {
  status: number;
  body: unknown;
  text: string;
}

export interface Harness {
  db: TestDatabase;
  base: string;
  call(method: string, path: string, opts?: { token?: string; body?: unknown; raw?: string; contentType?: string }): Promise<ApiResponse>;
  login(username: string, password: string): Promise<string>;
  close(): Promise<void>;
}

export async function startHarness(overrides: Partial<ApiDeps> = {}, db?: TestDatabase): Promise<Harness> {
  const database = db ?? (await createTestDatabase());
  const app = createApiApp({ pool: database.pool, tokenSecret: TEST_SECRET, sfuNodeHosts: new SfuNodeHosts('loopback,*.example'), ...overrides });
  const server: Server = await new Promise((resolve) => {
    const s = app.listen(0, '127.0.0.1', () => resolve(s));
  });
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const call: Harness['call'] = async (method, path, opts = {}) => {
    const headers: Record<string, string> = {};
    if (opts.token) headers.authorization = `Bearer ${opts.token}`;
    let body: string | undefined;
    if (opts.raw !== undefined) {
      body = opts.raw;
      headers['content-type'] = opts.contentType ?? 'text/csv';
    } else if (opts.body !== undefined) {
      body = JSON.stringify(opts.body);
      headers['content-type'] = 'application/json';
    }
    const res = await fetch(base + path, { method, headers, body });
    const text = await res.text();
    let parsed: unknown = undefined;
    try {
      parsed = text ? JSON.parse(text) : undefined;
    } catch {
      parsed = text;
    }
    return { status: res.status, body: parsed, text };
  };
  return {
    db: database,
    base,
    call,
    async login(username, password) {
      const r = await call('POST', '/api/auth/login', { body: { username, password } });
      if (r.status !== 200) throw new Error(`login ${username} failed: ${r.status} ${r.text}`);
      return (r.body as { token: string }).token;
    },
    async close() {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeAllConnections();
      await closed;
      await database.drop();
    },
  };
}
