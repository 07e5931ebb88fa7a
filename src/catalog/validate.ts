import { isIP } from 'node:net';
import { BadRequestError } from '../core/errors.js';
import { parseDuration } from '../core/duration.js';
import type { CheckDefinition, Instance, ProxyConfig, Upstream } from './model.js';

// Registration input → a complete Instance, or a 400 that says what is wrong. Names are DNS labels (they become
// `<service>.service.<namespace>.aegis`), so anything a DNS client could not ask for is refused at the door.

const LABEL = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;
const INSTANCE_ID = /^[A-Za-z0-9](?:[A-Za-z0-9._:-]{0,126}[A-Za-z0-9])?$/;
const CHECK_ID = /^[A-Za-z0-9](?:[A-Za-z0-9._:-]{0,254}[A-Za-z0-9])?$/;
const HOSTNAME = /^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;
const MAX_TAGS = 64;
const MAX_META = 64;
const MAX_CHECKS = 16;
const MAX_UPSTREAMS = 64;

export function label(value: unknown, what: string): string {
  if (typeof value !== 'string' || !LABEL.test(value)) {
    throw new BadRequestError(`${what} ${JSON.stringify(value)} is not a valid name: use 1–63 lowercase letters, digits and "-", starting and ending with a letter or digit (a DNS label)`);
  }
  return value;
}

export function instanceId(value: unknown): string {
  if (typeof value !== 'string' || !INSTANCE_ID.test(value)) {
    throw new BadRequestError(`instance id ${JSON.stringify(value)} is not valid: 1–128 letters, digits, ".", "_", ":" and "-", starting and ending with a letter or digit`);
  }
  return value;
}

export function checkId(value: unknown): string {
  if (typeof value !== 'string' || !CHECK_ID.test(value)) throw new BadRequestError(`check id ${JSON.stringify(value)} is not valid: 1–256 letters, digits, ".", "_", ":" and "-"`);
  return value;
}

function port(value: unknown, what: string, allowZero = false): number {
  const n = typeof value === 'string' && /^\d+$/.test(value) ? Number(value) : value;
  if (typeof n !== 'number' || !Number.isInteger(n) || n < (allowZero ? 0 : 1) || n > 65535) throw new BadRequestError(`${what} must be a whole number from ${allowZero ? 0 : 1} to 65535, got ${JSON.stringify(value)}`);
  return n;
}

function address(value: unknown): string {
  if (typeof value !== 'string' || (isIP(value) === 0 && !HOSTNAME.test(value))) throw new BadRequestError(`address ${JSON.stringify(value)} must be an IPv4/IPv6 address or a host name`);
  return value;
}

function strings(value: unknown, what: string, max: number): string[] {
  if (value === undefined || value === null) return [];
  if (!Array.isArray(value) || !value.every((v) => typeof v === 'string')) throw new BadRequestError(`${what} must be a list of strings`);
  if (value.length > max) throw new BadRequestError(`${what}: at most ${max} entries, got ${value.length}`);
  if (value.some((v: string) => v.length === 0 || v.length > 255)) throw new BadRequestError(`${what}: each entry must be 1–255 characters`);
  return [...new Set(value as string[])];
}

function meta(value: unknown): Record<string, string> {
  if (value === undefined || value === null) return {};
  if (typeof value !== 'object' || Array.isArray(value)) throw new BadRequestError('meta must be an object of strings');
  const entries = Object.entries(value as Record<string, unknown>);
  if (entries.length > MAX_META) throw new BadRequestError(`meta: at most ${MAX_META} keys`);
  for (const [k, v] of entries) {
    if (!/^[A-Za-z0-9_-]{1,128}$/.test(k)) throw new BadRequestError(`meta key ${JSON.stringify(k)}: 1–128 letters, digits, "_" or "-"`);
    if (typeof v !== 'string' || v.length > 512) throw new BadRequestError(`meta.${k} must be a string of at most 512 characters`);
  }
  return Object.fromEntries(entries) as Record<string, string>;
}

/** Milliseconds from a duration field, within [min, max] seconds. */
function ms(value: unknown, what: string, minS: number, maxS: number, dflt?: number): number {
  if (value === undefined || value === null || value === '') {
    if (dflt === undefined) throw new BadRequestError(`${what} is required`);
    return dflt;
  }
  // Sub-second durations ("500ms") round up in parseDuration; keep milliseconds for them.
  const text = typeof value === 'string' ? value.trim() : value;
  const msValue = typeof text === 'string' && /^\d+ms$/.test(text) ? Number(text.slice(0, -2)) : parseDuration(text, what) * 1000;
  if (msValue < minS * 1000 || msValue > maxS * 1000) throw new BadRequestError(`${what} must be between ${minS}s and ${maxS}s, got ${JSON.stringify(value)}`);
  return msValue;
}

function check(raw: unknown, instance: string, n: number, total: number): CheckDefinition {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new BadRequestError('each check must be an object');
  const c = raw as Record<string, unknown>;
  const kinds = (['http', 'tcp', 'ttl'] as const).filter((k) => c[k] !== undefined && c[k] !== null && c[k] !== '');
  if (kinds.length !== 1) throw new BadRequestError('a check needs exactly one of http (a URL), tcp (host:port) or ttl (a duration)');
  const type = kinds[0]!;
  const id = c.id !== undefined ? checkId(c.id) : total > 1 ? `service:${instance}:${n + 1}` : `service:${instance}`;
  const def: CheckDefinition = {
    id, name: typeof c.name === 'string' && c.name !== '' ? c.name.slice(0, 255) : `${type} check`, type,
    interval: 0, timeout: 0,
    deregister_critical_after: ms(c.deregister_critical_after, 'deregister_critical_after', 1, 30 * 86400, 0),
    success_before_passing: count(c.success_before_passing, 'success_before_passing'),
    failures_before_critical: count(c.failures_before_critical, 'failures_before_critical'),
  };
  if (type === 'ttl') {
    def.ttl = ms(c.ttl, 'ttl', 1, 86400);
    return def;
  }
  def.interval = ms(c.interval, 'interval', 1, 86400);
  def.timeout = ms(c.timeout, 'timeout', 0.001, 300, Math.min(10_000, def.interval));
  if (def.timeout > def.interval) throw new BadRequestError(`timeout (${def.timeout} ms) must not be longer than interval (${def.interval} ms)`);
  if (type === 'http') {
    let url: URL;
    try {
      url = new URL(String(c.http));
    } catch {
      throw new BadRequestError(`http ${JSON.stringify(c.http)} is not a URL`);
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new BadRequestError('an http check URL must be http:// or https://');
    def.http = url.href;
    const method = typeof c.method === 'string' ? c.method.toUpperCase() : 'GET';
    if (!['GET', 'HEAD', 'POST', 'PUT', 'OPTIONS'].includes(method)) throw new BadRequestError(`method ${JSON.stringify(c.method)}: use GET, HEAD, POST, PUT or OPTIONS`);
    def.method = method;
  } else {
    const m = /^(.+):(\d+)$/.exec(String(c.tcp));
    if (!m) throw new BadRequestError(`tcp ${JSON.stringify(c.tcp)} must be host:port`);
    address(m[1]!.replace(/^\[(.*)\]$/, '$1'));
    port(m[2], 'tcp check port');
    def.tcp = String(c.tcp);
  }
  return def;
}

function count(value: unknown, what: string): number {
  if (value === undefined || value === null) return 1;
  const n = typeof value === 'string' && /^\d+$/.test(value) ? Number(value) : value;
  if (typeof n !== 'number' || !Number.isInteger(n) || n < 1 || n > 100) throw new BadRequestError(`${what} must be a whole number from 1 to 100`);
  return n;
}

function proxy(raw: unknown, namespace: string): ProxyConfig {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new BadRequestError('a connect-proxy needs proxy: {destination_service, upstreams}');
  const p = raw as Record<string, unknown>;
  const ups = p.upstreams ?? [];
  if (!Array.isArray(ups)) throw new BadRequestError('proxy.upstreams must be a list');
  if (ups.length > MAX_UPSTREAMS) throw new BadRequestError(`proxy.upstreams: at most ${MAX_UPSTREAMS}`);
  const upstreams: Upstream[] = ups.map((u: unknown) => {
    const x = (u ?? {}) as Record<string, unknown>;
    return {
      destination_name: label(x.destination_name, 'upstream destination_name'),
      destination_namespace: x.destination_namespace === undefined ? namespace : label(x.destination_namespace, 'upstream destination_namespace'),
      local_bind_port: port(x.local_bind_port, 'upstream local_bind_port'),
    };
  });
  return { destination_service: label(p.destination_service, 'proxy.destination_service'), upstreams };
}

/** A complete, validated instance from a registration body. */
export function parseInstance(namespace: string, service: string, id: string, body: Record<string, unknown>): Instance {
  const kind = body.kind === undefined || body.kind === '' || body.kind === 'typical' ? 'typical' : body.kind === 'connect-proxy' ? 'connect-proxy' : null;
  if (!kind) throw new BadRequestError(`kind ${JSON.stringify(body.kind)}: use "typical" (default) or "connect-proxy"`);
  const rawChecks = body.checks ?? (body.check ? [body.check] : []);
  if (!Array.isArray(rawChecks)) throw new BadRequestError('checks must be a list');
  if (rawChecks.length > MAX_CHECKS) throw new BadRequestError(`checks: at most ${MAX_CHECKS} per instance`);
  const addr = address(body.address);
  const checks = rawChecks.map((c: unknown, i: number) => check(c, id, i, rawChecks.length));
  // The server runs these checks and keeps what they read: pointing one elsewhere than the instance would make
  // Aegis fetch arbitrary URLs for whoever may register (request forgery), so a check targets its own instance.
  for (const c of checks) {
    const host = c.http ? new URL(c.http).hostname : c.tcp ? c.tcp.slice(0, c.tcp.lastIndexOf(':')) : null;
    if (host !== null && host.replace(/^\[(.*)\]$/, '$1').toLowerCase() !== addr.toLowerCase()) {
      throw new BadRequestError(`check ${c.id} targets ${host}, not the instance's address ${addr}: a check may only probe its own instance`);
    }
  }
  if (new Set(checks.map((c) => c.id)).size !== checks.length) throw new BadRequestError('two checks of the instance have the same id');
  return {
    namespace: label(namespace, 'namespace'), service: label(service, 'service'), id: instanceId(id),
    address: addr, port: port(body.port, 'port', true),
    tags: strings(body.tags, 'tags', MAX_TAGS), meta: meta(body.meta), kind,
    proxy: kind === 'connect-proxy' ? proxy(body.proxy, namespace) : null,
    checks,
  };
}
