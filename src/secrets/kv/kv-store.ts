import { hash as digest } from 'node:crypto';
import type { SecureStore, SecureTxnOp } from '../../core/barrier/index.js';
import { ReadGuard } from '../../core/storage/index.js';
import { BadRequestError, ConflictError, NotFoundError, TxnConflictError } from '../../core/errors.js';
import {
  DEFAULT_CONFIG, effectiveDeleteAfter, effectiveMaxVersions, isDeleted, newMetadata, type KeyMetadata, type KvConfig,
} from './metadata.js';

// Layout inside the mount's view:
//   config                      the mount's settings
//   metadata/<key>              one document per key: versions, CAS, custom metadata (listing walks this tree)
//   versions/<sha256(key)>/<n>  the data of version n, out of the listing tree
const CONFIG = 'config';
const META = 'metadata/';
const MAX_RETRIES = 8;
const META_CACHE_MAX = 100_000;

export interface ReadResult {
  meta: KeyMetadata;
  version: number;
  /** null when the version is deleted or destroyed. */
  data: Record<string, unknown> | null;
  /**
   * Names the stored bytes behind `data`: the version record's key at its storage version. A version record is
   * never rewritten in place (any write gets a new storage version), so equal ids mean equal data.
   */
  dataId?: string;
}

type Mutation = { meta: KeyMetadata; ops: SecureTxnOp[] } | null;

export class KvStore {
  /** Per-key tail of the in-process mutation queue (see mutate). */
  private readonly queues = new Map<string, Promise<unknown>>();

  constructor(private readonly store: SecureStore) {}

  async config(): Promise<KvConfig> {
    return (await this.store.getJson<KvConfig>(CONFIG))?.value ?? { ...DEFAULT_CONFIG };
  }

  async writeConfig(cfg: KvConfig): Promise<void> {
    await this.store.put(CONFIG, cfg);
  }

  async metadata(key: string): Promise<KeyMetadata | null> {
    return (await this.loadMetadata(key))?.value ?? null;
  }

  /**
   * Decoded metadata documents by key. Metadata is not secret (Vault documents it so: versions, times, custom
   * metadata) and every read needs it, so it is kept decoded; secret data is decrypted on every read. Changes
   * to a key's metadata (any writer, any server) evict it through `changed`. Callers get the cached object and
   * must not mutate it: mutations work on a copy (mutateOnce).
   */
  private readonly metaCache = new Map<string, { value: KeyMetadata; version: number }>();
  private readonly metaGuard = new ReadGuard();

  /** A storage key under this mount changed. */
  changed(storageKey: string): void {
    if (!storageKey.startsWith(META)) return;
    const key = storageKey.slice(META.length);
    this.metaCache.delete(key);
    this.metaGuard.changed(key);
  }

  clear(): void {
    this.metaCache.clear();
  }

  private async loadMetadata(key: string): Promise<{ value: KeyMetadata; version: number } | null> {
    const hit = this.metaCache.get(key);
    if (hit) return hit;
    this.metaGuard.begin(key);
    let found: { value: KeyMetadata; version: number } | null;
    let stale = true;
    try {
      found = await this.store.getJson<KeyMetadata>(META + key);
    } finally {
      stale = this.metaGuard.end(key);
    }
    if (found && !stale) {
      if (this.metaCache.size >= META_CACHE_MAX) this.metaCache.delete(this.metaCache.keys().next().value!);
      this.metaCache.set(key, found);
    }
    return found;
  }

  async list(prefix: string): Promise<string[]> {
    return this.store.list(META + prefix);
  }

  /** A version (the current one when 0); throws 404 when the key or version does not exist. */
  async read(key: string, version: number): Promise<ReadResult> {
    const meta = await this.metadata(key);
    if (!meta || meta.current_version === 0) throw new NotFoundError(`no secret at ${key}`);
    const n = version || meta.current_version;
    const v = meta.versions[String(n)];
    if (!v) throw new NotFoundError(`secret ${key} has no version ${n}`);
    if (v.destroyed || isDeleted(v)) return { meta, version: n, data: null };
    const vk = versionKey(key, n);
    const stored = await this.store.getJson<Record<string, unknown>>(vk);
    if (!stored) return { meta, version: n, data: null };
    return { meta, version: n, data: stored.value, dataId: `${this.store.prefix}${vk}@${stored.version}` };
  }

  /** Writes a new version; `cas` is the version the caller expects to be current (0 = the key must not exist). */
  async write(key: string, data: Record<string, unknown>, cas: number | undefined): Promise<{ meta: KeyMetadata; version: number }> {
    const cfg = await this.config();
    const meta = await this.mutate(key, (current) => {
      const m = current ?? newMetadata(new Date().toISOString());
      if ((m.cas_required || cfg.cas_required) && cas === undefined) {
        throw new BadRequestError('check-and-set parameter required for this call: send options.cas');
      }
      if (cas !== undefined && cas !== m.current_version) {
        throw new BadRequestError(`check-and-set parameter did not match the current version: current is ${m.current_version}, options.cas was ${cas}`);
      }
      const now = new Date();
      const n = m.current_version + 1;
      const after = effectiveDeleteAfter(m, cfg);
      m.versions[String(n)] = { created_time: now.toISOString(), deletion_time: after > 0 ? new Date(now.getTime() + after * 1000).toISOString() : '', destroyed: false };
      m.current_version = n;
      m.updated_time = now.toISOString();
      if (m.oldest_version === 0) m.oldest_version = n;
      const ops: SecureTxnOp[] = [{ type: 'put', key: versionKey(key, n), value: data }];
      ops.push(...this.prune(key, m, cfg));
      return { meta: m, ops };
    });
    return { meta, version: meta.current_version };
  }

  /** Soft-deletes versions (the current one when `versions` is null). Missing versions are ignored, as in Vault. */
  async softDelete(key: string, versions: number[] | null): Promise<void> {
    await this.ifExists(key, (m) => {
      if (!m) return null;
      const targets = versions ?? [m.current_version];
      const now = new Date().toISOString();
      for (const n of targets) {
        const v = m.versions[String(n)];
        if (v && !v.destroyed && !isDeleted(v)) v.deletion_time = now;
      }
      return { meta: m, ops: [] };
    });
  }

  /** Restores versions; under delete_version_after they get a fresh deletion time from now, as in Vault. */
  async undelete(key: string, versions: number[]): Promise<void> {
    const cfg = await this.config();
    await this.ifExists(key, (m) => {
      if (!m) return null;
      const after = effectiveDeleteAfter(m, cfg);
      for (const n of versions) {
        const v = m.versions[String(n)];
        if (v && !v.destroyed) v.deletion_time = after > 0 ? new Date(Date.now() + after * 1000).toISOString() : '';
      }
      return { meta: m, ops: [] };
    });
  }

  async destroy(key: string, versions: number[]): Promise<void> {
    await this.ifExists(key, (m) => {
      if (!m) return null;
      const ops: SecureTxnOp[] = [];
      for (const n of versions) {
        const v = m.versions[String(n)];
        if (!v || v.destroyed) continue;
        v.destroyed = true;
        ops.push({ type: 'delete', key: versionKey(key, n) });
      }
      return { meta: m, ops };
    });
  }

  /** Updates key settings, creating the metadata when the key is new (Vault allows metadata before data). */
  async updateMetadata(key: string, change: (m: KeyMetadata) => void): Promise<void> {
    const cfg = await this.config();
    await this.mutate(key, (current) => {
      const m = current ?? newMetadata(new Date().toISOString());
      change(m);
      m.updated_time = new Date().toISOString();
      return { meta: m, ops: this.prune(key, m, cfg) };
    });
  }

  /** Removes the key: its metadata and every version. */
  async deleteAll(key: string): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      const found = await this.store.getJson<KeyMetadata>(META + key);
      if (!found) return;
      const ops: SecureTxnOp[] = [{ type: 'check', key: META + key, version: found.version }, { type: 'delete', key: META + key }];
      for (const n of Object.keys(found.value.versions)) ops.push({ type: 'delete', key: versionKey(key, Number(n)) });
      try {
        await this.store.txn(ops);
        return;
      } catch (err) {
        if (!(err instanceof TxnConflictError)) throw err;
        if (attempt >= MAX_RETRIES) throw new ConflictError(`too many concurrent writes to ${key}; retry`);
      }
    }
  }

  /** Drops the oldest versions beyond max_versions (their data too). */
  private prune(key: string, m: KeyMetadata, cfg: KvConfig): SecureTxnOp[] {
    const max = effectiveMaxVersions(m, cfg);
    const ops: SecureTxnOp[] = [];
    const numbers = Object.keys(m.versions).map(Number).sort((a, b) => a - b);
    while (numbers.length > max) {
      const n = numbers.shift()!;
      delete m.versions[String(n)];
      ops.push({ type: 'delete', key: versionKey(key, n) });
    }
    m.oldest_version = numbers[0] ?? 0;
    return ops;
  }

  /** Like mutate, but a missing key is not an error: Vault answers deletes of nothing with 204. */
  private async ifExists(key: string, fn: (current: KeyMetadata | null) => Mutation): Promise<void> {
    try {
      await this.mutate(key, fn);
    } catch (err) {
      if (!(err instanceof NotFoundError)) throw err;
    }
  }

  /**
   * Read-modify-write of one key's metadata as a single transaction guarded by the metadata's version; retried
   * when another writer got there first, so concurrent writers never lose a version or reuse a number.
   */
  private mutate(key: string, fn: (current: KeyMetadata | null) => Mutation): Promise<KeyMetadata> {
    // Writers of one key in this process take turns, so they cannot exhaust each other's retries (N concurrent
    // writers would otherwise need N-1 retries); the retries remain for writers in other processes.
    const run = (this.queues.get(key) ?? Promise.resolve()).then(() => this.mutateOnce(key, fn));
    const tail = run.catch(() => undefined);
    this.queues.set(key, tail);
    void tail.then(() => { if (this.queues.get(key) === tail) this.queues.delete(key); });
    return run;
  }

  private async mutateOnce(key: string, fn: (current: KeyMetadata | null) => Mutation): Promise<KeyMetadata> {
    for (let attempt = 0; ; attempt++) {
      const found = await this.loadMetadata(key);
      const result = fn(found ? structuredClone(found.value) : null);
      if (!result) throw new NotFoundError(`no secret at ${key}`);
      try {
        await this.store.txn([
          { type: 'check', key: META + key, version: found?.version ?? 0 },
          { type: 'put', key: META + key, value: result.meta },
          ...result.ops,
        ]);
        return result.meta;
      } catch (err) {
        if (!(err instanceof TxnConflictError)) throw err;
        if (attempt >= MAX_RETRIES) throw new ConflictError(`too many concurrent writes to ${key}; retry`);
      }
    }
  }
}

function versionKey(key: string, n: number): string {
  return `versions/${digest('sha256', key, 'hex')}/${n}`;
}
