import { createHash } from 'node:crypto';
import { isIP } from 'node:net';
import { BadRequestError } from '../../core/errors.js';
import { DEFAULT_NAMESPACE } from '../model.js';

// The catalog's names under the DNS domain (Consul's layout, with namespaces where Consul has datacenters):
//   <service>.service[.<namespace>].<domain>     the service's passing instances (A, AAAA, SRV)
//   <label>.instance[.<namespace>].<domain>      one instance, as named in SRV targets (A, AAAA)

/** RFC 1035 §2.3.1 host label, lowercase: what the catalog accepts as namespace and service names. */
const LABEL = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;
const HOSTNAME = /^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;
/** The shape of a hashed instance label; an id of this shape is hashed too, so two instances never share a label. */
const HASHED = /^h-[0-9a-f]{32}$/;
/** Keeps `<63-octet label>.instance.<63-octet namespace>.<domain>` under the 255-octet name limit (RFC 1035 §2.3.4). */
const MAX_DOMAIN = 100;

export type Route =
  | { kind: 'outside' }
  | { kind: 'apex' }
  /** An empty non-terminal: nothing lives here, but names below it do, so it must not be NXDOMAIN (RFC 8020). */
  | { kind: 'branch' }
  | { kind: 'service'; namespace: string; service: string }
  | { kind: 'instance'; namespace: string; label: string }
  | { kind: 'unknown' };

/** The domain's labels, lowercased; refuses anything that is not a plain host name. */
export function domainLabels(domain: string): string[] {
  const name = domain.toLowerCase().replace(/^\.+|\.+$/g, '');
  if (name.length === 0 || name.length > MAX_DOMAIN || !HOSTNAME.test(name)) {
    throw new BadRequestError(`DNS domain ${JSON.stringify(domain)} is not valid: use a host name of at most ${MAX_DOMAIN} characters, such as "aegis" or "aegis.internal"`);
  }
  return name.split('.');
}

/** Where a query name (labels lowercased, left to right) falls in the zone. */
export function route(labels: readonly string[], domain: readonly string[]): Route {
  const cut = labels.length - domain.length;
  if (cut < 0 || domain.some((d, i) => labels[cut + i] !== d)) return { kind: 'outside' };
  const rest = labels.slice(0, cut);
  if (rest.length === 0) return { kind: 'apex' };
  if (!rest.every((l) => LABEL.test(l))) return { kind: 'unknown' };
  const [first, second, third] = rest as [string, string?, string?];
  if (rest.length === 1) return { kind: 'branch' }; // `service`, `instance`, or a namespace
  if (rest.length === 2) {
    if (second === 'service') return { kind: 'service', namespace: DEFAULT_NAMESPACE, service: first };
    if (second === 'instance') return { kind: 'instance', namespace: DEFAULT_NAMESPACE, label: first };
    if (first === 'service' || first === 'instance') return { kind: 'branch' };
    return { kind: 'unknown' };
  }
  if (rest.length === 3 && third !== undefined) {
    if (second === 'service') return { kind: 'service', namespace: third, service: first };
    if (second === 'instance') return { kind: 'instance', namespace: third, label: first };
  }
  return { kind: 'unknown' };
}

/**
 * The DNS label naming an instance: its id when that already is a lowercase host label, else `h-` and 128 bits of
 * SHA-256 of the id (ids may hold upper case, "." "_" ":" and be 128 characters long; DNS matching is case-blind).
 */
export function instanceLabel(id: string): string {
  if (LABEL.test(id) && !HASHED.test(id)) return id;
  return `h-${createHash('sha256').update(id).digest('hex').slice(0, 32)}`;
}

export function instanceName(label: string, namespace: string, domain: readonly string[]): string {
  return `${label}.instance.${namespace}.${domain.join('.')}`;
}

export function isHostname(address: string): boolean {
  return HOSTNAME.test(address);
}

/** An IPv4 literal as is, or null. */
export function ipv4(address: string): string | null {
  return isIP(address) === 4 ? address : null;
}

/**
 * An IPv6 literal as eight hex groups (the form dns2's AAAA encoder reads correctly: it mangles embedded IPv4
 * such as `::ffff:10.0.0.1`), or null. Literals with a zone (`fe80::1%eth0`) have no meaning to a remote client.
 */
export function ipv6(address: string): string | null {
  if (isIP(address) !== 6 || address.includes('%')) return null;
  let host: string;
  try {
    // WHATWG URL serialises IPv6 canonically (RFC 5952): lower case, one "::" at most, embedded IPv4 as hex.
    host = new URL(`http://[${address}]/`).hostname.slice(1, -1);
  } catch {
    return null;
  }
  const [head = '', tail] = host.split('::');
  const before = head === '' ? [] : head.split(':');
  const after = tail === undefined || tail === '' ? [] : tail.split(':');
  const groups = [...before, ...Array<string>(8 - before.length - after.length).fill('0'), ...after];
  return groups.length === 8 ? groups.join(':') : null;
}
