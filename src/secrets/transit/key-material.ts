import {
  createPrivateKey, createPublicKey, createSecretKey, generateKeyPairSync, hkdfSync, randomBytes, type KeyObject,
} from 'node:crypto';
import { BadRequestError } from '../../core/errors.js';
import type { KeyType, StoredVersion } from './key-types.js';

// Key material in memory is held as KeyObjects (OpenSSL-owned memory), not as Buffers on the JS heap; the few
// Buffers made on the way are zeroed as soon as the KeyObject exists.

/** One version's keys, decoded once per load of the key. */
export interface VersionMaterial {
  version: number;
  creationTime: string;
  /** AEAD key, `hmac` key, or (derived Ed25519) the seed that per-context keys are derived from. */
  secret?: KeyObject;
  hmacKey: KeyObject;
  /** ECDSA, and Ed25519 that is not derived. */
  privateKey?: KeyObject;
  publicKey?: KeyObject;
}

const SYMMETRIC_BYTES = 32;
// PKCS#8 wrapping of a raw Ed25519 seed (RFC 8410 §7): node:crypto imports a seed only inside this structure.
const ED25519_PKCS8_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex');

function secret(bytes: Buffer): KeyObject {
  const k = createSecretKey(bytes);
  bytes.fill(0);
  return k;
}

export function ed25519FromSeed(seed: Buffer): KeyObject {
  const der = Buffer.concat([ED25519_PKCS8_PREFIX, seed]);
  try {
    return createPrivateKey({ key: der, format: 'der', type: 'pkcs8' });
  } finally {
    der.fill(0);
  }
}

/** The raw 32-byte Ed25519 public key, base64 (how Vault shows it). */
export function ed25519PublicBase64(key: KeyObject): string {
  return Buffer.from(createPublicKey(key).export({ format: 'jwk' }).x!, 'base64url').toString('base64');
}

/** A fresh version of a key of `type` (`keySize` bytes for `hmac` keys). */
export function generateVersion(type: KeyType, derived: boolean, keySize: number | undefined): StoredVersion {
  const v: StoredVersion = { creation_time: new Date().toISOString(), hmac_key: randomBytes(32).toString('base64') };
  switch (type) {
    case 'aes256-gcm96':
    case 'chacha20-poly1305':
      v.key = randomBytes(SYMMETRIC_BYTES).toString('base64');
      break;
    case 'hmac':
      // As in Vault, an hmac key's HMAC key is the key itself.
      v.key = randomBytes(keySize ?? SYMMETRIC_BYTES).toString('base64');
      v.hmac_key = v.key;
      break;
    case 'ecdsa-p256': {
      const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
      v.private_key = privateKey.export({ format: 'der', type: 'pkcs8' }).toString('base64');
      v.public_key = publicKey.export({ format: 'pem', type: 'spki' }).toString();
      break;
    }
    case 'ed25519': {
      const seed = randomBytes(32);
      v.key = seed.toString('base64');
      // A derived key has a public key per context only (shown by a read with that context).
      if (!derived) v.public_key = ed25519PublicBase64(ed25519FromSeed(seed));
      seed.fill(0);
      break;
    }
  }
  return v;
}

export function decodeVersion(type: KeyType, derived: boolean, version: number, stored: StoredVersion): VersionMaterial {
  const m: VersionMaterial = { version, creationTime: stored.creation_time, hmacKey: secret(Buffer.from(stored.hmac_key, 'base64')) };
  if (type === 'ecdsa-p256') {
    const der = Buffer.from(stored.private_key!, 'base64');
    m.privateKey = createPrivateKey({ key: der, format: 'der', type: 'pkcs8' });
    der.fill(0);
    m.publicKey = createPublicKey(m.privateKey);
  } else if (type === 'ed25519' && !derived) {
    const seed = Buffer.from(stored.key!, 'base64');
    m.privateKey = ed25519FromSeed(seed);
    seed.fill(0);
    m.publicKey = createPublicKey(m.privateKey);
  } else {
    m.secret = secret(Buffer.from(stored.key!, 'base64'));
  }
  return m;
}

// node:crypto's HKDF takes at most 1024 bytes of info.
const MAX_CONTEXT = 1024;

/**
 * The per-context key of a derived key: HKDF-SHA256 with the version's key as input keying material, no salt and
 * the context as info (what Vault's hkdf_sha256 KDF does). The caller zeroes the result after use.
 */
export function deriveKey(base: KeyObject, context: Buffer | undefined, length = 32): Buffer {
  if (!context || context.length === 0) {
    throw new BadRequestError("missing 'context' for key derivation; the key was created using a derived key, which means additional, per-request information must be included in order to perform operations with the key");
  }
  if (context.length > MAX_CONTEXT) throw new BadRequestError(`context is ${context.length} bytes; at most ${MAX_CONTEXT} bytes are allowed`);
  return Buffer.from(hkdfSync('sha256', base, Buffer.alloc(0), context, length));
}
