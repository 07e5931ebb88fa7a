import { createHmac, sign as cryptoSign, timingSafeEqual, verify as cryptoVerify } from 'node:crypto';
import { BadRequestError } from '../../core/errors.js';
import { decodeBase64, decodeBase64UrlRaw, parseVersioned, versionPrefix } from './encoding.js';
import type { LoadedKey } from './loaded-key.js';

// Vault's hash algorithm names → node:crypto's.
const HASHES: Record<string, string> = {
  'sha2-224': 'sha224', 'sha2-256': 'sha256', 'sha2-384': 'sha384', 'sha2-512': 'sha512',
  'sha3-224': 'sha3-224', 'sha3-256': 'sha3-256', 'sha3-384': 'sha3-384', 'sha3-512': 'sha3-512',
};
export const HASH_NAMES = Object.keys(HASHES);

export function hashAlgorithm(name: string): string {
  const h = Object.hasOwn(HASHES, name) ? HASHES[name] : undefined;
  if (!h) throw new BadRequestError(`invalid hash algorithm "${name}": use one of ${HASH_NAMES.join(', ')}`);
  return h;
}

export type Marshaling = 'asn1' | 'jws';

export function marshaling(name: string): Marshaling {
  if (name === 'asn1' || name === 'jws') return name;
  throw new BadRequestError(`invalid marshaling type "${name}": use asn1 or jws`);
}

export interface SignOptions {
  /** Vault's name (sha2-256 …); ignored by Ed25519, which hashes internally. */
  hash: string;
  prehashed: boolean;
  marshaling: Marshaling;
  context?: Buffer;
  keyVersion?: number;
}

function refusePrehashed(k: LoadedKey, prehashed: boolean): void {
  // node:crypto signs and verifies whole messages only (it always applies the digest itself), so a digest
  // computed by the caller cannot be signed as such. Refused rather than silently hashed a second time.
  if (prehashed) throw new BadRequestError(`prehashed input is not supported for ${k.type} keys: send the message itself (base64) and the hash_algorithm`);
}

/** ECDSA over the hash of the input (DER, or r‖s for JWS); Ed25519 over the input itself. */
export function sign(k: LoadedKey, input: Buffer, o: SignOptions): { signature: string; key_version: number; public_key?: string } {
  k.requireSigning('signing');
  refusePrehashed(k, o.prehashed);
  const version = k.useVersion(o.keyVersion, 'signing');
  const keys = k.signingKeys(version, o.context);
  const sig = k.type === 'ecdsa-p256'
    ? cryptoSign(hashAlgorithm(o.hash), input, { key: keys.privateKey, dsaEncoding: o.marshaling === 'jws' ? 'ieee-p1363' : 'der' })
    : cryptoSign(null, input, keys.privateKey);
  const encoded = o.marshaling === 'jws' ? sig.toString('base64url') : sig.toString('base64');
  const out: { signature: string; key_version: number; public_key?: string } = { signature: versionPrefix(version) + encoded, key_version: version };
  if (keys.derivedPublicKey) out.public_key = keys.derivedPublicKey;
  return out;
}

/** True when `signature` is a valid signature of `input`; a malformed signature value is a 400. */
export function verify(k: LoadedKey, input: Buffer, signature: string, o: SignOptions): boolean {
  k.requireSigning('verification');
  refusePrehashed(k, o.prehashed);
  const parsed = parseVersioned(signature, 'signature');
  const version = k.acceptVersion(parsed.version, 'signature');
  const sig = o.marshaling === 'jws' ? decodeBase64UrlRaw(parsed.body, 'signature') : decodeBase64(parsed.body, 'signature');
  const keys = k.signingKeys(version, o.context);
  try {
    return k.type === 'ecdsa-p256'
      ? cryptoVerify(hashAlgorithm(o.hash), input, { key: keys.publicKey, dsaEncoding: o.marshaling === 'jws' ? 'ieee-p1363' : 'der' }, sig)
      : cryptoVerify(null, input, keys.publicKey, sig);
  } catch (err) {
    if (err instanceof BadRequestError) throw err;
    // OpenSSL refuses some malformed encodings instead of answering false: still just an invalid signature.
    return false;
  }
}

/** HMAC with the version's HMAC key (every key type has one), as `vault:vN:<base64>`. */
export function hmac(k: LoadedKey, input: Buffer, algorithm: string, keyVersion?: number): string {
  const version = k.useVersion(keyVersion, 'HMAC');
  const mac = createHmac(hashAlgorithm(algorithm), k.hmacKey(version)).update(input).digest();
  return versionPrefix(version) + mac.toString('base64');
}

export function verifyHmac(k: LoadedKey, input: Buffer, value: string, algorithm: string): boolean {
  const parsed = parseVersioned(value, 'HMAC');
  const version = k.acceptVersion(parsed.version, 'HMAC');
  const given = decodeBase64(parsed.body, 'HMAC');
  const mac = createHmac(hashAlgorithm(algorithm), k.hmacKey(version)).update(input).digest();
  return given.length === mac.length && timingSafeEqual(given, mac);
}
