import type { BackendContext } from '../../core/mounts.js';
import type { Backend } from '../../core/request.js';
import { KvStore } from './kv-store.js';
import { kvRoutes } from './routes.js';

/** A KV version 2 secrets engine over the mount's private storage. */
export function createKvBackend(ctx: BackendContext): Backend {
  const kv = new KvStore(ctx.store);
  const stop = ctx.onChange((key) => kv.changed(key));
  return {
    type: 'kv',
    routes: kvRoutes(kv),
    teardown: () => {
      stop();
      kv.clear();
    },
  };
}
