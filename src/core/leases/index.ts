export { LeaseManager, type LeaseManagerOptions, type RenewResult } from './lease-manager.js';
export type { LeaseEntry, RevokeFailure } from './lease-entry.js';
