import { BadRequestError } from '../../core/errors.js';

// The key types Aegis's transit engine offers, by Vault's names, and what each can do (Vault's KeyType methods:
// EncryptionSupported, SigningSupported, DerivationSupported).
export const KEY_TYPES = {
  'aes256-gcm96': { encryption: true, signing: false, derivation: true, asymmetric: false },
  'chacha20-poly1305': { encryption: true, signing: false, derivation: true, asymmetric: false },
  'ecdsa-p256': { encryption: false, signing: true, derivation: false, asymmetric: true },
  ed25519: { encryption: false, signing: true, derivation: true, asymmetric: true },
  hmac: { encryption: false, signing: false, derivation: false, asymmetric: false },
} as const;

export type KeyType = keyof typeof KEY_TYPES;
export type Capability = 'encryption' | 'signing' | 'derivation';

export function parseKeyType(value: string): KeyType {
  if (Object.hasOwn(KEY_TYPES, value)) return value as KeyType;
  throw new BadRequestError(`unknown key type ${value}: use one of ${Object.keys(KEY_TYPES).join(', ')}`);
}

export function supports(type: KeyType, what: Capability): boolean {
  return KEY_TYPES[type][what];
}

// HMAC keys: Vault's HmacMinKeySize / HmacMaxKeySize, in bytes.
export const HMAC_KEY_MIN = 32;
export const HMAC_KEY_MAX = 512;

/** The public face of one key version: what a key read shows. */
export interface PublicVersion {
  /** RFC 3339. */
  creation_time: string;
  /** ECDSA: SPKI PEM; Ed25519 (not derived): the raw 32 bytes, base64. */
  public_key?: string;
}

/** One key version as stored: only ever inside the barrier. */
export interface StoredVersion extends PublicVersion {
  /** Base64: the AEAD key, the key of an `hmac` key, or the Ed25519 seed. */
  key?: string;
  /** ECDSA: PKCS#8 DER, base64. */
  private_key?: string;
  /** Base64. Every version has one, whatever its type, because hmac/:name works with any key (as in Vault). */
  hmac_key: string;
}

/** A named key's settings (Vault's keysutil.Policy without the key material). */
export interface KeySettings {
  name: string;
  type: KeyType;
  derived: boolean;
  exportable: boolean;
  deletion_allowed: boolean;
  /** Versions below it neither decrypt nor verify (always ≥ 1). */
  min_decryption_version: number;
  /** Explicit key_version requests below it are refused (0 = any). */
  min_encryption_version: number;
  latest_version: number;
  /** Seconds; 0 = never. */
  auto_rotate_period: number;
  /** Bytes; `hmac` keys only. */
  key_size?: number;
}

export interface KeyPolicy extends KeySettings {
  versions: Record<string, StoredVersion>;
}

/** A key as reads see it: settings and the public parts of each version. */
export interface KeyView extends KeySettings {
  versions: Record<string, PublicVersion>;
}
