import type { Core } from '../core/core.js';
import { BadRequestError } from '../core/errors.js';
import type { HandlerContext, Route } from '../core/request.js';

// Vault's sys/wrapping/*. Unwrap, lookup and rewrap take the wrapping token itself as their credential (in the
// body, or as the request's token), so they are login routes: no policy grants them, holding the token does.
// They are still audited, which is how a second unwrap of an intercepted token shows up.
const TOKEN = { token: { type: 'string' as const, description: 'the wrapping token (default: the request\'s own token)', max: 512 } };
const DEFAULT_WRAP_TTL = 300;

function wrappingToken(ctx: HandlerContext): string {
  const t = (ctx.fields.token as string | undefined) || ctx.req.token;
  if (!t) throw new BadRequestError('wrapping token is required: send it as X-Vault-Token or as "token" in the body');
  return t;
}

export function wrappingRoutes(core: Core): Route[] {
  const meta = (ctx: HandlerContext) => ({ clientIp: ctx.req.client.address });
  return [
    {
      pattern: 'wrapping/unwrap',
      summary: 'Returns the wrapped response, once; the wrapping token stops working.',
      login: true,
      fields: TOKEN,
      operations: { update: async (ctx) => core.wrapper.unwrap(wrappingToken(ctx), meta(ctx)) },
    },
    {
      pattern: 'wrapping/lookup',
      summary: 'When and where a wrapping token was made, and its TTL, without unwrapping it.',
      login: true,
      fields: TOKEN,
      auditPlain: ['creation_ttl', 'creation_time', 'creation_path'],
      operations: {
        update: async (ctx) => ({ data: await core.wrapper.lookup(wrappingToken(ctx), meta(ctx)) }),
        read: async (ctx) => ({ data: await core.wrapper.lookup(wrappingToken(ctx), meta(ctx)) }),
      },
    },
    {
      pattern: 'wrapping/rewrap',
      summary: 'Moves a wrapped response to a new wrapping token with the same TTL.',
      login: true,
      fields: TOKEN,
      operations: { update: async (ctx) => core.wrapper.rewrap(wrappingToken(ctx), meta(ctx)) },
    },
    {
      pattern: 'wrapping/wrap',
      summary: 'Wraps the request body (any JSON object) for the TTL in X-Vault-Wrap-TTL (default 5 minutes).',
      openFields: true,
      operations: {
        update: async ({ req }) => {
          if (Object.keys(req.data).length === 0) throw new BadRequestError('nothing to wrap: send the data to wrap as a JSON object');
          return core.wrapper.wrap({ data: req.data }, req.wrapTTL ?? DEFAULT_WRAP_TTL, req.path);
        },
      },
    },
  ];
}
