import { z } from 'zod';
import type { AnyRouteSpec } from './route-registry.ts';

// OpenAPI 3.1 document generated from the same zod schemas that validate requests, so the
// description cannot drift from what the server accepts.

type Json = Record<string, unknown>;

function jsonSchema(schema: z.ZodType): Json {
  return z.toJSONSchema(schema, { io: 'input', unrepresentable: 'any' }) as Json;
}

function parameters(schema: z.ZodType | undefined, where: 'path' | 'query'): Json[] {
  if (!schema) return [];
  const s = jsonSchema(schema);
  const props = (s.properties ?? {}) as Record<string, Json>;
  const required = new Set((s.required as string[] | undefined) ?? []);
  return Object.entries(props).map(([name, p]) => ({ name, in: where, required: where === 'path' || (required.has(name) && p.default === undefined), schema: p }));
}

const errorSchema = {
  type: 'object',
  required: ['error'],
  properties: {
    error: {
      type: 'object',
      required: ['code', 'message'],
      properties: { code: { type: 'string' }, message: { type: 'string', description: '中文 / English' }, details: {} },
    },
  },
};

export function buildOpenApi(specs: readonly AnyRouteSpec[], extraPaths: Record<string, Json> = {}): Json {
  const paths: Record<string, Record<string, Json>> = {};
  for (const spec of specs) {
    const path = '/api' + spec.path.replace(/:([A-Za-z_]+)/g, '{$1}');
    const op: Json = {
      summary: spec.summary,
      tags: [spec.tag],
      parameters: [...parameters(spec.params, 'path'), ...parameters(spec.query, 'query')],
      responses: {
        [String(spec.status ?? 200)]: { description: 'success' },
        '400': { description: 'invalid request', content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } } },
        ...(spec.public ? {} : { '401': { description: 'not signed in' }, '403': { description: 'role may not do this' }, '404': { description: "not found or outside the caller's subtree" } }),
        ...Object.fromEntries(Object.entries(spec.responses ?? {}).map(([k, v]) => [k, { description: v }])),
      },
    };
    if (!spec.public) op.security = [{ bearerAuth: [] }];
    if (spec.roles) op['x-roles'] = spec.roles;
    if (spec.rawBody) {
      op.requestBody = {
        required: true,
        description: spec.rawBody.description,
        content: Object.fromEntries(spec.rawBody.contentTypes.map((t) => [t, { schema: { type: 'string' } }])),
      };
    } else if (spec.body && spec.method !== 'get' && spec.method !== 'delete') {
      op.requestBody = { required: true, content: { 'application/json': { schema: jsonSchema(spec.body) } } };
    }
    (paths[path] ??= {})[spec.method] = op;
  }
  return {
    openapi: '3.1.0',
    info: {
      title: '五级视频会议与远程督导 API / five-level video conferencing and supervision API',
      version: '0.1.0',
      description: "Every object belongs to a unit; callers see and change only their own unit's subtree. Objects outside it answer 404.",
    },
    servers: [{ url: '/' }],
    components: {
      securitySchemes: { bearerAuth: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT' } },
      schemas: { Error: errorSchema },
    },
    paths: { ...paths, ...extraPaths },
  };
}
