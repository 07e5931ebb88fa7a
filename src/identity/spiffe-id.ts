import { BadRequestError } from '../core/errors.js';

// SPIFFE IDs per the SPIFFE-ID standard (spiffe/spiffe standards/SPIFFE-ID.md). Every MUST of §2 is checked here:
// the one place that decides what an identity string may look like. Messages reuse go-spiffe's wording, so an
// operator who knows SPIRE recognizes them.

export interface SpiffeId {
  /** The authority (host) part: `example.org`. */
  trustDomain: string;
  /** '' for the trust domain's own ID, else `/seg/seg…` (no trailing slash). */
  path: string;
  /** The whole ID, exactly as given (it is already canonical once it parses). */
  uri: string;
}

const PREFIX = 'spiffe://';
// §2.3: SPIFFE implementations MUST support URIs up to 2048 bytes and SHOULD NOT generate longer ones; since only
// ASCII is allowed, characters and bytes agree.
const MAX_ID_BYTES = 2048;
// §2.3: RFC 3986 limits the host to 255 characters, hence the trust domain name to 255 bytes.
const MAX_TRUST_DOMAIN_BYTES = 255;
// Aegis's own naming rule for the namespace and service segments of workload IDs (DNS-label sized).
const MAX_NAME_SEGMENT = 63;

const TD_CHAR = /^[a-z0-9._-]$/;
const PATH_CHAR = /^[a-zA-Z0-9._-]$/;
const TD_RE = /^[a-z0-9._-]+$/;
const PATH_SEGMENT_RE = /^[a-zA-Z0-9._-]+$/;
const NAME_SEGMENT_RE = /^[a-z0-9._-]+$/;

function shown(s: string): string {
  return JSON.stringify(s.length > 80 ? `${s.slice(0, 80)}…` : s);
}

function fail(id: string, why: string): never {
  throw new BadRequestError(`invalid SPIFFE ID ${shown(id)}: ${why}`);
}

/** Why `td` is not a valid trust domain name (§2.1), or null. */
function trustDomainProblem(td: string): string | null {
  if (td === '') return 'trust domain is missing';
  if (td.length > MAX_TRUST_DOMAIN_BYTES) return `trust domain is longer than ${MAX_TRUST_DOMAIN_BYTES} bytes`;
  if (TD_RE.test(td)) return null;
  // §2.1: userinfo and port MUST be empty, and neither '@' nor ':' may appear.
  if (td.includes('@')) return 'user info is not allowed';
  if (td.startsWith('[')) return 'IPv6 address literals are not valid trust domain names';
  if (td.includes(':')) return 'port is not allowed (and a ":" may not appear in the trust domain)';
  if (td.includes('%')) return 'percent-encoded characters are not allowed in the trust domain';
  if (/[A-Z]/.test(td)) return 'trust domain must be lowercase';
  const bad = [...td].find((c) => !TD_CHAR.test(c))!;
  return `trust domain characters are limited to lowercase letters, numbers, dots, dashes, and underscores (found ${JSON.stringify(bad)})`;
}

/** Why `path` ('' or '/…') is not a valid SPIFFE ID path (§2.2), or null. */
function pathProblem(path: string): string | null {
  if (path === '') return null;
  const segments = path.slice(1).split('/');
  for (let i = 0; i < segments.length; i++) {
    const seg = segments[i]!;
    if (seg === '') return i === segments.length - 1 ? 'path cannot have a trailing slash' : 'path cannot contain empty segments';
    if (seg === '.' || seg === '..') return 'path cannot contain dot segments';
    if (!PATH_SEGMENT_RE.test(seg)) {
      if (seg.includes('%')) return 'path cannot contain percent-encoded characters';
      const bad = [...seg].find((c) => !PATH_CHAR.test(c))!;
      return `path segment characters are limited to letters, numbers, dots, dashes, and underscores (found ${JSON.stringify(bad)})`;
    }
  }
  return null;
}

/** Parses and validates a SPIFFE ID; throws BadRequestError saying which rule it breaks. */
export function parseSpiffeId(s: string): SpiffeId {
  if (typeof s !== 'string' || s === '') throw new BadRequestError('invalid SPIFFE ID: it is empty');
  if (s.length > MAX_ID_BYTES) fail(s, `longer than ${MAX_ID_BYTES} bytes`);
  if (!s.startsWith(PREFIX)) {
    // §2: the scheme MUST be `spiffe`; Aegis accepts only its canonical lowercase form (as go-spiffe does).
    if (s.slice(0, PREFIX.length).toLowerCase() === PREFIX) fail(s, 'scheme must be lowercase "spiffe://"');
    fail(s, 'scheme is missing or invalid: a SPIFFE ID starts with "spiffe://"');
  }
  // §2: MUST NOT include a query or fragment component.
  if (s.includes('?')) fail(s, 'query is not allowed');
  if (s.includes('#')) fail(s, 'fragment is not allowed');
  const rest = s.slice(PREFIX.length);
  const slash = rest.indexOf('/');
  const trustDomain = slash === -1 ? rest : rest.slice(0, slash);
  const path = slash === -1 ? '' : rest.slice(slash);
  const tdProblem = trustDomainProblem(trustDomain);
  if (tdProblem) fail(s, tdProblem);
  const pProblem = pathProblem(path);
  if (pProblem) fail(s, pProblem);
  return { trustDomain, path, uri: s };
}

/** Throws BadRequestError unless `td` is a valid trust domain name (SPIFFE-ID §2.1, §2.3). */
export function validateTrustDomain(td: string): void {
  if (typeof td !== 'string') throw new BadRequestError('invalid trust domain: it must be a string');
  const problem = trustDomainProblem(td);
  if (problem) throw new BadRequestError(`invalid trust domain ${shown(td)}: ${problem}`);
}

/** `spiffe://<td>`: the trust domain's own ID (the one its signing certificates carry). */
export function trustDomainId(td: string): string {
  validateTrustDomain(td);
  return PREFIX + td;
}

function validateNameSegment(kind: 'namespace' | 'service', value: string): void {
  if (typeof value !== 'string' || value.length === 0 || value.length > MAX_NAME_SEGMENT || !NAME_SEGMENT_RE.test(value) || value === '.' || value === '..') {
    throw new BadRequestError(
      `invalid ${kind} ${shown(String(value))}: use 1–${MAX_NAME_SEGMENT} characters of lowercase letters, digits, '-', '.' and '_' (not "." or "..")`,
    );
  }
}

const WORKLOAD_PATH = /^\/ns\/([^/]+)\/svc\/([^/]+)$/;

/** The namespace and service of a workload SPIFFE ID (`spiffe://<td>/ns/<ns>/svc/<svc>`); null for any other shape. */
export function workloadOf(spiffeId: string): { trustDomain: string; namespace: string; service: string } | null {
  try {
    const id = parseSpiffeId(spiffeId);
    const m = WORKLOAD_PATH.exec(id.path);
    return m ? { trustDomain: id.trustDomain, namespace: m[1]!, service: m[2]! } : null;
  } catch {
    return null;
  }
}

/** `spiffe://<td>/ns/<namespace>/svc/<service>`: the SPIFFE ID Aegis gives a workload. */
export function workloadSpiffeId(trustDomain: string, namespace: string, service: string): string {
  validateTrustDomain(trustDomain);
  validateNameSegment('namespace', namespace);
  validateNameSegment('service', service);
  return `${PREFIX}${trustDomain}/ns/${namespace}/svc/${service}`;
}
