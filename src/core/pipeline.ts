import type { AuditBroker } from '../audit/broker.js';
import type { AuditRecord } from '../audit/entry.js';
import { toCaller, type TokenStore } from '../auth/token/store.js';
import type { PolicyEngine } from '../policy/engine.js';
import type { Metrics } from '../telemetry/metrics.js';
import type { LeaseManager } from './leases/index.js';
import type { ResponseWrapper } from './wrapping/index.js';
import {
  AegisError, BadRequestError, NotFoundError, PermissionDeniedError, SealedError, UnsupportedOperationError, toClientError,
} from './errors.js';
import { parseFields } from './fields.js';
import { validatePath } from './path.js';
import type { Action, Caller, HandlerContext, Operation, Request, Response, Route } from './request.js';
import type { RouteMatch, Router } from './router.js';

export interface PipelineDeps {
  router: Router;
  tokens: TokenStore;
  engine: PolicyEngine;
  audit: AuditBroker;
  metrics: Metrics;
  isSealed(): boolean;
  /** Turns a response's `secret` into a lease. */
  leases?: LeaseManager;
  /** Wraps responses when the client sent X-Vault-Wrap-TTL. */
  wrapper?: ResponseWrapper;
  /**
   * Authenticates a request without a token by the certificate its client presented (an X.509-SVID over mutual
   * TLS): the caller, null when no certificate was presented; throws PermissionDeniedError for a bad one.
   */
  peerAuth?: (req: Request) => Promise<Caller | null>;
}

export interface PipelineResult {
  status: number;
  response: Response | null;
  error: AegisError | null;
}

const MAX_DATA_DEPTH = 32;
const NO_PLAIN: ReadonlySet<string> = new Set();

function actionFor(op: Operation): Action {
  return op === 'patch' ? 'update' : op;
}

/**
 * The one path every API call takes: validate → route → authn → authz (Cedar, default deny) → audit(request)
 * → engine → audit(response). Only routes marked `unauthenticated` (seal status, health, init, unseal) skip
 * authn, authz and audit; a test enumerates every route to hold that line.
 */
export class Pipeline {
  constructor(private readonly d: PipelineDeps) {}

  async handle(req: Request): Promise<PipelineResult> {
    const started = process.hrtime.bigint();
    let routeLabel = 'unmatched';
    let result: PipelineResult;
    try {
      await this.validate(req);
      const match = this.d.router.match(req.path);
      if (match?.compiled) routeLabel = match.mounted.entry.path + match.compiled.route.pattern;
      if (match?.compiled?.route.unauthenticated) {
        result = await this.exempt(req, match);
      } else {
        if (this.d.isSealed()) throw new SealedError();
        result = match?.compiled?.route.login ? await this.login(req, match) : await this.authorized(req, match);
      }
    } catch (err) {
      const e = toClientError(err);
      result = { status: e.status, response: null, error: e };
    }
    this.d.metrics.observe(routeLabel, result.status, Number(process.hrtime.bigint() - started) / 1e9);
    return result;
  }

  /** Malformed requests are refused before routing; they are audited (when unsealed) because probing shows up as them. */
  private async validate(req: Request): Promise<void> {
    try {
      validatePath(req.path);
      checkDepth(req.data);
    } catch (err) {
      if (!this.d.isSealed()) {
        const e = toClientError(err);
        await this.d.audit.log({ type: 'request', req: { ...req, data: {} }, caller: null, plain: NO_PLAIN, error: e.message });
      }
      throw err;
    }
  }

  private async exempt(req: Request, match: RouteMatch): Promise<PipelineResult> {
    const { route } = match.compiled!;
    const handler = handlerFor(route, req.operation);
    if (!handler) throw new UnsupportedOperationError(`unsupported operation: ${req.operation} on ${req.path}`);
    const { fields } = parseFields(route.fields ?? {}, req.data);
    const res = (await handler({ req, params: match.params, fields, store: match.mounted.store, relPath: match.relPath, mountPath: match.mounted.entry.path, caller: null })) ?? null;
    return { status: statusOf(res), response: res, error: null };
  }

  private async authorized(req: Request, match: RouteMatch | null): Promise<PipelineResult> {
    const route = match?.compiled?.route ?? null;
    const plain = route ? plainFields(route) : NO_PLAIN;
    let caller: Caller | null = null;
    const record = (extra: Partial<AuditRecord>): AuditRecord => ({ type: 'request', req, caller, plain, mountType: match?.mounted.entry.type, ...extra });

    // authn: a token, or else the client's SVID.
    let found: Awaited<ReturnType<TokenStore['lookup']>> = null;
    if (req.token) {
      found = await this.d.tokens.lookup(req.token);
      if (!found) return this.deny(record({}), new PermissionDeniedError('permission denied: invalid token (unknown, expired or revoked)'));
      caller = toCaller(req.token, found.hash, found.entry);
    } else {
      try {
        caller = (await this.d.peerAuth?.(req)) ?? null;
      } catch (err) {
        return this.deny(record({}), toClientError(err));
      }
      if (!caller) return this.deny(record({}), new PermissionDeniedError('permission denied: missing client token; send it in the X-Vault-Token header (or present an X.509-SVID over mutual TLS)'));
    }

    // Field validation before the existence check and engine: a malformed request is refused the same way for all.
    let fields: Record<string, unknown> = {};
    let warnings: string[] = [];
    const handler = route ? handlerFor(route, req.operation) : null;
    const ctx = (): HandlerContext => ({ req, params: match!.params, fields, store: match!.mounted.store, relPath: match!.relPath, mountPath: match!.mounted.entry.path, caller });

    // create vs update is decided by the route's existence check (Vault's ExistenceCheck).
    let op = req.operation;
    if (op === 'create' || op === 'update') {
      op = 'update';
      if (route?.exists && handler) {
        const parsed = parseFields(route.fields ?? {}, req.data);
        fields = parsed.fields;
        op = (await route.exists(ctx())) ? 'update' : 'create';
      }
    }

    // authz: one Cedar decision, plus `sudo` on root-protected paths.
    const action = actionFor(op);
    const decision = this.d.engine.decide(caller, action, req.path, req.client.address);
    if (!decision.allowed) return this.deny(record({}), new PermissionDeniedError(decision.reason));
    if (route?.sudo) {
      const sudo = this.d.engine.decide(caller, 'sudo', req.path, req.client.address);
      if (!sudo.allowed) return this.deny(record({}), new PermissionDeniedError(`permission denied: ${req.path} also needs the sudo action (${sudo.reason.replace(/^permission denied: /, '')})`));
    }
    if (!match?.compiled) return this.deny(record({}), new NotFoundError(`no handler for route "${req.path}": nothing is mounted there or the engine has no such path`));
    if (!handler) return this.deny(record({}), new UnsupportedOperationError(`unsupported operation: ${req.operation} is not available on ${req.path}`));

    try {
      const parsed = parseFields(route!.fields ?? {}, req.data);
      fields = parsed.fields;
      if (parsed.unknown.length > 0 && !route!.openFields) warnings = [`ignored unknown parameters: ${parsed.unknown.sort().join(', ')}`];
    } catch (err) {
      return this.deny(record({}), toClientError(err));
    }

    // Limited-use tokens: take one use now, atomically, after validation so a malformed request costs nothing;
    // the last use revokes the token.
    if (found && found.entry.numUses > 0 && !(await this.d.tokens.use(found.hash, found.entry, found.version))) {
      return this.deny(record({}), new PermissionDeniedError('permission denied: invalid token (its uses are exhausted)'));
    }

    // audit(request): nothing runs if no device can record it.
    await this.d.audit.log(record({}));

    // The engine; then a leased secret gets its lease and a response asked for wrapped goes behind a wrapping token.
    return this.answer(record, async () => {
      let res = (await handler(ctx())) ?? null;
      if (res && warnings.length > 0) res.warnings = [...(res.warnings ?? []), ...warnings];
      if (res) res = await this.finish(res, req, match!, found ? found.hash : null);
      return res;
    });
  }

  /** Routes that carry their own credential (attestation) or serve public data: no token, no Cedar, still audited. */
  private async login(req: Request, match: RouteMatch): Promise<PipelineResult> {
    const route = match.compiled!.route;
    const record = (extra: Partial<AuditRecord>): AuditRecord => ({ type: 'request', req, caller: null, plain: plainFields(route), mountType: match.mounted.entry.type, ...extra });
    const handler = handlerFor(route, req.operation);
    if (!handler) return this.deny(record({}), new UnsupportedOperationError(`unsupported operation: ${req.operation} is not available on ${req.path}`));
    let fields: Record<string, unknown>;
    try {
      fields = parseFields(route.fields ?? {}, req.data).fields;
    } catch (err) {
      return this.deny(record({}), toClientError(err));
    }
    await this.d.audit.log(record({}));
    return this.answer(record, async () => (await handler({ req, params: match.params, fields, store: match.mounted.store, relPath: match.relPath, mountPath: match.mounted.entry.path, caller: null })) ?? null);
  }

  /** Runs what makes the response, after audit(request): an error or the response, audited either way. */
  private async answer(record: (extra: Partial<AuditRecord>) => AuditRecord, produce: () => Promise<Response | null>): Promise<PipelineResult> {
    let res: Response | null;
    try {
      res = await produce();
    } catch (err) {
      const e = toClientError(err);
      await this.d.audit.log(record({ type: 'response', status: e.status, error: e.message }));
      return { status: e.status, response: null, error: e };
    }
    const status = statusOf(res);
    await this.d.audit.log(record({ type: 'response', status, response: res ?? undefined }));
    return { status, response: res, error: null };
  }

  /**
   * Records the lease of a secret the engine made (the lease manager revokes the secret if that fails), then wraps
   * the response if the client asked (revoking the lease if wrapping fails: nobody would ever see the secret).
   */
  private async finish(res: Response, req: Request, match: RouteMatch, tokenHash: string | null): Promise<Response> {
    if (res.secret) {
      const { secret, ...rest } = res;
      if (!this.d.leases) throw new Error('an engine returned a leased secret but no lease manager is configured');
      const entry = await this.d.leases.register({ path: req.path, mounted: match.mounted, secret, tokenHash });
      res = { ...rest, lease: { id: entry.id, duration: entry.ttl, renewable: entry.renewable } };
    }
    if (!req.wrapTTL || !(res.data || res.auth || res.lease)) return res;
    try {
      if (!this.d.wrapper) throw new Error('response wrapping asked but no wrapper is configured');
      return await this.d.wrapper.wrap(res, req.wrapTTL, req.path);
    } catch (err) {
      if (res.lease) await this.d.leases?.revoke(res.lease.id, { force: true }).catch(() => undefined);
      throw err;
    }
  }

  /** Refusals are audited too, request and response (they are what detection looks for), then reported. */
  private async deny(rec: AuditRecord, err: AegisError): Promise<PipelineResult> {
    // Both entries go out in the same group write.
    await Promise.all([
      this.d.audit.log({ ...rec, error: err.message }),
      this.d.audit.log({ ...rec, type: 'response', status: err.status, error: err.message }),
    ]);
    return { status: err.status, response: null, error: err };
  }
}

function handlerFor(route: Route, op: Operation) {
  const ops = route.operations;
  if (op === 'create') return ops.create ?? ops.update;
  if (op === 'update') return ops.update ?? ops.create;
  return ops[op];
}

function statusOf(res: Response | null): number {
  if (res?.status) return res.status;
  return res && (res.data || res.auth || res.raw || res.bare || res.lease || res.wrapInfo || res.events || res.warnings?.length) ? 200 : 204;
}

const plainCache = new WeakMap<Route, ReadonlySet<string>>();

/** The route's audit-plain fields as a set, made once per route. */
function plainFields(route: Route): ReadonlySet<string> {
  let set = plainCache.get(route);
  if (!set) {
    set = new Set(route.auditPlain ?? []);
    plainCache.set(route, set);
  }
  return set;
}

function checkDepth(data: unknown): void {
  // Most requests carry flat data (or none): nothing to walk.
  if (data !== null && typeof data === 'object' && !Object.values(data).some((v) => v !== null && typeof v === 'object')) return;
  const stack: [unknown, number][] = [[data, 0]];
  while (stack.length > 0) {
    const [v, depth] = stack.pop()!;
    if (v === null || typeof v !== 'object') continue;
    if (depth > MAX_DATA_DEPTH) throw new BadRequestError(`request body is nested deeper than ${MAX_DATA_DEPTH} levels`);
    for (const child of Object.values(v as object)) stack.push([child, depth + 1]);
  }
}
