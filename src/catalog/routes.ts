import { parseDuration } from '../core/duration.js';
import { BadRequestError, NotFoundError, PermissionDeniedError } from '../core/errors.js';
import type { FieldSpecs } from '../core/fields.js';
import type { HandlerContext, Response, Route } from '../core/request.js';
import type { Catalog, InstanceView } from './catalog.js';
import type { HealthChecker } from './checks/index.js';
import { DEFAULT_NAMESPACE, type CheckStatus } from './model.js';
import { checkId, instanceId, label, parseInstance } from './validate.js';

// Consul's catalog and health endpoints, with the namespace in the path so that a policy can grant "register
// web in prod" as `catalog/service/prod/web/` and nothing else. Reads answer Consul's JSON (no Vault envelope)
// with the index in `X-Aegis-Index` (and `X-Consul-Index`), and take blocking queries: `?index=N&wait=30s`
// returns as soon as that service's index passes N, or after `wait` with the same index.

const MAX_WAIT_MS = 10 * 60_000;
const DEFAULT_WAIT_MS = 5 * 60_000;
const PLAIN = ['namespace', 'service', 'id', 'address', 'port', 'tags', 'meta', 'kind', 'proxy', 'checks', 'check', 'status', 'index', 'wait', 'passing', 'tag'];

const BLOCKING: FieldSpecs = {
  index: { type: 'int', description: 'blocking query: return when the index passes this', min: 0 },
  wait: { type: 'duration', description: 'blocking query: longest wait (default 5m, at most 10m)' },
};

function json(body: unknown, index: number): Response {
  return rawJson(JSON.stringify(body), index);
}

function rawJson(body: string, index: number): Response {
  return { raw: { contentType: 'application/json', body }, headers: { 'x-aegis-index': String(index), 'x-consul-index': String(index) } };
}

function waitMs(fields: Record<string, unknown>): number {
  const w = fields.wait as number | undefined;
  return Math.min(MAX_WAIT_MS, w === undefined || w === 0 ? DEFAULT_WAIT_MS : w * 1000);
}

/** `wait` on an open-fields route (registration bodies are free-form), parsed like the declared field. */
function parseWait(raw: unknown): number | undefined {
  return raw === undefined ? undefined : parseDuration(raw, 'wait');
}

function names(ctx: HandlerContext): { ns: string; service: string } {
  return { ns: label(ctx.params.ns, 'namespace'), service: label(ctx.params.service, 'service') };
}

/** Consul's health entry shape: the instance and its checks. */
function healthEntry(v: InstanceView): Record<string, unknown> {
  return {
    service: instanceJson(v),
    checks: v.checkStates.map((c) => ({ check_id: c.id, name: c.name, type: c.type, status: c.status, output: c.output, since: new Date(c.since).toISOString() })),
    status: v.status,
  };
}

function instanceJson(v: InstanceView): Record<string, unknown> {
  return {
    namespace: v.namespace, service: v.service, id: v.id, address: v.address, port: v.port, tags: v.tags, meta: v.meta, kind: v.kind,
    proxy: v.proxy, checks: v.checks, create_index: v.create_index, modify_index: v.modify_index,
  };
}

/** Parks a blocking query (`?index=N`) until the service — or, without one, the whole catalog — passes N. */
async function block(catalog: Catalog, ctx: HandlerContext, scope?: { ns: string; service: string }): Promise<void> {
  const index = ctx.fields.index as number | undefined;
  if (index === undefined || index <= 0) return;
  if (scope) await catalog.waitService(scope.ns, scope.service, index, waitMs(ctx.fields));
  else await catalog.waitCatalog(index, waitMs(ctx.fields));
}

export function catalogRoutes(catalog: Catalog): Route[] {
  return [
    {
      pattern: 'services',
      summary: 'The services of a namespace and their tags (blocking query on the whole catalog).',
      fields: { ...BLOCKING, ns: { type: 'string', description: 'namespace (default "default")', max: 63 } },
      auditPlain: PLAIN,
      operations: {
        read: async (ctx) => {
          const ns = label(ctx.fields.ns ?? DEFAULT_NAMESPACE, 'namespace');
          await block(catalog, ctx);
          return json(catalog.services(ns), catalog.catalogIndex());
        },
      },
    },
    {
      pattern: 'namespaces',
      summary: 'Namespaces that have instances (blocking query on the whole catalog).',
      fields: BLOCKING,
      auditPlain: PLAIN,
      operations: {
        read: async (ctx) => {
          await block(catalog, ctx);
          return json(catalog.namespaces(), catalog.catalogIndex());
        },
      },
    },
    {
      pattern: 'service/:ns/:service',
      summary: 'The instances of a service (blocking query on that service; ?tag= filters).',
      fields: { ...BLOCKING, tag: { type: 'string', description: 'only instances with this tag', max: 255 } },
      auditPlain: PLAIN,
      operations: {
        read: async (ctx) => {
          const { ns, service } = names(ctx);
          await block(catalog, ctx, { ns, service });
          const tag = ctx.fields.tag as string | undefined;
          const a = catalog.answer(ns, service, `catalog&tag=${tag ?? ''}`, () => catalog.instancesOf(ns, service, { tag }).map(instanceJson));
          return rawJson(a.body, a.index);
        },
      },
    },
    {
      pattern: 'watch/:ns/:service',
      summary: 'A Server-Sent Events stream of the service\'s health entries: one event now and one per change.',
      fields: { passing: { type: 'bool', description: 'only instances whose checks pass' } },
      auditPlain: PLAIN,
      operations: {
        read: async (ctx) => {
          const { ns, service } = names(ctx);
          const passing = ctx.fields.passing === true || ctx.req.data.passing === '';
          return {
            headers: { 'x-aegis-index': String(catalog.indexOf(ns, service)) },
            events: (signal) => watchService(catalog, ns, service, passing, signal),
          };
        },
      },
    },
    {
      pattern: 'service/:ns/:service/:id',
      summary: 'Registers (PUT), reads (blocking query on the service) or deregisters (DELETE) one instance of a service.',
      openFields: true,
      auditPlain: PLAIN,
      exists: async (ctx) => catalog.instance(ctx.params.ns!, ctx.params.id!) !== null,
      operations: {
        read: async (ctx) => {
          const { ns, service } = names(ctx);
          const index = Number(ctx.req.data.index ?? 0);
          if (Number.isSafeInteger(index) && index > 0) await catalog.waitService(ns, service, index, waitMs({ wait: parseWait(ctx.req.data.wait) }));
          const v = catalog.instance(ns, instanceId(ctx.params.id));
          if (!v || v.service !== service) throw new NotFoundError(`no instance "${ctx.params.id}" of service "${service}" in namespace "${ns}"`);
          return json(healthEntry(v), v.modify_index);
        },
        update: async (ctx) => {
          const { ns, service } = names(ctx);
          const inst = parseInstance(ns, service, ctx.params.id!, ctx.req.data);
          const v = await catalog.register(inst);
          return json(instanceJson(v), v.modify_index);
        },
        delete: async (ctx) => {
          const { ns, service } = names(ctx);
          const id = instanceId(ctx.params.id);
          const v = catalog.instance(ns, id);
          if (!v || v.service !== service) throw new NotFoundError(`no instance "${id}" of service "${service}" in namespace "${ns}"`);
          await catalog.deregister(ns, id);
        },
      },
    },
  ];
}

/** Every change of one service as an event ({index, instances}); a keep-alive (null) every 15 s of quiet. */
async function* watchService(catalog: Catalog, ns: string, service: string, passing: boolean, signal: AbortSignal): AsyncGenerator<string | null> {
  let index = 0;
  while (!signal.aborted) {
    await catalog.waitService(ns, service, index, 15_000, signal);
    if (signal.aborted) return;
    const now = catalog.indexOf(ns, service);
    if (now <= index) {
      yield null;
      continue;
    }
    index = now;
    yield JSON.stringify({ index, instances: catalog.instancesOf(ns, service, { passing }).map(healthEntry) });
  }
}

/**
 * Whether the caller may update `catalog/service/<ns>/<service>/<id>`: a TTL report counts as a write to the
 * instance that owns the check (Consul asks service:write of the check's service), so a token or workload allowed
 * to report its own checks cannot report another service's.
 */
export type MayUpdateInstance = (ctx: HandlerContext, path: string) => boolean;

export function healthRoutes(catalog: Catalog, checker: HealthChecker, mayUpdateInstance: MayUpdateInstance): Route[] {
  return [
    {
      pattern: 'service/:ns/:service',
      summary: 'Instances of a service with their checks; ?passing=true keeps only those whose checks all pass (blocking query).',
      fields: { ...BLOCKING, passing: { type: 'bool', description: 'only instances whose checks pass' }, tag: { type: 'string', description: 'only instances with this tag', max: 255 } },
      auditPlain: PLAIN,
      operations: {
        read: async (ctx) => {
          const { ns, service } = names(ctx);
          await block(catalog, ctx, { ns, service });
          // `?passing` with no value (Consul's form) arrives as an empty string: it means true.
          const passing = ctx.fields.passing === true || ctx.req.data.passing === '';
          const tag = ctx.fields.tag as string | undefined;
          const a = catalog.answer(ns, service, `health&passing=${passing}&tag=${tag ?? ''}`, () => catalog.instancesOf(ns, service, { passing, tag }).map(healthEntry));
          return rawJson(a.body, a.index);
        },
      },
    },
    {
      pattern: 'check/:ns/:check_id',
      summary: 'A TTL check\'s report: status pass|warn|fail (or passing|warning|critical) and output.',
      fields: {
        status: { type: 'string', description: 'pass, warn or fail', required: true, max: 16 },
        output: { type: 'string', description: 'what the check saw (kept, truncated to 4 KiB)', default: '', max: 65536 },
      },
      auditPlain: PLAIN,
      operations: {
        update: async (ctx) => {
          const ns = label(ctx.params.ns, 'namespace');
          const id = checkId(ctx.params.check_id);
          const status = STATUS[String(ctx.fields.status)];
          if (!status) throw new BadRequestError(`status ${JSON.stringify(ctx.fields.status)}: use pass, warn or fail`);
          const owner = catalog.checkOwner(ns, id);
          const inst = owner === null ? null : catalog.instance(ns, owner);
          if (!inst) throw new NotFoundError(`no check "${id}" in namespace "${ns}"`);
          const instancePath = `catalog/service/${ns}/${inst.service}/${inst.id}`;
          if (!mayUpdateInstance(ctx, instancePath)) throw new PermissionDeniedError(`permission denied: reporting check "${id}" needs update on ${instancePath}, the instance that owns it`);
          await checker.ttlUpdate(ns, id, status, ctx.fields.output as string);
        },
      },
    },
  ];
}

const STATUS: Record<string, CheckStatus> = { pass: 'passing', passing: 'passing', warn: 'warning', warning: 'warning', fail: 'critical', critical: 'critical' };
