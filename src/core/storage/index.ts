export type { Storage, StorageEntry, TxnOp, Change, ChangesPage, ChangeListener } from './contract.js';
export { directChildren } from './contract.js';
export { SqliteStorage, type SqliteOptions } from './sqlite.js';
export { CachedStorage } from './cache.js';
export { ReadGuard } from './read-guard.js';
