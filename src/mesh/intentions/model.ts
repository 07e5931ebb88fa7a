import type * as cedar from '@cedar-policy/cedar-wasm/nodejs';
import { BadRequestError } from '../../core/errors.js';
import { ACTION_TYPE, CONNECT, NAMESPACE_TYPE, SERVICE_TYPE } from '../../policy/index.js';

// Intentions: Consul's friendly surface for service-to-service authorization, stored as records and compiled to
// Cedar statements over the one Aegis schema (principal = source service, action = connect, resource = destination).
// Names are DNS labels, as in the catalog, so an intention names exactly what the catalog can register.

export const DEFAULT_NAMESPACE = 'default';
const LABEL = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;
// RFC 9110 §5.6.2: a method is a token.
export const HTTP_TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const MAX_METHODS = 16;
const MAX_PATH_PREFIX = 1024;
const MAX_DESCRIPTION = 512;
const MAX_HEADERS = 8;
const MAX_HEADER_NAME = 128;
const MAX_HEADER_VALUE = 1024;

export type IntentionAction = 'allow' | 'deny';

/** One side of an intention: a service, every service of a namespace (`ns/*`) or every service (`*`). */
export interface ServiceRef {
  namespace: string | '*';
  name: string | '*';
}

/** One header condition of an intention: the header is there, equals a value or starts with one. */
export type HeaderMatch =
  | { name: string; present: true }
  | { name: string; exact: string }
  | { name: string; prefix: string };

export interface Intention {
  source: string;
  destination: string;
  action: IntentionAction;
  methods?: string[];
  path_prefix?: string;
  headers?: HeaderMatch[];
  description?: string;
  created: string;
  updated: string;
}

export function label(value: unknown, what: string): string {
  if (typeof value !== 'string' || !LABEL.test(value)) {
    throw new BadRequestError(`${what} ${JSON.stringify(value)} is not a valid name: use 1–63 lowercase letters, digits and "-", starting and ending with a letter or digit (a DNS label)`);
  }
  return value;
}

/** `*`, `ns/*`, `ns/name` or `name` (namespace "default"); `wildcard` allows the first two. */
export function parseRef(value: unknown, what: string, wildcard = true): ServiceRef {
  if (typeof value !== 'string' || value === '') throw new BadRequestError(`${what} is required: a service as "namespace/name" or "name"`);
  const parts = value.split('/');
  if (parts.length > 2) throw new BadRequestError(`${what} ${JSON.stringify(value)}: use "namespace/name", "name"${wildcard ? ', "namespace/*" or "*"' : ''}`);
  const [ns, name] = parts.length === 2 ? [parts[0]!, parts[1]!] : value === '*' ? ['*', '*'] : [DEFAULT_NAMESPACE, parts[0]!];
  return refOf(ns, name, what, wildcard);
}

/** A reference from its two path segments. */
export function refOf(ns: unknown, name: unknown, what: string, wildcard = true): ServiceRef {
  const any = ns === '*' || name === '*';
  if (any && !wildcard) throw new BadRequestError(`${what} must be one service, not a wildcard`);
  if (ns === '*') {
    if (name !== '*') throw new BadRequestError(`${what} "*/${String(name)}": a wildcard namespace needs a wildcard name ("*"); name one namespace instead`);
    return { namespace: '*', name: '*' };
  }
  return { namespace: label(ns, `${what} namespace`), name: name === '*' ? '*' : label(name, `${what} name`) };
}

export function refString(r: ServiceRef): string {
  return r.namespace === '*' ? '*' : `${r.namespace}/${r.name}`;
}

export function parseAction(value: unknown): IntentionAction {
  if (value === 'allow' || value === 'deny') return value;
  if (value === undefined || value === null || value === '') throw new BadRequestError('action is required: "allow" or "deny"');
  throw new BadRequestError(`action ${JSON.stringify(value)}: use "allow" or "deny"`);
}

/** HTTP methods, upper-cased and de-duplicated; an empty list means "any" (the field is dropped). */
export function parseMethods(value: unknown): string[] | undefined {
  if (value === undefined || value === null) return undefined;
  const list = typeof value === 'string' ? value.split(',').map((m) => m.trim()).filter((m) => m !== '') : value;
  if (!Array.isArray(list) || !list.every((m) => typeof m === 'string')) throw new BadRequestError('methods must be a list of HTTP methods, e.g. ["GET", "POST"]');
  if (list.length > MAX_METHODS) throw new BadRequestError(`methods: at most ${MAX_METHODS}`);
  for (const m of list as string[]) {
    if (!HTTP_TOKEN.test(m) || m.length > 32) throw new BadRequestError(`method ${JSON.stringify(m)} is not an HTTP method (RFC 9110 token: letters, digits and !#$%&'*+-.^_\`|~)`);
  }
  const out = [...new Set((list as string[]).map((m) => m.toUpperCase()))].sort();
  return out.length === 0 ? undefined : out;
}

export function parsePathPrefix(value: unknown): string | undefined {
  if (value === undefined || value === null || value === '') return undefined;
  if (typeof value !== 'string' || !value.startsWith('/')) throw new BadRequestError(`path_prefix ${JSON.stringify(value)} must start with "/"`);
  if (value.length > MAX_PATH_PREFIX) throw new BadRequestError(`path_prefix is longer than ${MAX_PATH_PREFIX} characters`);
  // Compared with the request path as received: anything a request line cannot carry can never match.
  if (/[\s\u0000-\u001f\u007f]/.test(value)) throw new BadRequestError('path_prefix must not contain spaces or control characters');
  return value;
}

/**
 * Header conditions (Consul's L7 `Header` permissions): a list of at most 8 `{ name, present: true }`,
 * `{ name, exact }` or `{ name, prefix }`; names are RFC 9110 tokens, lowercased (requests' names are compared
 * lowercased); values are compared with the field value as the proxy receives it (a repeated header joined with
 * ", "), so they can hold no control characters and no leading whitespace (HTTP strips it). An empty list is "none".
 */
export function parseHeaders(value: unknown): HeaderMatch[] | undefined {
  if (value === undefined || value === null) return undefined;
  if (!Array.isArray(value)) throw new BadRequestError('headers must be a list of {"name": …, and one of "present": true, "exact": "…", "prefix": "…"}');
  if (value.length > MAX_HEADERS) throw new BadRequestError(`headers: at most ${MAX_HEADERS} conditions`);
  const out = value.map((h: unknown, i): HeaderMatch => {
    const where = `headers[${i}]`;
    if (h === null || typeof h !== 'object' || Array.isArray(h)) throw new BadRequestError(`${where} must be an object {"name": …, and one of "present", "exact", "prefix"}`);
    const o = h as Record<string, unknown>;
    const extra = Object.keys(o).filter((k) => !['name', 'present', 'exact', 'prefix'].includes(k));
    if (extra.length > 0) throw new BadRequestError(`${where}: unknown field ${JSON.stringify(extra[0])} (use name and one of present, exact, prefix)`);
    if (typeof o.name !== 'string' || !HTTP_TOKEN.test(o.name) || o.name.length > MAX_HEADER_NAME) {
      throw new BadRequestError(`${where}: header name ${JSON.stringify(o.name)} is not a header name (RFC 9110 token of at most ${MAX_HEADER_NAME} letters, digits and !#$%&'*+-.^_\`|~)`);
    }
    const name = o.name.toLowerCase();
    const kinds = (['present', 'exact', 'prefix'] as const).filter((k) => o[k] !== undefined && o[k] !== null);
    if (kinds.length !== 1) {
      throw new BadRequestError(`${where} (${name}): give exactly one of present, exact or prefix${kinds.length > 1 ? `, not ${kinds.join(' and ')}` : ''}`);
    }
    const kind = kinds[0]!;
    if (kind === 'present') {
      if (o.present !== true) throw new BadRequestError(`${where} (${name}): present must be true (to require that a header is absent, write a mesh policy)`);
      return { name, present: true };
    }
    const v = o[kind];
    if (typeof v !== 'string') throw new BadRequestError(`${where} (${name}): ${kind} must be a string`);
    if (v.length > MAX_HEADER_VALUE) throw new BadRequestError(`${where} (${name}): ${kind} is longer than ${MAX_HEADER_VALUE} characters`);
    if (/[\u0000-\u001f\u007f]/.test(v)) throw new BadRequestError(`${where} (${name}): ${kind} must not contain control characters`);
    if (/^[ ]/.test(v) || (kind === 'exact' && /[ ]$/.test(v))) {
      throw new BadRequestError(`${where} (${name}): ${kind} must not ${kind === 'exact' ? 'start or end' : 'start'} with a space (HTTP strips it from header values, so it could never match)`);
    }
    if (kind === 'prefix') {
      if (v === '') throw new BadRequestError(`${where} (${name}): an empty prefix matches any value; use present: true`);
      return { name, prefix: v };
    }
    return { name, exact: v };
  });
  return out.length === 0 ? undefined : out;
}

export function parseDescription(value: unknown): string | undefined {
  if (value === undefined || value === null || value === '') return undefined;
  if (typeof value !== 'string' || value.length > MAX_DESCRIPTION) throw new BadRequestError(`description must be text of at most ${MAX_DESCRIPTION} characters`);
  return value;
}

/** The storage key below `intentions/` (labels have no dots, so the dots separate unambiguously). */
export function intentionKey(source: ServiceRef, destination: ServiceRef): string {
  return [source.namespace, source.name, destination.namespace, destination.name].join('.');
}

/** The rule ID decisions name: `intention:<source>-><destination>`. */
export function intentionRuleId(i: Pick<Intention, 'source' | 'destination'>): string {
  return `intention:${i.source}->${i.destination}`;
}

function scope(r: ServiceRef): cedar.PrincipalConstraint {
  if (r.namespace === '*') return { op: 'is', entity_type: SERVICE_TYPE };
  if (r.name === '*') return { op: 'is', entity_type: SERVICE_TYPE, in: { entity: { type: NAMESPACE_TYPE, id: r.namespace } } };
  return { op: '==', entity: { type: SERVICE_TYPE, id: `${r.namespace}/${r.name}` } };
}

const ctx = (attr: string): cedar.Expr => ({ '.': { left: { Var: 'context' }, attr } });
const has = (attr: string): cedar.Expr => ({ has: { left: { Var: 'context' }, attr } });
const and = (left: cedar.Expr, right: cedar.Expr): cedar.Expr => ({ '&&': { left, right } });

/** `context has headers && context.headers.hasTag(name) [&& the value condition]`. */
function headerCondition(h: HeaderMatch): cedar.Expr {
  const name: cedar.Expr = { Value: h.name };
  const guard = and(has('headers'), { hasTag: { left: ctx('headers'), right: name } });
  const tag: cedar.Expr = { getTag: { left: ctx('headers'), right: name } };
  if ('exact' in h) return and(guard, { '==': { left: tag, right: { Value: h.exact } } });
  if ('prefix' in h) return and(guard, { like: { left: tag, pattern: [{ Literal: h.prefix }, 'Wildcard'] } });
  return guard;
}

/**
 * The intention as one Cedar statement: permit (allow) or forbid (deny) of `connect` from source to destination,
 * with `when` conditions on the request's method, path and headers when given (all must hold). An HTTP-scoped
 * intention never applies to a plain TCP connection (the context has no method, path or headers), so an L7 allow
 * does not open L4 access — and an L7 deny does not close it.
 */
export function intentionStatement(i: Intention): { id: string; json: cedar.PolicyJson } {
  const conditions: cedar.Clause[] = [];
  if (i.methods) {
    const set: cedar.Expr = { Set: i.methods.map((m) => ({ Value: m })) };
    conditions.push({ kind: 'when', body: { '&&': { left: has('method'), right: { contains: { left: set, right: ctx('method') } } } } });
  }
  if (i.path_prefix) {
    conditions.push({ kind: 'when', body: { '&&': { left: has('path'), right: { like: { left: ctx('path'), pattern: [{ Literal: i.path_prefix }, 'Wildcard'] } } } } });
  }
  for (const h of i.headers ?? []) conditions.push({ kind: 'when', body: headerCondition(h) });
  const id = intentionRuleId(i);
  return {
    id,
    json: {
      effect: i.action === 'allow' ? 'permit' : 'forbid',
      principal: scope(parseRef(i.source, 'source')),
      action: { op: '==', entity: { type: ACTION_TYPE, id: CONNECT } },
      resource: scope(parseRef(i.destination, 'destination')),
      conditions,
      annotations: { id },
    },
  };
}

/** An entity reference in either of Cedar's JSON spellings, as `{type, id}`. */
export function uidOf(e: cedar.EntityUidJson): { type: string; id: string } {
  return '__entity' in e ? e.__entity : e;
}
