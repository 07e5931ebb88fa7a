import type { SecureStore } from '../../core/barrier/index.js';
import { BadRequestError, ConflictError, TxnConflictError } from '../../core/errors.js';
import { ReadGuard } from '../../core/storage/index.js';
import { generateVersion } from './key-material.js';
import type { KeyPolicy, KeyType } from './key-types.js';
import { LoadedKey } from './loaded-key.js';

// Layout inside the mount's view: policy/<name>, one document per key with every version's material (Vault's
// layout). The barrier encrypts it; nothing else is stored.
const POLICY = 'policy/';
const MAX_RETRIES = 8;
const CACHE_MAX = 10_000;
// Vault's framework.GenericNameRegex.
const NAME = /^\w(?:[\w.@-]*\w)?$/;

export interface NewKey {
  name: string;
  type: KeyType;
  derived: boolean;
  exportable: boolean;
  autoRotatePeriod: number;
  keySize?: number;
}

/** What a mutation does with the current document: write this one, delete it, or leave it. */
type Change = { put: KeyPolicy } | { delete: true } | null;

function addVersion(p: KeyPolicy): void {
  const n = p.latest_version + 1;
  p.versions[String(n)] = generateVersion(p.type, p.derived, p.key_size);
  p.latest_version = n;
}

export function checkKeyName(name: string): string {
  if (name.length > 256 || !NAME.test(name)) {
    throw new BadRequestError(`invalid key name "${name.length > 40 ? name.slice(0, 40) + '…' : name}": use letters, digits, "_", "-", "." and "@" (not at either end), at most 256 characters`);
  }
  return name;
}

/**
 * The named keys of one transit mount. Reads go through a cache of decoded keys (LoadedKey), evicted by `changed`
 * for every committed write under the mount — this server's or, with shared storage, another's — so a rotation
 * anywhere is seen at the next request. Writes are read-modify-write transactions guarded by the document's
 * storage version, so concurrent rotations and config changes never lose one another.
 */
export class Keyring {
  private readonly cache = new Map<string, LoadedKey>();
  private readonly guard = new ReadGuard();
  /** Per-key tail of the in-process mutation queue (see mutate). */
  private readonly queues = new Map<string, Promise<unknown>>();

  constructor(private readonly store: SecureStore) {}

  /** A storage key under this mount changed. */
  changed(storageKey: string): void {
    if (!storageKey.startsWith(POLICY)) return;
    const name = storageKey.slice(POLICY.length);
    this.cache.delete(name);
    this.guard.changed(name);
  }

  clear(): void {
    this.cache.clear();
  }

  /** The decoded key, or null when there is none by that name. */
  async get(name: string): Promise<LoadedKey | null> {
    const hit = this.cache.get(name);
    if (hit) return hit;
    if (!NAME.test(name)) return null;
    this.guard.begin(name);
    let found: { value: KeyPolicy; version: number } | null;
    let stale = true;
    try {
      found = await this.store.getJson<KeyPolicy>(POLICY + name);
    } finally {
      stale = this.guard.end(name);
    }
    if (!found) return null;
    const loaded = new LoadedKey(found.value);
    // A read that raced a write may hold the old document: use it for this request, never cache it.
    if (!stale) {
      if (this.cache.size >= CACHE_MAX) this.cache.delete(this.cache.keys().next().value!);
      this.cache.set(name, loaded);
    }
    return loaded;
  }

  /** The key for an operation on it; a missing key is Vault's 400 "encryption key not found". */
  async require(name: string): Promise<LoadedKey> {
    const k = await this.get(checkKeyName(name));
    if (!k) throw new BadRequestError(`encryption key not found: no transit key named "${name}"`);
    return k;
  }

  /** The stored document itself, key material included (export only); read from storage, not the cache. */
  async document(name: string): Promise<KeyPolicy | null> {
    if (!NAME.test(name)) return null;
    return (await this.store.getJson<KeyPolicy>(POLICY + name))?.value ?? null;
  }

  async list(): Promise<string[]> {
    return (await this.store.list(POLICY)).filter((k) => !k.endsWith('/'));
  }

  /** Creates the key unless it exists; `created` says which (an existing key is left exactly as it was). */
  async create(req: NewKey): Promise<{ policy: KeyPolicy; created: boolean }> {
    let created = false;
    const policy = await this.mutate(checkKeyName(req.name), (current) => {
      created = current === null;
      if (current) return null;
      return {
        put: {
          name: req.name, type: req.type, derived: req.derived, exportable: req.exportable, deletion_allowed: false,
          min_decryption_version: 1, min_encryption_version: 0, latest_version: 1, auto_rotate_period: req.autoRotatePeriod,
          ...(req.keySize !== undefined ? { key_size: req.keySize } : {}),
          versions: { 1: generateVersion(req.type, req.derived, req.keySize) },
        },
      };
    });
    return { policy: policy!, created };
  }

  /** Adds a version and makes it the latest. */
  rotate(name: string, missing = 'key not found'): Promise<KeyPolicy> {
    return this.update(name, missing, addVersion);
  }

  /** Changes settings; `change` may throw a BadRequestError to refuse (nothing is written then). */
  update(name: string, missing: string, change: (p: KeyPolicy) => void): Promise<KeyPolicy> {
    return this.mutate(checkKeyName(name), (current) => {
      if (!current) throw new BadRequestError(missing);
      change(current);
      return { put: current };
    }) as Promise<KeyPolicy>;
  }

  /** Deletes the key and all its versions, only when its deletion_allowed is set. */
  async delete(name: string): Promise<void> {
    await this.mutate(checkKeyName(name), (current) => {
      if (!current) throw new BadRequestError(`error deleting key ${name}: could not delete key; not found`);
      if (!current.deletion_allowed) {
        throw new BadRequestError(`error deleting key ${name}: deletion is not allowed for this key; set deletion_allowed=true with keys/${name}/config first`);
      }
      return { delete: true };
    });
  }

  /** Rotates every key whose auto_rotate_period has passed since its latest version was made; returns how many. */
  async rotateDue(now = Date.now()): Promise<number> {
    let rotated = 0;
    const due = (p: KeyPolicy) => p.auto_rotate_period > 0 && now - Date.parse(p.versions[String(p.latest_version)]!.creation_time) >= p.auto_rotate_period * 1000;
    for (const name of await this.list()) {
      const k = await this.document(name);
      if (!k || !due(k)) continue;
      // Checked again inside the transaction: another server may have rotated it meanwhile.
      let did = false;
      await this.mutate(name, (current) => {
        did = current !== null && due(current);
        if (!did) return null;
        addVersion(current!);
        return { put: current! };
      });
      if (did) rotated++;
    }
    return rotated;
  }

  /**
   * Read-modify-write of one key document as a single transaction checked against the version that was read;
   * retried when another writer got there first. Returns the document as it is afterwards (null if deleted or absent).
   */
  private mutate(name: string, fn: (current: KeyPolicy | null) => Change): Promise<KeyPolicy | null> {
    // Writers of one key in this process take turns, so they cannot exhaust each other's retries; the retries
    // remain for writers on other servers.
    const run = (this.queues.get(name) ?? Promise.resolve()).then(() => this.mutateOnce(name, fn));
    const tail = run.catch(() => undefined);
    this.queues.set(name, tail);
    void tail.then(() => { if (this.queues.get(name) === tail) this.queues.delete(name); });
    return run;
  }

  private async mutateOnce(name: string, fn: (current: KeyPolicy | null) => Change): Promise<KeyPolicy | null> {
    const key = POLICY + name;
    for (let attempt = 0; ; attempt++) {
      const found = await this.store.getJson<KeyPolicy>(key);
      const change = fn(found?.value ?? null);
      if (!change) return found?.value ?? null;
      try {
        await this.store.txn([
          { type: 'check', key, version: found?.version ?? 0 },
          'put' in change ? { type: 'put', key, value: change.put } : { type: 'delete', key },
        ]);
        return 'put' in change ? change.put : null;
      } catch (err) {
        if (!(err instanceof TxnConflictError)) throw err;
        if (attempt >= MAX_RETRIES) throw new ConflictError(`too many concurrent changes to transit key ${name}; retry`);
      }
    }
  }
}
