import type { BackendContext } from '../../core/mounts.js';
import type { Backend } from '../../core/request.js';
import type { IdentityService } from '../service.js';
import { PkiStore } from './roles.js';
import { pkiRoutes, type PkiLimits } from './routes.js';

export type { PkiLimits } from './routes.js';
export type { PkiRole } from './roles.js';

// Vault's defaults for both when the server passes none: 768h (32 days).
const VAULT_SYSTEM_TTL = 768 * 3600;

/**
 * A Vault-compatible PKI secrets engine (type `pki`), so Vault PKI users and clients can move over: roles in the
 * mount's storage (`roles/<name>`), certificates signed by the trust domain's active intermediate and recorded
 * with the identity CA's, so the CRL and revocation are one.
 */
export function createPkiBackend(ctx: BackendContext, identity: IdentityService, limits: Partial<PkiLimits> = {}): Backend {
  return {
    type: 'pki',
    routes: pkiRoutes(identity, new PkiStore(ctx.store), {
      defaultTtl: limits.defaultTtl ?? VAULT_SYSTEM_TTL,
      maxTtl: limits.maxTtl ?? VAULT_SYSTEM_TTL,
    }),
  };
}
