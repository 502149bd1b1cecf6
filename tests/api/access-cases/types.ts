import type { Pool } from '../../../infra/db/pool.ts';
import type { ObjectStorage } from '../../../infra/storage/ObjectStorage.ts';
import type { Role } from '../../../infra/tokens.ts';

// The per-route access cases of tests/api/route-access.test.ts. Every file in tests/api/access-cases/
// (except types.ts and world.ts) exports `cases: AccessCase[]`; the test loads them all and FAILS
// listing every OpenAPI route (method + path) that has no case.
// For each case the test: builds the request (once), sends it as the OUTSIDER (a user of the same role
// and level in county B) and expects a refusal, then sends it as the ALLOWED user (role + level in
// county A, where the object is) and expects an answer that is not 401/403/404 (nor 5xx).

export type Level = 'county' | 'town' | 'community' | 'village';
export type HttpMethod = 'GET' | 'POST' | 'PATCH' | 'PUT' | 'DELETE';

export interface ApiAnswer {
  status: number;
  /** Parsed JSON, or the text when it is not JSON. */
  body: unknown;
  text: string;
  headers: Headers;
}

export interface Actor {
  role: Role;
  level: Level;
  unitId: number;
  userId: number;
  username: string;
  token: string;
}

/** The standard objects of one county. Everything below sits in the county's first town/community/village. */
export interface County {
  name: 'A' | 'B';
  /** Unit ids: the county and its first town, community (of that town) and village (of that community). */
  units: Record<Level, number>;
  /** A branch of the village with 3 members (the first is the secretary, the branch has no committee). */
  branch: number;
  members: number[];
  /** Service point of the village, a camera of that service point (rtsp://127.0.0.1:9/none, never reached). */
  servicePoint: number;
  camera: number;
  /** A clerk of the village (not signed in): the target of the user routes. */
  user: number;
  /** The county's SFU node (from the demo organisation). */
  sfuNode: number;
  /** A meeting convened by the county leader for the county (scheduled, not started). */
  meeting: number;
  /** A scheduled member_meeting session of the branch (created through POST /api/sessions). */
  session: number;
}

export interface AccessWorld {
  pool: Pool;
  storage: ObjectStorage;
  /** Calls the real server (full web server: every router mounted, as in `npm start`). */
  call(method: string, path: string, opts?: { token?: string; body?: unknown; raw?: string | Uint8Array; contentType?: string }): Promise<ApiAnswer>;
  A: County;
  B: County;
  /** A signed-in user of this role at this level of county A or B (created and signed in on first use, then cached). */
  actor(county: 'A' | 'B', role: Role, level?: Level): Promise<Actor>;
  /** A fresh number for unique names. */
  unique(): number;
}

/** What to send. `path` is the concrete path (ids filled in), with a query string if any. */
export interface AccessRequest {
  path: string;
  body?: unknown;
  raw?: string | Uint8Array;
  contentType?: string;
}

export interface AccessCase {
  method: HttpMethod;
  /** The route exactly as in /api/openapi.json, e.g. '/api/cameras/{id}'. */
  route: string;
  /** Optional label when one route has several cases. */
  title?: string;
  /** Public route (no sign-in): say why; the test then only checks the route exists and skips the outsider/allowed pair. */
  public?: string;
  /** The user of county A who may do it. Level defaults to 'county'. */
  allowed: { role: Role; level?: Level };
  /**
   * Builds the request against county A's objects. May create its own objects (through the API, as a
   * county-A user from w.actor('A', ...), or in SQL). Called once per case; the same request goes to
   * the outsider first and then to the allowed user, so a DELETE/transition still finds its object.
   */
  build(w: AccessWorld): Promise<AccessRequest> | AccessRequest;
  /**
   * The outsider is w.actor('B', allowed.role, allowed.level). Default 'denied': 404 or 403.
   * Routes that answer everyone with a (filtered) list or a summary give a check instead, which must
   * prove county A's objects are absent from the answer.
   */
  outsider?: 'denied' | ((r: ApiAnswer, w: AccessWorld) => void | Promise<void>);
  /** Statuses the allowed user may get; default: any 2xx/3xx/400/409/410/422/429/503 (never 401/403/404/5xx other than 503). */
  allowedStatus?: number[];
  /** More checks of the allowed answer (its effect). */
  check?(r: ApiAnswer, w: AccessWorld): void | Promise<void>;
}

/** Outsider check for list routes: the answer is 200 (or 404) and holds none of these ids in `items`. */
export function listWithout(ids: (w: AccessWorld) => number[], key = 'id') {
  return (r: ApiAnswer, w: AccessWorld): void => {
    if (r.status === 404 || r.status === 403) return;
    if (r.status !== 200) throw new Error(`outsider list: expected 200/403/404, got ${r.status} ${r.text.slice(0, 200)}`);
    const items = (r.body as { items?: Array<Record<string, unknown>> }).items;
    if (!Array.isArray(items)) throw new Error(`outsider list: no items array in ${r.text.slice(0, 200)}`);
    const bad = items.filter((it) => ids(w).includes(Number(it[key])));
    if (bad.length) throw new Error(`outsider list shows county A's objects: ${JSON.stringify(bad).slice(0, 300)}`);
  };
}
