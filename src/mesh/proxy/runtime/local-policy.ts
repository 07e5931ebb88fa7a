import * as cedar from '@cedar-policy/cedar-wasm/nodejs';
// The intentions module first: it loads the policy engine, which sets the V8 flag the Cedar Wasm calls need.
import { MeshAuthorizer } from '../../intentions/index.js';
import { workloadOf } from '../../../identity/spiffe-id.js';
import { messages } from '../../../policy/index.js';

// The inbound `connect` decision, made in the proxy over the statements of `mesh/config/<ns>/<service>`, so that
// decisions keep working while the server is unreachable (fail static) and cost no round trip. Same evaluator as
// the server's (MeshAuthorizer): default deny, a forbid overrides any permit.

/** One statement as `mesh/config` serves it. */
export interface ConfigStatement {
  id: string;
  effect: 'permit' | 'forbid';
  cedar: string;
}

/** `spiffe://<td>/ns/<ns>/svc/<svc>` → `<ns>/<svc>` (the Cedar Service id); null for any other shape or domain. */
export function serviceOfSpiffeId(spiffeId: string, trustDomain: string): string | null {
  const w = workloadOf(spiffeId);
  return w && w.trustDomain === trustDomain ? `${w.namespace}/${w.service}` : null;
}

export class LocalPolicy {
  private readonly authorizer = new MeshAuthorizer();
  private loaded = false;

  /** `destination` is this proxy's service, `<ns>/<name>`. */
  constructor(private readonly destination: string, private readonly trustDomain: string) {}

  /**
   * Replaces the statement set. All or nothing: if one statement does not parse, the previous set stays (a
   * partial set could drop a forbid and open what it closed) and the error is thrown for the caller to report.
   */
  load(statements: readonly ConfigStatement[]): void {
    const parsed = statements.map((s) => {
      const j = cedar.policyToJson(s.cedar);
      if (j.type === 'failure') throw new Error(`mesh statement ${s.id} does not parse: ${messages(j.errors)}`);
      return { id: s.id, json: j.json };
    });
    this.authorizer.load(parsed);
    this.loaded = true;
  }

  /** Whether anything was loaded yet (before that, every connection is denied). */
  get ready(): boolean {
    return this.loaded;
  }

  get statementCount(): number {
    return this.authorizer.statementCount;
  }

  /**
   * The `connect` decision for a verified source SPIFFE ID; default deny. With `http`, the decision of one HTTP
   * request (http mode): intentions with method, path or header rules apply only there. An HTTP request always
   * has headers in the Cedar context (none given: an empty set), as the server's check assumes.
   */
  allows(sourceSpiffeId: string, http?: { method: string; path: string; headers?: Record<string, string | string[] | undefined> }): boolean {
    if (!this.loaded) return false;
    const source = serviceOfSpiffeId(sourceSpiffeId, this.trustDomain);
    if (source === null) return false;
    const destination = this.destination;
    return this.authorizer.decide(http ? { source, destination, method: http.method, path: http.path, headers: http.headers ?? {} } : { source, destination }).allowed;
  }

  /** The loaded set's authorizer (its cache size and whether it reads headers), for metrics and tests. */
  get decisions(): MeshAuthorizer {
    return this.authorizer;
  }
}
