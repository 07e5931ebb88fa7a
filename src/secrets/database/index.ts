import type { BackendContext } from '../../core/mounts.js';
import type { Backend } from '../../core/request.js';

export interface DatabaseBackendOptions {
  /** System default and maximum lease TTLs (seconds), used when a role sets none. */
  defaultTtl: number;
  maxTtl: number;
}

/** Vault's database engine for PostgreSQL: dynamic and static credentials with leases. (Being built.) */
export function createDatabaseBackend(_ctx: BackendContext, _opts: DatabaseBackendOptions): Backend {
  return { type: 'database', routes: [] };
}
