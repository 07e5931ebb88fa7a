import { Packet, type Resource } from 'dns2';
import type { DnsCatalog } from '../model.js';
import { instanceLabel, instanceName, ipv4, ipv6, isHostname, route } from './names.js';
import { CLASS, RCODE, TYPE, type Query, type Reply } from './wire.js';

// What the zone says about a name: the catalog's passing instances as A, AAAA and SRV records, NXDOMAIN for names
// that do not exist, and an empty NOERROR (with the SOA, for negative caching, RFC 2308 §3) for names that exist
// without records of the asked type, such as a service with no passing instance (as Consul does).

/**
 * Answer records per reply, at most (Consul has a similar `a_record_limit`). A UDP reply holds far fewer; over TCP
 * this bounds the CPU one query can cost (dns2 spends ~30 µs encoding an SRV record with its address). The full
 * list is the HTTP API's job.
 */
export const MAX_ANSWERS = 256;
/** SRV targets remembered so that `<label>.instance.<ns>.<domain>` resolves; the oldest are forgotten first. */
const MAX_TARGETS = 10_000;

type Passing = { id: string; address: string; port: number };

export interface Zone {
  catalog: DnsCatalog;
  /** The domain's labels, lowercased. */
  domain: string[];
  ttl: number;
  /**
   * `<namespace>\0<instance label>` → the instance, for every SRV target named so far. DnsCatalog finds instances
   * only by service, so an instance name resolves on a server that has named it in an SRV answer (as clients ask).
   */
  targets: Map<string, { service: string; id: string }>;
}

export function newZone(catalog: DnsCatalog, domain: string[], ttl: number): Zone {
  return { catalog, domain, ttl, targets: new Map() };
}

export function answer(query: Query, zone: Zone): Reply {
  // RFC 6891 §6.1.3: this server speaks EDNS version 0 only.
  if (query.edns && query.edns.version !== 0) return reply(RCODE.BADVERS);
  if (query.qclass !== CLASS.IN && query.qclass !== CLASS.ANY) return reply(RCODE.REFUSED);
  const where = route(query.labels, zone.domain);
  switch (where.kind) {
    case 'outside':
      return reply(RCODE.NXDOMAIN);
    case 'unknown':
      return negative(zone, RCODE.NXDOMAIN);
    case 'branch':
      return negative(zone, RCODE.NOERROR);
    case 'apex':
      return query.qtype === TYPE.SOA || query.qtype === TYPE.ANY ? reply(RCODE.NOERROR, [soa(zone, '')]) : negative(zone, RCODE.NOERROR);
    case 'service': {
      const passing = zone.catalog.passingInstances(where.namespace, where.service);
      if (passing === null) return negative(zone, RCODE.NXDOMAIN);
      // Records are made lazily, in a fresh random order: encodeReply stops taking them when the message is full.
      if (query.qtype === TYPE.SRV) {
        const named: { target: string; instance: Passing }[] = [];
        const srv = srvRecords(shuffled(passing), where.namespace, where.service, zone, named);
        return positive(zone, srv, addressesOfTargets(named, zone.ttl));
      }
      return positive(zone, addressRecords(query.qtype, shuffled(passing), '', zone.ttl));
    }
    case 'instance': {
      const key = `${where.namespace}\0${where.label}`;
      const named = zone.targets.get(key);
      // Still passing? The answer is the catalog's now, not what it was when the name was handed out.
      const found = named && zone.catalog.passingInstances(where.namespace, named.service)?.find((p) => p.id === named.id);
      if (found === undefined) {
        zone.targets.delete(key);
        return negative(zone, RCODE.NXDOMAIN);
      }
      return positive(zone, addressRecords(query.qtype, [found], '', zone.ttl));
    }
  }
}

/** The answers (at most MAX_ANSWERS), or an empty NOERROR when there are none. */
function positive(zone: Zone, answers: Iterator<Resource>, additionals: Iterable<Resource> = []): Reply {
  const first = answers.next();
  if (first.done) return negative(zone, RCODE.NOERROR);
  return reply(RCODE.NOERROR, take(first.value, answers, MAX_ANSWERS), [], additionals);
}

/** One SRV record per instance; each target is pushed to `named` as its record is made, for the additional section. */
function* srvRecords(passing: Iterable<Passing>, namespace: string, service: string, zone: Zone, named: { target: string; instance: Passing }[]): Generator<Resource> {
  for (const p of passing) {
    const target = srvTarget(p, namespace, service, zone);
    if (target === null) continue;
    named.push({ target, instance: p });
    yield new Packet.Resource({ name: '', type: TYPE.SRV, class: CLASS.IN, ttl: zone.ttl, priority: 1, weight: 1, port: p.port, target });
  }
}

/** Read only after the answers are written, so it covers exactly the targets that made it into the reply. */
function* addressesOfTargets(named: readonly { target: string; instance: Passing }[], ttl: number): Generator<Resource> {
  for (const { target, instance } of named) yield* addressRecords(TYPE.ANY, [instance], target, ttl);
}

/** The instance's name when its address is an IP literal (and remember it), else the host name it registered. */
function srvTarget(p: Passing, namespace: string, service: string, zone: Zone): string | null {
  if (ipv4(p.address) === null && ipv6(p.address) === null) return isHostname(p.address) ? p.address : null;
  const label = instanceLabel(p.id);
  const key = `${namespace}\0${label}`;
  zone.targets.delete(key); // re-inserted last: the map's order is least recently named first
  zone.targets.set(key, { service, id: p.id });
  if (zone.targets.size > MAX_TARGETS) zone.targets.delete(zone.targets.keys().next().value as string);
  return instanceName(label, namespace, zone.domain);
}

/** A records for A, AAAA for AAAA, both for ANY; addresses that are not IP literals of that family are skipped. */
function* addressRecords(qtype: number, passing: Iterable<Passing>, owner: string, ttl: number): Generator<Resource> {
  for (const p of passing) {
    const v4 = qtype === TYPE.A || qtype === TYPE.ANY ? ipv4(p.address) : null;
    if (v4 !== null) yield new Packet.Resource({ name: owner, type: TYPE.A, class: CLASS.IN, ttl, address: v4 });
    const v6 = qtype === TYPE.AAAA || qtype === TYPE.ANY ? ipv6(p.address) : null;
    if (v6 !== null) yield new Packet.Resource({ name: owner, type: TYPE.AAAA, class: CLASS.IN, ttl, address: v6 });
  }
}

function reply(rcode: number, answers: Iterable<Resource> = [], authorities: Iterable<Resource> = [], additionals: Iterable<Resource> = []): Reply {
  return { rcode, answers, authorities, additionals };
}

/** NXDOMAIN or an empty NOERROR, with the zone's SOA in authority so resolvers may cache the absence (RFC 2308 §3). */
function negative(zone: Zone, rcode: number): Reply {
  return reply(rcode, [], [soa(zone, zone.domain.join('.'))]);
}

function soa(zone: Zone, owner: string): Resource {
  const domain = zone.domain.join('.');
  return new Packet.Resource({
    name: owner,
    type: TYPE.SOA,
    class: CLASS.IN,
    ttl: zone.ttl,
    primary: `ns.${domain}`,
    admin: `hostmaster.${domain}`,
    // The zone is generated per query: a serial that only grows is all a secondary could use.
    serial: Math.floor(Date.now() / 1000) >>> 0,
    refresh: 3600,
    retry: 600,
    expiration: 86400,
    // RFC 2308 §5: the negative-caching TTL, the same as the records' own.
    minimum: zone.ttl,
  });
}

/**
 * Fisher–Yates, one pick at a time: a new order per answer spreads clients over instances, and only the picks a
 * reply uses are paid for. Math.random is enough; the order is not a secret.
 */
function* shuffled<T>(items: readonly T[]): Generator<T> {
  const pool = items.slice();
  for (let i = pool.length - 1; i >= 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    const picked = pool[j] as T;
    pool[j] = pool[i] as T;
    yield picked;
  }
}

function* take<T>(first: T, rest: Iterator<T>, max: number): Generator<T> {
  yield first;
  for (let n = 1; n < max; n++) {
    const next = rest.next();
    if (next.done) return;
    yield next.value;
  }
}
