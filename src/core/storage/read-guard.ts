/**
 * Keeps a read-through cache from caching a value that a concurrent write already replaced: a read that started
 * before a write committed can finish after it, holding the old value. Callers wrap each miss in `begin`/`end`
 * and report every committed change with `changed`; `end` says whether the value read may be stale.
 */
export class ReadGuard {
  private readonly reading = new Map<string, number>();
  private readonly changedWhileReading = new Set<string>();

  begin(key: string): void {
    this.reading.set(key, (this.reading.get(key) ?? 0) + 1);
  }

  changed(key: string): void {
    if (this.reading.has(key)) this.changedWhileReading.add(key);
  }

  /** Ends one read of `key`; true when a change committed while it was in flight (do not cache its result). */
  end(key: string): boolean {
    const left = this.reading.get(key)! - 1;
    if (left === 0) this.reading.delete(key);
    else this.reading.set(key, left);
    const stale = this.changedWhileReading.has(key);
    if (left === 0) this.changedWhileReading.delete(key);
    return stale;
  }
}
