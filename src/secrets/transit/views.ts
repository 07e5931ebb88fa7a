import { createPrivateKey } from 'node:crypto';
import { BadRequestError } from '../../core/errors.js';
import { KEY_TYPES, type KeyPolicy, type KeyView, type StoredVersion } from './key-types.js';

/**
 * A key as Vault's `GET transit/keys/:name` shows it (formatKeyPolicy): settings, capabilities, and per version
 * the creation time (symmetric keys: Unix seconds) or the public key (asymmetric keys). Never key material.
 * `derivedPublicKey` gives derived Ed25519 keys' public key for the context the reader sent.
 */
export function keyData(k: KeyView, derivedPublicKey?: (version: number) => string): Record<string, unknown> {
  const caps = KEY_TYPES[k.type];
  const data: Record<string, unknown> = {
    name: k.name,
    type: k.type,
    derived: k.derived,
    deletion_allowed: k.deletion_allowed,
    exportable: k.exportable,
    allow_plaintext_backup: false,
    imported_key: false,
    latest_version: k.latest_version,
    min_available_version: 0,
    min_decryption_version: k.min_decryption_version,
    min_encryption_version: k.min_encryption_version,
    auto_rotate_period: k.auto_rotate_period,
    supports_encryption: caps.encryption,
    supports_decryption: caps.encryption,
    supports_signing: caps.signing,
    supports_derivation: caps.derivation,
  };
  if (k.key_size !== undefined) data.key_size = k.key_size;
  if (k.derived) {
    data.kdf = 'hkdf_sha256';
    data.convergent_encryption = false;
  }
  const keys: Record<string, unknown> = {};
  for (const [n, v] of Object.entries(k.versions)) {
    // Versions below min_decryption_version are out of use (Vault archives them): not shown.
    if (Number(n) < k.min_decryption_version) continue;
    if (!caps.asymmetric) {
      keys[n] = Math.floor(Date.parse(v.creation_time) / 1000);
      continue;
    }
    const publicKey = v.public_key ?? (derivedPublicKey ? derivedPublicKey(Number(n)) : '');
    keys[n] = { name: k.type === 'ecdsa-p256' ? 'P-256' : 'ed25519', public_key: publicKey, creation_time: v.creation_time, certificate_chain: '' };
  }
  data.keys = keys;
  return data;
}

export const EXPORT_TYPES = ['encryption-key', 'signing-key', 'hmac-key', 'public-key'] as const;
export type ExportType = (typeof EXPORT_TYPES)[number];

export function parseExportType(value: string): ExportType {
  if ((EXPORT_TYPES as readonly string[]).includes(value)) return value as ExportType;
  throw new BadRequestError(`invalid export type: ${value} (use ${EXPORT_TYPES.join(', ')})`);
}

/**
 * Vault's export: every usable version (≥ min_decryption_version), or one (`latest` or a number). Private material
 * only from keys created exportable; public keys from any asymmetric key.
 */
export function exportKeys(p: KeyPolicy, type: ExportType, version: string | undefined): Record<string, string> {
  if (type !== 'public-key' && !p.exportable) throw new BadRequestError(`private key material is not exportable: key ${p.name} was not created with exportable=true`);
  const caps = KEY_TYPES[p.type];
  if (type === 'encryption-key' && !caps.encryption) throw new BadRequestError(`encryption not supported for the key (type ${p.type})`);
  if (type === 'signing-key' && !caps.signing) throw new BadRequestError(`signing not supported for the key (type ${p.type})`);
  if (type === 'public-key' && !caps.asymmetric) throw new BadRequestError(`public key not available for the key (type ${p.type})`);
  if (type === 'public-key' && p.derived) throw new BadRequestError('a derived ed25519 key has a public key per context only: read keys/:name with that context');

  let versions: number[];
  if (version === undefined || version === '') {
    versions = Object.keys(p.versions).map(Number).filter((n) => n >= p.min_decryption_version);
  } else {
    const n = version === 'latest' ? p.latest_version : /^\d{1,9}$/.test(version) ? Number(version) : NaN;
    if (Number.isNaN(n)) throw new BadRequestError(`invalid key version "${version}": use a version number or "latest"`);
    if (!p.versions[String(n)]) throw new BadRequestError('version does not exist or cannot be found');
    if (n < p.min_decryption_version) throw new BadRequestError('version for export is below minimum decryption version');
    versions = [n];
  }
  const out: Record<string, string> = {};
  for (const n of versions.sort((a, b) => a - b)) out[String(n)] = exportOne(p, p.versions[String(n)]!, type);
  return out;
}

function exportOne(p: KeyPolicy, v: StoredVersion, type: ExportType): string {
  switch (type) {
    case 'hmac-key':
      return v.hmac_key;
    case 'encryption-key':
      return v.key!;
    case 'public-key':
      return v.public_key!;
    case 'signing-key':
      if (p.type === 'ecdsa-p256') {
        // SEC 1 PEM ("EC PRIVATE KEY"), as Vault exports ECDSA keys.
        return createPrivateKey({ key: Buffer.from(v.private_key!, 'base64'), format: 'der', type: 'pkcs8' }).export({ format: 'pem', type: 'sec1' }).toString().trim();
      }
      // Ed25519: Go's 64-byte private key (seed ‖ public key); a derived key's base seed as it is.
      if (p.derived) return v.key!;
      return Buffer.concat([Buffer.from(v.key!, 'base64'), Buffer.from(v.public_key!, 'base64')]).toString('base64');
  }
}
