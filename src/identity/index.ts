import type { TokenStore } from '../auth/index.js';
import { authResult } from '../auth/index.js';
import type { Backend } from '../core/request.js';
import { identityRoutes } from './routes.js';
import type { IdentityService } from './service.js';

export { IdentityService, svidId, type SvidResult } from './service.js';
export { parseSpiffeId, workloadSpiffeId } from './spiffe-id.js';
export { toPem } from './pem.js';
export { createPkiBackend } from './pki/index.js';

/** The identity engine, mounted at `identity/` on every server. */
export function createIdentityBackend(id: IdentityService, tokens: TokenStore): Backend {
  const issueToken = async (spiffeId: string, ttl: number, path: string) => {
    const { token, entry } = await tokens.create({
      policies: ['workload', 'default'], parent: null, ttl, explicitMaxTtl: ttl, numUses: 0, renewable: false,
      displayName: `workload-${spiffeId.split('/').slice(-1)[0]}`, path, entityId: spiffeId, meta: { spiffe_id: spiffeId },
    });
    return authResult(token, entry);
  };
  return {
    type: 'identity',
    routes: identityRoutes(id, issueToken),
    setup: () => id.setup(),
    teardown: () => id.teardown(),
  };
}
