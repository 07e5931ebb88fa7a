import { BadRequestError } from '../../core/errors.js';
import type { FieldSpecs } from '../../core/fields.js';
import type { HandlerContext, Response, Route } from '../../core/request.js';
import { HTTP_TOKEN, label, parseRef, refOf, refString } from './model.js';
import type { MeshPolicies } from './store.js';

// mesh/intentions…, mesh/policies…, mesh/config…: the control plane of service-to-service authorization. Every
// route is authorized by path like any other (a policy can grant "manage intentions to prod/api" as
// `resource in Aegis::Path::"mesh/intentions/"` plus a condition on the segments). Reads that a watcher repeats
// answer with the mesh index in `X-Aegis-Index` and take blocking queries `?index=N&wait=30s`.

const MAX_WAIT_MS = 10 * 60_000;
const DEFAULT_WAIT_MS = 5 * 60_000;
const PLAIN = [
  'id', 'source', 'destination', 'action', 'methods', 'path_prefix', 'description', 'created', 'updated', 'modify_index', 'cedar',
  'allowed', 'reason', 'rules', 'method', 'path', 'keys', 'name', 'policy', 'index', 'wait', 'intentions', 'statements', 'service', 'namespace',
];

const BLOCKING: FieldSpecs = {
  index: { type: 'int', description: 'blocking query: return when the mesh index passes this', min: 0 },
  wait: { type: 'duration', description: 'blocking query: longest wait (default 5m, at most 10m)' },
};

const INTENTION_FIELDS: FieldSpecs = {
  action: { type: 'string', description: 'allow or deny (required on write)', max: 16 },
  methods: { type: 'strings', description: 'HTTP methods the intention is limited to (default: any request and plain connections)', max: 16 },
  path_prefix: { type: 'string', description: 'request paths the intention is limited to, starting with "/"', max: 1024 },
  headers: {
    type: 'any',
    description: 'request headers the intention is limited to (all must match): up to 8 of {"name": …, and one of "present": true, "exact": "…", "prefix": "…"}',
  },
  description: { type: 'string', description: 'free text', max: 512 },
};

async function block(mesh: MeshPolicies, ctx: HandlerContext): Promise<void> {
  const index = ctx.fields.index as number | undefined;
  if (index === undefined || index <= 0) return;
  const w = ctx.fields.wait as number | undefined;
  await mesh.wait(index, Math.min(MAX_WAIT_MS, w === undefined || w === 0 ? DEFAULT_WAIT_MS : w * 1000));
}

function indexed(mesh: MeshPolicies, data: Record<string, unknown>): Response {
  const index = String(mesh.meshIndex());
  return { data: { ...data, index: mesh.meshIndex() }, headers: { 'x-aegis-index': index, 'x-consul-index': index } };
}

function pair(ctx: HandlerContext) {
  return {
    source: refOf(ctx.params.src_ns, ctx.params.src, 'source'),
    destination: refOf(ctx.params.dst_ns, ctx.params.dst, 'destination'),
  };
}

export function intentionRoutes(mesh: MeshPolicies): Route[] {
  return [
    {
      pattern: 'intentions',
      summary: 'Every intention (?source= and ?destination= keep exact matches; blocking query on the mesh index).',
      fields: {
        ...BLOCKING,
        source: { type: 'string', description: 'only intentions from this source ("ns/name", "name", "ns/*" or "*")', max: 128 },
        destination: { type: 'string', description: 'only intentions to this destination', max: 128 },
      },
      auditPlain: PLAIN,
      operations: {
        read: async (ctx) => listIntentions(mesh, ctx),
        list: async (ctx) => listIntentions(mesh, ctx),
      },
    },
    {
      pattern: 'intentions/check',
      summary: 'Would the source be allowed to connect to the destination (optionally: this HTTP method and path)? Names the deciding rules.',
      fields: {
        source: { type: 'string', description: 'the calling service, "ns/name" or "name"', required: true, max: 128 },
        destination: { type: 'string', description: 'the called service', required: true, max: 128 },
        method: { type: 'string', description: 'HTTP method of the request (omit for a plain connection)', max: 32 },
        path: { type: 'string', description: 'HTTP path of the request', max: 4096 },
        headers: {
          type: 'any',
          description: 'HTTP headers of the request: an object name → value (or that object as JSON text, e.g. in a query string); with method or path and no headers, the request has none',
        },
      },
      auditPlain: PLAIN,
      operations: {
        read: async (ctx) => {
          const source = refString(parseRef(ctx.fields.source, 'source', false));
          const destination = refString(parseRef(ctx.fields.destination, 'destination', false));
          const method = ctx.fields.method as string | undefined;
          const path = ctx.fields.path as string | undefined;
          // An HTTP request always has headers (maybe none): the proxy passes them, so the check must too, or a
          // statement testing `context has headers` would decide differently here than there.
          const headers = checkHeaders(ctx.fields.headers) ?? (method || path ? {} : undefined);
          const d = mesh.check({ source, destination, ...(method ? { method: method.toUpperCase() } : {}), ...(path ? { path } : {}), ...(headers ? { headers } : {}) });
          return { data: { allowed: d.allowed, reason: d.reason, rules: d.rules, source, destination } };
        },
      },
    },
    {
      pattern: 'intentions/:src_ns/:src/:dst_ns/:dst',
      summary: 'Creates or replaces (PUT), reads or deletes the intention from one service (or "ns/*", "*/*") to another.',
      fields: INTENTION_FIELDS,
      auditPlain: PLAIN,
      exists: async (ctx) => {
        try {
          const { source, destination } = pair(ctx);
          mesh.getIntention(source, destination);
          return true;
        } catch {
          return false;
        }
      },
      operations: {
        read: async (ctx) => {
          const { source, destination } = pair(ctx);
          return { data: { ...mesh.getIntention(source, destination) } };
        },
        update: async (ctx) => {
          const { source, destination } = pair(ctx);
          const f = ctx.fields;
          return { data: { ...(await mesh.putIntention(source, destination, { action: f.action, methods: f.methods, path_prefix: f.path_prefix, headers: f.headers, description: f.description })) } };
        },
        delete: async (ctx) => {
          const { source, destination } = pair(ctx);
          await mesh.deleteIntention(source, destination);
        },
      },
    },
    {
      pattern: 'policies',
      summary: 'The names of the raw Cedar documents of the mesh.',
      auditPlain: PLAIN,
      operations: {
        list: async () => ({ data: { keys: mesh.listPolicies() } }),
        read: async () => ({ data: { keys: mesh.listPolicies() } }),
      },
    },
    {
      pattern: 'policies/:name',
      summary: 'Writes (validated strictly against the Aegis schema, restricted to the connect action), reads or deletes a raw Cedar document of the mesh.',
      fields: { policy: { type: 'string', description: 'the Cedar text', max: 128 * 1024 } },
      auditPlain: PLAIN,
      operations: {
        read: async (ctx) => ({ data: { ...mesh.getPolicy(ctx.params.name!) } }),
        update: async (ctx) => ({ data: { ...(await mesh.putPolicy(ctx.params.name!, ctx.fields.policy)) } }),
        delete: async (ctx) => {
          await mesh.deletePolicy(ctx.params.name!);
        },
      },
    },
    {
      pattern: 'config/:ns/:service',
      summary: 'What the proxy of a service loads: the intentions to it and every mesh statement that may apply to it (blocking query on the mesh index).',
      fields: BLOCKING,
      auditPlain: PLAIN,
      operations: {
        read: async (ctx) => {
          const namespace = label(ctx.params.ns, 'namespace');
          const service = label(ctx.params.service, 'service');
          await block(mesh, ctx);
          return indexed(mesh, { namespace, service, ...mesh.concerning(namespace, service) });
        },
      },
    },
  ];
}

async function listIntentions(mesh: MeshPolicies, ctx: HandlerContext): Promise<Response> {
  const source = ctx.fields.source === undefined ? undefined : refString(parseRef(ctx.fields.source, 'source'));
  const destination = ctx.fields.destination === undefined ? undefined : refString(parseRef(ctx.fields.destination, 'destination'));
  await block(mesh, ctx);
  const intentions = mesh.listIntentions({ source, destination });
  return indexed(mesh, { intentions, keys: intentions.map((i) => i.id) });
}

const MAX_CHECK_HEADERS = 64;
const MAX_CHECK_HEADER_BYTES = 16 * 1024;

/** The `headers` of a check: an object name → value (a string or a list of strings), or that object as JSON text. */
function checkHeaders(value: unknown): Record<string, string | string[]> | undefined {
  if (value === undefined || value === null || value === '') return undefined;
  let v = value;
  if (typeof v === 'string') {
    if (v.length > MAX_CHECK_HEADER_BYTES) throw new BadRequestError(`headers: larger than ${MAX_CHECK_HEADER_BYTES} characters`);
    try {
      v = JSON.parse(v);
    } catch {
      throw new BadRequestError('headers must be an object of header name → value, e.g. {"x-role": "admin"} (JSON text in a query string)');
    }
  }
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new BadRequestError('headers must be an object of header name → value, e.g. {"x-role": "admin"}');
  const entries = Object.entries(v as Record<string, unknown>);
  if (entries.length > MAX_CHECK_HEADERS) throw new BadRequestError(`headers: at most ${MAX_CHECK_HEADERS}`);
  const out: Record<string, string | string[]> = {};
  let size = 0;
  for (const [name, val] of entries) {
    if (!HTTP_TOKEN.test(name)) throw new BadRequestError(`headers: ${JSON.stringify(name)} is not a header name (RFC 9110 token)`);
    if (!(typeof val === 'string' || (Array.isArray(val) && val.every((x) => typeof x === 'string')))) {
      throw new BadRequestError(`headers: the value of ${name} must be a string or a list of strings`);
    }
    size += name.length + (typeof val === 'string' ? val.length : val.join('').length);
    if (size > MAX_CHECK_HEADER_BYTES) throw new BadRequestError(`headers: larger than ${MAX_CHECK_HEADER_BYTES} characters`);
    out[name] = val as string | string[];
  }
  return out;
}
