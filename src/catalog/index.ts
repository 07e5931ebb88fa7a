import type { Backend } from '../core/request.js';
import type { Catalog } from './catalog.js';
import type { HealthChecker } from './checks/index.js';
import { catalogRoutes, healthRoutes, type MayUpdateInstance } from './routes.js';

export { Catalog, type InstanceView } from './catalog.js';
export { HealthChecker } from './checks/index.js';
export { startDnsServer, type RunningDns } from './dns/index.js';
export * from './model.js';

/** The built-in `catalog/` and `health/` backends over one catalog. */
export function createCatalogBackends(catalog: Catalog, checker: HealthChecker, mayUpdateInstance: MayUpdateInstance): { catalog: Backend; health: Backend } {
  return {
    catalog: { type: 'catalog', routes: catalogRoutes(catalog) },
    health: { type: 'health', routes: healthRoutes(catalog, checker, mayUpdateInstance) },
  };
}

/** Connects the catalog's check registrations to the checker that runs them. */
export function connectChecker(catalog: Catalog, checker: HealthChecker): void {
  catalog.events = {
    checkAdded: (inst, i, status) => {
      const check = inst.checks[i]!;
      checker.upsert({ namespace: inst.namespace, instanceId: inst.id, service: inst.service, address: inst.address, port: inst.port, check }, status);
    },
    checkRemoved: (namespace, checkId) => checker.remove(namespace, checkId),
  };
}
