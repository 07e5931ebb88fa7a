import { BadRequestError, NotFoundError, PermissionDeniedError } from '../../core/errors.js';
import type { FieldSpecs } from '../../core/fields.js';
import type { AuthResult, Backend, Caller, HandlerContext, Route } from '../../core/request.js';
import type { PolicyEngine } from '../../policy/engine.js';
import { normalisePolicyName } from '../../policy/store.js';
import type { TokenEntry, TokenStore } from './store.js';

export interface TokenBackendConfig {
  tokens: TokenStore;
  engine: PolicyEngine;
  defaultTtl: number;
  maxTtl: number;
}

const CREATE_FIELDS: FieldSpecs = {
  id: { type: 'string', description: 'a custom token ID (root only)', max: 256 },
  policies: { type: 'strings', description: 'policy names; defaults to the parent token’s', max: 64 },
  meta: { type: 'map', description: 'string metadata, visible to policies as principal tags' },
  no_parent: { type: 'bool', description: 'create an orphan (needs root or sudo)', default: false },
  no_default_policy: { type: 'bool', description: 'do not attach the default policy', default: false },
  renewable: { type: 'bool', description: 'whether the token may be renewed', default: true },
  ttl: { type: 'duration', description: 'time to live, e.g. 1h' },
  explicit_max_ttl: { type: 'duration', description: 'hard cap on the token’s life, renewals included', default: 0 },
  display_name: { type: 'string', description: 'a name for logs', max: 128 },
  num_uses: { type: 'int', description: 'how many requests the token may make (0 = unlimited)', min: 0, max: 1_000_000, default: 0 },
  type: { type: 'string', description: 'only "service" is supported', max: 16 },
};

const PLAIN_AUDIT = ['policies', 'no_parent', 'no_default_policy', 'renewable', 'ttl', 'explicit_max_ttl', 'display_name', 'num_uses', 'increment',
  'creation_time', 'creation_ttl', 'expire_time', 'issue_time', 'orphan', 'path', 'type', 'keys'] as const;

function isRoot(c: Caller): boolean {
  return c.policies.includes('root');
}

/** The token auth method at `auth/token/`: Vault's paths and shapes. */
export function createTokenBackend(cfg: TokenBackendConfig): Backend {
  const { tokens, engine } = cfg;

  async function create(ctx: HandlerContext, orphanPath: boolean): Promise<{ auth: AuthResult }> {
    const f = ctx.fields;
    const caller = ctx.caller!;
    const parent = await tokens.lookupHash(caller.tokenHash);
    if (!parent) throw new PermissionDeniedError('permission denied: the calling token is no longer valid');
    const root = isRoot(caller);
    if (f.type !== undefined && f.type !== 'service') throw new BadRequestError('type: only "service" tokens are supported');
    if (f.id !== undefined && !root) throw new PermissionDeniedError('permission denied: only a root token may choose a token ID');
    const noParent = orphanPath || (f.no_parent as boolean);
    if (noParent && !orphanPath && !root && !engine.decide(caller, 'sudo', ctx.req.path, ctx.req.client.address).allowed) {
      throw new PermissionDeniedError('permission denied: creating an orphan token (no_parent) needs root or the sudo action on auth/token/create');
    }
    let policies = ((f.policies as string[] | undefined) ?? caller.policies.filter((p) => p !== 'default')).map(normalisePolicyName);
    if (!root) {
      const outside = policies.filter((p) => p !== 'default' && !caller.policies.includes(p));
      if (outside.length > 0) throw new PermissionDeniedError(`permission denied: a child token's policies must be a subset of its parent's; not held: ${outside.join(', ')}`);
    }
    if (policies.includes('root') && !root) throw new PermissionDeniedError('permission denied: only a root token may create root tokens');
    if (!(f.no_default_policy as boolean) && !policies.includes('root') && !policies.includes('default')) policies = ['default', ...policies];
    if (f.no_default_policy) policies = policies.filter((p) => p !== 'default');
    const meta = f.meta as Record<string, unknown> | undefined;
    if (meta && (Object.keys(meta).length > 64 || Object.entries(meta).some(([k, v]) => typeof v !== 'string' || k.length > 128 || v.length > 1024))) {
      throw new BadRequestError('meta: at most 64 string values (keys up to 128, values up to 1024 characters)');
    }

    const explicitMax = f.explicit_max_ttl as number;
    const rootToken = policies.includes('root');
    // ttl 0 means "the default", except that a root token created without a ttl never expires (as in Vault).
    let ttl = (f.ttl as number | undefined) ?? 0;
    if (ttl === 0 && !rootToken) ttl = cfg.defaultTtl;
    const warnings: string[] = [];
    if (ttl > cfg.maxTtl) {
      warnings.push(`ttl was capped at the maximum of ${cfg.maxTtl}s`);
      ttl = cfg.maxTtl;
    }
    if (explicitMax > 0 && (ttl === 0 || ttl > explicitMax)) ttl = explicitMax;
    // A child never outlives its parent (its parent's revocation would revoke it anyway).
    if (!noParent && parent.entry.expireTime !== null) {
      const left = Math.floor((parent.entry.expireTime - Date.now()) / 1000);
      if (ttl === 0 || ttl > left) ttl = Math.max(1, left);
    }

    const { token, entry } = await tokens.create({
      id: f.id as string | undefined,
      policies,
      meta: meta as Record<string, string> | undefined,
      displayName: f.display_name ? `token-${f.display_name as string}` : 'token',
      parent: noParent ? null : caller.tokenHash,
      ttl,
      explicitMaxTtl: explicitMax,
      numUses: f.num_uses as number,
      renewable: f.renewable as boolean,
      path: ctx.req.path,
      maxTtl: cfg.maxTtl,
    });
    return { auth: authResult(token, entry), ...(warnings.length ? { warnings } : {}) };
  }

  /** Resolves the token a request names (by ID or accessor) to its HMAC, or 400/404. */
  async function target(ctx: HandlerContext, by: 'token' | 'accessor'): Promise<string> {
    const value = ctx.fields[by] as string | undefined;
    if (!value) throw new BadRequestError(`${by} is required`);
    const hash = by === 'token' ? tokens.hash(value) : await tokens.hashByAccessor(value);
    if (!hash || !(await tokens.lookupHash(hash))) throw new BadRequestError(`${by === 'token' ? 'token' : 'accessor'} not found: it is unknown, expired or revoked`);
    return hash;
  }

  async function describe(hash: string, withId: string | null): Promise<Record<string, unknown>> {
    const found = await tokens.lookupHash(hash);
    if (!found) throw new NotFoundError('token not found: it is unknown, expired or revoked');
    return lookupData(found.entry, withId);
  }

  const tokenField: FieldSpecs = { token: { type: 'string', description: 'the token', max: 512 } };
  const accessorField: FieldSpecs = { accessor: { type: 'string', description: 'the token accessor', max: 128 } };
  const incrementField: FieldSpecs = { increment: { type: 'duration', description: 'requested extension, e.g. 1h', default: 0 } };

  const routes: Route[] = [
    { pattern: 'create', summary: 'Creates a child token (or an orphan with no_parent, given root or sudo).', fields: CREATE_FIELDS, auditPlain: PLAIN_AUDIT, operations: { update: (ctx) => create(ctx, false) } },
    { pattern: 'create-orphan', summary: 'Creates a token with no parent.', fields: CREATE_FIELDS, auditPlain: PLAIN_AUDIT, operations: { update: (ctx) => create(ctx, true) } },
    {
      pattern: 'lookup', summary: 'Looks up a token by its ID.', fields: tokenField, auditPlain: PLAIN_AUDIT,
      operations: { update: async (ctx) => ({ data: await describe(await target(ctx, 'token'), ctx.fields.token as string) }) },
    },
    {
      pattern: 'lookup-self', summary: 'Looks up the calling token.', auditPlain: PLAIN_AUDIT,
      operations: {
        read: async ({ caller }) => ({ data: await describe(caller!.tokenHash, caller!.token) }),
        update: async ({ caller }) => ({ data: await describe(caller!.tokenHash, caller!.token) }),
      },
    },
    {
      pattern: 'lookup-accessor', summary: 'Looks up a token by its accessor (the ID is not returned).', fields: accessorField, auditPlain: PLAIN_AUDIT,
      operations: { update: async (ctx) => ({ data: await describe(await target(ctx, 'accessor'), null) }) },
    },
    {
      pattern: 'renew', summary: 'Renews a token.', fields: { ...tokenField, ...incrementField }, auditPlain: PLAIN_AUDIT,
      operations: { update: async (ctx) => renew(await target(ctx, 'token'), ctx.fields.token as string, ctx.fields.increment as number) },
    },
    {
      pattern: 'renew-self', summary: 'Renews the calling token.', fields: incrementField, auditPlain: PLAIN_AUDIT,
      operations: { update: async ({ caller, fields }) => renew(caller!.tokenHash, caller!.token, fields.increment as number) },
    },
    {
      pattern: 'renew-accessor', summary: 'Renews a token by its accessor.', fields: { ...accessorField, ...incrementField }, auditPlain: PLAIN_AUDIT,
      operations: { update: async (ctx) => renew(await target(ctx, 'accessor'), null, ctx.fields.increment as number) },
    },
    {
      pattern: 'revoke', summary: 'Revokes a token and every token created from it.', fields: tokenField,
      operations: { update: async (ctx) => { await tokens.revoke(await target(ctx, 'token')); } },
    },
    {
      pattern: 'revoke-self', summary: 'Revokes the calling token and its children.',
      operations: { update: async ({ caller }) => { await tokens.revoke(caller!.tokenHash); } },
    },
    {
      pattern: 'revoke-accessor', summary: 'Revokes a token by its accessor, with its children.', fields: accessorField,
      operations: { update: async (ctx) => { await tokens.revoke(await target(ctx, 'accessor')); } },
    },
    {
      pattern: 'revoke-orphan', summary: 'Revokes a token but not its children, which become orphans.', fields: tokenField, sudo: true,
      operations: { update: async (ctx) => { await tokens.revoke(await target(ctx, 'token'), { orphanChildren: true }); } },
    },
    {
      pattern: 'accessors/', summary: 'Lists the accessors of all tokens.', sudo: true, auditPlain: ['keys'],
      operations: {
        list: async () => {
          const keys: string[] = [];
          for (const hash of await tokens.allHashes()) {
            const e = await tokens.entryByHash(hash);
            if (e) keys.push(e.accessor);
          }
          return { data: { keys } };
        },
      },
    },
  ];

  async function renew(hash: string, token: string | null, increment: number) {
    const entry = await tokens.renew(hash, increment);
    return { auth: authResult(token ?? '', entry) };
  }

  return { type: 'token', routes };
}

export function authResult(token: string, e: TokenEntry): AuthResult {
  return {
    client_token: token,
    accessor: e.accessor,
    policies: e.policies,
    token_policies: e.policies,
    metadata: Object.keys(e.meta).length ? e.meta : null,
    lease_duration: e.expireTime === null ? 0 : Math.max(0, Math.round((e.expireTime - Date.now()) / 1000)),
    renewable: e.renewable,
    entity_id: e.entityId,
    token_type: 'service',
    orphan: e.parent === null,
    num_uses: e.numUses,
  };
}

function lookupData(e: TokenEntry, id: string | null): Record<string, unknown> {
  return {
    accessor: e.accessor,
    creation_time: e.createdAt,
    creation_ttl: e.ttl,
    display_name: e.displayName,
    entity_id: e.entityId,
    expire_time: e.expireTime === null ? null : new Date(e.expireTime).toISOString(),
    explicit_max_ttl: e.explicitMaxTtl,
    id: id ?? '',
    issue_time: new Date(e.createdAt * 1000).toISOString(),
    meta: Object.keys(e.meta).length ? e.meta : null,
    num_uses: e.numUses,
    orphan: e.parent === null,
    path: e.path,
    policies: e.policies,
    renewable: e.renewable,
    ttl: e.expireTime === null ? 0 : Math.max(0, Math.round((e.expireTime - Date.now()) / 1000)),
    type: 'service',
  };
}
