import { parseDuration } from './duration.js';
import { BadRequestError } from './errors.js';

// Typed request fields, declared once per route (Vault's framework.FieldSchema): validation, coercion of query
// strings, defaults and help all come from the declaration.
export type FieldType = 'string' | 'int' | 'bool' | 'duration' | 'strings' | 'map' | 'any' | 'ints';

export interface FieldSpec {
  type: FieldType;
  description: string;
  required?: boolean;
  default?: unknown;
  /** Largest accepted length (strings, lists) or value (ints). */
  max?: number;
  min?: number;
}

export type FieldSpecs = Record<string, FieldSpec>;

export function parseFields(specs: FieldSpecs, data: Record<string, unknown>): { fields: Record<string, unknown>; unknown: string[] } {
  const fields: Record<string, unknown> = {};
  for (const [name, spec] of Object.entries(specs)) {
    const raw = data[name];
    if (raw === undefined || raw === null) {
      if (spec.required) throw new BadRequestError(`missing required field "${name}": ${spec.description}`);
      if (spec.default !== undefined) fields[name] = structuredClone(spec.default);
      continue;
    }
    fields[name] = coerce(name, spec, raw);
  }
  const unknown = Object.keys(data).filter((k) => !(k in specs));
  return { fields, unknown };
}

function coerce(name: string, spec: FieldSpec, raw: unknown): unknown {
  const bad = (want: string) => new BadRequestError(`field "${name}": expected ${want}, got ${describe(raw)}`);
  switch (spec.type) {
    case 'string': {
      if (typeof raw !== 'string' && typeof raw !== 'number' && typeof raw !== 'boolean') throw bad('a string');
      const s = String(raw);
      if (spec.max !== undefined && s.length > spec.max) throw new BadRequestError(`field "${name}": longer than ${spec.max} characters`);
      return s;
    }
    case 'int': {
      const n = typeof raw === 'string' && /^-?\d+$/.test(raw.trim()) ? Number(raw) : raw;
      if (typeof n !== 'number' || !Number.isSafeInteger(n)) throw bad('a whole number');
      if (spec.min !== undefined && n < spec.min) throw new BadRequestError(`field "${name}": must be at least ${spec.min}`);
      if (spec.max !== undefined && n > spec.max) throw new BadRequestError(`field "${name}": must be at most ${spec.max}`);
      return n;
    }
    case 'bool': {
      if (typeof raw === 'boolean') return raw;
      if (raw === 'true' || raw === '1' || raw === 1) return true;
      if (raw === 'false' || raw === '0' || raw === 0 || raw === '') return false;
      throw bad('true or false');
    }
    case 'duration':
      return parseDuration(raw, `field "${name}"`);
    case 'strings': {
      const list = typeof raw === 'string' ? raw.split(',').map((s) => s.trim()).filter((s) => s !== '') : raw;
      if (!Array.isArray(list) || !list.every((s) => typeof s === 'string')) throw bad('a list of strings or a comma-separated string');
      if (spec.max !== undefined && list.length > spec.max) throw new BadRequestError(`field "${name}": more than ${spec.max} entries`);
      return list;
    }
    case 'ints': {
      const list = typeof raw === 'string' ? raw.split(',').map((s) => Number(s.trim())) : Array.isArray(raw) ? raw.map((v) => (typeof v === 'string' ? Number(v) : v)) : [raw];
      if (!list.every((v) => typeof v === 'number' && Number.isSafeInteger(v))) throw bad('a list of whole numbers');
      if (spec.max !== undefined && list.length > spec.max) throw new BadRequestError(`field "${name}": more than ${spec.max} entries`);
      return list;
    }
    case 'map':
      if (typeof raw !== 'object' || Array.isArray(raw)) throw bad('an object');
      return raw;
    case 'any':
      return raw;
  }
}

function describe(v: unknown): string {
  if (Array.isArray(v)) return 'a list';
  if (v === null) return 'null';
  return typeof v === 'string' ? `"${v.length > 40 ? v.slice(0, 40) + '…' : v}"` : typeof v;
}
