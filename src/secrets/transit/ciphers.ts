import { createCipheriv, createDecipheriv, randomBytes, type CipherGCMTypes, type KeyObject } from 'node:crypto';
import { BadRequestError } from '../../core/errors.js';
import { decodeBase64, parseVersioned, versionPrefix } from './encoding.js';
import type { KeyType } from './key-types.js';
import type { LoadedKey } from './loaded-key.js';

// Ciphertext: `vault:v<version>:` + base64(nonce ‖ ciphertext ‖ tag) — the layout Vault uses for its AEAD keys.
// A fresh random 96-bit nonce per encryption (NIST SP 800-38D §8.2.2; RFC 8439 §2.8 for ChaCha20-Poly1305).
const NONCE_BYTES = 12;
const TAG_BYTES = 16;
const ALGORITHMS: Partial<Record<KeyType, CipherGCMTypes | 'chacha20-poly1305'>> = {
  'aes256-gcm96': 'aes-256-gcm',
  'chacha20-poly1305': 'chacha20-poly1305',
};

function algorithm(type: KeyType): CipherGCMTypes | 'chacha20-poly1305' {
  const a = ALGORITHMS[type];
  if (!a) throw new BadRequestError(`message encryption not supported for key type ${type}`);
  return a;
}

/** nonce ‖ ciphertext ‖ tag. */
export function seal(type: KeyType, key: KeyObject | Buffer, plaintext: Buffer, aad?: Buffer): Buffer {
  const nonce = randomBytes(NONCE_BYTES);
  const cipher = createCipheriv(algorithm(type) as CipherGCMTypes, key, nonce, { authTagLength: TAG_BYTES });
  if (aad) cipher.setAAD(aad);
  const body = cipher.update(plaintext);
  cipher.final();
  return Buffer.concat([nonce, body, cipher.getAuthTag()]);
}

/** Opens what `seal` made; any change to it, another key or another context fails authentication (400). */
export function open(type: KeyType, key: KeyObject | Buffer, sealed: Buffer, aad?: Buffer): Buffer {
  if (sealed.length < NONCE_BYTES + TAG_BYTES) throw new BadRequestError('invalid ciphertext length');
  const decipher = createDecipheriv(algorithm(type) as CipherGCMTypes, key, sealed.subarray(0, NONCE_BYTES), { authTagLength: TAG_BYTES });
  decipher.setAuthTag(sealed.subarray(sealed.length - TAG_BYTES));
  if (aad) decipher.setAAD(aad);
  const body = decipher.update(sealed.subarray(NONCE_BYTES, sealed.length - TAG_BYTES));
  try {
    decipher.final();
  } catch {
    body.fill(0);
    // Vault's (Go's) words, which clients match on.
    throw new BadRequestError('cipher: message authentication failed');
  }
  return body;
}

export interface EncryptInput {
  plaintext: Buffer;
  context?: Buffer;
  keyVersion?: number;
  associatedData?: Buffer;
}

export function encrypt(k: LoadedKey, input: EncryptInput): { ciphertext: string; key_version: number } {
  k.requireEncryption();
  const version = k.useVersion(input.keyVersion, 'encryption');
  const { key, wipe } = k.aeadKey(version, input.context);
  try {
    const sealed = seal(k.type, key, input.plaintext, input.associatedData);
    return { ciphertext: versionPrefix(version) + sealed.toString('base64'), key_version: version };
  } finally {
    wipe();
  }
}

export function decrypt(k: LoadedKey, ciphertext: string, context?: Buffer, associatedData?: Buffer): { plaintext: Buffer; version: number } {
  if (!ALGORITHMS[k.type]) throw new BadRequestError(`message decryption not supported for key type ${k.type}`);
  const parsed = parseVersioned(ciphertext, 'ciphertext');
  const version = k.acceptVersion(parsed.version, 'ciphertext');
  let sealed: Buffer;
  try {
    sealed = decodeBase64(parsed.body, 'ciphertext');
  } catch {
    throw new BadRequestError('invalid ciphertext: could not decode base64');
  }
  const { key, wipe } = k.aeadKey(version, context);
  try {
    return { plaintext: open(k.type, key, sealed, associatedData), version };
  } finally {
    wipe();
  }
}
