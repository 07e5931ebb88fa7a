import type { Core } from '../core/core.js';
import { BadRequestError, NotFoundError } from '../core/errors.js';
import type { MountEntry } from '../core/router.js';
import type { Route } from '../core/request.js';

function describeMount(m: MountEntry): Record<string, unknown> {
  return { type: m.type, description: m.description, uuid: m.uuid, options: m.options, local: false, seal_wrap: false };
}

export function mountRoutes(core: Core): Route[] {
  const plain = ['type', 'description', 'options', 'path'];
  return [
    {
      pattern: 'mounts',
      summary: 'Lists the mounted secrets engines.',
      auditPlain: ['*'],
      operations: {
        read: async () => {
          const data: Record<string, unknown> = {};
          for (const m of core.mounts.list()) if (m.type !== 'token') data[m.path] = describeMount(m);
          return { data };
        },
      },
    },
    {
      pattern: 'mounts/:path+',
      summary: 'Enables (POST), reads (GET) or disables (DELETE) a secrets engine at a path.',
      auditPlain: plain,
      fields: {
        type: { type: 'string', description: 'engine type, e.g. kv', max: 64 },
        description: { type: 'string', description: 'what the mount is for', max: 1024, default: '' },
        options: { type: 'map', description: 'engine options, e.g. {"version": "2"} for kv', default: {} },
        config: { type: 'map', description: 'mount tuning (accepted for Vault compatibility)', default: {} },
      },
      operations: {
        read: async ({ params }) => {
          const p = params.path!.endsWith('/') ? params.path! : `${params.path}/`;
          const m = core.router.get(p);
          if (!m) throw new NotFoundError(`nothing is mounted at "${p}"`);
          return { data: describeMount(m.entry) };
        },
        update: async ({ params, fields }) => {
          const options = Object.fromEntries(Object.entries(fields.options as Record<string, unknown>).map(([k, v]) => [k, String(v)]));
          let type = fields.type as string | undefined;
          if (!type) throw new BadRequestError('type is required: the engine to mount, e.g. "kv"');
          if (type === 'kv-v2') [type, options.version] = ['kv', '2'];
          if (type === 'kv' && (options.version ?? '2') !== '2') throw new BadRequestError('only KV version 2 is supported: set options.version to "2"');
          if (type === 'kv') options.version = '2';
          await core.mounts.enable(params.path!, type, fields.description as string, options);
        },
        delete: async ({ params }) => {
          await core.mounts.disable(params.path!);
        },
      },
    },
  ];
}
