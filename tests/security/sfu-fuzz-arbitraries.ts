// Seeded message generators for the protocol fuzz pass, derived from the zod schemas themselves
// (zod -> JSON Schema -> fast-check arbitrary), so a new request type or field is fuzzed without
// anyone writing a generator for it. Three families: valid-shaped, mutated (one valid message with
// one part broken) and garbage (not JSON, JSON of any shape, binary).
import fc from 'fast-check';
import { z } from 'zod';

type JsonSchema = {
  type?: string | string[];
  const?: unknown;
  enum?: unknown[];
  anyOf?: JsonSchema[];
  oneOf?: JsonSchema[];
  properties?: Record<string, JsonSchema>;
  required?: string[];
  additionalProperties?: JsonSchema | boolean;
  propertyNames?: JsonSchema;
  items?: JsonSchema;
  minItems?: number;
  maxItems?: number;
  minLength?: number;
  maxLength?: number;
  pattern?: string;
  format?: string;
  minimum?: number;
  maximum?: number;
  exclusiveMinimum?: number;
  exclusiveMaximum?: number;
  default?: unknown;
};

/** Strings mostly short (a few long ones, up to the schema's bound, test the limits). */
function stringArb(s: JsonSchema): fc.Arbitrary<string> {
  if (s.format === 'uuid') return fc.uuid();
  if (s.format === 'ipv4') return fc.ipV4();
  if (s.format === 'ipv6') return fc.ipV6();
  if (s.pattern) return fc.stringMatching(new RegExp(s.pattern));
  const min = s.minLength ?? 0;
  const max = s.maxLength ?? 10_000;
  return fc.oneof(
    { weight: 8, arbitrary: fc.string({ minLength: min, maxLength: Math.max(min, Math.min(max, 24)), unit: 'grapheme' }) },
    { weight: 1, arbitrary: fc.string({ minLength: min, maxLength: max, size: 'max' }) },
  );
}

function numberArb(s: JsonSchema, integer: boolean): fc.Arbitrary<number> {
  const lo = s.minimum ?? (s.exclusiveMinimum !== undefined ? s.exclusiveMinimum + (integer ? 1 : Number.EPSILON) : undefined);
  const hi = s.maximum ?? (s.exclusiveMaximum !== undefined ? s.exclusiveMaximum - (integer ? 1 : Number.EPSILON) : undefined);
  if (integer) return fc.integer({ min: Math.max(lo ?? -(2 ** 40), Number.MIN_SAFE_INTEGER), max: Math.min(hi ?? 2 ** 40, Number.MAX_SAFE_INTEGER) });
  return fc.double({ noNaN: true, noDefaultInfinity: true, ...(lo !== undefined ? { min: lo } : {}), ...(hi !== undefined ? { max: hi } : {}) });
}

/** A fast-check arbitrary producing values the JSON Schema accepts (refinements aside). */
export function fromJsonSchema(s: JsonSchema, depth = 0): fc.Arbitrary<unknown> {
  if (s.const !== undefined) return fc.constant(s.const);
  if (s.enum) return fc.constantFrom(...s.enum);
  const alts = s.anyOf ?? s.oneOf;
  if (alts) return fc.oneof(...alts.map((a) => fromJsonSchema(a, depth + 1)));
  const type = Array.isArray(s.type) ? s.type : s.type ? [s.type] : [];
  if (type.length > 1) return fc.oneof(...type.map((t) => fromJsonSchema({ ...s, type: t }, depth + 1)));
  switch (type[0]) {
    case 'string':
      return stringArb(s);
    case 'integer':
      return numberArb(s, true);
    case 'number':
      return numberArb(s, false);
    case 'boolean':
      return fc.boolean();
    case 'null':
      return fc.constant(null);
    case 'array': {
      const min = s.minItems ?? 0;
      return fc.array(s.items ? fromJsonSchema(s.items, depth + 1) : fc.jsonValue({ maxDepth: 1 }), { minLength: min, maxLength: Math.max(min, Math.min(s.maxItems ?? 4, depth > 3 ? 1 : 4)) });
    }
    case 'object': {
      if (s.properties) {
        const model: Record<string, fc.Arbitrary<unknown>> = {};
        for (const [k, v] of Object.entries(s.properties)) model[k] = fromJsonSchema(v, depth + 1);
        return fc.record(model, { requiredKeys: s.required ?? [] });
      }
      if (s.additionalProperties && typeof s.additionalProperties === 'object') {
        const keys = s.propertyNames ? (stringArb(s.propertyNames) as fc.Arbitrary<string>) : fc.string({ maxLength: 8 });
        return fc.dictionary(keys, fromJsonSchema(s.additionalProperties, depth + 1), { maxKeys: 4 });
      }
      return fc.object({ maxDepth: 1 });
    }
    default:
      return fc.jsonValue({ maxDepth: 2 });
  }
}

export function validShaped(schema: z.ZodType): fc.Arbitrary<unknown> {
  return fromJsonSchema(z.toJSONSchema(schema, { io: 'input', unrepresentable: 'any' }) as JsonSchema);
}

type Op = 'replace' | 'delete' | 'wrongType' | 'huge' | 'deep' | 'extra' | 'negative' | 'nullify';

/** Paths to every node of a JSON value. */
function paths(v: unknown, at: Array<string | number> = [], out: Array<Array<string | number>> = []): Array<Array<string | number>> {
  out.push(at);
  if (Array.isArray(v)) v.forEach((x, i) => paths(x, [...at, i], out));
  else if (v && typeof v === 'object') for (const [k, x] of Object.entries(v)) paths(x, [...at, k], out);
  return out;
}

function mutate(value: unknown, pick: number, op: Op, junk: unknown): unknown {
  const copy = structuredClone(value) as Record<string | number, unknown>;
  const all = paths(copy);
  const path = all[pick % all.length]!;
  const replacement = (() => {
    switch (op) {
      case 'replace':
        return junk;
      case 'wrongType':
        return [42, 'str', true, [], {}, null][pick % 6];
      case 'huge':
        return 'x'.repeat([300, 5000, 70_000][pick % 3]!);
      case 'deep': {
        let d: unknown = 1;
        for (let i = 0; i < 500; i++) d = [d];
        return d;
      }
      case 'negative':
        return [-1, 1e308, -0, 2 ** 53 + 2, 0.5][pick % 5];
      case 'nullify':
        return null;
      default:
        return undefined;
    }
  })();
  if (path.length === 0) return op === 'delete' ? undefined : replacement;
  let parent: Record<string | number, unknown> = copy;
  for (const k of path.slice(0, -1)) parent = parent[k] as Record<string | number, unknown>;
  const last = path[path.length - 1]!;
  if (op === 'delete') delete parent[last];
  else if (op === 'extra' && parent && typeof parent === 'object' && !Array.isArray(parent)) parent[`__${String(last)}`] = junk;
  else parent[last] = replacement;
  return copy;
}

/** One valid-shaped message with one node replaced, removed, retyped, blown up or nested deep. */
export function mutated(valid: fc.Arbitrary<unknown>): fc.Arbitrary<unknown> {
  const ops: Op[] = ['replace', 'delete', 'wrongType', 'huge', 'deep', 'extra', 'negative', 'nullify'];
  return fc.tuple(valid, fc.nat(), fc.constantFrom(...ops), fc.jsonValue({ maxDepth: 2 })).map(([v, pick, op, junk]) => mutate(v, pick, op, junk));
}

/** What goes on the wire: a text frame (JSON or not) or a binary frame. */
export type Frame = { kind: 'text'; text: string; family: 'valid' | 'mutated' | 'garbage' } | { kind: 'binary'; bytes: Uint8Array; family: 'garbage' };

export function frames(schema: z.ZodType, rewriteValid: (v: unknown) => unknown = (v) => v): fc.Arbitrary<Frame> {
  const valid = validShaped(schema);
  return fc.oneof(
    { weight: 4, arbitrary: valid.map((v): Frame => ({ kind: 'text', text: JSON.stringify(rewriteValid(v)), family: 'valid' })) },
    { weight: 5, arbitrary: mutated(valid).map((v): Frame => ({ kind: 'text', text: JSON.stringify(v) ?? 'undefined', family: 'mutated' })) },
    {
      weight: 2,
      arbitrary: fc.oneof(
        fc.string({ maxLength: 200 }).map((text): Frame => ({ kind: 'text', text, family: 'garbage' })),
        fc.jsonValue({ maxDepth: 4 }).map((v): Frame => ({ kind: 'text', text: JSON.stringify(v), family: 'garbage' })),
        fc.uint8Array({ maxLength: 300 }).map((bytes): Frame => ({ kind: 'binary', bytes, family: 'garbage' })),
      ),
    },
  );
}
