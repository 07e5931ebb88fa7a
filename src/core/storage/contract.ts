// The physical storage contract (Vault's "physical backend" idea): opaque bytes under slash-separated keys.
// Everything above it goes through the barrier, so a driver never sees a plaintext secret.
// Kept deliberately small so that a second driver (PostgreSQL) is a few hundred lines and passes the same
// conformance suite (test/core/storage-conformance.ts).

export interface StorageEntry {
  key: string;
  value: Buffer;
  /** The change index of the write that produced this value (monotonic across the whole store). */
  version: number;
}

export type TxnOp =
  | { type: 'put'; key: string; value: Buffer }
  | { type: 'delete'; key: string }
  /** Holds only if the key's current version equals `version` (0 = the key must not exist). */
  | { type: 'check'; key: string; version: number };

export type ChangeOp = 'put' | 'delete';

export interface Change {
  index: number;
  key: string;
  op: ChangeOp;
}

export interface ChangesPage {
  changes: Change[];
  /** The store's newest index when the page was read. */
  index: number;
  /** True when changes after `since` were compacted away: the reader must resynchronise from a full read. */
  truncated: boolean;
}

export type ChangeListener = (changes: readonly Change[]) => void;

export interface Storage {
  readonly name: string;
  get(key: string): Promise<StorageEntry | null>;
  /** Returns the change index of the write. */
  put(key: string, value: Buffer): Promise<number>;
  /** Returns the change index, or null when there was nothing to delete. */
  delete(key: string): Promise<number | null>;
  /**
   * Direct children of `prefix`, sorted: keys as their last segment, sub-folders with a trailing slash
   * (`list('a/')` over a/x, a/y/z gives ['x', 'y/']), like Vault's physical List.
   */
  list(prefix: string): Promise<string[]>;
  /**
   * All ops or none. Checks are evaluated against the state before the txn; if one fails, the txn throws
   * TxnConflictError and nothing is written. Returns the change index of the txn (current index if it wrote nothing).
   */
  txn(ops: readonly TxnOp[]): Promise<number>;
  /** Changes with index > since, oldest first, at most `limit`. */
  changes(since: number, limit?: number): Promise<ChangesPage>;
  currentIndex(): Promise<number>;
  /** Called after each committed write with the changes it made (in this process or, for shared drivers, any server). */
  subscribe(listener: ChangeListener): () => void;
  close(): Promise<void>;
}

/** Keys are validated once here so every driver agrees on what a key may be. */
export function assertValidKey(key: string): void {
  if (key.length === 0 || key.length > 2048) throw new Error(`storage key length out of range: ${key.length}`);
  if (key.startsWith('/') || key.includes('//') || key.includes('\0')) throw new Error(`invalid storage key: ${JSON.stringify(key)}`);
}

export function assertValidPrefix(prefix: string): void {
  if (prefix === '') return;
  if (!prefix.endsWith('/')) throw new Error(`list prefix must be empty or end with '/': ${JSON.stringify(prefix)}`);
  assertValidKey(prefix);
}

/** The direct-children view of a sorted list of keys under `prefix`. */
export function directChildren(prefix: string, keys: Iterable<string>): string[] {
  const out: string[] = [];
  let last = '';
  for (const key of keys) {
    const rest = key.slice(prefix.length);
    const slash = rest.indexOf('/');
    const child = slash === -1 ? rest : rest.slice(0, slash + 1);
    if (child !== last) {
      out.push(child);
      last = child;
    }
  }
  return out;
}

/** Smallest string greater than every string that starts with `prefix` (for range scans). */
export function prefixUpperBound(prefix: string): string {
  return prefix + '\u{10FFFF}';
}
