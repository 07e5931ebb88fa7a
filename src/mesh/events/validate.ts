import { isIP } from 'node:net';
import { BadRequestError, PayloadTooLargeError } from '../../core/errors.js';
import type { EventReason, ProxyEvent, RefusalReason } from '../proxy/types.js';

// The wire form of the proxies' security events (POST mesh/events) and its strict validation. A proxy reports what
// it saw; none of it is trusted beyond its shape: the reporter is the authenticated caller, never a body field.

/** At most this many events per batch, and this many bytes of JSON per request. */
export const MAX_BATCH_EVENTS = 500;
export const MAX_BATCH_BYTES = 64 * 1024;
export const MAX_DETAIL_CHARS = 512;
// SPIFFE-ID §2.3: implementations must support IDs up to 2048 bytes.
export const MAX_SPIFFE_ID_CHARS = 2048;
// `[ffff:…:ffff%interface]:65535` and a little room.
const MAX_PEER_CHARS = 80;

export const EVENT_TYPES = ['refused', 'denied', 'closed'] as const;
export const REFUSAL_REASONS: readonly RefusalReason[] = [
  'no_certificate', 'unknown_ca', 'expired', 'not_yet_valid', 'revoked', 'wrong_identity', 'bad_svid', 'protocol',
];
export const EVENT_REASONS: readonly EventReason[] = [...REFUSAL_REASONS, 'denied'];
const DIRECTIONS = ['inbound', 'outbound'] as const;
const FIELDS = new Set(['type', 'reason', 'direction', 'peer', 'spiffe_id', 'detail']);

/** One event as a proxy sends it (snake_case, like the rest of the API). */
export interface WireEvent {
  type: ProxyEvent['type'];
  reason: EventReason;
  direction: ProxyEvent['direction'];
  /** `ip:port` of the TLS peer; IPv6 bracketed or, as Node prints a remote address, not. */
  peer: string;
  /** The URI SAN the peer presented: a claim, not a verified identity when the peer was refused. */
  spiffe_id?: string;
  detail?: string;
}

// Printable ASCII only: these strings end up in dashboards and logs, where a control character could forge lines.
const PRINTABLE = /^[\x20-\x7e]*$/;
const URI_CHARS = /^[\x21-\x7e]+$/;

/** True for `ip:port` with a literal IPv4/IPv6 address and a port 1–65535. */
export function isPeerAddress(s: string): boolean {
  if (s.length > MAX_PEER_CHARS) return false;
  const colon = s.lastIndexOf(':');
  if (colon <= 0) return false;
  const port = s.slice(colon + 1);
  if (!/^\d{1,5}$/.test(port) || Number(port) < 1 || Number(port) > 65_535) return false;
  let host = s.slice(0, colon);
  if (host.startsWith('[') && host.endsWith(']')) {
    host = host.slice(1, -1);
    return isIP(host) === 6;
  }
  return isIP(host) !== 0;
}

/**
 * The events of a request body, each checked, or a 400 naming the first bad event's index and field (the batch is
 * all or nothing: a proxy that sends garbage learns of it rather than losing part of a batch silently). Too many
 * bytes is 413.
 */
export function parseEventBatch(raw: unknown): WireEvent[] {
  if (!Array.isArray(raw)) throw new BadRequestError('field "events": expected a list of events');
  if (raw.length === 0) throw new BadRequestError('field "events": the list is empty; send at least one event');
  if (raw.length > MAX_BATCH_EVENTS) throw new BadRequestError(`field "events": ${raw.length} events; send at most ${MAX_BATCH_EVENTS} per batch`);
  // Measured on the parsed value (the HTTP layer's own limit bounds what was read): the same for any client formatting.
  const bytes = Buffer.byteLength(JSON.stringify(raw));
  if (bytes > MAX_BATCH_BYTES) throw new PayloadTooLargeError(`field "events": ${bytes} bytes of JSON; send at most ${MAX_BATCH_BYTES} per request (smaller batches)`);
  return raw.map((e, i) => parseEvent(e, i));
}

function parseEvent(e: unknown, i: number): WireEvent {
  const at = `events[${i}]`;
  const bad = (field: string, why: string) => new BadRequestError(`${at}.${field}: ${why}`);
  if (typeof e !== 'object' || e === null || Array.isArray(e)) throw new BadRequestError(`${at}: expected an object`);
  const o = e as Record<string, unknown>;
  for (const k of Object.keys(o)) if (!FIELDS.has(k)) throw bad(k, `unknown field; an event has ${[...FIELDS].join(', ')}`);

  const type = oneOf(o.type, EVENT_TYPES, () => bad('type', `expected one of ${EVENT_TYPES.join(', ')}, got ${shown(o.type)}`));
  const reason = oneOf(o.reason, EVENT_REASONS, () => bad('reason', `expected one of ${EVENT_REASONS.join(', ')}, got ${shown(o.reason)}`));
  // A denial is authorization's "no"; a refusal is a failed verification. A cut connection may have either cause.
  if (type === 'denied' && reason !== 'denied') throw bad('reason', `a denied event has reason "denied", got ${shown(reason)}`);
  if (type === 'refused' && reason === 'denied') throw bad('reason', 'a refused event has a verification reason, not "denied"');
  const direction = oneOf(o.direction, DIRECTIONS, () => bad('direction', `expected inbound or outbound, got ${shown(o.direction)}`));
  if (typeof o.peer !== 'string' || !isPeerAddress(o.peer)) throw bad('peer', `expected ip:port (IPv6 as [addr]:port), got ${shown(o.peer)}`);

  const out: WireEvent = { type, reason, direction, peer: o.peer };
  if (o.spiffe_id !== undefined) {
    const id = o.spiffe_id;
    if (typeof id !== 'string' || !URI_CHARS.test(id)) throw bad('spiffe_id', `expected a URI (printable ASCII, no spaces), got ${shown(id)}`);
    if (id.length > MAX_SPIFFE_ID_CHARS) throw bad('spiffe_id', `longer than ${MAX_SPIFFE_ID_CHARS} characters`);
    out.spiffe_id = id;
  }
  if (o.detail !== undefined) {
    const d = o.detail;
    if (typeof d !== 'string' || !PRINTABLE.test(d)) throw bad('detail', `expected printable ASCII text, got ${shown(d)}`);
    if (d.length > MAX_DETAIL_CHARS) throw bad('detail', `longer than ${MAX_DETAIL_CHARS} characters`);
    out.detail = d;
  }
  return out;
}

function oneOf<T extends string>(v: unknown, allowed: readonly T[], err: () => Error): T {
  if (typeof v !== 'string' || !(allowed as readonly string[]).includes(v)) throw err();
  return v as T;
}

function shown(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}…` : v);
  if (Array.isArray(v)) return 'a list';
  return v === null ? 'null' : typeof v;
}

/**
 * What a proxy sends for one of its events: the same checks the server applies, made here so one odd event
 * cannot get a whole batch refused. A detail is made printable and cut to size; a claimed ID that is no URI is
 * left out. Null when the event cannot be represented at all (the peer's address was already gone).
 */
export function toWireEvent(ev: ProxyEvent): WireEvent | null {
  if (!isPeerAddress(ev.peer)) return null;
  const out: WireEvent = { type: ev.type, reason: ev.reason, direction: ev.direction, peer: ev.peer };
  if (ev.spiffeId !== undefined && URI_CHARS.test(ev.spiffeId) && ev.spiffeId.length <= MAX_SPIFFE_ID_CHARS) out.spiffe_id = ev.spiffeId;
  if (ev.detail !== undefined) out.detail = ev.detail.replace(/[^\x20-\x7e]/g, '?').slice(0, MAX_DETAIL_CHARS);
  return out;
}

/** JSON bytes of a wire event inside a batch (with its separating comma): what a sender budgets against MAX_BATCH_BYTES. */
export function wireEventBytes(ev: WireEvent): number {
  return Buffer.byteLength(JSON.stringify(ev)) + 1;
}
