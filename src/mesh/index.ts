import type { SecureStore } from '../core/barrier/index.js';
import type { Route } from '../core/request.js';
import type { Change } from '../core/storage/index.js';

export interface MeshDeps {
  /** The barrier view `mesh/`. */
  store: SecureStore;
  /** Every committed storage change (keys are full storage keys). */
  subscribe: (listener: (changes: readonly Change[]) => void) => () => void;
}

/** The mesh control plane: intentions (service-to-service authorization as Cedar) and what proxies watch. (Being built.) */
export class MeshService {
  constructor(private readonly deps: MeshDeps) {}

  async setup(): Promise<void> {
    void this.deps;
  }

  teardown(): void {}

  routes(): Route[] {
    return [];
  }
}
