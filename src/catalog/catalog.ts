import type { SecureStore, SecureTxnOp } from '../core/barrier/index.js';
import { BadRequestError, ConflictError, NotFoundError, SealedError, TxnConflictError } from '../core/errors.js';
import type { Change } from '../core/storage/index.js';
import { MAX_OUTPUT, type CheckHost, type CheckState, type CheckStatus, type DnsCatalog, type Instance } from './model.js';

// The service catalog: instances and their check states, persisted through the barrier (`catalog/instances/<ns>/<id>`,
// `catalog/checks/<ns>/<check id>`) and served from memory with indexes by service. Every change carries the storage
// change index; each service remembers the index of its newest change, so a blocking query on one service wakes
// only when that service changes (Consul's per-service index). Changes reach memory from the storage change feed,
// so another server's writes on shared storage update this one too.

const INSTANCES = 'instances/';
const CHECKS = 'checks/';

interface StoredCheck extends CheckState {
  instanceId: string;
}

export interface InstanceView extends Instance {
  /** The instance's worst check status (passing when it has none). */
  status: CheckStatus;
  checkStates: (CheckState & { id: string; name: string; type: string })[];
  create_index: number;
  modify_index: number;
}

export interface CatalogEvents {
  /** A check was added or replaced (registration, restart). */
  checkAdded(instance: Instance, checkIndex: number, status: CheckStatus): void;
  checkRemoved(namespace: string, checkId: string): void;
}

const ANSWER_CACHE_MAX = 50_000;
const RANK: Record<CheckStatus, number> = { passing: 0, warning: 1, critical: 2 };

export class Catalog implements CheckHost, DnsCatalog {
  private readonly instances = new Map<string, { inst: Instance; createIndex: number; modifyIndex: number }>();
  private readonly byService = new Map<string, Set<string>>();
  private readonly checks = new Map<string, { state: StoredCheck; version: number }>();
  private readonly serviceIndex = new Map<string, number>();
  private readonly waiters = new Map<string, Set<() => void>>();
  private readonly allWaiters = new Set<() => void>();
  /** Keys this server is writing: their changes are applied by the writer, not re-read from the feed. */
  private readonly localWrites = new Set<string>();
  /** Serialized answers by query, valid while their service's index is unchanged (reads far outnumber changes). */
  private readonly answers = new Map<string, { index: number; outputs: number; body: string }>();
  /** Per service, how many times a check's output changed without a status change (answers show outputs too). */
  private readonly outputs = new Map<string, number>();
  private index = 0;
  private loaded = false;
  private unsubscribe: (() => void) | null = null;
  events: CatalogEvents | null = null;

  constructor(
    private readonly store: SecureStore,
    private readonly subscribe: (listener: (changes: readonly Change[]) => void) => () => void,
    private readonly prefix = 'catalog/',
  ) {}

  async setup(): Promise<void> {
    this.clear();
    for (const ns of await this.store.list(INSTANCES)) {
      for (const id of await this.store.list(INSTANCES + ns)) {
        const got = await this.store.getJson<Instance>(INSTANCES + ns + id);
        if (got) this.applyInstance(got.value, got.version);
      }
    }
    for (const ns of await this.store.list(CHECKS)) {
      for (const id of await this.store.list(CHECKS + ns)) {
        const got = await this.store.getJson<StoredCheck>(CHECKS + ns + id);
        if (got) this.checks.set(`${ns}${id}`, { state: got.value, version: got.version });
      }
    }
    this.loaded = true;
    for (const { inst } of this.instances.values()) this.announceChecks(inst);
    this.unsubscribe = this.subscribe((changes) => {
      for (const c of changes) {
        if (!c.key.startsWith(this.prefix)) continue;
        const key = c.key.slice(this.prefix.length);
        if (this.localWrites.has(key)) continue;
        void this.refresh(key, c.index).catch(() => undefined);
      }
    });
  }

  teardown(): void {
    this.unsubscribe?.();
    this.unsubscribe = null;
    this.loaded = false;
    this.clear();
    this.wakeAll();
  }

  get currentIndex(): number {
    return this.index;
  }

  get instanceCount(): number {
    return this.instances.size;
  }

  // ---- writes ----

  /** Registers or replaces an instance. An id held by another service of the namespace is a conflict. */
  async register(inst: Instance): Promise<InstanceView> {
    this.ready();
    const key = `${inst.namespace}/${inst.id}`;
    const existing = this.instances.get(key);
    if (existing && existing.inst.service !== inst.service) {
      throw new ConflictError(`instance id "${inst.id}" is already registered for service "${existing.inst.service}" in namespace "${inst.namespace}"; deregister it first or pick another id`);
    }
    for (const c of inst.checks) {
      const owner = this.checks.get(`${inst.namespace}/${c.id}`)?.state.instanceId;
      if (owner && owner !== inst.id) throw new BadRequestError(`check id "${c.id}" belongs to instance "${owner}" in namespace "${inst.namespace}"`);
    }
    // The instance is written last: a transaction's index is its last write's, so it is the instance's version,
    // which later writes check against.
    const ops: SecureTxnOp[] = [{ type: 'check', key: INSTANCES + key, version: existing?.modifyIndex ?? 0 }];
    const now = Date.now();
    const states = new Map<string, StoredCheck>();
    for (const c of inst.checks) {
      const prev = this.checks.get(`${inst.namespace}/${c.id}`)?.state;
      // A re-registration keeps a check's status; a new check starts critical until it passes (Consul's default).
      const state: StoredCheck = prev ?? { status: 'critical', output: '', since: now, instanceId: inst.id };
      states.set(c.id, state);
      if (!prev) ops.push({ type: 'put', key: `${CHECKS}${inst.namespace}/${c.id}`, value: state });
    }
    const dropped = existing ? existing.inst.checks.filter((c) => !inst.checks.some((n) => n.id === c.id)) : [];
    for (const c of dropped) ops.push({ type: 'delete', key: `${CHECKS}${inst.namespace}/${c.id}` });
    ops.push({ type: 'put', key: INSTANCES + key, value: inst });
    await this.write(ops, (i) => {
      for (const [id, state] of states) if (!this.checks.has(`${inst.namespace}/${id}`)) this.checks.set(`${inst.namespace}/${id}`, { state, version: i });
      for (const c of dropped) this.dropCheck(inst.namespace, c.id);
      this.applyInstance(inst, i);
    });
    this.announceChecks(inst);
    return this.view(this.instances.get(key)!)!;
  }

  async deregister(namespace: string, id: string, _reason = 'deregistered'): Promise<void> {
    this.ready();
    const key = `${namespace}/${id}`;
    const existing = this.instances.get(key);
    if (!existing) throw new NotFoundError(`no instance "${id}" in namespace "${namespace}"`);
    const ops: SecureTxnOp[] = [{ type: 'check', key: INSTANCES + key, version: existing.modifyIndex }];
    for (const c of existing.inst.checks) ops.push({ type: 'delete', key: `${CHECKS}${namespace}/${c.id}` });
    ops.push({ type: 'delete', key: INSTANCES + key });
    await this.write(ops, (i) => {
      for (const c of existing.inst.checks) this.dropCheck(namespace, c.id);
      this.removeInstance(key, i);
    });
  }

  /** CheckHost: a status flip, persisted. */
  async setStatus(namespace: string, checkId: string, status: CheckStatus, output: string): Promise<void> {
    if (!this.loaded) return;
    const ck = `${namespace}/${checkId}`;
    // Checked against the owning instance's version, so a status can never resurrect the check of an instance
    // deregistered meanwhile; a re-registration in between (which keeps check states) is retried.
    for (let attempt = 0; attempt < 5; attempt++) {
      const cur = this.checks.get(ck);
      const inst = cur && this.instances.get(`${namespace}/${cur.state.instanceId}`);
      if (!cur || !inst || !inst.inst.checks.some((c) => c.id === checkId)) return;
      const next: StoredCheck = { ...cur.state, status, output: output.slice(0, MAX_OUTPUT), since: Date.now() };
      try {
        await this.write([{ type: 'check', key: `${INSTANCES}${namespace}/${next.instanceId}`, version: inst.modifyIndex }, { type: 'put', key: CHECKS + ck, value: next }], (i) => {
          this.checks.set(ck, { state: next, version: i });
          this.touchService(`${namespace}/${inst.inst.service}`, i);
        });
        return;
      } catch (err) {
        if (!(err instanceof ConflictError)) throw err;
      }
    }
  }

  /** CheckHost: newest output, memory only. */
  setOutput(namespace: string, checkId: string, output: string): void {
    const cur = this.checks.get(`${namespace}/${checkId}`);
    if (!cur) return;
    cur.state = { ...cur.state, output: output.slice(0, MAX_OUTPUT) };
    const inst = this.instances.get(`${namespace}/${cur.state.instanceId}`);
    if (inst) {
      const sk = `${namespace}/${inst.inst.service}`;
      this.outputs.set(sk, (this.outputs.get(sk) ?? 0) + 1);
    }
  }

  // ---- reads ----

  namespaces(): string[] {
    return [...new Set([...this.instances.values()].map((v) => v.inst.namespace))].sort();
  }

  /** Services of a namespace with their tags (union over instances). */
  services(namespace: string): Record<string, string[]> {
    this.ready();
    const out: Record<string, string[]> = {};
    for (const [sk, ids] of this.byService) {
      if (!sk.startsWith(`${namespace}/`) || ids.size === 0) continue;
      const tags = new Set<string>();
      for (const id of ids) for (const t of this.instances.get(id)!.inst.tags) tags.add(t);
      out[sk.slice(namespace.length + 1)] = [...tags].sort();
    }
    return out;
  }

  instancesOf(namespace: string, service: string, opts: { passing?: boolean; tag?: string } = {}): InstanceView[] {
    this.ready();
    const ids = this.byService.get(`${namespace}/${service}`);
    if (!ids) return [];
    const out: InstanceView[] = [];
    for (const id of ids) {
      const v = this.view(this.instances.get(id)!)!;
      if (opts.tag && !v.tags.includes(opts.tag)) continue;
      if (opts.passing && v.status !== 'passing') continue;
      out.push(v);
    }
    return out.sort((a, b) => a.id.localeCompare(b.id));
  }

  instance(namespace: string, id: string): InstanceView | null {
    this.ready();
    const found = this.instances.get(`${namespace}/${id}`);
    return found ? this.view(found) : null;
  }

  checkOwner(namespace: string, checkId: string): string | null {
    return this.checks.get(`${namespace}/${checkId}`)?.state.instanceId ?? null;
  }

  /** DnsCatalog. */
  passingInstances(namespace: string, service: string): { id: string; address: string; port: number }[] | null {
    if (!this.loaded) return null;
    const ids = this.byService.get(`${namespace}/${service}`);
    if (!ids || ids.size === 0) return null;
    return this.instancesOf(namespace, service, { passing: true }).map((v) => ({ id: v.id, address: v.address, port: v.port }));
  }

  /** The JSON answer of a read of one service, made once per change of that service. */
  answer(namespace: string, service: string, query: string, build: () => unknown): { body: string; index: number } {
    const index = this.indexOf(namespace, service);
    const outputs = this.outputs.get(`${namespace}/${service}`) ?? 0;
    const key = `${namespace}/${service}?${query}`;
    const hit = this.answers.get(key);
    if (hit && hit.index === index && hit.outputs === outputs) return hit;
    const made = { index, outputs, body: JSON.stringify(build()) };
    if (this.answers.size >= ANSWER_CACHE_MAX) this.answers.clear();
    this.answers.set(key, made);
    return made;
  }

  // ---- blocking queries ----

  /** The index a reader of one service should send back (never 0, so `index=0` always answers at once). */
  indexOf(namespace: string, service: string): number {
    return Math.max(1, this.serviceIndex.get(`${namespace}/${service}`) ?? 0);
  }

  catalogIndex(): number {
    return Math.max(1, this.index);
  }

  /** Resolves when the service's index passes `index`, or after `waitMs`. */
  waitService(namespace: string, service: string, index: number, waitMs: number, signal?: AbortSignal): Promise<void> {
    const sk = `${namespace}/${service}`;
    if (this.indexOf(namespace, service) > index) return Promise.resolve();
    let set = this.waiters.get(sk);
    if (!set) this.waiters.set(sk, (set = new Set()));
    return this.park(set, waitMs, signal, () => {
      if (set.size === 0 && this.waiters.get(sk) === set) this.waiters.delete(sk);
    });
  }

  /** Resolves when anything in the catalog changes after `index`, or after `waitMs`. */
  waitCatalog(index: number, waitMs: number, signal?: AbortSignal): Promise<void> {
    if (this.catalogIndex() > index) return Promise.resolve();
    return this.park(this.allWaiters, waitMs, signal, () => undefined);
  }

  private park(set: Set<() => void>, waitMs: number, signal: AbortSignal | undefined, cleanup: () => void): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        set.delete(done);
        signal?.removeEventListener('abort', done);
        cleanup();
        resolve();
      };
      const timer = setTimeout(done, waitMs);
      set.add(done);
      signal?.addEventListener('abort', done, { once: true });
    });
  }

  // ---- internals ----

  private ready(): void {
    if (!this.loaded) throw new SealedError();
  }

  private async write(ops: SecureTxnOp[], apply: (index: number) => void): Promise<number> {
    const keys = ops.filter((o) => o.type !== 'check').map((o) => o.key);
    for (const k of keys) this.localWrites.add(k);
    try {
      const index = await this.store.txn(ops);
      apply(index);
      return index;
    } catch (err) {
      if (err instanceof TxnConflictError) throw new ConflictError('the catalog entry changed at the same time (another registration or deregistration); retry');
      throw err;
    } finally {
      for (const k of keys) this.localWrites.delete(k);
    }
  }

  private applyInstance(inst: Instance, index: number): void {
    const key = `${inst.namespace}/${inst.id}`;
    const prev = this.instances.get(key);
    if (prev && prev.inst.service !== inst.service) this.removeInstance(key, index);
    this.instances.set(key, { inst, createIndex: prev?.createIndex ?? index, modifyIndex: index });
    const sk = `${inst.namespace}/${inst.service}`;
    let set = this.byService.get(sk);
    if (!set) this.byService.set(sk, (set = new Set()));
    set.add(key);
    this.touchService(sk, index);
  }

  private removeInstance(key: string, index: number): void {
    const prev = this.instances.get(key);
    if (!prev) return;
    this.instances.delete(key);
    const sk = `${prev.inst.namespace}/${prev.inst.service}`;
    const set = this.byService.get(sk);
    set?.delete(key);
    if (set && set.size === 0) this.byService.delete(sk);
    for (const c of prev.inst.checks) this.events?.checkRemoved(prev.inst.namespace, c.id);
    this.touchService(sk, index);
  }

  private dropCheck(namespace: string, checkId: string): void {
    this.checks.delete(`${namespace}/${checkId}`);
    this.events?.checkRemoved(namespace, checkId);
  }

  private announceChecks(inst: Instance): void {
    if (!this.loaded) return;
    inst.checks.forEach((c, i) => this.events?.checkAdded(inst, i, this.checks.get(`${inst.namespace}/${c.id}`)?.state.status ?? 'critical'));
  }

  /** The service changed at `index`: its watchers (and whole-catalog watchers) wake; nobody else does. */
  private touchService(sk: string, index: number): void {
    if (index > (this.serviceIndex.get(sk) ?? 0)) this.serviceIndex.set(sk, index);
    if (index > this.index) this.index = index;
    const set = this.waiters.get(sk);
    if (set) for (const w of [...set]) w();
    for (const w of [...this.allWaiters]) w();
  }

  /** A change from the feed that this server did not write (another server on shared storage). */
  private async refresh(key: string, index: number): Promise<void> {
    if (key.startsWith(INSTANCES)) {
      const rel = key.slice(INSTANCES.length);
      const got = await this.store.getJson<Instance>(key);
      if (got) {
        this.applyInstance(got.value, got.version);
        this.announceChecks(got.value);
      } else {
        this.removeInstance(rel, index);
      }
      return;
    }
    if (key.startsWith(CHECKS)) {
      const rel = key.slice(CHECKS.length);
      const got = await this.store.getJson<StoredCheck>(key);
      if (!got) {
        this.checks.delete(rel);
        return;
      }
      const cur = this.checks.get(rel);
      if (cur && cur.version >= got.version) return;
      this.checks.set(rel, { state: got.value, version: got.version });
      const ns = rel.slice(0, rel.indexOf('/'));
      const inst = this.instances.get(`${ns}/${got.value.instanceId}`);
      if (inst) this.touchService(`${ns}/${inst.inst.service}`, got.version);
    }
  }

  private view(found: { inst: Instance; createIndex: number; modifyIndex: number }): InstanceView {
    const { inst } = found;
    let worst: CheckStatus = 'passing';
    const checkStates = inst.checks.map((c) => {
      const s = this.checks.get(`${inst.namespace}/${c.id}`)?.state ?? { status: 'critical' as const, output: '', since: 0 };
      if (RANK[s.status] > RANK[worst]) worst = s.status;
      return { id: c.id, name: c.name, type: c.type, status: s.status, output: s.output, since: s.since };
    });
    return { ...inst, status: worst, checkStates, create_index: found.createIndex, modify_index: found.modifyIndex };
  }

  private clear(): void {
    this.answers.clear();
    this.outputs.clear();
    this.instances.clear();
    this.byService.clear();
    this.checks.clear();
    this.serviceIndex.clear();
    this.index = 0;
  }

  private wakeAll(): void {
    for (const set of this.waiters.values()) for (const w of [...set]) w();
    for (const w of [...this.allWaiters]) w();
  }
}
