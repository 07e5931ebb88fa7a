import { randomBytes, randomUUID, timingSafeEqual } from 'node:crypto';
import type { Barrier } from '../barrier/index.js';
import { DecryptError, SEAL_PREFIX } from '../barrier/index.js';
import { BadRequestError, NotInitializedError } from '../errors.js';
import type { Storage } from '../storage/index.js';
import type { AutoUnseal } from './auto-unseal.js';
import { combineShares, decodeShare, splitRootKey } from './shamir.js';

const CONFIG_KEY = `${SEAL_PREFIX}config`;
const WRAPPED_KEY = `${SEAL_PREFIX}root-key-wrapped`;
const ROOT_KEY_BYTES = 32;
const SHARE_BYTES_MULTI = ROOT_KEY_BYTES + 1;

interface SealConfig {
  type: 'shamir';
  shares: number;
  threshold: number;
  autoUnseal: string | null;
  initializedAt: string;
}

export interface SealStatus {
  type: string;
  initialized: boolean;
  sealed: boolean;
  t: number;
  n: number;
  progress: number;
  nonce: string;
  version: string;
  recovery_seal: boolean;
  storage_type: string;
}

export const AEGIS_VERSION = '0.1.0';

/**
 * The root key's custody: Shamir shares held by operators, optionally also wrapped by an auto-unseal key.
 * Unseal progress is in memory only; a restart forgets submitted shares, as in Vault.
 */
export class SealManager {
  private config: SealConfig | null = null;
  private pending: Buffer[] = [];
  private nonce = '';
  private initializing = false;

  constructor(private readonly storage: Storage, private readonly barrier: Barrier, private readonly auto: AutoUnseal | null) {}

  async load(): Promise<void> {
    const raw = await this.storage.get(CONFIG_KEY);
    this.config = raw ? (JSON.parse(raw.value.toString('utf8')) as SealConfig) : null;
  }

  get initialized(): boolean {
    return this.config !== null;
  }

  get sealed(): boolean {
    return this.barrier.sealed;
  }

  status(): SealStatus {
    const c = this.config;
    return {
      type: c?.autoUnseal ?? 'shamir',
      initialized: c !== null,
      sealed: this.barrier.sealed,
      t: c?.threshold ?? 0,
      n: c?.shares ?? 0,
      progress: this.pending.length,
      nonce: this.nonce,
      version: AEGIS_VERSION,
      recovery_seal: false,
      storage_type: this.storage.name,
    };
  }

  /** Makes the root key and keyring and returns the shares. The barrier is left unsealed for the caller's setup. */
  async initialize(shares: number, threshold: number): Promise<Buffer[]> {
    validateShamir(shares, threshold);
    if (this.config || this.initializing) throw new BadRequestError('Aegis is already initialized');
    this.initializing = true;
    try {
      await this.load();
      if (this.config) throw new BadRequestError('Aegis is already initialized');
      const rootKey = randomBytes(ROOT_KEY_BYTES);
      const parts = await splitRootKey(rootKey, shares, threshold);
      await this.barrier.initialize(rootKey);
      if (this.auto) await this.storage.put(WRAPPED_KEY, await this.auto.wrap(rootKey));
      const config: SealConfig = { type: 'shamir', shares, threshold, autoUnseal: this.auto?.type ?? null, initializedAt: new Date().toISOString() };
      // The config is written last: a crash before this point leaves Aegis uninitialized, never half-initialized.
      await this.storage.put(CONFIG_KEY, Buffer.from(JSON.stringify(config)));
      this.config = config;
      rootKey.fill(0);
      return parts;
    } finally {
      this.initializing = false;
    }
  }

  /** Adds one share; unseals when the threshold is reached. Returns true when this call unsealed. */
  async submitShare(text: string): Promise<boolean> {
    const c = this.requireConfig();
    if (!this.barrier.sealed) return false;
    const length = c.shares === 1 ? ROOT_KEY_BYTES : SHARE_BYTES_MULTI;
    const share = decodeShare(text, length);
    if (!share) throw new BadRequestError(`unseal key is not a valid share: expected ${length} bytes as hex or base64`);
    // sys/unseal is unauthenticated: compare in constant time so timing says nothing about shares already submitted.
    if (this.pending.some((p) => p.length === share.length && timingSafeEqual(p, share))) return false;
    if (this.pending.length === 0) this.nonce = randomUUID();
    this.pending.push(share);
    if (this.pending.length < c.threshold) return false;
    const shares = this.pending;
    this.resetProgress();
    const wrong = () => new BadRequestError('unseal failed: these shares do not reconstruct the root key; progress was reset, start again');
    const rootKey = await combineShares(shares).catch(() => { throw wrong(); });
    try {
      await this.barrier.unseal(rootKey);
    } catch (err) {
      throw err instanceof DecryptError ? wrong() : err;
    }
    // An auto-unseal configured after init starts working from the first manual unseal.
    if (this.auto && !(await this.storage.get(WRAPPED_KEY))) await this.storage.put(WRAPPED_KEY, await this.auto.wrap(rootKey));
    rootKey.fill(0);
    return true;
  }

  resetProgress(): void {
    this.pending = [];
    this.nonce = '';
  }

  /** Unseals with the auto-unseal key when one is configured; returns false when there is none. */
  async autoUnseal(): Promise<boolean> {
    this.requireConfig();
    if (!this.auto) return false;
    const wrapped = await this.storage.get(WRAPPED_KEY);
    // Initialized before an auto-unseal was configured: the first manual unseal wraps the key (submitShare).
    if (!wrapped) return false;
    const rootKey = await this.auto.unwrap(wrapped.value);
    await this.barrier.unseal(rootKey);
    rootKey.fill(0);
    return true;
  }

  seal(): void {
    this.resetProgress();
    this.barrier.seal();
  }

  private requireConfig(): SealConfig {
    if (!this.config) throw new NotInitializedError();
    return this.config;
  }
}

function validateShamir(shares: number, threshold: number): void {
  if (!Number.isInteger(shares) || !Number.isInteger(threshold)) throw new BadRequestError('secret_shares and secret_threshold must be whole numbers');
  if (shares < 1 || shares > 255) throw new BadRequestError('secret_shares must be between 1 and 255');
  if (threshold < 1 || threshold > shares) throw new BadRequestError('secret_threshold must be between 1 and secret_shares');
  if (threshold === 1 && shares > 1) throw new BadRequestError('secret_threshold must be at least 2 when secret_shares is more than 1');
}
