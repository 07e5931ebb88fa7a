import * as cedar from '@cedar-policy/cedar-wasm/nodejs';
import type { SecureStore } from '../../core/barrier/index.js';
import { BadRequestError, NotFoundError } from '../../core/errors.js';
import type { Change } from '../../core/storage/index.js';
import { type Decision, NAMESPACE_TYPE, normalisePolicyName, SERVICE_TYPE, type Statement, validateStatements } from '../../policy/index.js';
import { MeshAuthorizer, compileMeshPolicy, type MeshRequest } from './authorizer.js';
import {
  intentionKey, intentionRuleId, intentionStatement, uidOf, parseAction, parseDescription, parseHeaders, parseMethods, parsePathPrefix, refString,
  type Intention, type ServiceRef,
} from './model.js';

// Intentions under `intentions/<src ns>.<src>.<dst ns>.<dst>` and raw Cedar documents under `policies/<name>`, in
// the barrier view `mesh/`. Both compile into one mesh policy set. Memory follows storage through the change feed
// (so a second server on shared storage follows too); the mesh index is the newest change index under these two
// prefixes, so a blocking query wakes on mesh changes and on nothing else.

const INTENTIONS = 'intentions/';
const POLICIES = 'policies/';
const MAX_POLICY = 128 * 1024;

interface StoredPolicy {
  name: string;
  policy: string;
  created: string;
  updated: string;
}

export interface IntentionView extends Intention {
  id: string;
  modify_index: number;
  /** The Cedar statement the intention is stored as. */
  cedar: string;
}

export interface MeshPolicyView extends StoredPolicy {
  rules: string[];
  modify_index: number;
}

/** A statement of the mesh policy set with where it came from, as a proxy would load it. */
export interface MeshStatement {
  id: string;
  origin: 'intention' | 'policy';
  effect: 'permit' | 'forbid';
  cedar: string;
}

export interface IntentionInput {
  action: unknown;
  methods?: unknown;
  path_prefix?: unknown;
  headers?: unknown;
  description?: unknown;
}

export class MeshPolicies {
  readonly authorizer = new MeshAuthorizer();
  private intentions = new Map<string, { value: Intention; version: number; statement: Statement }>();
  private policies = new Map<string, { value: StoredPolicy; version: number; statements: Statement[] }>();
  private index = 0;
  /** Newest mesh change index the feed has reported; memory reaches it at the end of the next reload. */
  private seen = 0;
  private readonly waiters = new Set<() => void>();
  private unsubscribe: (() => void) | null = null;
  private running: Promise<void> | null = null;
  private pending: Promise<void> | null = null;
  private loaded = false;

  constructor(
    private readonly store: SecureStore,
    private readonly subscribe: (listener: (changes: readonly Change[]) => void) => () => void,
  ) {}

  async setup(): Promise<void> {
    this.unsubscribe = this.subscribe((changes) => {
      let mine = false;
      for (const c of changes) {
        const key = c.key.startsWith(this.store.prefix) ? c.key.slice(this.store.prefix.length) : null;
        if (key === null || !(key.startsWith(INTENTIONS) || key.startsWith(POLICIES))) continue;
        this.seen = Math.max(this.seen, c.index);
        mine = true;
      }
      if (mine) void this.refresh().catch(() => undefined);
    });
    await this.refresh();
    this.loaded = true;
  }

  teardown(): void {
    this.unsubscribe?.();
    this.unsubscribe = null;
    this.loaded = false;
    for (const wake of [...this.waiters]) wake();
  }

  /** The mesh index (never 0, so `index=0` always answers at once). */
  meshIndex(): number {
    return Math.max(1, this.index);
  }

  /**
   * Resolves when the mesh index passes `index`, or after `waitMs`. An index from the future (the server restarted
   * and its last mesh change was a delete) answers at once, so the client resynchronises instead of hanging.
   */
  wait(index: number, waitMs: number, signal?: AbortSignal): Promise<void> {
    if (index <= 0 || this.meshIndex() !== index || !this.loaded) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.waiters.delete(done);
        signal?.removeEventListener('abort', done);
        resolve();
      };
      const timer = setTimeout(done, waitMs);
      this.waiters.add(done);
      signal?.addEventListener('abort', done, { once: true });
    });
  }

  // ---- decisions ----

  check(req: MeshRequest): Decision {
    return this.authorizer.decide(req);
  }

  // ---- intentions ----

  listIntentions(filter: { source?: string; destination?: string } = {}): IntentionView[] {
    return [...this.intentions.values()]
      .filter((i) => (filter.source === undefined || i.value.source === filter.source) && (filter.destination === undefined || i.value.destination === filter.destination))
      .map((i) => intentionView(i))
      .sort((a, b) => a.source.localeCompare(b.source) || a.destination.localeCompare(b.destination));
  }

  getIntention(source: ServiceRef, destination: ServiceRef): IntentionView {
    const i = this.intentions.get(intentionKey(source, destination));
    if (!i) throw new NotFoundError(`no intention from ${refString(source)} to ${refString(destination)}`);
    return intentionView(i);
  }

  /** Creates or replaces the intention between two services; everything is checked before anything is written. */
  async putIntention(source: ServiceRef, destination: ServiceRef, input: IntentionInput): Promise<IntentionView> {
    const key = intentionKey(source, destination);
    const existing = await this.store.getJson<Intention>(INTENTIONS + key);
    const now = new Date().toISOString();
    const value: Intention = {
      source: refString(source),
      destination: refString(destination),
      action: parseAction(input.action),
      ...optional('methods', parseMethods(input.methods)),
      ...optional('path_prefix', parsePathPrefix(input.path_prefix)),
      ...optional('headers', parseHeaders(input.headers)),
      ...optional('description', parseDescription(input.description)),
      created: existing?.value.created ?? now,
      updated: now,
    };
    const statement = intentionStatement(value);
    validateStatements([statement], `intention ${value.source} -> ${value.destination}`);
    const version = await this.store.put(INTENTIONS + key, value);
    await this.applied(version);
    return this.getIntention(source, destination);
  }

  async deleteIntention(source: ServiceRef, destination: ServiceRef): Promise<void> {
    const version = await this.store.delete(INTENTIONS + intentionKey(source, destination));
    if (version === null) throw new NotFoundError(`no intention from ${refString(source)} to ${refString(destination)}`);
    await this.applied(version);
  }

  // ---- raw Cedar documents ----

  listPolicies(): string[] {
    return [...this.policies.keys()].sort();
  }

  getPolicy(name: string): MeshPolicyView {
    const n = normalisePolicyName(name);
    const p = this.policies.get(n);
    if (!p) throw new NotFoundError(`no mesh policy named "${n}"`);
    return { ...p.value, rules: p.statements.map((s) => s.id), modify_index: p.version };
  }

  async putPolicy(name: string, text: unknown): Promise<MeshPolicyView> {
    const n = normalisePolicyName(name);
    if (typeof text !== 'string' || text.trim() === '') throw new BadRequestError('policy is required: the Cedar text');
    if (text.length > MAX_POLICY) throw new BadRequestError('policy is larger than 128 KiB');
    compileMeshPolicy({ name: n, text });
    const existing = await this.store.getJson<StoredPolicy>(POLICIES + n);
    const now = new Date().toISOString();
    const version = await this.store.put(POLICIES + n, { name: n, policy: text, created: existing?.value.created ?? now, updated: now });
    await this.applied(version);
    return this.getPolicy(n);
  }

  async deletePolicy(name: string): Promise<void> {
    const n = normalisePolicyName(name);
    const version = await this.store.delete(POLICIES + n);
    if (version === null) throw new NotFoundError(`no mesh policy named "${n}"`);
    await this.applied(version);
  }

  // ---- what a proxy watches ----

  /** The intentions whose destination covers the service, and every statement that may apply to it. */
  concerning(namespace: string, name: string): { intentions: IntentionView[]; statements: MeshStatement[] } {
    const intentions = [...this.intentions.values()].filter((i) => covers(i.value.destination, namespace, name));
    const statements: MeshStatement[] = intentions.map((i) => statementView(i.statement, 'intention'));
    for (const p of this.policies.values()) {
      for (const s of p.statements) if (mayConcern(s.json, namespace, name)) statements.push(statementView(s, 'policy'));
    }
    return { intentions: intentions.map((i) => intentionView(i)).sort((a, b) => a.source.localeCompare(b.source)), statements: statements.sort((a, b) => a.id.localeCompare(b.id)) };
  }

  // ---- internals ----

  /** Waits until memory reflects this server's own write at `version`. */
  private async applied(version: number): Promise<void> {
    this.seen = Math.max(this.seen, version);
    await this.refresh();
  }

  /** One reload at a time; calls made while one runs share the single reload queued after it. */
  private refresh(): Promise<void> {
    if (this.pending) return this.pending;
    const p: Promise<void> = (this.running ?? Promise.resolve())
      .catch(() => undefined)
      .then(() => {
        this.pending = null;
        this.running = p;
        return this.reload();
      })
      .finally(() => {
        if (this.running === p) this.running = null;
      });
    this.pending = p;
    return p;
  }

  private async reload(): Promise<void> {
    const target = this.seen;
    const intentions = new Map<string, { value: Intention; version: number; statement: Statement }>();
    const policies = new Map<string, { value: StoredPolicy; version: number; statements: Statement[] }>();
    let newest = target;
    for (const key of await this.store.list(INTENTIONS)) {
      const got = await this.store.getJson<Intention>(INTENTIONS + key);
      if (!got) continue;
      // A record that no longer compiles (written by a different version) is left out rather than failing them all.
      try {
        intentions.set(key, { value: got.value, version: got.version, statement: intentionStatement(got.value) });
        newest = Math.max(newest, got.version);
      } catch { /* skipped */ }
    }
    for (const name of await this.store.list(POLICIES)) {
      const got = await this.store.getJson<StoredPolicy>(POLICIES + name);
      if (!got) continue;
      try {
        policies.set(name, { value: got.value, version: got.version, statements: compileMeshPolicy({ name, text: got.value.policy }) });
        newest = Math.max(newest, got.version);
      } catch { /* skipped */ }
    }
    this.authorizer.load([...[...intentions.values()].map((i) => i.statement), ...[...policies.values()].flatMap((p) => p.statements)]);
    this.intentions = intentions;
    this.policies = policies;
    if (newest > this.index) {
      this.index = newest;
      for (const wake of [...this.waiters]) wake();
    }
  }
}

function optional<K extends string, V>(key: K, value: V | undefined): Partial<Record<K, V>> {
  return value === undefined ? {} : ({ [key]: value } as Record<K, V>);
}

function intentionView(i: { value: Intention; version: number; statement: Statement }): IntentionView {
  return { id: i.statement.id, ...i.value, modify_index: i.version, cedar: toText(i.statement.json) };
}

function statementView(s: Statement, origin: 'intention' | 'policy'): MeshStatement {
  return { id: s.id, origin, effect: s.json.effect, cedar: toText(s.json) };
}

function toText(json: cedar.PolicyJson): string {
  const t = cedar.policyToText(json);
  return t.type === 'success' ? t.text : '';
}

/** Whether an intention's destination (`*`, `ns/*` or `ns/name`) covers the service. */
function covers(destination: string, namespace: string, name: string): boolean {
  return destination === '*' || destination === `${namespace}/*` || destination === `${namespace}/${name}`;
}

/** Conservative: a statement is left out only when its resource scope names another service or namespace. */
function mayConcern(json: cedar.PolicyJson, namespace: string, name: string): boolean {
  const r = json.resource;
  const id = `${namespace}/${name}`;
  const is = (e: cedar.EntityUidJson) => {
    const u = uidOf(e);
    return (u.type === SERVICE_TYPE && u.id === id) || (u.type === NAMESPACE_TYPE && u.id === namespace);
  };
  if (r.op === '==') return 'entity' in r ? is(r.entity) : true;
  if (r.op === 'in') return 'entity' in r ? is(r.entity) : true;
  if (r.op === 'is') return r.in === undefined || !('entity' in r.in) || is(r.in.entity);
  return true;
}

export { intentionRuleId };
