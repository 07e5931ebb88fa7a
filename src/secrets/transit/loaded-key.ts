import { createPublicKey, type KeyObject } from 'node:crypto';
import { BadRequestError } from '../../core/errors.js';
import { decodeVersion, deriveKey, ed25519FromSeed, ed25519PublicBase64, type VersionMaterial } from './key-material.js';
import { KEY_TYPES, type KeyPolicy, type KeyView, type PublicVersion } from './key-types.js';

// Vault's message for a version below min_decryption_version (keysutil.ErrTooOld); clients match on it.
export const ERR_TOO_OLD = 'ciphertext or signature version is disallowed by policy (too old)';

export interface SigningKeys {
  privateKey: KeyObject;
  publicKey: KeyObject;
  /** Derived Ed25519 only: the per-context public key, base64 (Vault returns it with the signature). */
  derivedPublicKey?: string;
}

/**
 * One key, decoded: its settings, the public parts of its versions, and the key material of every version that
 * may still be used (≥ min_decryption_version). Immutable: any change to the key makes a new one.
 */
export class LoadedKey {
  readonly view: KeyView;
  private readonly material = new Map<number, VersionMaterial>();

  constructor(policy: KeyPolicy) {
    const { versions, ...settings } = policy;
    const shown: Record<string, PublicVersion> = {};
    for (const [n, v] of Object.entries(versions)) {
      const version = Number(n);
      if (version < policy.min_decryption_version) continue;
      shown[n] = v.public_key === undefined ? { creation_time: v.creation_time } : { creation_time: v.creation_time, public_key: v.public_key };
      this.material.set(version, decodeVersion(policy.type, policy.derived, version, v));
    }
    this.view = { ...settings, versions: shown };
  }

  get name(): string { return this.view.name; }
  get type() { return this.view.type; }

  requireEncryption(): void {
    if (!KEY_TYPES[this.type].encryption) throw new BadRequestError(`message encryption not supported for key type ${this.type}`);
  }

  requireSigning(verb: 'signing' | 'verification'): void {
    if (!KEY_TYPES[this.type].signing) throw new BadRequestError(`key type ${this.type} does not support ${verb}`);
  }

  /** The version a new ciphertext, signature or HMAC uses: `requested` (0 or absent = the latest), checked. */
  useVersion(requested: number | undefined, purpose: 'encryption' | 'signing' | 'HMAC'): number {
    const k = this.view;
    const v = requested ?? 0;
    if (v === 0) return k.latest_version;
    if (v < 0) throw new BadRequestError(`requested version for ${purpose} is negative`);
    if (v > k.latest_version) throw new BadRequestError(`requested version for ${purpose} is higher than the latest key version (${k.latest_version})`);
    if (k.min_encryption_version > 0 && v < k.min_encryption_version) {
      throw new BadRequestError(`requested version for ${purpose} is less than the minimum encryption key version (${k.min_encryption_version})`);
    }
    if (v < k.min_decryption_version) {
      throw new BadRequestError(`requested version for ${purpose} is below min_decryption_version (${k.min_decryption_version}): its output could not be used`);
    }
    return v;
  }

  /** The version a ciphertext, signature or HMAC names, if it may still be used. `what` words the errors as Vault does. */
  acceptVersion(version: number, what: 'ciphertext' | 'signature' | 'HMAC'): number {
    if (version > this.view.latest_version) throw new BadRequestError(`invalid ${what}: version is too new`);
    if (version < this.view.min_decryption_version) {
      throw new BadRequestError(what === 'HMAC' ? 'cannot verify HMAC: version is too old (disallowed by policy)' : ERR_TOO_OLD);
    }
    return version;
  }

  private version(n: number): VersionMaterial {
    const m = this.material.get(n);
    // Callers check versions first; a gap would mean a corrupt key document, not bad input.
    if (!m) throw new Error(`transit key ${this.name} has no material for version ${n}`);
    return m;
  }

  /**
   * The AEAD key of version `n` for `context`. Derived keys give a fresh Buffer (HKDF-SHA256 of the version's key
   * with the context): the caller must call `wipe` when done with it.
   */
  aeadKey(n: number, context: Buffer | undefined): { key: KeyObject | Buffer; wipe(): void } {
    const m = this.version(n);
    if (!this.view.derived) return { key: m.secret!, wipe: () => {} };
    const key = deriveKey(m.secret!, context);
    return { key, wipe: () => key.fill(0) };
  }

  signingKeys(n: number, context: Buffer | undefined): SigningKeys {
    const m = this.version(n);
    if (!this.view.derived) return { privateKey: m.privateKey!, publicKey: m.publicKey! };
    // Derived Ed25519: the per-context seed is HKDF of the version's seed (Vault derives it the same way).
    const seed = deriveKey(m.secret!, context);
    const privateKey = ed25519FromSeed(seed);
    seed.fill(0);
    return { privateKey, publicKey: createPublicKey(privateKey), derivedPublicKey: ed25519PublicBase64(privateKey) };
  }

  hmacKey(n: number): KeyObject {
    return this.version(n).hmacKey;
  }
}
