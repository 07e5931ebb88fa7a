import type { Core } from '../core/core.js';
import { BadRequestError } from '../core/errors.js';
import { validatePath } from '../core/path.js';
import { ACTIONS, type Route } from '../core/request.js';

/** What the calling token may do on some paths (Vault's sys/capabilities-self), answered by the same engine. */
export function capabilityRoutes(core: Core): Route[] {
  return [
    {
      pattern: 'capabilities-self',
      summary: "The calling token's capabilities (read, create, update, delete, list, sudo) on each given path.",
      auditPlain: ['path', 'paths', 'capabilities'],
      fields: {
        path: { type: 'string', description: 'one path', max: 1024 },
        paths: { type: 'strings', description: 'several paths', max: 100 },
      },
      operations: {
        update: async ({ fields, caller, req }) => {
          const paths = [...((fields.paths as string[] | undefined) ?? []), ...(fields.path ? [fields.path as string] : [])];
          if (paths.length === 0) throw new BadRequestError('give a path or paths');
          const data: Record<string, unknown> = {};
          for (const raw of paths) {
            const p = validatePath(raw.replace(/^\/+/, ''));
            const caps = ACTIONS.filter((a) => core.engine.decide(caller!, a, p, req.client.address).allowed);
            data[raw] = caps.length > 0 ? caps : ['deny'];
          }
          if (paths.length === 1) data.capabilities = data[paths[0]!];
          return { data };
        },
      },
    },
  ];
}
