import type { SecureStore } from '../core/barrier/index.js';
import { SealedError } from '../core/errors.js';

// The revocation list: serials and whole SPIFFE IDs. Held in memory (every TLS peer check reads it), loaded
// at unseal and kept current from the storage change feed, so a revocation made on any server reaches this
// one's watchers. Its index is the storage change index of the newest revocation: proxies watch it with
// `?index=N&wait=30s` and get the list as soon as the index passes N.

const SERIALS = 'revoked/serial/';
const IDS = 'revoked/id/';

export interface RevokedSerial {
  serial_number: string;
  spiffe_id: string;
  revoked_at: string;
  /** When the certificate expires; after that it need not be listed. */
  expires_at: string;
}

export interface RevokedId {
  spiffe_id: string;
  revoked_at: string;
}

export interface RevocationView {
  index: number;
  serials: RevokedSerial[];
  spiffe_ids: RevokedId[];
}

/** Storage key segment for a SPIFFE ID (which holds '/' and ':'). */
export function idKey(spiffeId: string): string {
  return Buffer.from(spiffeId).toString('base64url');
}

/** Serial numbers are kept as lowercase hex without separators. */
export function serialKey(serial: string): string {
  return serial.replace(/:/g, '').toLowerCase();
}

export class Revocations {
  private serials = new Map<string, RevokedSerial>();
  private ids = new Map<string, RevokedId>();
  private index = 0;
  /** False from teardown (seal) to the next setup: the maps are empty then, which must never read as "nothing revoked". */
  private loaded = false;
  private waiters = new Set<() => void>();

  constructor(private readonly store: SecureStore) {}

  async setup(): Promise<void> {
    this.serials.clear();
    this.ids.clear();
    for (const k of await this.store.list(SERIALS)) await this.refresh(SERIALS + k);
    for (const k of await this.store.list(IDS)) await this.refresh(IDS + k);
    this.loaded = true;
  }

  teardown(): void {
    this.loaded = false;
    this.serials.clear();
    this.ids.clear();
    // Blocked watchers are released now; view() then refuses them (sealed) instead of answering an empty list.
    this.wake();
  }

  /** A change under `revoked/` (relative key) committed at storage index `index`. */
  async changed(key: string, index: number): Promise<void> {
    if (!key.startsWith(SERIALS) && !key.startsWith(IDS)) return;
    await this.refresh(key, index);
    this.wake();
  }

  isSerialRevoked(serial: string): boolean {
    return this.serials.has(serialKey(serial));
  }

  isIdRevoked(spiffeId: string): RevokedId | null {
    return this.ids.get(spiffeId) ?? null;
  }

  /** Revoked serials to put in a CRL: those whose certificates have not expired. */
  liveSerials(now = Date.now()): RevokedSerial[] {
    return [...this.serials.values()].filter((s) => Date.parse(s.expires_at) > now);
  }

  get currentIndex(): number {
    return this.index;
  }

  view(): RevocationView {
    if (!this.loaded) throw new SealedError();
    return {
      index: this.index,
      serials: this.liveSerials().sort((a, b) => a.serial_number.localeCompare(b.serial_number)),
      spiffe_ids: [...this.ids.values()].sort((a, b) => a.spiffe_id.localeCompare(b.spiffe_id)),
    };
  }

  /** Resolves when the index passes `index`, or after `waitMs`, whichever comes first (a Consul-style blocking query). */
  async waitPast(index: number, waitMs: number): Promise<void> {
    if (this.index > index || waitMs <= 0 || !this.loaded) return;
    await new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.waiters.delete(check);
        resolve();
      };
      const check = () => { if (this.index > index || !this.loaded) done(); };
      const timer = setTimeout(done, waitMs);
      this.waiters.add(check);
    });
  }

  async revokeSerial(entry: RevokedSerial): Promise<number> {
    const index = await this.store.put(SERIALS + serialKey(entry.serial_number), entry);
    await this.changed(SERIALS + serialKey(entry.serial_number), index);
    return index;
  }

  async revokeId(spiffeId: string): Promise<number> {
    const key = IDS + idKey(spiffeId);
    const index = await this.store.put(key, { spiffe_id: spiffeId, revoked_at: new Date().toISOString() } satisfies RevokedId);
    await this.changed(key, index);
    return index;
  }

  /** Lets a revoked SPIFFE ID be issued again (its old certificates stay revoked by serial). */
  async restoreId(spiffeId: string): Promise<boolean> {
    const key = IDS + idKey(spiffeId);
    const index = await this.store.delete(key);
    if (index === null) return false;
    await this.changed(key, index);
    return true;
  }


  private async refresh(key: string, index?: number): Promise<void> {
    const got = await this.store.get(key);
    const name = key.startsWith(SERIALS) ? key.slice(SERIALS.length) : key.slice(IDS.length);
    if (key.startsWith(SERIALS)) {
      if (got) this.serials.set(name, JSON.parse(got.value.toString('utf8')) as RevokedSerial);
      else this.serials.delete(name);
    } else {
      const id = Buffer.from(name, 'base64url').toString('utf8');
      if (got) this.ids.set(id, JSON.parse(got.value.toString('utf8')) as RevokedId);
      else this.ids.delete(id);
    }
    this.index = Math.max(this.index, index ?? got?.version ?? 0);
  }

  private wake(): void {
    for (const w of [...this.waiters]) w();
  }
}
