import type { BackendContext } from '../../src/core/mounts.js';
import type { Backend, SecretContext } from '../../src/core/request.js';

/**
 * A small secrets engine for lease tests: `creds/:name` hands out a leased secret and the engine keeps a ledger
 * of what is live, renewed and revoked, the way a database engine would hold roles. `failRevoke` makes its
 * revocations fail (the database is down) until cleared.
 */
export class LedgerEngine {
  readonly live = new Set<string>();
  readonly revoked: string[] = [];
  readonly renewals: { name: string; expireTime: number }[] = [];
  revokeAttempts = 0;
  failRevoke: string | null = null;

  factory = (_ctx: BackendContext): Backend => ({
    type: 'ledger',
    secretTypes: {
      thing: {
        renew: async (ctx: SecretContext) => {
          this.renewals.push({ name: ctx.internal.name as string, expireTime: ctx.expireTime });
        },
        revoke: async (ctx: SecretContext) => {
          this.revokeAttempts++;
          if (this.failRevoke) throw new Error(this.failRevoke);
          this.live.delete(ctx.internal.name as string);
          this.revoked.push(ctx.internal.name as string);
        },
      },
    },
    routes: [
      {
        pattern: 'creds/:name',
        summary: 'a leased secret',
        fields: {
          ttl: { type: 'duration', description: 'lease TTL', default: 0 },
          max_ttl: { type: 'duration', description: 'lease max TTL', default: 0 },
          renewable: { type: 'bool', description: 'renewable', default: true },
        },
        operations: {
          read: async ({ params, fields }) => {
            const name = `${params.name}-${this.live.size + this.revoked.length}`;
            this.live.add(name);
            return {
              data: { name },
              secret: { type: 'thing', ttl: fields.ttl as number, maxTtl: fields.max_ttl as number, renewable: fields.renewable as boolean, internal: { name } },
            };
          },
        },
      },
    ],
  });
}
