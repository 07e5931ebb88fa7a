import { BadRequestError } from '../core/errors.js';
import type { Route } from '../core/request.js';
import type { PolicyStore } from './store.js';

/** sys/policies/cedar/… — Vault's sys/policies/acl shapes, for Cedar documents. */
export function policyRoutes(store: PolicyStore): Route[] {
  return [
    {
      pattern: 'policies/cedar/',
      summary: 'Lists the policy names.',
      auditPlain: ['keys', 'policies'],
      operations: {
        list: async () => ({ data: { keys: await store.list() } }),
        read: async () => {
          const keys = await store.list();
          return { data: { keys, policies: keys } };
        },
      },
    },
    {
      pattern: 'policies/cedar/:name',
      summary: 'Reads, writes (validated against the Aegis Cedar schema) or deletes one named policy.',
      auditPlain: ['name', 'policy', 'builtin', 'created', 'updated'],
      fields: {
        policy: { type: 'string', description: 'the Cedar text of the policy', max: 128 * 1024 },
      },
      operations: {
        read: async ({ params }) => ({ data: await store.read(params.name!) }),
        update: async ({ params, fields }) => {
          if (typeof fields.policy !== 'string') throw new BadRequestError('policy is required: the Cedar text');
          await store.write(params.name!, fields.policy);
        },
        delete: async ({ params }) => {
          await store.delete(params.name!);
        },
      },
    },
  ];
}
