import { randomUUID } from 'node:crypto';
import type { Barrier, SecureStore } from './barrier/index.js';
import { BadRequestError, NotFoundError } from './errors.js';
import type { Backend } from './request.js';
import type { MountEntry, Router } from './router.js';

export interface BackendContext {
  store: SecureStore;
  entry: MountEntry;
  /**
   * Hears every committed change under the mount's storage (this server's writes and, with shared storage, other
   * servers'), with keys relative to the mount: what an engine's in-memory caches invalidate on.
   */
  onChange(listener: (key: string) => void): () => void;
}

export type BackendFactory = (ctx: BackendContext) => Backend;

const TABLE_KEY = 'core/mounts';
const MOUNT_PATH = /^(?:[a-zA-Z0-9_-]+\/){1,8}$/;
const RESERVED = ['sys/', 'auth/', 'identity/', 'core/', 'seal/', 'logical/', 'cubbyhole/', 'catalog/', 'health/', 'mesh/'];

/**
 * The table of secrets engines (Vault's `sys/mounts`): persisted in the barrier, each mount with its own storage
 * view `logical/<uuid>/`, so disabling a mount removes exactly its data.
 */
export class MountTable {
  private factories = new Map<string, BackendFactory>();
  /** Runs before a mount is removed (the lease manager revokes what the engine leased); throwing keeps the mount. */
  beforeDisable: ((entry: MountEntry) => Promise<void>) | null = null;

  constructor(private readonly barrier: Barrier, private readonly router: Router) {}

  register(type: string, factory: BackendFactory): void {
    this.factories.set(type, factory);
  }

  get types(): string[] {
    return [...this.factories.keys()];
  }

  /** Mounts everything in the stored table (after unseal). */
  async setup(): Promise<void> {
    const table = (await this.barrier.getJson<MountEntry[]>(TABLE_KEY))?.value ?? [];
    for (const entry of table) await this.attach(entry);
  }

  async teardown(): Promise<void> {
    for (const m of [...this.router.all()]) {
      if (m.entry.builtin) continue;
      this.router.remove(m.entry.path);
      await m.backend.teardown?.();
    }
  }

  list(): MountEntry[] {
    return this.router.all().map((m) => m.entry).sort((a, b) => a.path.localeCompare(b.path));
  }

  async enable(path: string, type: string, description = '', options: Record<string, string> = {}): Promise<MountEntry> {
    const p = path.endsWith('/') ? path : `${path}/`;
    if (!MOUNT_PATH.test(p)) throw new BadRequestError(`mount path "${path}": use letters, digits, "_" and "-" segments, like "kv/" or "team-a/kv/"`);
    if (RESERVED.some((r) => p.startsWith(r))) throw new BadRequestError(`mount path "${p}" is reserved`);
    if (!this.factories.has(type)) throw new BadRequestError(`unknown secrets engine type "${type}"; known: ${this.types.join(', ')}`);
    const clash = this.router.overlapping(p);
    if (clash.length > 0) throw new BadRequestError(`mount path "${p}" overlaps the existing mount "${clash[0]!.entry.path}"`);
    const entry: MountEntry = { path: p, type, uuid: randomUUID(), description, options };
    await this.attach(entry);
    try {
      await this.save();
    } catch (err) {
      this.router.remove(p);
      throw err;
    }
    return entry;
  }

  async disable(path: string): Promise<void> {
    const p = path.endsWith('/') ? path : `${path}/`;
    const m = this.router.get(p);
    if (!m) throw new NotFoundError(`nothing is mounted at "${p}"`);
    if (m.entry.builtin) throw new BadRequestError(`"${p}" is built in and cannot be disabled`);
    await this.beforeDisable?.(m.entry);
    this.router.remove(p);
    await m.backend.teardown?.();
    await this.save();
    await deleteTree(m.store, '');
  }

  private async attach(entry: MountEntry): Promise<void> {
    const factory = this.factories.get(entry.type);
    if (!factory) throw new Error(`mount ${entry.path} has unknown type ${entry.type}`);
    const prefix = `logical/${entry.uuid}/`;
    const store = this.barrier.view(prefix);
    const onChange = (listener: (key: string) => void) => this.barrier.storage.subscribe((changes) => {
      for (const c of changes) if (c.key.startsWith(prefix)) listener(c.key.slice(prefix.length));
    });
    const backend = factory({ store, entry, onChange });
    await backend.setup?.();
    this.router.add(entry, backend, store);
  }

  private async save(): Promise<void> {
    await this.barrier.put(TABLE_KEY, this.router.all().filter((m) => !m.entry.builtin).map((m) => m.entry));
  }
}

/** Deletes every key under `prefix` of `store`, depth first. */
export async function deleteTree(store: SecureStore, prefix: string): Promise<void> {
  for (const child of await store.list(prefix)) {
    if (child.endsWith('/')) await deleteTree(store, prefix + child);
    else await store.delete(prefix + child);
  }
}
