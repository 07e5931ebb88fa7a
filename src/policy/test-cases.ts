import { BadRequestError } from '../core/errors.js';
import { ACTIONS, type Action } from '../core/request.js';
import { PolicyEngine, type PolicyDoc } from './engine.js';

/** One expectation: a token holding `policies` asks for `action` on `path`. */
export interface PolicyCase {
  name?: string;
  policies: string[];
  action: Action;
  path: string;
  expect: 'allow' | 'deny';
  meta?: Record<string, string>;
  client_ip?: string;
}

export interface PolicyCaseResult {
  case: PolicyCase;
  name: string;
  passed: boolean;
  decision: 'allow' | 'deny';
  reason: string;
}

/** Reads a cases file: `{"cases": [...]}` or a bare array. Throws BadRequestError naming the bad case. */
export function parsePolicyCases(json: unknown): PolicyCase[] {
  const list = Array.isArray(json) ? json : (json as { cases?: unknown })?.cases;
  if (!Array.isArray(list) || list.length === 0) throw new BadRequestError('cases file: expected {"cases": [...]} or an array of cases');
  return list.map((c, i) => {
    const where = `case ${i + 1}`;
    if (c === null || typeof c !== 'object') throw new BadRequestError(`${where}: not an object`);
    const x = c as Record<string, unknown>;
    if (!Array.isArray(x.policies) || !x.policies.every((p) => typeof p === 'string')) throw new BadRequestError(`${where}: "policies" must be a list of policy names`);
    if (!ACTIONS.includes(x.action as Action)) throw new BadRequestError(`${where}: "action" must be one of ${ACTIONS.join(', ')}`);
    if (typeof x.path !== 'string' || x.path === '') throw new BadRequestError(`${where}: "path" must be a request path like secret/data/app`);
    if (x.expect !== 'allow' && x.expect !== 'deny') throw new BadRequestError(`${where}: "expect" must be "allow" or "deny"`);
    return { ...(x as unknown as PolicyCase), path: x.path.replace(/^\/+/, '').replace(/^v1\//, '') };
  });
}

/** Runs cases against a set of documents with the same engine the server uses. */
export function runPolicyCases(docs: readonly PolicyDoc[], cases: readonly PolicyCase[]): PolicyCaseResult[] {
  const engine = new PolicyEngine();
  engine.load(docs);
  return cases.map((c, i) => {
    const d = engine.decide(
      { accessor: `case-${i + 1}`, displayName: 'policy-test', policies: c.policies, meta: c.meta ?? {}, orphan: false, entityId: '' },
      c.action, c.path, c.client_ip ?? '127.0.0.1',
    );
    const decision = d.allowed ? 'allow' : 'deny';
    return { case: c, name: c.name ?? `${c.action} ${c.path} as [${c.policies.join(', ')}]`, passed: decision === c.expect, decision, reason: d.reason };
  });
}
