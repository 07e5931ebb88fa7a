import { createHash, randomBytes } from 'node:crypto';
import type { SecureStore } from '../../core/barrier/index.js';
import { PermissionDeniedError, TxnConflictError } from '../../core/errors.js';

// Single-use join tokens bound to one SPIFFE ID (SPIRE's join token attestor). A token is 256 random bits, so
// storage keeps only its SHA-256: a database dump cannot be replayed, and guessing is hopeless without a key.
// Use is a check-and-delete transaction on the entry's version: of any number of concurrent uses, one wins.

const PREFIX = 'join/';
const TOKEN_PREFIX = 'aegis-join.';

interface JoinTokenEntry {
  spiffe_id: string;
  created_at: string;
  expires_at: string;
}

export interface JoinToken {
  token: string;
  spiffeId: string;
  expiresAt: Date;
}

function keyOf(token: string): string {
  return PREFIX + createHash('sha256').update(token).digest('base64url');
}

export class JoinTokens {
  constructor(private readonly store: SecureStore) {}

  async create(spiffeId: string, ttlSeconds: number): Promise<JoinToken> {
    const token = TOKEN_PREFIX + randomBytes(32).toString('base64url');
    const now = Date.now();
    const expiresAt = new Date(now + ttlSeconds * 1000);
    await this.store.put(keyOf(token), { spiffe_id: spiffeId, created_at: new Date(now).toISOString(), expires_at: expiresAt.toISOString() } satisfies JoinTokenEntry);
    return { token, spiffeId, expiresAt };
  }

  /**
   * The SPIFFE ID the token is bound to, consuming the token. `expect`, when given, must match first (a
   * mismatch leaves the token unused). Throws PermissionDeniedError for unknown, used or expired tokens.
   */
  async consume(token: string, expect?: (spiffeId: string) => string | null): Promise<string> {
    if (typeof token !== 'string' || !token.startsWith(TOKEN_PREFIX) || token.length > 128) {
      throw new PermissionDeniedError('join token refused: not an Aegis join token');
    }
    const key = keyOf(token);
    const got = await this.store.get(key);
    if (!got) throw new PermissionDeniedError('join token refused: unknown or already used');
    const entry = JSON.parse(got.value.toString('utf8')) as JoinTokenEntry;
    if (Date.parse(entry.expires_at) <= Date.now()) {
      await this.store.txn([{ type: 'check', key, version: got.version }, { type: 'delete', key }]).catch(() => undefined);
      throw new PermissionDeniedError(`join token refused: expired at ${entry.expires_at}`);
    }
    const mismatch = expect?.(entry.spiffe_id);
    if (mismatch) throw new PermissionDeniedError(`join token refused: ${mismatch}`);
    try {
      await this.store.txn([{ type: 'check', key, version: got.version }, { type: 'delete', key }]);
    } catch (err) {
      if (err instanceof TxnConflictError) throw new PermissionDeniedError('join token refused: unknown or already used');
      throw err;
    }
    return entry.spiffe_id;
  }

}
