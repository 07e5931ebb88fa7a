import { createHmac, randomBytes } from 'node:crypto';
import type { SecureStore, SecureTxnOp } from '../../core/barrier/index.js';
import { BadRequestError, TxnConflictError } from '../../core/errors.js';
import type { Caller } from '../../core/request.js';

// Tokens are random 256-bit bearer secrets. Storage never holds one: entries are keyed by HMAC-SHA256(token)
// under a key that lives in the barrier, so a database dump gives neither tokens nor a way to test guesses
// offline. Lookups are by that HMAC, so no code compares a presented token with a stored one.

export interface TokenEntry {
  accessor: string;
  policies: string[];
  meta: Record<string, string>;
  displayName: string;
  /** HMAC of the parent token; null for orphans (root tokens, `no_parent`). */
  parent: string | null;
  /** Unix seconds. */
  createdAt: number;
  /** Seconds of life granted at creation or last renewal; 0 = never expires. */
  ttl: number;
  /** Unix ms; null = never. */
  expireTime: number | null;
  explicitMaxTtl: number;
  /** Unix ms beyond which renewal cannot go; null = no cap. */
  maxExpireTime: number | null;
  /** Remaining uses; 0 = unlimited. */
  numUses: number;
  renewable: boolean;
  path: string;
  entityId: string;
}

export interface CreateTokenInput {
  id?: string;
  policies: string[];
  meta?: Record<string, string>;
  displayName?: string;
  parent: string | null;
  ttl: number;
  explicitMaxTtl: number;
  numUses: number;
  renewable: boolean;
  path: string;
  /** Seconds from creation beyond which renewal cannot go when there is no explicit max (the system max TTL); defaults to `ttl`. */
  maxTtl?: number;
  /** The attested identity (a SPIFFE ID) the token stands for; set only by attestation, never from API input. */
  entityId?: string;
}

const P = {
  salt: 'sys/token/salt',
  id: 'sys/token/id/',
  accessor: 'sys/token/accessor/',
  parent: 'sys/token/parent/',
} as const;

const MAX_REVOKE_DEPTH = 1000;
const CACHE_MAX = 10_000;

export class TokenStore {
  private key: Buffer | null = null;
  private count = 0;
  /**
   * Live entries by token HMAC, so authentication usually costs no storage read. Every write under the token
   * prefix, from this server or (through `subscribe`) another one, drops the entry it touched.
   */
  private readonly cache = new Map<string, { entry: TokenEntry; version: number }>();
  private unsubscribe: (() => void) | null = null;
  private revokeHooks: ((hash: string) => Promise<void>)[] = [];

  constructor(
    private readonly store: SecureStore,
    private readonly subscribe: (onChange: (key: string) => void) => () => void = () => () => undefined,
  ) {}

  /** Loads (or creates, on first unseal) the HMAC key. */
  async setup(): Promise<void> {
    const existing = await this.store.get(P.salt);
    if (existing) {
      this.key = existing.value;
    } else {
      const key = randomBytes(32);
      await this.store.txn([{ type: 'check', key: P.salt, version: 0 }, { type: 'put', key: P.salt, value: key }]);
      this.key = key;
    }
    this.count = (await this.store.list(P.id)).length;
    this.unsubscribe = this.subscribe((key) => {
      if (key.startsWith(P.id)) this.cache.delete(key.slice(P.id.length));
    });
  }

  /** Runs before each token is deleted by revocation (its leases, its wrapped response go with it). */
  onRevoke(hook: (hash: string) => Promise<void>): void {
    this.revokeHooks.push(hook);
  }

  teardown(): void {
    this.unsubscribe?.();
    this.unsubscribe = null;
    this.cache.clear();
    this.key?.fill(0);
    this.key = null;
  }

  get tokenCount(): number {
    return this.count;
  }

  hash(value: string): string {
    if (!this.key) throw new Error('token store is not set up');
    return createHmac('sha256', this.key).update(value).digest('base64url');
  }

  async create(input: CreateTokenInput): Promise<{ token: string; entry: TokenEntry }> {
    const token = input.id ?? `aegis.${randomBytes(32).toString('base64url')}`;
    if (input.id !== undefined && !/^[A-Za-z0-9._-]{1,256}$/.test(input.id)) {
      throw new BadRequestError('id: a custom token ID may hold only letters, digits, ".", "_" and "-" (at most 256)');
    }
    const now = Date.now();
    const entry: TokenEntry = {
      // Hex, not base64url: an accessor is typed on command lines, and one starting with '-' reads as an option.
      accessor: randomBytes(16).toString('hex'),
      policies: [...new Set(input.policies)],
      meta: input.meta ?? {},
      displayName: input.displayName ?? 'token',
      parent: input.parent,
      createdAt: Math.floor(now / 1000),
      ttl: input.ttl,
      expireTime: input.ttl > 0 ? now + input.ttl * 1000 : null,
      explicitMaxTtl: input.explicitMaxTtl,
      maxExpireTime: input.explicitMaxTtl > 0 ? now + input.explicitMaxTtl * 1000 : input.ttl > 0 ? now + Math.max(input.ttl, input.maxTtl ?? 0) * 1000 : null,
      numUses: input.numUses,
      renewable: input.renewable && input.ttl > 0,
      path: input.path,
      entityId: input.entityId ?? '',
    };
    const hash = this.hash(token);
    const ops: SecureTxnOp[] = [
      { type: 'check', key: P.id + hash, version: 0 },
      { type: 'put', key: P.id + hash, value: entry },
      { type: 'put', key: P.accessor + this.hash(entry.accessor), value: { token: hash } },
    ];
    if (entry.parent) ops.push({ type: 'put', key: `${P.parent}${entry.parent}/${hash}`, value: {} });
    try {
      await this.store.txn(ops);
    } catch (err) {
      if (err instanceof TxnConflictError) throw new BadRequestError('a token with this ID already exists');
      throw err;
    }
    this.count++;
    return { token, entry };
  }

  /** The live entry for a token (by its HMAC), or null when unknown, expired or revoked. */
  async lookupHash(hash: string): Promise<{ entry: TokenEntry; version: number } | null> {
    let found = this.cache.get(hash);
    if (!found) {
      const stored = await this.store.getJson<TokenEntry>(P.id + hash);
      if (!stored) return null;
      found = { entry: stored.value, version: stored.version };
      if (this.cache.size >= CACHE_MAX) this.cache.delete(this.cache.keys().next().value!);
      this.cache.set(hash, found);
    }
    if (found.entry.expireTime !== null && found.entry.expireTime <= Date.now()) {
      // Expired: refuse now and clean up in the background (the sweeper would find it too).
      this.cache.delete(hash);
      this.revoke(hash).catch(() => undefined);
      return null;
    }
    return found;
  }

  async lookup(token: string): Promise<{ hash: string; entry: TokenEntry; version: number } | null> {
    if (!this.key || token.length === 0 || token.length > 512) return null;
    const hash = this.hash(token);
    const found = await this.lookupHash(hash);
    return found ? { hash, ...found } : null;
  }

  async hashByAccessor(accessor: string): Promise<string | null> {
    if (accessor.length === 0 || accessor.length > 128) return null;
    const idx = await this.store.getJson<{ token: string }>(P.accessor + this.hash(accessor));
    return idx?.value.token ?? null;
  }

  /**
   * Counts one use of a limited-use token. Returns false when the token has no use left (another request took
   * the last one). The entry is deleted as its last use is taken, so the use count is exact under concurrency.
   */
  async use(hash: string, entry: TokenEntry, version: number): Promise<boolean> {
    if (entry.numUses === 0) return true;
    // A conflict means another request changed the entry first (took a use, renewed): take a use from what is
    // stored now, until none is left. Each retry follows someone else's successful write, so this is bounded.
    for (let attempt = 0; attempt < 1000; attempt++) {
      try {
        if (entry.numUses === 1) {
          await this.revoke(hash, { expectVersion: version });
        } else {
          await this.store.txn([
            { type: 'check', key: P.id + hash, version },
            { type: 'put', key: P.id + hash, value: { ...entry, numUses: entry.numUses - 1 } },
          ]);
        }
        return true;
      } catch (err) {
        if (!(err instanceof TxnConflictError)) throw err;
      }
      const now = await this.lookupHash(hash);
      if (!now || now.entry.numUses === 0) return false;
      ({ entry, version } = now);
    }
    return false;
  }

  /** Extends the token's life by `increment` seconds (or its original TTL), never beyond its max. */
  async renew(hash: string, increment: number): Promise<TokenEntry> {
    const found = await this.lookupHash(hash);
    if (!found) throw new BadRequestError('token not found: it is unknown, expired or revoked');
    const entry = found.entry;
    if (entry.ttl === 0 && entry.expireTime === null) return entry;
    if (!entry.renewable) throw new BadRequestError('token is not renewable');
    const now = Date.now();
    const want = (increment > 0 ? increment : entry.ttl) * 1000;
    let expire = now + want;
    if (entry.maxExpireTime !== null) expire = Math.min(expire, entry.maxExpireTime);
    const next: TokenEntry = { ...entry, expireTime: expire, ttl: Math.max(0, Math.round((expire - now) / 1000)) };
    await this.store.txn([{ type: 'check', key: P.id + hash, version: found.version }, { type: 'put', key: P.id + hash, value: next }]);
    return next;
  }

  /**
   * Revokes the token and, unless `orphanChildren`, every token created from it (depth first). Children of an
   * orphan-revoked token become orphans.
   */
  async revoke(hash: string, opts: { orphanChildren?: boolean; expectVersion?: number } = {}, depth = 0): Promise<number> {
    if (depth > MAX_REVOKE_DEPTH) throw new Error('token tree deeper than 1000: refusing to recurse further');
    let revoked = 0;
    const children = await this.store.list(`${P.parent}${hash}/`);
    for (const child of children) {
      if (opts.orphanChildren) {
        const c = await this.store.getJson<TokenEntry>(P.id + child);
        if (c) await this.store.put(P.id + child, { ...c.value, parent: null });
        await this.store.delete(`${P.parent}${hash}/${child}`);
      } else {
        revoked += await this.revoke(child, {}, depth + 1);
      }
    }
    const found = await this.store.getJson<TokenEntry>(P.id + hash);
    if (!found) {
      if (opts.expectVersion !== undefined) throw new TxnConflictError(P.id + hash);
      return revoked;
    }
    const e = found.value;
    for (const hook of this.revokeHooks) await hook(hash);
    const ops: SecureTxnOp[] = [
      { type: 'check', key: P.id + hash, version: opts.expectVersion ?? found.version },
      { type: 'delete', key: P.id + hash },
      { type: 'delete', key: P.accessor + this.hash(e.accessor) },
    ];
    if (e.parent) ops.push({ type: 'delete', key: `${P.parent}${e.parent}/${hash}` });
    await this.store.txn(ops);
    this.count--;
    return revoked + 1;
  }

  /** Hashes of every stored token (for the expiry sweep and `accessors` listing). */
  async allHashes(): Promise<string[]> {
    return this.store.list(P.id);
  }

  async entryByHash(hash: string): Promise<TokenEntry | null> {
    return (await this.store.getJson<TokenEntry>(P.id + hash))?.value ?? null;
  }

  /** Revokes expired tokens; bounded per call so a large store never stalls the server. */
  async sweepExpired(limit = 1000): Promise<number> {
    let n = 0;
    const now = Date.now();
    for (const hash of await this.allHashes()) {
      if (n >= limit) break;
      const e = await this.entryByHash(hash);
      if (e && e.expireTime !== null && e.expireTime <= now) {
        n += await this.revoke(hash).catch(() => 0);
      }
    }
    return n;
  }
}

export function toCaller(token: string, hash: string, e: TokenEntry): Caller {
  return {
    tokenHash: hash,
    accessor: e.accessor,
    policies: e.policies,
    displayName: e.displayName,
    meta: e.meta,
    orphan: e.parent === null,
    token,
    expireTime: e.expireTime,
    entityId: e.entityId,
  };
}
