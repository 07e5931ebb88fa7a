import { SealedError } from '../errors.js';
import type { Storage, TxnOp } from '../storage/index.js';
import { Keyring } from './keyring.js';

/** What every engine and subsystem sees of storage: values are plaintext here and sealed below. */
export interface SecureStore {
  get(key: string): Promise<{ value: Buffer; version: number } | null>;
  getJson<T>(key: string): Promise<{ value: T; version: number } | null>;
  put(key: string, value: Buffer | object): Promise<number>;
  delete(key: string): Promise<number | null>;
  list(prefix: string): Promise<string[]>;
  /** Atomic; puts take plaintext (Buffer or JSON-able object). */
  txn(ops: readonly SecureTxnOp[]): Promise<number>;
  /** The same store seen under a prefix (a mount's private space). */
  view(prefix: string): SecureStore;
  readonly prefix: string;
}

export type SecureTxnOp =
  | { type: 'put'; key: string; value: Buffer | object }
  | { type: 'delete'; key: string }
  | { type: 'check'; key: string; version: number };

// Raw, unencrypted records of the seal live under this prefix and are unreachable through the barrier.
export const SEAL_PREFIX = 'seal/';

function encode(value: Buffer | object): Buffer {
  return Buffer.isBuffer(value) ? value : Buffer.from(JSON.stringify(value));
}

/**
 * The cryptographic barrier: AES-256-GCM over every value, the storage path as additional authenticated data,
 * a keyring of numbered terms sealed by the root key. While sealed it holds no key and answers nothing.
 */
export class Barrier implements SecureStore {
  readonly prefix = '';
  private keyring: Keyring | null = null;
  private rootKey: Buffer | null = null;

  constructor(readonly storage: Storage) {}

  get sealed(): boolean {
    return this.keyring === null;
  }

  /** Creates and stores a fresh keyring sealed by `rootKey`; leaves the barrier unsealed. */
  async initialize(rootKey: Buffer): Promise<void> {
    const keyring = Keyring.create();
    await this.storage.put(`${SEAL_PREFIX}keyring`, keyring.sealWith(rootKey));
    this.keyring = keyring;
    this.rootKey = Buffer.from(rootKey);
  }

  /** Throws DecryptError when `rootKey` is wrong. */
  async unseal(rootKey: Buffer): Promise<void> {
    const stored = await this.storage.get(`${SEAL_PREFIX}keyring`);
    if (!stored) throw new Error('barrier is not initialized');
    this.keyring = Keyring.openWith(rootKey, stored.value);
    this.rootKey = Buffer.from(rootKey);
  }

  seal(): void {
    this.keyring?.wipe();
    this.rootKey?.fill(0);
    this.keyring = null;
    this.rootKey = null;
  }

  async rotate(): Promise<{ term: number; installedAt: string }> {
    const keyring = this.unsealedKeyring();
    const next = keyring.rotate();
    await this.storage.put(`${SEAL_PREFIX}keyring`, keyring.sealWith(this.rootKey!));
    return { term: next.term, installedAt: next.installedAt };
  }

  keyStatus(): { term: number; installedAt: string; terms: number } {
    const k = this.unsealedKeyring();
    return { term: k.activeTerm.term, installedAt: k.activeTerm.installedAt, terms: k.termCount };
  }

  async get(key: string): Promise<{ value: Buffer; version: number } | null> {
    const keyring = this.unsealedKeyring();
    assertBarrierKey(key);
    const entry = await this.storage.get(key);
    if (!entry) return null;
    return { value: keyring.open(key, entry.value), version: entry.version };
  }

  async getJson<T>(key: string): Promise<{ value: T; version: number } | null> {
    const e = await this.get(key);
    return e ? { value: JSON.parse(e.value.toString('utf8')) as T, version: e.version } : null;
  }

  async put(key: string, value: Buffer | object): Promise<number> {
    const keyring = this.unsealedKeyring();
    assertBarrierKey(key);
    return this.storage.put(key, keyring.seal(key, encode(value)));
  }

  async delete(key: string): Promise<number | null> {
    this.unsealedKeyring();
    assertBarrierKey(key);
    return this.storage.delete(key);
  }

  async list(prefix: string): Promise<string[]> {
    this.unsealedKeyring();
    if (prefix.startsWith(SEAL_PREFIX)) return [];
    const out = await this.storage.list(prefix);
    return prefix === '' ? out.filter((k) => k !== SEAL_PREFIX) : out;
  }

  async txn(ops: readonly SecureTxnOp[]): Promise<number> {
    const keyring = this.unsealedKeyring();
    const sealedOps: TxnOp[] = ops.map((op) => {
      assertBarrierKey(op.key);
      return op.type === 'put' ? { type: 'put', key: op.key, value: keyring.seal(op.key, encode(op.value)) } : op;
    });
    return this.storage.txn(sealedOps);
  }

  view(prefix: string): SecureStore {
    return new PrefixView(this, prefix);
  }

  private unsealedKeyring(): Keyring {
    if (!this.keyring) throw new SealedError();
    return this.keyring;
  }
}

function assertBarrierKey(key: string): void {
  if (key.startsWith(SEAL_PREFIX)) throw new Error(`storage key ${key} is reserved for the seal`);
}

class PrefixView implements SecureStore {
  constructor(private readonly inner: SecureStore, readonly prefix: string) {
    if (!prefix.endsWith('/')) throw new Error(`view prefix must end with '/': ${prefix}`);
  }
  get(key: string) { return this.inner.get(this.prefix + key); }
  getJson<T>(key: string) { return this.inner.getJson<T>(this.prefix + key); }
  put(key: string, value: Buffer | object) { return this.inner.put(this.prefix + key, value); }
  delete(key: string) { return this.inner.delete(this.prefix + key); }
  list(prefix: string) { return this.inner.list(this.prefix + prefix); }
  txn(ops: readonly SecureTxnOp[]) { return this.inner.txn(ops.map((op) => ({ ...op, key: this.prefix + op.key }))); }
  view(prefix: string): SecureStore { return new PrefixView(this.inner, this.prefix + prefix); }
}
