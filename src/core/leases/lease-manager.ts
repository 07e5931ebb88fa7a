import { randomBytes } from 'node:crypto';
import type { Logger } from '../../telemetry/index.js';
import type { Barrier, SecureTxnOp } from '../barrier/index.js';
import { AegisError, BadRequestError, ConflictError, NotFoundError, TxnConflictError, UpstreamError } from '../errors.js';
import type { LeasedSecret, SecretContext } from '../request.js';
import type { Mounted, Router } from '../router.js';
import {
  LEASE_PREFIX, TOKEN_INDEX_PREFIX, leaseIdFromIndex, leaseKey, tokenIndexKey, validLeaseId, type LeaseEntry, type RevokeFailure,
} from './lease-entry.js';

export interface LeaseManagerOptions {
  barrier: Barrier;
  router: Router;
  logger: Logger;
  /** Seconds, when the engine asks for none. */
  defaultTtl: number;
  /** Seconds: no lease lives longer, whatever the engine asks. */
  maxTtl: number;
  /** First retry after a failed revocation (ms); doubles per attempt up to `retryMaxMs`. */
  retryBaseMs?: number;
  retryMaxMs?: number;
  /** Counts failed revocation attempts (a metric). */
  onRevokeFailure?: () => void;
}

export interface RenewResult {
  entry: LeaseEntry;
  warnings: string[];
}

// Node's timers hold at most 2^31-1 ms (~24.8 days); longer leases are re-armed when that timer fires.
const MAX_TIMER_MS = 2 ** 31 - 1;
// Revocations run at most this many at a time (after a restart many may be due at once).
const REVOKE_CONCURRENCY = 8;

/**
 * Vault's expiration manager: every leased secret is recorded in the barrier (`sys/expire/id/<lease id>`) with the
 * engine and what revoking it needs, indexed by the token it was issued to, and revoked by its engine when it
 * expires, is revoked, or its token is. The schedule is rebuilt from storage at every unseal, so leases that
 * expired while the server was down are revoked at once. A revocation that fails stays recorded, is retried with
 * exponential backoff, and is listed (`failing()`) until it succeeds or an operator forces it.
 */
export class LeaseManager {
  private readonly timers = new Map<string, NodeJS.Timeout>();
  private readonly inFlight = new Map<string, Promise<void>>();
  private readonly failures = new Map<string, RevokeFailure>();
  private readonly queue: (() => Promise<void>)[] = [];
  private running = 0;
  private active = false;
  private readonly retryBaseMs: number;
  private readonly retryMaxMs: number;

  constructor(private readonly o: LeaseManagerOptions) {
    this.retryBaseMs = o.retryBaseMs ?? 1000;
    this.retryMaxMs = o.retryMaxMs ?? 10 * 60_000;
  }

  get count(): number {
    return this.timers.size;
  }

  get failingCount(): number {
    return this.failures.size;
  }

  /** Loads every lease and arms its expiry; expired ones (the server was down) are revoked now. */
  async setup(): Promise<void> {
    this.active = true;
    const now = Date.now();
    for (const id of await this.walk('')) {
      const e = (await this.o.barrier.getJson<LeaseEntry>(leaseKey(id)))?.value;
      if (!e) continue;
      if (e.revokeFailure) this.failures.set(id, e.revokeFailure);
      const due = e.revokeFailure ? Math.max(e.revokeFailure.nextAttempt, now) : e.expireTime;
      this.arm(id, due);
    }
  }

  teardown(): void {
    this.active = false;
    for (const t of this.timers.values()) clearTimeout(t);
    this.timers.clear();
    this.failures.clear();
    this.queue.length = 0;
  }

  /**
   * Records a lease for a secret an engine just made. If the lease cannot be recorded the secret is revoked at
   * once: nothing the lease manager does not know about may outlive the request.
   */
  async register(input: { path: string; mounted: Mounted; secret: LeasedSecret; tokenHash: string | null }): Promise<LeaseEntry> {
    const { secret, mounted } = input;
    if (!mounted.backend.secretTypes?.[secret.type]) throw new Error(`engine ${mounted.entry.type} returned a secret of unknown type ${secret.type}`);
    const maxTtl = secret.maxTtl > 0 ? Math.min(secret.maxTtl, this.o.maxTtl) : this.o.maxTtl;
    const ttl = Math.min(secret.ttl > 0 ? secret.ttl : this.o.defaultTtl, maxTtl);
    const now = Date.now();
    const entry: LeaseEntry = {
      id: `${input.path.replace(/\/+$/, '')}/${randomBytes(18).toString('base64url')}`,
      path: input.path,
      mountUuid: mounted.entry.uuid,
      mountPath: mounted.entry.path,
      secretType: secret.type,
      internal: secret.internal,
      tokenHash: input.tokenHash || null,
      issueTime: now,
      expireTime: now + ttl * 1000,
      maxExpireTime: now + maxTtl * 1000,
      lastRenewal: null,
      ttl,
      renewable: secret.renewable,
    };
    const ops: SecureTxnOp[] = [{ type: 'put', key: leaseKey(entry.id), value: entry }];
    if (entry.tokenHash) ops.push({ type: 'put', key: tokenIndexKey(entry.tokenHash, entry.id), value: {} });
    try {
      await this.o.barrier.txn(ops);
    } catch (err) {
      await this.backendRevoke(entry).catch((e2) => this.o.logger.error({ lease: entry.id, err: (e2 as Error).message }, 'could not revoke a secret whose lease failed to record'));
      throw err;
    }
    this.arm(entry.id, entry.expireTime);
    return entry;
  }

  async lookup(id: string): Promise<LeaseEntry> {
    return (await this.get(id)).entry;
  }

  /**
   * Extends a lease by `increment` seconds from now (0: by its original TTL). Asking past the lease's max TTL is
   * refused; without an increment the renewal is capped there (with a warning), and refused once nothing is left.
   */
  async renew(id: string, increment: number): Promise<RenewResult> {
    const { entry, version } = await this.get(id);
    const now = Date.now();
    if (entry.revokeFailure) throw new BadRequestError(`lease ${id} is being revoked (its revocation failed and is retried); it cannot be renewed`);
    if (entry.expireTime <= now) throw new BadRequestError(`lease ${id} has expired and is being revoked; request a new secret`);
    if (!entry.renewable) throw new BadRequestError(`lease ${id} is not renewable`);
    const secretType = this.mountFor(entry)?.backend.secretTypes?.[entry.secretType];
    if (!secretType?.renew) throw new BadRequestError(`lease ${id} is not renewable: its engine cannot extend this secret`);
    const left = Math.floor((entry.maxExpireTime - now) / 1000);
    const warnings: string[] = [];
    let expire: number;
    if (increment > 0) {
      if (now + increment * 1000 > entry.maxExpireTime) {
        throw new BadRequestError(`increment ${increment}s would take lease ${id} past its max TTL (it ends at ${new Date(entry.maxExpireTime).toISOString()}); at most ${Math.max(0, left)}s can be granted`);
      }
      expire = now + increment * 1000;
    } else {
      expire = Math.min(now + entry.ttl * 1000, entry.maxExpireTime);
      if (expire === entry.maxExpireTime && entry.expireTime >= entry.maxExpireTime) throw new BadRequestError(`lease ${id} already runs until its max TTL (${new Date(entry.maxExpireTime).toISOString()}); it cannot be renewed further: request a new secret`);
      if (expire === entry.maxExpireTime) warnings.push(`TTL of ${entry.ttl}s exceeded the lease's max TTL; the lease ends at ${new Date(expire).toISOString()}`);
    }
    const mounted = this.mountFor(entry)!;
    try {
      await secretType.renew(this.context(entry, mounted, expire));
    } catch (err) {
      throw wrapEngineError(err, `renewing lease ${id}`);
    }
    const next: LeaseEntry = { ...entry, expireTime: expire, lastRenewal: now };
    try {
      await this.o.barrier.txn([{ type: 'check', key: leaseKey(id), version }, { type: 'put', key: leaseKey(id), value: next }]);
    } catch (err) {
      if (err instanceof TxnConflictError) throw new ConflictError(`lease ${id} changed while it was renewed (renewed or revoked at the same time); retry`);
      throw err;
    }
    this.arm(id, expire);
    return { entry: next, warnings };
  }

  /**
   * Revokes one lease now. If the engine fails, the lease stays, is retried with backoff and listed as failing,
   * and the caller gets the engine's error; `force` drops the lease whatever the engine says.
   */
  async revoke(id: string, opts: { force?: boolean } = {}): Promise<void> {
    await this.get(id);
    await this.revokeOnce(id, opts.force ?? false, true);
  }

  /** Revokes every lease whose ID starts with `prefix` (a path: `database/creds/app/`). Returns how many. */
  async revokePrefix(prefix: string, opts: { force?: boolean } = {}): Promise<{ revoked: number; failed: string[] }> {
    const p = prefix.replace(/^\/+/, '');
    if (p !== '' && !validLeaseId(p.replace(/\/+$/, ''))) throw new BadRequestError(`invalid lease prefix "${prefix}"`);
    const ids = await this.idsUnder(p);
    const failed: string[] = [];
    await this.forEachLimited(ids, async (id) => {
      try {
        await this.revokeOnce(id, opts.force ?? false, true);
      } catch {
        failed.push(id);
      }
    });
    return { revoked: ids.length - failed.length, failed: failed.sort() };
  }

  /** Revokes the leases of a token (the token is being revoked). Failures are retried in the background. */
  async revokeByToken(tokenHash: string): Promise<number> {
    const ids = (await this.o.barrier.list(`${TOKEN_INDEX_PREFIX}${tokenHash}/`)).map(leaseIdFromIndex);
    let n = 0;
    await this.forEachLimited(ids, async (id) => {
      try {
        await this.revokeOnce(id, false, true);
        n++;
      } catch {
        // Recorded as failing and retried; the token itself still goes.
      }
    });
    return n;
  }

  /** Revokes the leases of tokens that no longer exist (a token revoked while a revocation hook failed). */
  async tidy(tokenExists: (tokenHash: string) => Promise<boolean>): Promise<number> {
    let n = 0;
    for (const dir of await this.o.barrier.list(TOKEN_INDEX_PREFIX)) {
      const hash = dir.replace(/\/$/, '');
      if (!(await tokenExists(hash))) n += await this.revokeByToken(hash);
    }
    return n;
  }

  /** Queues a revocation without waiting for it (Vault's `sync: false`). */
  revokeLater(id: string): void {
    this.enqueue(() => this.revokeOnce(id, false, false).catch(() => undefined));
  }

  /** Direct children of a prefix of lease IDs (Vault's `LIST sys/leases/lookup/<prefix>`). */
  async list(prefix: string): Promise<string[]> {
    return this.o.barrier.list(LEASE_PREFIX + prefix);
  }

  /** Leases whose revocation failed and is being retried. */
  failing(): { id: string; failure: RevokeFailure }[] {
    return [...this.failures].map(([id, failure]) => ({ id, failure })).sort((a, b) => a.id.localeCompare(b.id));
  }

  // ---- internals ----

  private async get(id: string): Promise<{ entry: LeaseEntry; version: number }> {
    if (!validLeaseId(id)) throw new BadRequestError(`invalid lease ID "${id.slice(0, 100)}"`);
    const found = await this.o.barrier.getJson<LeaseEntry>(leaseKey(id));
    if (!found) throw new BadRequestError(`lease not found: ${id} (it is unknown, expired or already revoked)`);
    return { entry: found.value, version: found.version };
  }

  private mountFor(entry: LeaseEntry): Mounted | null {
    return this.o.router.all().find((m) => m.entry.uuid === entry.mountUuid) ?? null;
  }

  private context(entry: LeaseEntry, mounted: Mounted, expireTime = entry.expireTime): SecretContext {
    return { leaseId: entry.id, internal: entry.internal, store: mounted.store, mountPath: mounted.entry.path, issueTime: entry.issueTime, expireTime };
  }

  private async backendRevoke(entry: LeaseEntry): Promise<void> {
    const mounted = this.mountFor(entry);
    if (!mounted) throw new BadRequestError(`the engine that issued lease ${entry.id} (mounted at ${entry.mountPath}) is not mounted`);
    const type = mounted.backend.secretTypes?.[entry.secretType];
    if (!type) throw new BadRequestError(`engine at ${entry.mountPath} no longer knows secrets of type ${entry.secretType}`);
    await type.revoke(this.context(entry, mounted));
  }

  /** One revocation of one lease; concurrent calls for the same lease share it. */
  private revokeOnce(id: string, force: boolean, report: boolean): Promise<void> {
    const running = this.inFlight.get(id);
    if (running && !force) return running;
    const p = this.doRevoke(id, force, report).finally(() => {
      if (this.inFlight.get(id) === p) this.inFlight.delete(id);
    });
    this.inFlight.set(id, p);
    return p;
  }

  private async doRevoke(id: string, force: boolean, report: boolean): Promise<void> {
    const found = await this.o.barrier.getJson<LeaseEntry>(leaseKey(id));
    if (!found) {
      this.disarm(id);
      return;
    }
    const entry = found.value;
    try {
      await this.backendRevoke(entry);
    } catch (err) {
      if (!force) {
        await this.recordFailure(entry, err);
        if (report) throw wrapEngineError(err, `revoking lease ${id}`, ` It stays recorded and is retried with backoff (see sys/leases); revoke-force drops it.`);
        return;
      }
      this.o.logger.warn({ lease: id, err: errorText(err) }, 'forced revocation: the engine could not revoke the secret; dropping the lease anyway');
    }
    const ops: SecureTxnOp[] = [{ type: 'delete', key: leaseKey(id) }];
    if (entry.tokenHash) ops.push({ type: 'delete', key: tokenIndexKey(entry.tokenHash, id) });
    await this.o.barrier.txn(ops);
    this.disarm(id);
  }

  private async recordFailure(entry: LeaseEntry, err: unknown): Promise<void> {
    this.o.onRevokeFailure?.();
    const attempts = (entry.revokeFailure?.attempts ?? 0) + 1;
    const backoff = Math.min(this.retryMaxMs, this.retryBaseMs * 2 ** Math.min(attempts - 1, 30));
    const now = Date.now();
    // ±20 % jitter so many leases failing together (a database down) do not retry in lockstep.
    const failure: RevokeFailure = { attempts, lastError: errorText(err), lastAttempt: now, nextAttempt: now + Math.round(backoff * (0.8 + Math.random() * 0.4)) };
    this.o.logger.warn({ lease: entry.id, attempts, err: failure.lastError }, 'lease revocation failed; will retry');
    this.failures.set(entry.id, failure);
    this.arm(entry.id, failure.nextAttempt);
    // Persisted so the schedule and the failing list survive a restart; a lost race (renew/revoke) is harmless.
    const now2 = await this.o.barrier.getJson<LeaseEntry>(leaseKey(entry.id));
    if (now2) await this.o.barrier.txn([{ type: 'check', key: leaseKey(entry.id), version: now2.version }, { type: 'put', key: leaseKey(entry.id), value: { ...now2.value, revokeFailure: failure } }]).catch(() => undefined);
  }

  private arm(id: string, at: number): void {
    if (!this.active) return;
    const old = this.timers.get(id);
    if (old) clearTimeout(old);
    const delay = Math.max(0, at - Date.now());
    const t = setTimeout(() => {
      if (delay === MAX_TIMER_MS && at > Date.now()) return this.arm(id, at);
      this.enqueue(() => this.revokeOnce(id, false, false).catch(() => undefined));
    }, Math.min(delay, MAX_TIMER_MS));
    t.unref();
    this.timers.set(id, t);
  }

  private disarm(id: string): void {
    const t = this.timers.get(id);
    if (t) clearTimeout(t);
    this.timers.delete(id);
    this.failures.delete(id);
  }

  private enqueue(job: () => Promise<void>): void {
    this.queue.push(job);
    this.pump();
  }

  private pump(): void {
    while (this.active && this.running < REVOKE_CONCURRENCY && this.queue.length > 0) {
      const job = this.queue.shift()!;
      this.running++;
      job().finally(() => {
        this.running--;
        this.pump();
      });
    }
  }

  private async forEachLimited(ids: string[], fn: (id: string) => Promise<void>): Promise<void> {
    let next = 0;
    const worker = async () => {
      while (next < ids.length) await fn(ids[next++]!);
    };
    await Promise.all(Array.from({ length: Math.min(REVOKE_CONCURRENCY, ids.length) }, worker));
  }

  /** Every lease ID under a prefix (which may end inside a segment, like Vault's). */
  private async idsUnder(prefix: string): Promise<string[]> {
    const slash = prefix.lastIndexOf('/');
    const dir = prefix.slice(0, slash + 1);
    const partial = prefix.slice(slash + 1);
    const out: string[] = [];
    for (const child of await this.o.barrier.list(LEASE_PREFIX + dir)) {
      if (!child.startsWith(partial)) continue;
      if (child.endsWith('/')) out.push(...(await this.walk(dir + child)));
      else out.push(dir + child);
    }
    return out;
  }

  private async walk(dir: string): Promise<string[]> {
    const out: string[] = [];
    for (const child of await this.o.barrier.list(LEASE_PREFIX + dir)) {
      if (child.endsWith('/')) out.push(...(await this.walk(dir + child)));
      else out.push(dir + child);
    }
    return out;
  }
}

function errorText(err: unknown): string {
  return ((err as Error)?.message ?? String(err)).slice(0, 500);
}

/** An engine's failure as a client error: its own client errors pass through; anything else becomes a 502. */
function wrapEngineError(err: unknown, what: string, suffix = ''): AegisError {
  if (err instanceof AegisError) {
    if (err instanceof NotFoundError) return new BadRequestError(`${what}: ${err.message}${suffix}`);
    return new AegisError(err.code, `${what}: ${err.message}${suffix}`);
  }
  return new UpstreamError(`${what} failed: ${errorText(err)}.${suffix}`);
}
