import type { BackendContext } from '../../core/mounts.js';
import type { Backend } from '../../core/request.js';

/** Vault's transit engine: encryption as a service, keys only in the barrier. (Being built.) */
export function createTransitBackend(_ctx: BackendContext): Backend {
  return { type: 'transit', routes: [] };
}
