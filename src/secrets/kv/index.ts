import type { BackendContext } from '../../core/mounts.js';
import type { Backend } from '../../core/request.js';
import { KvStore } from './kv-store.js';
import { kvRoutes } from './routes.js';

/** A KV version 2 secrets engine over the mount's private storage. */
export function createKvBackend(ctx: BackendContext): Backend {
  return { type: 'kv', routes: kvRoutes(new KvStore(ctx.store)) };
}
