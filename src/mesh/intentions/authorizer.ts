import * as cedar from '@cedar-policy/cedar-wasm/nodejs';
import { BadRequestError } from '../../core/errors.js';
// engine.ts also sets the V8 flag the Cedar Wasm calls need (see docs/architecture.md, Policy): importing it first
// keeps that true for the mesh's decisions.
import {
  ACTION_TYPE, compileDocument, CONNECT, type Decision, HTTP_HEADERS_TYPE, messages, NAMESPACE_TYPE, type PolicyDoc, SERVICE_TYPE, type Statement,
  validateStatements,
} from '../../policy/index.js';
import { uidOf } from './model.js';

/**
 * One connection or request to decide: concrete services `<namespace>/<name>`; method, path and headers only for
 * HTTP. Headers as Node gives them (IncomingHttpHeaders): names are lowercased here in any case, a list is joined
 * with ", " (`cookie` with "; "), undefined values are left out.
 */
export interface MeshRequest {
  source: string;
  destination: string;
  method?: string;
  path?: string;
  headers?: Record<string, string | string[] | undefined>;
}

/** The one headers entity of a request (there is exactly one request per decision). */
const HEADERS_UID = { type: HTTP_HEADERS_TYPE, id: 'request' };

const CACHE_MAX = 50_000;
let instances = 0;

/**
 * A mesh document (raw Cedar under mesh/policies/) as statements `<name>/<@id or position>`. Every statement is
 * restricted to the `connect` action before it is validated, so a mesh document can neither grant nor be checked
 * against API actions; one that could never apply to a connection is refused rather than silently dead.
 */
export function compileMeshPolicy(doc: PolicyDoc): Statement[] {
  const statements = compileDocument(doc, (json) => toConnect(doc.name, json), 'mesh policy');
  const impossible = validateStatements(statements, `mesh policy ${doc.name}`).filter((w) => /impossible/i.test(w.error.message));
  if (impossible.length > 0) {
    throw new BadRequestError(
      `mesh policy ${doc.name}: ${[...new Set(impossible.map((w) => w.policyId))].join(', ')} can never apply to a connection (principal and resource must be ` +
        `Aegis::Service, and the context has only method, path and headers); Cedar: ${messages(impossible.map((w) => w.error))}`,
    );
  }
  return statements;
}

function toConnect(name: string, json: cedar.PolicyJson): cedar.PolicyJson {
  const connect = { type: ACTION_TYPE, id: CONNECT };
  const a = json.action;
  const only = (e: cedar.EntityUidJson) => uidOf(e).type === ACTION_TYPE && uidOf(e).id === CONNECT;
  if (a.op === 'All') return { ...json, action: { op: '==', entity: connect } };
  if (a.op === '==' && 'entity' in a && only(a.entity)) return json;
  if (a.op === 'in' && 'entities' in a && a.entities.length > 0 && a.entities.every(only)) return { ...json, action: { op: '==', entity: connect } };
  if (a.op === 'in' && 'entity' in a && only(a.entity)) return { ...json, action: { op: '==', entity: connect } };
  throw new BadRequestError(`mesh policy ${name}: mesh policies govern only Aegis::Action::"connect"; API actions belong in sys/policies/cedar/`);
}

/**
 * Decides `connect` between services over the mesh policy set (intentions and mesh documents): default deny, and
 * a forbid overrides any permit (Cedar). Decisions are cached per (source, destination, method, path) and the cache
 * is dropped whenever the set is loaded again.
 *
 * Headers: a set in which no statement reads `context.headers` (found at load(), see usesHeaders) is decided
 * without them — its decisions cannot depend on them — and cached as above, so the common case costs what it did.
 * A set that reads them is evaluated for every request that carries headers, uncached: header values are
 * unbounded (ids, tokens, trace ids differ per request), so a cache keyed by them would mostly miss and could be
 * flooded by any caller; keying by only the names a set mentions would need an exact model of every expression.
 */
export class MeshAuthorizer {
  private readonly setId = `aegis-mesh-${++instances}`;
  private cache = new Map<string, Decision>();
  private count = 0;
  private headerAware = false;

  constructor() {
    this.load([]);
  }

  load(statements: readonly Statement[]): void {
    const set: Record<string, cedar.PolicyJson> = {};
    for (const s of statements) set[s.id] = s.json;
    const r = cedar.preparsePolicySet(this.setId, { staticPolicies: set });
    if (r.type !== 'success') throw new Error(`mesh policy set does not load: ${messages(r.errors)}`);
    this.cache = new Map();
    this.count = statements.length;
    this.headerAware = statements.some((s) => usesHeaders(s.json));
  }

  /** Whether a statement of the loaded set reads the request's headers (then requests with headers are not cached). */
  get usesHeaders(): boolean {
    return this.headerAware;
  }

  get statementCount(): number {
    return this.count;
  }

  get cacheSize(): number {
    return this.cache.size;
  }

  decide(req: MeshRequest): Decision {
    if (req.headers !== undefined) {
      if (this.headerAware) return this.evaluate(req);
      const { headers: _ignored, ...rest } = req;
      req = rest;
    }
    const key = `${req.source}\u0000${req.destination}\u0000${req.method ?? '\u0001'}\u0000${req.path ?? '\u0001'}`;
    const hit = this.cache.get(key);
    if (hit) return hit;
    const d = this.evaluate(req);
    if (this.cache.size >= CACHE_MAX) this.cache.delete(this.cache.keys().next().value!);
    this.cache.set(key, d);
    return d;
  }

  private evaluate(req: MeshRequest): Decision {
    const context: Record<string, cedar.CedarValueJson> = {};
    if (req.method !== undefined) context.method = req.method;
    if (req.path !== undefined) context.path = req.path;
    const entities = [serviceEntity(req.source)];
    if (req.destination !== req.source) entities.push(serviceEntity(req.destination));
    if (req.headers !== undefined) {
      context.headers = { __entity: HEADERS_UID };
      entities.push({ uid: HEADERS_UID, attrs: {}, parents: [], tags: headerTags(req.headers) });
    }
    const answer = cedar.statefulIsAuthorized({
      principal: { type: SERVICE_TYPE, id: req.source },
      action: { type: ACTION_TYPE, id: CONNECT },
      resource: { type: SERVICE_TYPE, id: req.destination },
      context,
      preparsedPolicySetId: this.setId,
      entities,
    });
    const http = [req.method, req.path].filter((x) => x !== undefined).join(' ');
    const what = `${http === '' ? 'a connection' : http} from ${req.source} to ${req.destination}`;
    if (answer.type === 'failure') return { allowed: false, rules: [], reason: `denied: policy evaluation failed (${messages(answer.errors)})` };
    const rules = [...answer.response.diagnostics.reason].sort();
    if (answer.response.decision === 'allow') return { allowed: true, rules, reason: `allowed by ${rules.join(', ')}` };
    if (rules.length > 0) return { allowed: false, rules, reason: `denied: ${what} is forbidden by ${rules.join(', ')}` };
    return { allowed: false, rules, reason: `denied: no intention or mesh policy permits ${what} (default deny)` };
  }
}

function serviceEntity(id: string): cedar.EntityJson {
  const slash = id.indexOf('/');
  const namespace = id.slice(0, slash);
  return { uid: { type: SERVICE_TYPE, id }, attrs: { namespace, name: id.slice(slash + 1) }, parents: [{ type: NAMESPACE_TYPE, id: namespace }] };
}

/** The request's headers as tags: lowercase names, lists joined with ", " (`cookie`: "; "), undefined left out. */
export function headerTags(headers: Record<string, string | string[] | undefined>): Record<string, string> {
  const tags: Record<string, string> = {};
  for (const [raw, value] of Object.entries(headers)) {
    if (value === undefined) continue;
    const name = raw.toLowerCase();
    const sep = name === 'cookie' ? '; ' : ', ';
    const joined = Array.isArray(value) ? value.join(sep) : String(value);
    tags[name] = name in tags ? `${tags[name]}${sep}${joined}` : joined;
  }
  return tags;
}

/**
 * Whether a statement may read `context.headers`: an attribute access or `has` test of `headers` on the context,
 * or any other use of the context as a whole (`context == {…}`, which would see the headers too). Conservative: a
 * false positive only turns the cache off for requests with headers.
 */
export function usesHeaders(json: cedar.PolicyJson): boolean {
  return json.conditions.some((c) => reads(c.body));
}

function reads(node: unknown): boolean {
  if (Array.isArray(node)) return node.some(reads);
  if (node === null || typeof node !== 'object') return false;
  const o = node as Record<string, unknown>;
  if (o.Var === 'context') return true; // the context used whole
  for (const op of ['.', 'has']) {
    const access = o[op] as { left?: { Var?: unknown }; attr?: unknown } | undefined;
    if (access && typeof access === 'object' && access.left?.Var === 'context') return access.attr === 'headers';
  }
  return Object.values(o).some(reads);
}
