import { randomBytes } from 'node:crypto';
import { BadRequestError } from '../../core/errors.js';
import type { Route } from '../../core/request.js';
import { BATCH_FIELDS, batchItems, itemBase64, itemInt, requiredString, runBatch } from './batch.js';
import { decrypt, encrypt } from './ciphers.js';
import { decodeBase64 } from './encoding.js';
import { parseKeyType, supports } from './key-types.js';
import { checkKeyName, type Keyring } from './keyring.js';
import { LoadedKey } from './loaded-key.js';
import { CONTEXT_FIELD, KEY_VERSION_FIELD, NAME_FIELD } from './route-fields.js';

// Audit: plaintext, ciphertext, context and batch items stay HMACed (the default); only these are logged in clear.
const PLAIN = ['key_version', 'type', 'bits', 'partial_failure_response_code'];

const AAD_FIELD = { associated_data: { type: 'string' as const, description: 'base64 additional authenticated data (must be given again to decrypt)' } };

/** Vault's encrypt/decrypt/rewrap/datakey paths. */
export function encryptRoutes(keyring: Keyring): Route[] {
  /** Decrypts one ciphertext; the plaintext Buffer is the caller's to zero. */
  const open = (k: LoadedKey, item: Record<string, unknown>) =>
    decrypt(k, requiredString(item, 'ciphertext', 'missing ciphertext to decrypt'), itemBase64(item, 'context'), itemBase64(item, 'associated_data')).plaintext;

  return [
    {
      pattern: 'encrypt/:name',
      summary: 'Encrypts base64 plaintext (or batch_input) with the named key; creates an aes256-gcm96 key (or `type`) on first use, which needs the create action.',
      auditPlain: PLAIN,
      fields: {
        ...NAME_FIELD, ...CONTEXT_FIELD, ...KEY_VERSION_FIELD, ...AAD_FIELD, ...BATCH_FIELDS,
        plaintext: { type: 'string', description: 'base64 plaintext' },
        type: { type: 'string', description: 'the type of a key created by this call: aes256-gcm96 (default) or chacha20-poly1305', default: 'aes256-gcm96' },
        convergent_encryption: { type: 'bool', description: 'not supported' },
      },
      // Vault's ExistenceCheck: encrypting under a name that has no key yet is a `create`.
      exists: async ({ params }) => (await keyring.get(params.name!)) !== null,
      operations: {
        update: async ({ params, fields: f }) => {
          const name = checkKeyName(params.name!);
          const req = batchItems(f, { plaintext: f.plaintext, context: f.context, key_version: f.key_version, associated_data: f.associated_data });
          if (!req.batch && f.plaintext === undefined) throw new BadRequestError('missing plaintext to encrypt');
          const withContext = req.items.map((item) => typeof item.context === 'string' && item.context !== '');
          if (withContext.some((c) => c !== withContext[0])) throw new BadRequestError('context should be set either in all the request blocks or in none');
          let k = await keyring.get(name);
          if (!k) {
            // The key is made here (Vault's upsert); the pipeline authorized the call as `create` (see `exists`).
            if (f.convergent_encryption === true) throw new BadRequestError('convergent_encryption is not supported: use a derived key with a context');
            const type = parseKeyType(f.type as string);
            if (!supports(type, 'encryption')) throw new BadRequestError(`key type ${type} not supported for this operation`);
            k = new LoadedKey((await keyring.create({ name, type, derived: withContext[0]!, exportable: false, autoRotatePeriod: 0 })).policy);
          }
          const key = k;
          key.requireEncryption();
          return runBatch(req, f, (item) => encrypt(key, {
            plaintext: decodeBase64(requiredString(item, 'plaintext', 'missing plaintext to encrypt'), 'plaintext'),
            context: itemBase64(item, 'context'),
            keyVersion: itemInt(item, 'key_version'),
            associatedData: itemBase64(item, 'associated_data'),
          }));
        },
      },
    },
    {
      pattern: 'decrypt/:name',
      summary: 'Decrypts a vault:vN: ciphertext (or batch_input) with the named key; the plaintext comes back base64.',
      auditPlain: PLAIN,
      fields: { ...NAME_FIELD, ...CONTEXT_FIELD, ...AAD_FIELD, ...BATCH_FIELDS, ciphertext: { type: 'string', description: 'the vault:vN:… ciphertext' } },
      operations: {
        update: async ({ params, fields: f }) => {
          const req = batchItems(f, { ciphertext: f.ciphertext, context: f.context, associated_data: f.associated_data });
          if (!req.batch && f.ciphertext === undefined) throw new BadRequestError('missing ciphertext to decrypt');
          const k = await keyring.require(params.name!);
          return runBatch(req, f, (item) => {
            const plaintext = open(k, item);
            const encoded = plaintext.toString('base64');
            plaintext.fill(0);
            return { plaintext: encoded };
          });
        },
      },
    },
    {
      pattern: 'rewrap/:name',
      summary: 'Decrypts a ciphertext and encrypts it again with the latest key version (or key_version), without returning the plaintext.',
      auditPlain: PLAIN,
      fields: { ...NAME_FIELD, ...CONTEXT_FIELD, ...KEY_VERSION_FIELD, ...AAD_FIELD, ...BATCH_FIELDS, ciphertext: { type: 'string', description: 'the vault:vN:… ciphertext' } },
      operations: {
        update: async ({ params, fields: f }) => {
          const req = batchItems(f, { ciphertext: f.ciphertext, context: f.context, key_version: f.key_version, associated_data: f.associated_data });
          if (!req.batch && f.ciphertext === undefined) throw new BadRequestError('missing ciphertext to rewrap');
          const k = await keyring.require(params.name!);
          k.requireEncryption();
          return runBatch(req, f, (item) => {
            const plaintext = open(k, item);
            try {
              return encrypt(k, { plaintext, context: itemBase64(item, 'context'), keyVersion: itemInt(item, 'key_version'), associatedData: itemBase64(item, 'associated_data') });
            } finally {
              plaintext.fill(0);
            }
          });
        },
      },
    },
    {
      pattern: 'datakey/:plaintext/:name',
      summary: 'Makes a random data key (bits 128, 256 or 512) and returns it encrypted with the named key, and in plaintext for datakey/plaintext/.',
      auditPlain: PLAIN,
      fields: { ...NAME_FIELD, ...CONTEXT_FIELD, ...KEY_VERSION_FIELD, bits: { type: 'int', description: 'data key size: 128, 256 (default) or 512', default: 256 } },
      operations: {
        update: async ({ params, fields: f }) => {
          const kind = params.plaintext!;
          if (kind !== 'plaintext' && kind !== 'wrapped') throw new BadRequestError(`invalid datakey type "${kind}": use datakey/plaintext/:name or datakey/wrapped/:name`);
          const bits = f.bits as number;
          if (bits !== 128 && bits !== 256 && bits !== 512) throw new BadRequestError(`invalid bits value ${bits}: use 128, 256 or 512`);
          const k = await keyring.require(params.name!);
          const context = f.context ? decodeBase64(f.context as string, 'context') : undefined;
          const dataKey = randomBytes(bits / 8);
          try {
            const sealed = encrypt(k, { plaintext: dataKey, context, keyVersion: f.key_version as number | undefined });
            return { data: kind === 'plaintext' ? { ...sealed, plaintext: dataKey.toString('base64') } : sealed };
          } finally {
            dataKey.fill(0);
          }
        },
      },
    },
  ];
}
