import type { SecureStore } from '../core/barrier/index.js';
import type { Route } from '../core/request.js';
import type { Change } from '../core/storage/index.js';
import type { SecurityEvents } from '../detect/index.js';
import { eventRoutes } from './events/index.js';
import { MeshPolicies, intentionRoutes } from './intentions/index.js';

export { eventRoutes, toWireEvent, wireEventBytes, MAX_BATCH_BYTES, MAX_BATCH_EVENTS, type WireEvent } from './events/index.js';
export { MeshPolicies, MeshAuthorizer, type MeshRequest, type IntentionView, type MeshStatement } from './intentions/index.js';

export interface MeshDeps {
  /** The barrier view `mesh/`. */
  store: SecureStore;
  /** Every committed storage change (keys are full storage keys). */
  subscribe: (listener: (changes: readonly Change[]) => void) => () => void;
  /** Where proxies' reports (mesh/events) are recorded; without it the route is not served. */
  events?: SecurityEvents;
}

/**
 * The mesh control plane: intentions and raw Cedar documents (service-to-service authorization over the one Aegis
 * schema), decisions, what a proxy watches, and where it reports security events. The route table is built once: the
 * core reads it at construction.
 */
export class MeshService {
  readonly policies: MeshPolicies;
  private readonly table: Route[];

  constructor(deps: MeshDeps) {
    this.policies = new MeshPolicies(deps.store, deps.subscribe);
    this.table = [...intentionRoutes(this.policies), ...(deps.events ? eventRoutes(deps.events) : [])];
  }

  async setup(): Promise<void> {
    await this.policies.setup();
  }

  teardown(): void {
    this.policies.teardown();
  }

  routes(): Route[] {
    return this.table;
  }
}
