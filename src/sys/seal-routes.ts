import { validateTrustDomain } from '../identity/spiffe-id.js';
import type { Core } from '../core/core.js';
import { BadRequestError } from '../core/errors.js';
import type { Route } from '../core/request.js';

// Vault's sys/health codes: 200 active, 429 standby, 472 DR secondary, 473 performance standby, 501 not
// initialized, 503 sealed; each may be overridden by a query parameter.
function healthCode(core: Core, q: Record<string, unknown>): number {
  const s = core.sealStatus();
  const code = (name: string, dflt: number) => {
    const v = q[name];
    if (v === undefined) return dflt;
    // Only a final status a response can carry: 1xx would break the connection, > 599 fails in the HTTP layer (500).
    if (typeof v !== 'string' || !/^[2-5]\d\d$/.test(v)) throw new BadRequestError(`${name} must be an HTTP status code from 200 to 599`);
    return Number(v);
  };
  if (!s.initialized) return code('uninitcode', 501);
  if (s.sealed) return code('sealedcode', 503);
  return code('activecode', 200);
}

export function sealRoutes(core: Core): Route[] {
  return [
    {
      pattern: 'seal-status',
      summary: 'Whether Aegis is initialized and sealed, and the unseal progress.',
      unauthenticated: true,
      operations: { read: async () => ({ bare: { ...core.sealStatus() } }) },
    },
    {
      pattern: 'health',
      summary: 'Health, with Vault status codes (200 active, 501 not initialized, 503 sealed).',
      unauthenticated: true,
      openFields: true,
      operations: {
        read: async ({ req }) => {
          const s = core.sealStatus();
          return {
            status: healthCode(core, req.data),
            bare: {
              initialized: s.initialized, sealed: s.sealed, standby: false, performance_standby: false,
              replication_performance_mode: 'disabled', replication_dr_mode: 'disabled',
              server_time_utc: Math.floor(Date.now() / 1000), version: s.version, storage_type: s.storage_type,
            },
          };
        },
      },
    },
    {
      pattern: 'init',
      summary: 'Initializes Aegis: makes the root key, splits it into unseal key shares, and creates the root token.',
      unauthenticated: true,
      fields: {
        secret_shares: { type: 'int', description: 'how many unseal key shares to make', min: 1, max: 255 },
        secret_threshold: { type: 'int', description: 'how many shares unseal', min: 1, max: 255 },
        root_token_id: { type: 'string', description: 'use this ID for the root token (dev and tests)', max: 256 },
        trust_domain: { type: 'string', description: 'trust domain of the workload CA (default aegis.local)', max: 255 },
        ca_key_type: { type: 'string', description: 'CA key type: p256 (default) or p384', max: 8 },
      },
      operations: {
        read: async () => ({ bare: { initialized: core.sealStatus().initialized } }),
        update: async ({ fields }) => {
          if (fields.secret_shares === undefined || fields.secret_threshold === undefined) {
            throw new BadRequestError('secret_shares and secret_threshold are required (e.g. 5 and 3)');
          }
          const keyType = fields.ca_key_type as string | undefined;
          if (keyType !== undefined && keyType !== 'p256' && keyType !== 'p384') throw new BadRequestError(`ca_key_type "${keyType}": use p256 or p384`);
          if (fields.trust_domain !== undefined) validateTrustDomain(fields.trust_domain as string);
          const r = await core.initialize(fields.secret_shares as number, fields.secret_threshold as number, {
            rootTokenId: fields.root_token_id as string | undefined, trustDomain: fields.trust_domain as string | undefined, caKeyType: keyType,
          });
          return { bare: { keys: r.keys.map((k) => k.toString('hex')), keys_base64: r.keys.map((k) => k.toString('base64')), root_token: r.rootToken } };
        },
      },
    },
    {
      pattern: 'unseal',
      summary: 'Submits one unseal key share (or resets progress); unseals when the threshold is reached.',
      unauthenticated: true,
      fields: {
        key: { type: 'string', description: 'one unseal key share, hex or base64', max: 1024 },
        reset: { type: 'bool', description: 'forget the shares submitted so far', default: false },
      },
      operations: {
        update: async ({ fields }) => {
          if (!core.sealStatus().initialized) throw new BadRequestError('Aegis is not initialized: run `aegis operator init` first');
          if (fields.reset) {
            core.seal.resetProgress();
            return { bare: { ...core.sealStatus() } };
          }
          if (typeof fields.key !== 'string') throw new BadRequestError('key is required: one unseal key share');
          return { bare: { ...(await core.submitUnsealKey(fields.key)) } };
        },
      },
    },
    {
      pattern: 'seal',
      summary: 'Seals Aegis: drops the keys from memory; every request but seal-status, health and unseal then gets 503.',
      sudo: true,
      operations: { update: async () => { await core.sealNow(); } },
    },
    {
      pattern: 'rotate',
      summary: 'Adds a new encryption key term to the keyring; new writes use it, old terms still decrypt.',
      sudo: true,
      operations: { update: async () => { await core.barrier.rotate(); } },
    },
    {
      pattern: 'key-status',
      summary: 'The active encryption key term and when it was installed.',
      auditPlain: ['term', 'install_time', 'terms'],
      operations: {
        read: async () => {
          const k = core.barrier.keyStatus();
          return { data: { term: k.term, install_time: k.installedAt, terms: k.terms } };
        },
      },
    },
  ];
}
