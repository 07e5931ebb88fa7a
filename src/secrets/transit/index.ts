import type { BackendContext } from '../../core/mounts.js';
import type { Backend } from '../../core/request.js';
import { Keyring } from './keyring.js';
import { encryptRoutes } from './routes-encrypt.js';
import { keyRoutes } from './routes-keys.js';
import { signRoutes } from './routes-sign.js';
import { utilRoutes } from './routes-util.js';

// Vault checks auto-rotation on its periodic tick (about once a minute); periods are at least an hour.
const AUTO_ROTATE_CHECK_MS = 60_000;

export interface TransitBackend extends Backend {
  /** Rotates the keys whose auto_rotate_period has passed (the periodic check; exposed for tests). */
  rotateDue(now?: number): Promise<number>;
}

/** Vault's transit engine: encryption as a service, keys only in the barrier. */
export function createTransitBackend(ctx: BackendContext): TransitBackend {
  const keyring = new Keyring(ctx.store);
  const stop = ctx.onChange((key) => keyring.changed(key));
  let timer: NodeJS.Timeout | null = null;
  return {
    type: 'transit',
    routes: [...keyRoutes(keyring), ...encryptRoutes(keyring), ...signRoutes(keyring), ...utilRoutes()],
    setup: async () => {
      // A failed check (sealed meanwhile, storage error) is simply tried again at the next tick.
      timer = setInterval(() => void keyring.rotateDue().catch(() => undefined), AUTO_ROTATE_CHECK_MS);
      timer.unref();
    },
    teardown: () => {
      if (timer) clearInterval(timer);
      stop();
      keyring.clear();
    },
    rotateDue: (now) => keyring.rotateDue(now),
  };
}
