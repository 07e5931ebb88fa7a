import type { ChangeListener, ChangesPage, Storage, StorageEntry, TxnOp } from './contract.js';
import { ReadGuard } from './read-guard.js';

/**
 * A read cache in front of any driver (Vault's physical cache): it holds what storage holds — sealed bytes — so
 * no plaintext is cached, and a hit costs a map lookup instead of a database read. Writes go through and update
 * the cache after they commit; changes reported by the driver's change feed (another server, when the driver is
 * shared) evict the keys they touch. Misses are not cached negatively, so a key created elsewhere is seen at once.
 */
export class CachedStorage implements Storage {
  private readonly entries = new Map<string, StorageEntry>();
  private bytes = 0;
  private readonly unsubscribe: () => void;
  private readonly guard = new ReadGuard();

  constructor(private readonly inner: Storage, private readonly maxBytes = 64 * 1024 * 1024) {
    this.unsubscribe = inner.subscribe((changes) => {
      for (const c of changes) {
        this.evict(c.key);
        this.guard.changed(c.key);
      }
    });
  }

  get name(): string {
    return this.inner.name;
  }

  get size(): number {
    return this.entries.size;
  }

  async get(key: string): Promise<StorageEntry | null> {
    const hit = this.entries.get(key);
    if (hit) {
      // Refresh recency: Map iteration order is insertion order, so re-inserting makes this the newest.
      this.entries.delete(key);
      this.entries.set(key, hit);
      return hit;
    }
    this.guard.begin(key);
    let found: StorageEntry | null;
    let stale = true;
    try {
      found = await this.inner.get(key);
    } finally {
      stale = this.guard.end(key);
    }
    if (found && !stale) this.remember(found);
    return found;
  }

  async put(key: string, value: Buffer): Promise<number> {
    return this.inner.put(key, value);
  }

  async delete(key: string): Promise<number | null> {
    return this.inner.delete(key);
  }

  list(prefix: string): Promise<string[]> {
    return this.inner.list(prefix);
  }

  async txn(ops: readonly TxnOp[]): Promise<number> {
    return this.inner.txn(ops);
  }

  changes(since: number, limit?: number): Promise<ChangesPage> {
    return this.inner.changes(since, limit);
  }

  currentIndex(): Promise<number> {
    return this.inner.currentIndex();
  }

  subscribe(listener: ChangeListener): () => void {
    return this.inner.subscribe(listener);
  }

  async close(): Promise<void> {
    this.unsubscribe();
    this.entries.clear();
    this.bytes = 0;
    await this.inner.close();
  }

  private remember(e: StorageEntry): void {
    const cost = e.value.length + e.key.length + 64;
    if (cost > this.maxBytes / 64) return;
    this.evict(e.key);
    this.entries.set(e.key, e);
    this.bytes += cost;
    while (this.bytes > this.maxBytes) {
      const oldest = this.entries.keys().next().value;
      if (oldest === undefined) break;
      this.evict(oldest);
    }
  }

  private evict(key: string): void {
    const e = this.entries.get(key);
    if (!e) return;
    this.entries.delete(key);
    this.bytes -= e.value.length + e.key.length + 64;
  }
}
