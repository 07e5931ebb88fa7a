import { isIP } from 'node:net';
import { setFlagsFromString } from 'node:v8';
import * as cedar from '@cedar-policy/cedar-wasm/nodejs';
// V8 11.3 (Node 20) aborts the process ("Fatal error: unreachable code" in Deoptimizer::DoComputeBuiltinContinuation)
// when a function whose JS->Wasm call wrapper TurboFan inlined is lazily deoptimized during the Cedar call: it
// happened after ~20,000 uncached decisions. Not inlining those wrappers avoids the bad path. The flag only has to
// be set before a caller of the Wasm module is optimized, which this module's evaluation always precedes.
// test/policy/engine-stability.test.ts fails without it.
setFlagsFromString('--no-turbo-inline-js-wasm-calls');
import type { Action } from '../core/request.js';
import { BadRequestError } from '../core/errors.js';
import { API_SCHEMA } from './schema.js';

export interface PolicyDoc {
  name: string;
  text: string;
}

/** Who is asking, as the policy engine sees it. */
export interface Principal {
  accessor: string;
  displayName: string;
  policies: readonly string[];
  meta: Readonly<Record<string, string>>;
  orphan: boolean;
  entityId: string;
}

export interface Decision {
  allowed: boolean;
  /** Rule IDs (`policy/rule`) that determined the decision: permits when allowed, forbids when denied by one. */
  rules: string[];
  /** One line for the client and the audit log. */
  reason: string;
}

/** One Cedar statement of a document, with its stable ID `<document>/<@id or position>`. */
export interface Statement {
  id: string;
  json: cedar.PolicyJson;
}

let instances = 0;
const SCHEMA_ID = 'aegis-api-schema';
let schemaReady = false;

function ensureSchema(): void {
  if (schemaReady) return;
  const r = cedar.preparseSchema(SCHEMA_ID, API_SCHEMA);
  if (r.type !== 'success') throw new Error(`the Aegis Cedar schema does not parse: ${r.errors.map((e) => e.message).join('; ')}`);
  schemaReady = true;
}

const CACHE_MAX = 50_000;

/**
 * Cedar over the Aegis schema. Each stored policy document is split into statements and scoped to the tokens
 * that carry it (`principal in Aegis::Policy::"<name>"` is added to every statement), so a token is governed
 * exactly by the documents named in its policies, as in Vault. One pre-parsed policy set serves every decision;
 * decisions are cached per (principal, action, path, client) and the cache is dropped on any policy change.
 */
export class PolicyEngine {
  private readonly setId = `aegis-api-${++instances}`;
  private cache = new Map<string, Decision>();
  private loaded = false;
  private count = 0;

  constructor() {
    ensureSchema();
  }

  /**
   * Parses one document and validates it, as scoped to its tokens, against the schema; throws BadRequestError
   * carrying Cedar's messages.
   */
  static compile(doc: PolicyDoc): Statement[] {
    return compileDocument(doc, (json) => scopeTo(doc.name, json));
  }

  /** Replaces the whole policy set (documents already validated by `compile`). */
  load(docs: readonly PolicyDoc[]): void {
    const statements: Record<string, cedar.PolicyJson> = {};
    for (const doc of docs) for (const s of PolicyEngine.compile(doc)) statements[s.id] = s.json;
    const r = cedar.preparsePolicySet(this.setId, { staticPolicies: statements });
    if (r.type !== 'success') throw new Error(`policy set does not load: ${messages(r.errors)}`);
    this.cache = new Map();
    this.loaded = true;
    this.count = Object.keys(statements).length;
  }

  get statementCount(): number {
    return this.count;
  }

  decide(principal: Principal, action: Action, path: string, clientIp: string): Decision {
    if (!this.loaded) return { allowed: false, rules: [], reason: 'permission denied: no policies are loaded' };
    const key = `${principal.accessor}\u0000${action}\u0000${path}\u0000${clientIp}`;
    const hit = this.cache.get(key);
    if (hit) return hit;
    const decision = this.evaluate(principal, action, path, clientIp);
    if (this.cache.size >= CACHE_MAX) this.cache.delete(this.cache.keys().next().value!);
    this.cache.set(key, decision);
    return decision;
  }

  private evaluate(principal: Principal, action: Action, path: string, clientIp: string): Decision {
    const answer = cedar.statefulIsAuthorized({
      principal: { type: 'Aegis::Token', id: principal.accessor },
      action: { type: 'Aegis::Action', id: action },
      resource: { type: 'Aegis::Path', id: path },
      context: { client_ip: { __extn: { fn: 'ip', arg: normaliseIp(clientIp) } } },
      preparsedPolicySetId: this.setId,
      entities: [principalEntity(principal), pathEntity(path)],
    });
    if (answer.type === 'failure') {
      return { allowed: false, rules: [], reason: `permission denied: policy evaluation failed (${messages(answer.errors)})` };
    }
    const { decision, diagnostics } = answer.response;
    const rules = [...diagnostics.reason].sort();
    if (decision === 'allow') return { allowed: true, rules, reason: `allowed by ${rules.join(', ')}` };
    if (rules.length > 0) return { allowed: false, rules, reason: `permission denied: ${action} on ${path} is forbidden by ${rules.join(', ')}` };
    const held = principal.policies.length > 0 ? principal.policies.join(', ') : 'none';
    return { allowed: false, rules, reason: `permission denied: no policy of this token (${held}) permits ${action} on ${path}` };
  }
}

/**
 * Splits a document into statements, rewrites each with `scope` (what the engine will really evaluate) and validates
 * the rewritten statements strictly against the Aegis schema, so what is checked is what runs. `what` names the kind
 * of document in error messages.
 */
export function compileDocument(doc: PolicyDoc, scope: (json: cedar.PolicyJson) => cedar.PolicyJson, what = 'policy'): Statement[] {
  ensureSchema();
  const parts = cedar.policySetTextToParts(doc.text);
  if (parts.type === 'failure') throw new BadRequestError(`${what} ${doc.name} does not parse: ${messages(parts.errors)}`);
  if (parts.policy_templates.length > 0) throw new BadRequestError(`${what} ${doc.name}: templates are not supported; write static policies`);
  if (parts.policies.length === 0) throw new BadRequestError(`${what} ${doc.name} is empty: write at least one permit or forbid statement`);
  const seen = new Set<string>();
  const statements = parts.policies.map((text, i) => {
    const j = cedar.policyToJson(text);
    if (j.type === 'failure') throw new BadRequestError(`${what} ${doc.name} does not parse: ${messages(j.errors)}`);
    const rule = j.json.annotations?.id ?? String(i + 1);
    if (seen.has(rule)) throw new BadRequestError(`${what} ${doc.name}: two statements share @id("${rule}")`);
    seen.add(rule);
    return { id: `${doc.name}/${rule}`, json: scope(j.json) };
  });
  validateStatements(statements, `${what} ${doc.name}`);
  return statements;
}

/**
 * Strict validation of statements against the Aegis schema; throws BadRequestError naming `what`. Returns Cedar's
 * warnings (e.g. a statement that can never apply), which callers may refuse.
 */
export function validateStatements(statements: readonly Statement[], what: string): cedar.ValidationError[] {
  ensureSchema();
  const v = cedar.validate({
    schema: API_SCHEMA,
    policies: { staticPolicies: Object.fromEntries(statements.map((s) => [s.id, s.json])) },
    validationSettings: { mode: 'strict' },
  });
  if (v.type === 'failure') throw new BadRequestError(`${what} does not parse: ${messages(v.errors)}`);
  if (v.validationErrors.length > 0) {
    throw new BadRequestError(`${what} does not validate against the Aegis schema: ${messages(v.validationErrors.map((e) => e.error))}`);
  }
  return v.validationWarnings;
}

function scopeTo(policyName: string, json: cedar.PolicyJson): cedar.PolicyJson {
  const guard: cedar.Clause = {
    kind: 'when',
    body: { in: { left: { Var: 'principal' }, right: { Value: { __entity: { type: 'Aegis::Policy', id: policyName } } } } },
  };
  return { ...json, conditions: [guard, ...json.conditions] };
}

function principalEntity(p: Principal): cedar.EntityJson {
  return {
    uid: { type: 'Aegis::Token', id: p.accessor },
    attrs: { accessor: p.accessor, display_name: p.displayName, policies: [...p.policies], orphan: p.orphan, entity_id: p.entityId },
    parents: p.policies.map((id) => ({ type: 'Aegis::Policy', id })),
    tags: { ...p.meta },
  };
}

/** A path's entity: parents are every folder above it, tags its segments by position. */
export function pathEntity(path: string): cedar.EntityJson {
  const segments = path.split('/');
  if (segments[segments.length - 1] === '') segments.pop();
  const parents: cedar.EntityUidJson[] = [];
  const tags: Record<string, string> = {};
  let prefix = '';
  for (let i = 0; i < segments.length; i++) {
    const s = segments[i]!;
    tags[String(i)] = s;
    if (i < segments.length - 1 || path.endsWith('/')) {
      prefix += `${s}/`;
      if (prefix !== path) parents.push({ type: 'Aegis::Path', id: prefix });
    }
  }
  return { uid: { type: 'Aegis::Path', id: path }, attrs: { path, depth: segments.length }, parents, tags };
}

function normaliseIp(ip: string): string {
  const v4 = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(ip);
  if (v4) return v4[1]!;
  return isIP(ip) ? ip : '0.0.0.0';
}

export function messages(errors: readonly cedar.DetailedError[]): string {
  return errors.map((e) => (e.help ? `${e.message} (${e.help})` : e.message)).join('; ');
}
