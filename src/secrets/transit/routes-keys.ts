import { BadRequestError, NotFoundError } from '../../core/errors.js';
import type { Response, Route } from '../../core/request.js';
import { decodeBase64 } from './encoding.js';
import { HMAC_KEY_MAX, HMAC_KEY_MIN, parseKeyType, supports, type KeyType } from './key-types.js';
import { checkKeyName, type Keyring } from './keyring.js';
import { autoRotatePeriod, CONTEXT_FIELD, KEY_PLAIN, NAME_FIELD } from './route-fields.js';
import { exportKeys, keyData, parseExportType } from './views.js';

function keySize(type: KeyType, requested: number | undefined): number | undefined {
  if (requested === undefined || requested === 0) return type === 'hmac' ? HMAC_KEY_MIN : undefined;
  if (type !== 'hmac') throw new BadRequestError(`key_size is not valid for algorithm ${type}: only hmac keys take a size`);
  if (requested < HMAC_KEY_MIN || requested > HMAC_KEY_MAX) throw new BadRequestError(`invalid key_size ${requested}: use ${HMAC_KEY_MIN} to ${HMAC_KEY_MAX} bytes`);
  return requested;
}

function refusePlaintextBackup(value: unknown): void {
  if (value === true) throw new BadRequestError('allow_plaintext_backup is not supported: Aegis has no transit backup endpoint');
}

/** Vault's key management paths: keys/, keys/:name, keys/:name/config, keys/:name/rotate, export/… */
export function keyRoutes(keyring: Keyring): Route[] {
  return [
    {
      pattern: 'keys',
      summary: 'Lists the named keys.',
      auditPlain: ['keys'],
      operations: {
        list: async () => {
          const keys = await keyring.list();
          // Vault: an empty listing is a 404 with no error messages.
          if (keys.length === 0) return { status: 404, bare: { errors: [] } };
          return { data: { keys } };
        },
      },
    },
    {
      pattern: 'keys/:name',
      summary: 'Creates a named key (type, derived, exportable), reads it without its key material, or deletes it (only with deletion_allowed).',
      auditPlain: KEY_PLAIN,
      fields: {
        ...NAME_FIELD,
        ...CONTEXT_FIELD,
        type: { type: 'string', description: 'aes256-gcm96 (default), chacha20-poly1305, ecdsa-p256, ed25519 or hmac', default: 'aes256-gcm96' },
        derived: { type: 'bool', description: 'derive a key per request from a context (HKDF-SHA256)', default: false },
        exportable: { type: 'bool', description: 'allow export of the key material (cannot be undone)', default: false },
        convergent_encryption: { type: 'bool', description: 'not supported' },
        allow_plaintext_backup: { type: 'bool', description: 'not supported' },
        key_size: { type: 'int', description: 'hmac keys: the key size in bytes (32 to 512; default 32)', min: 0 },
        auto_rotate_period: { type: 'duration', description: 'rotate automatically this long after the latest version was made (0 = never; at least 1h)' },
      },
      operations: {
        read: async ({ params, fields }) => {
          const k = await keyring.get(checkKeyName(params.name!));
          if (!k) throw new NotFoundError(`no transit key named "${params.name}"`);
          const context = fields.context ? decodeBase64(fields.context as string, 'context') : undefined;
          const derivedPublic = k.type === 'ed25519' && k.view.derived && context
            ? (version: number) => k.signingKeys(version, context).derivedPublicKey!
            : undefined;
          return { data: keyData(k.view, derivedPublic) };
        },
        update: async ({ params, fields: f }) => {
          const name = checkKeyName(params.name!);
          const type = parseKeyType(f.type as string);
          const derived = f.derived as boolean;
          if (f.convergent_encryption === true) throw new BadRequestError('convergent_encryption is not supported: use a derived key with a context (each encryption gets a random nonce)');
          refusePlaintextBackup(f.allow_plaintext_backup);
          if (derived && !supports(type, 'derivation')) throw new BadRequestError(`key derivation is not supported for keys of type ${type}`);
          const { policy, created } = await keyring.create({
            name, type, derived, exportable: f.exportable as boolean,
            autoRotatePeriod: autoRotatePeriod(f.auto_rotate_period as number | undefined) ?? 0, keySize: keySize(type, f.key_size as number | undefined),
          });
          const res: Response = { data: keyData(policy) };
          // Vault leaves an existing key exactly as it is and says so.
          if (!created) res.warnings = [`key ${name} already existed`];
          return res;
        },
        delete: async ({ params }) => { await keyring.delete(params.name!); },
      },
    },
    {
      pattern: 'keys/:name/config',
      summary: 'Sets min_decryption_version, min_encryption_version, deletion_allowed, exportable (false → true only) and auto_rotate_period.',
      auditPlain: KEY_PLAIN,
      fields: {
        ...NAME_FIELD,
        min_decryption_version: { type: 'int', description: 'versions below it no longer decrypt or verify', min: 0 },
        min_encryption_version: { type: 'int', description: 'explicit key_version requests below it are refused (0 = any)', min: 0 },
        deletion_allowed: { type: 'bool', description: 'allow DELETE keys/:name' },
        exportable: { type: 'bool', description: 'allow export (cannot be turned off again)' },
        allow_plaintext_backup: { type: 'bool', description: 'not supported' },
        auto_rotate_period: { type: 'duration', description: 'rotate automatically this long after the latest version was made (0 = never; at least 1h)' },
      },
      operations: {
        update: async ({ params, fields: f }) => {
          const name = params.name!;
          refusePlaintextBackup(f.allow_plaintext_backup);
          const rotate = autoRotatePeriod(f.auto_rotate_period as number | undefined);
          const minDecrypt = f.min_decryption_version as number | undefined;
          const minEncrypt = f.min_encryption_version as number | undefined;
          const policy = await keyring.update(name, `no existing key named ${name} could be found`, (p) => {
            if (minDecrypt !== undefined) {
              // Key versions start at 1: Vault reads 0 as 1.
              const v = Math.max(1, minDecrypt);
              if (v > p.latest_version) throw new BadRequestError(`cannot set min decryption version of ${v}, latest key version is ${p.latest_version}`);
              p.min_decryption_version = v;
            }
            if (minEncrypt !== undefined) {
              if (minEncrypt > p.latest_version) throw new BadRequestError(`cannot set min encryption version of ${minEncrypt}, latest key version is ${p.latest_version}`);
              p.min_encryption_version = minEncrypt;
            }
            if (p.min_encryption_version > 0 && p.min_encryption_version < p.min_decryption_version) {
              throw new BadRequestError(`cannot set min encryption/decryption values; min encryption version of ${p.min_encryption_version} must be greater than or equal to min decryption version of ${p.min_decryption_version}`);
            }
            if (f.deletion_allowed !== undefined) p.deletion_allowed = f.deletion_allowed as boolean;
            if (f.exportable !== undefined) {
              if (p.exportable && f.exportable === false) throw new BadRequestError('cannot disable exportability after it has been enabled');
              p.exportable = f.exportable as boolean;
            }
            if (rotate !== undefined) p.auto_rotate_period = rotate;
          });
          return { data: keyData(policy) };
        },
      },
    },
    {
      pattern: 'keys/:name/rotate',
      summary: 'Adds a new version of the key and makes it the one used for encryption and signing; old versions still decrypt and verify.',
      auditPlain: KEY_PLAIN,
      fields: NAME_FIELD,
      operations: { update: async ({ params }) => ({ data: keyData(await keyring.rotate(params.name!)) }) },
    },
    ...['export/:key_type/:name', 'export/:key_type/:name/:version'].map((pattern): Route => ({
      pattern,
      summary: 'Exports key material (encryption-key, signing-key, hmac-key) of an exportable key, or the public key of an asymmetric one; all versions, one, or "latest".',
      // Only the key's name and type in clear: `keys` is key material.
      auditPlain: ['name', 'type'],
      operations: {
        read: async ({ params }) => {
          const type = parseExportType(params.key_type!);
          const p = await keyring.document(checkKeyName(params.name!));
          if (!p) throw new NotFoundError(`no transit key named "${params.name}"`);
          return { data: { name: p.name, type: p.type, keys: exportKeys(p, type, params.version) } };
        },
      },
    })),
  ];
}
