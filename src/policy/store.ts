import type { SecureStore } from '../core/barrier/index.js';
import { BadRequestError, NotFoundError } from '../core/errors.js';
import { DEFAULT_POLICY, ROOT_POLICY, WORKLOAD_POLICY } from './builtin.js';
import { PolicyEngine, type PolicyDoc } from './engine.js';

const PREFIX = 'sys/policy/cedar/';
const NAME = /^[a-z0-9][a-z0-9_.-]{0,127}$/;

interface StoredPolicy {
  name: string;
  policy: string;
  created: string;
  updated: string;
}

export function normalisePolicyName(name: string): string {
  const n = name.toLowerCase();
  if (!NAME.test(n)) throw new BadRequestError(`policy name "${name}": use letters, digits, "_", "-" and ".", at most 128`);
  return n;
}

/**
 * Named Cedar documents in the barrier, compiled into the engine. Every write is validated against the schema
 * first: an invalid document is refused and nothing is stored. The engine reloads on any change under the
 * policy prefix, including changes made by another server sharing the storage.
 */
export class PolicyStore {
  private unsubscribe: (() => void) | null = null;
  private reloading: Promise<void> | null = null;
  private dirty = false;

  constructor(
    private readonly store: SecureStore,
    readonly engine: PolicyEngine,
    private readonly subscribe: (onChange: (key: string) => void) => () => void,
  ) {}

  async setup(): Promise<void> {
    await this.reload();
    this.unsubscribe = this.subscribe((key) => {
      if (key.startsWith(PREFIX)) this.scheduleReload();
    });
  }

  teardown(): void {
    this.unsubscribe?.();
    this.unsubscribe = null;
  }

  async list(): Promise<string[]> {
    const stored = await this.store.list(PREFIX);
    return [...new Set(['default', 'root', 'workload', ...stored])].sort();
  }

  async read(name: string): Promise<{ name: string; policy: string; builtin: boolean; created?: string; updated?: string }> {
    const n = normalisePolicyName(name);
    if (n === 'root') return { name: n, policy: ROOT_POLICY, builtin: true };
    if (n === 'workload') return { name: n, policy: WORKLOAD_POLICY, builtin: true };
    const found = await this.store.getJson<StoredPolicy>(PREFIX + n);
    if (found) return { ...found.value, builtin: n === 'default' };
    if (n === 'default') return { name: n, policy: DEFAULT_POLICY, builtin: true };
    throw new NotFoundError(`no policy named "${n}"`);
  }

  async write(name: string, text: string): Promise<void> {
    const n = normalisePolicyName(name);
    if (n === 'root' || n === 'workload') throw new BadRequestError(`the ${n} policy cannot be changed (it is built in)`);
    if (text.length > 128 * 1024) throw new BadRequestError('policy is larger than 128 KiB');
    PolicyEngine.compile({ name: n, text });
    const now = new Date().toISOString();
    const existing = await this.store.getJson<StoredPolicy>(PREFIX + n);
    await this.store.put(PREFIX + n, { name: n, policy: text, created: existing?.value.created ?? now, updated: now });
    await this.applied();
  }

  async delete(name: string): Promise<void> {
    const n = normalisePolicyName(name);
    if (n === 'root' || n === 'default' || n === 'workload') throw new BadRequestError(`the ${n} policy cannot be deleted`);
    if ((await this.store.delete(PREFIX + n)) === null) throw new NotFoundError(`no policy named "${n}"`);
    await this.applied();
  }

  async docs(): Promise<PolicyDoc[]> {
    const docs: PolicyDoc[] = [{ name: 'root', text: ROOT_POLICY }, { name: 'workload', text: WORKLOAD_POLICY }];
    let hasDefault = false;
    for (const name of await this.store.list(PREFIX)) {
      const p = await this.store.getJson<StoredPolicy>(PREFIX + name);
      if (!p || name === 'workload') continue;
      if (name === 'default') hasDefault = true;
      docs.push({ name, text: p.value.policy });
    }
    if (!hasDefault) docs.push({ name: 'default', text: DEFAULT_POLICY });
    return docs;
  }

  /**
   * Waits until the engine reflects this server's own last write. The change feed already scheduled the reload
   * (the driver reports a commit to subscribers as it happens), so the write waits for it rather than doing it again.
   */
  private async applied(): Promise<void> {
    if (!this.unsubscribe) return this.reload();
    while (this.reloading) await this.reloading;
  }

  private async reload(): Promise<void> {
    this.engine.load(await this.docs());
  }

  /** Coalesces bursts of changes into one reload at a time. */
  private scheduleReload(): void {
    if (this.reloading) {
      this.dirty = true;
      return;
    }
    this.reloading = this.reload()
      .catch(() => undefined)
      .finally(() => {
        this.reloading = null;
        if (this.dirty) {
          this.dirty = false;
          this.scheduleReload();
        }
      });
  }
}
