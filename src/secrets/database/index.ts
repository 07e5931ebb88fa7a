import type { BackendContext } from '../../core/mounts.js';
import type { Backend } from '../../core/request.js';
import { DatabaseEngine } from './engine.js';
import { DynamicRoles, SECRET_CREDS } from './roles.js';
import { databaseRoutes } from './routes.js';
import { StaticRoles } from './static-roles.js';

export interface DatabaseBackendOptions {
  /** System default and maximum lease TTLs (seconds), used when a role sets none. */
  defaultTtl: number;
  maxTtl: number;
}

/**
 * Vault's database secrets engine for PostgreSQL (postgresql-database-plugin): connections with root credentials
 * in the barrier, dynamic roles whose users live as long as their lease, static roles whose passwords rotate on a
 * schedule, and root rotation.
 */
export function createDatabaseBackend(ctx: BackendContext, opts: DatabaseBackendOptions): Backend {
  const engine = new DatabaseEngine(ctx.store);
  const roles = new DynamicRoles(engine, opts);
  const statics = new StaticRoles(engine);
  return {
    type: 'database',
    routes: databaseRoutes(engine, roles, statics),
    secretTypes: { [SECRET_CREDS]: roles.secretType() },
    async setup() {
      await engine.setup();
      await statics.setup();
    },
    async teardown() {
      statics.teardown();
      await engine.teardown();
    },
  };
}
