import type { Core } from '../core/core.js';
import { BadRequestError, UpstreamError } from '../core/errors.js';
import type { LeaseEntry } from '../core/leases/index.js';
import type { FieldSpecs } from '../core/fields.js';
import type { Handler, Route } from '../core/request.js';

// Vault's lease API (sys/leases/*), with the legacy sys/renew, sys/revoke, sys/revoke-prefix and sys/revoke-force
// aliases that older clients call. Lease IDs are not secret values (Vault logs them in clear); what they unlock
// is guarded by policy on these paths.
const PLAIN = ['lease_id', 'id', 'increment', 'sync', 'issue_time', 'expire_time', 'last_renewal', 'renewable', 'ttl', 'keys', 'prefix',
  'lease_count', 'failing', 'failing_count', 'revoked', 'counts'];

const LEASE_ID: FieldSpecs = { lease_id: { type: 'string', description: 'the lease ID, e.g. database/creds/app/<id>', max: 1100 } };
const RENEW: FieldSpecs = { ...LEASE_ID, increment: { type: 'duration', description: 'extend by this much from now (default: the lease\'s original TTL)', default: 0 } };
const REVOKE: FieldSpecs = { ...LEASE_ID, sync: { type: 'bool', description: 'wait for the revocation (default true); false queues it', default: true } };

function leaseIdOf(params: Record<string, string>, fields: Record<string, unknown>): string {
  const id = (params.lease_id || (fields.lease_id as string | undefined) || '').replace(/^\/+/, '');
  if (!id) throw new BadRequestError('lease_id is required: the ID returned with the secret, e.g. database/creds/app/<id>');
  return id;
}

function describe(e: LeaseEntry): Record<string, unknown> {
  const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());
  return {
    id: e.id, issue_time: iso(e.issueTime), expire_time: iso(e.expireTime), last_renewal: iso(e.lastRenewal),
    renewable: e.renewable, ttl: Math.max(0, Math.round((e.expireTime - Date.now()) / 1000)),
  };
}

export function leaseRoutes(core: Core): Route[] {
  const leases = core.leases;

  const renew: Handler = async ({ params, fields }) => {
    const { entry, warnings } = await leases.renew(leaseIdOf(params, fields), fields.increment as number);
    return { lease: { id: entry.id, duration: Math.round((entry.expireTime - Date.now()) / 1000), renewable: entry.renewable }, warnings };
  };
  const revoke: Handler = async ({ params, fields }) => {
    const id = leaseIdOf(params, fields);
    if (fields.sync === false) {
      await leases.lookup(id);
      leases.revokeLater(id);
      return { status: 202 };
    }
    await leases.revoke(id);
  };
  const revokePrefix = (force: boolean): Handler => async ({ params }) => {
    const r = await leases.revokePrefix(params.prefix!, { force });
    if (r.failed.length > 0) {
      throw new UpstreamError(`${r.failed.length} of ${r.failed.length + r.revoked} leases under "${params.prefix}" could not be revoked (first: ${r.failed[0]}); they are retried with backoff and listed at sys/leases`);
    }
    return { data: { revoked: r.revoked } };
  };

  const routes: Route[] = [
    {
      pattern: 'leases',
      summary: 'Lease counts and the leases whose revocation failed and is being retried.',
      sudo: true,
      auditPlain: PLAIN,
      operations: {
        read: async () => ({
          data: {
            lease_count: leases.count,
            failing_count: leases.failingCount,
            failing: leases.failing().map(({ id, failure }) => ({
              lease_id: id, attempts: failure.attempts, last_error: failure.lastError,
              last_attempt: new Date(failure.lastAttempt).toISOString(), next_attempt: new Date(failure.nextAttempt).toISOString(),
            })),
          },
        }),
      },
    },
    {
      pattern: 'leases/count',
      summary: 'How many leases are live.',
      sudo: true,
      auditPlain: PLAIN,
      operations: { read: async () => ({ data: { lease_count: leases.count, counts: leases.count } }) },
    },
    {
      pattern: 'leases/lookup',
      summary: 'A lease\'s issue time, expiry, last renewal and remaining TTL.',
      fields: LEASE_ID,
      auditPlain: PLAIN,
      operations: { update: async ({ params, fields }) => ({ data: describe(await leases.lookup(leaseIdOf(params, fields))) }) },
    },
    {
      pattern: 'leases/lookup/:prefix*',
      summary: 'Lists lease IDs under a prefix (one level, like every LIST).',
      sudo: true,
      auditPlain: PLAIN,
      operations: {
        list: async ({ params }) => {
          const prefix = params.prefix ?? '';
          if (prefix !== '' && !prefix.endsWith('/')) throw new BadRequestError('a lease prefix to list must end with "/"');
          const keys = await leases.list(prefix);
          return keys.length === 0 ? { status: 404, data: { keys: [] } } : { data: { keys } };
        },
      },
    },
  ];
  for (const base of ['leases/', '']) {
    routes.push(
      { pattern: `${base}renew`, summary: 'Renews a lease (lease_id in the body).', fields: RENEW, auditPlain: PLAIN, operations: { update: renew } },
      { pattern: `${base}renew/:lease_id+`, summary: 'Renews a lease (lease ID in the path).', fields: RENEW, auditPlain: PLAIN, operations: { update: renew } },
      { pattern: `${base}revoke`, summary: 'Revokes a lease now (lease_id in the body).', fields: REVOKE, auditPlain: PLAIN, operations: { update: revoke } },
      { pattern: `${base}revoke/:lease_id+`, summary: 'Revokes a lease now (lease ID in the path).', fields: REVOKE, auditPlain: PLAIN, operations: { update: revoke } },
      { pattern: `${base}revoke-prefix/:prefix+`, summary: 'Revokes every lease under a prefix.', sudo: true, auditPlain: PLAIN, operations: { update: revokePrefix(false) } },
      {
        pattern: `${base}revoke-force/:prefix+`,
        summary: 'Drops every lease under a prefix even when the engine cannot revoke the secret (it may live on where it was made).',
        sudo: true, auditPlain: PLAIN, operations: { update: revokePrefix(true) },
      },
    );
  }
  routes.push({
    pattern: 'leases/tidy',
    summary: 'Revokes leases whose token no longer exists.',
    sudo: true,
    auditPlain: PLAIN,
    operations: { update: async () => ({ data: { revoked: await leases.tidy((hash) => core.tokens.lookupHash(hash).then((t) => t !== null)) } }) },
  });
  return routes;
}
