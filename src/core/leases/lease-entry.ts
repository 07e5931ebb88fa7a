// A lease as stored in the barrier. The lease ID is the path that created the secret plus a random suffix
// (`database/creds/app/6fQk…`), Vault's form, so revoking by prefix revokes "everything this role handed out".

export interface RevokeFailure {
  attempts: number;
  lastError: string;
  /** Unix ms. */
  lastAttempt: number;
  /** Unix ms. */
  nextAttempt: number;
}

export interface LeaseEntry {
  id: string;
  /** The request path that made the secret. */
  path: string;
  /** The mount that made it (by UUID: a path can be remounted; the UUID names exactly one engine's storage). */
  mountUuid: string;
  mountPath: string;
  secretType: string;
  /** What the engine needs to revoke it; secret, so it lives only here, in the barrier. */
  internal: Record<string, unknown>;
  /** HMAC of the token the secret was issued to (revoking the token revokes the lease); null without one. */
  tokenHash: string | null;
  /** Unix ms. */
  issueTime: number;
  expireTime: number;
  maxExpireTime: number;
  lastRenewal: number | null;
  /** Seconds granted at issue: the default renewal increment. */
  ttl: number;
  renewable: boolean;
  revokeFailure?: RevokeFailure;
}

export const LEASE_PREFIX = 'sys/expire/id/';
export const TOKEN_INDEX_PREFIX = 'sys/expire/token/';

export function leaseKey(id: string): string {
  return LEASE_PREFIX + id;
}

/** The token index key: one per (token, lease); the lease ID is encoded so it is a single path segment. */
export function tokenIndexKey(tokenHash: string, id: string): string {
  return `${TOKEN_INDEX_PREFIX}${tokenHash}/${Buffer.from(id).toString('base64url')}`;
}

export function leaseIdFromIndex(segment: string): string {
  return Buffer.from(segment, 'base64url').toString();
}

/** Lease IDs are paths: same rules as request paths, plus a bounded length. */
export function validLeaseId(id: string): boolean {
  return id.length > 0 && id.length <= 1100 && !id.startsWith('/') && !id.split('/').some((s) => s === '' || s === '.' || s === '..') && !/[\u0000-\u001f\u007f]/.test(id);
}
