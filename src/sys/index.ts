import { auditRoutes } from '../audit/index.js';
import type { Core } from '../core/core.js';
import type { Backend } from '../core/request.js';
import { policyRoutes } from '../policy/index.js';
import { capabilityRoutes } from './capability-routes.js';
import { leaseRoutes } from './lease-routes.js';
import { metricsRoutes } from './metrics-routes.js';
import { wrappingRoutes } from './wrapping-routes.js';
import { mountRoutes } from './mount-routes.js';
import { sealRoutes } from './seal-routes.js';

/** The system backend mounted at `sys/`: each capability contributes its own routes. */
export function createSysBackend(core: Core): Backend {
  return {
    type: 'system',
    routes: [
      ...sealRoutes(core),
      ...mountRoutes(core),
      ...policyRoutes(core.policies),
      ...auditRoutes(core.audit),
      ...capabilityRoutes(core),
      ...metricsRoutes(core),
      ...leaseRoutes(core),
      ...wrappingRoutes(core),
    ],
  };
}
