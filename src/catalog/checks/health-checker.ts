import { AegisError, BadRequestError, NotFoundError } from '../../core/errors.js';
import type { CheckHost, CheckStatus, CheckTarget } from '../model.js';
import { httpProbe } from './http-check.js';
import { truncateOutput, type Probe } from './probe.js';
import { RunQueue } from './run-queue.js';
import { tcpProbe } from './tcp-check.js';
import { nextStatus, type Streak } from './thresholds.js';

export interface HealthCheckerOptions {
  host: CheckHost;
  logger?: { warn(obj: object, msg: string): void };
  /** The clock behind `deregister_critical_after` (tests may scale it). */
  now?: () => number;
  /** Probes in flight at once; the others wait their turn (default 256). */
  maxConcurrent?: number;
}

export const DEFAULT_MAX_CONCURRENT = 256;
/** A floor, so a zero or missing interval cannot spin. (Consul clamps to 1 s; tests here run faster.) */
const MIN_INTERVAL_MS = 10;
/** After a failed `host.deregister`, try again after at most this long. */
const DEREGISTER_RETRY_MS = 30_000;

const PROBES: Record<string, Probe> = { http: httpProbe, tcp: tcpProbe };
const STATUSES = new Set<string>(['passing', 'warning', 'critical']);

type Timer = ReturnType<typeof setTimeout>;

interface Entry {
  readonly key: string;
  readonly target: CheckTarget;
  /** What the catalog holds (as far as this checker knows). */
  status: CheckStatus;
  readonly streak: Streak;
  /** The next run (http, tcp) or the TTL's expiry. */
  timer: Timer | null;
  deregisterTimer: Timer | null;
  criticalSince: number | null;
  /** `host.deregister` was called in this critical spell: once is enough. */
  deregistered: boolean;
  inflight: AbortController | null;
  /** Bumped whenever the entry is re-armed or retired: a continuation from an older round is dropped. */
  round: number;
}

/**
 * Runs the catalog's health checks on the server (Consul's agent checks): http and tcp checks on their interval,
 * TTL checks by waiting for reports. Status changes go to the catalog through `CheckHost` after the check's
 * thresholds; a failing host call is logged and retried by the next result, never thrown into a timer.
 */
export class HealthChecker {
  private readonly host: CheckHost;
  private readonly logger: { warn(obj: object, msg: string): void };
  private readonly now: () => number;
  private readonly queue: RunQueue;
  private readonly entries = new Map<string, Entry>();
  private state: 'idle' | 'running' | 'stopped' = 'idle';

  constructor(opts: HealthCheckerOptions) {
    this.host = opts.host;
    this.logger = opts.logger ?? { warn: (obj, msg) => console.warn(msg, obj) };
    this.now = opts.now ?? Date.now;
    this.queue = new RunQueue(opts.maxConcurrent ?? DEFAULT_MAX_CONCURRENT);
  }

  /** Begins running every known check; checks upserted later start at once. */
  start(): void {
    if (this.state === 'running') return;
    this.state = 'running';
    for (const entry of this.entries.values()) this.arm(entry);
  }

  /** Clears every timer and aborts in-flight probes: the host hears nothing more until `start()`. */
  stop(): void {
    this.state = 'stopped';
    for (const entry of this.entries.values()) this.disarm(entry);
  }

  /** Adds a check, or replaces one of the same id (re-registration). `current` is the status the catalog holds. */
  upsert(target: CheckTarget, current: CheckStatus): void {
    const key = keyOf(target.namespace, target.check.id);
    const old = this.entries.get(key);
    if (old) this.disarm(old);
    const status: CheckStatus = STATUSES.has(current) ? current : 'critical';
    // Re-registering does not buy a critical instance more time before it is deregistered.
    const keepSince = old && old.status === 'critical' && status === 'critical' && !old.deregistered && old.target.instanceId === target.instanceId;
    const entry: Entry = {
      key, target, status, streak: { successes: 0, failures: 0 }, timer: null, deregisterTimer: null,
      criticalSince: status !== 'critical' ? null : keepSince ? old.criticalSince : this.now(),
      deregistered: false, inflight: null, round: 0,
    };
    this.entries.set(key, entry);
    if (this.state === 'running') this.arm(entry);
  }

  remove(namespace: string, checkId: string): void {
    const key = keyOf(namespace, checkId);
    const entry = this.entries.get(key);
    if (!entry) return;
    this.disarm(entry);
    this.entries.delete(key);
  }

  /**
   * A TTL check's report: restarts its TTL and sets the status at once (no thresholds: the instance says what it
   * is). Throws NotFoundError for an unknown check, BadRequestError for a check that is not a TTL check; a failing
   * host call is thrown too, so the reporter learns its report was not recorded.
   */
  async ttlUpdate(namespace: string, checkId: string, status: CheckStatus, output: string): Promise<void> {
    if (this.state === 'stopped') throw new AegisError('ERR_INTERNAL', 'the health checker is stopped: TTL reports are not taken while the server shuts down or is sealed');
    const entry = this.entries.get(keyOf(namespace, checkId));
    if (!entry) throw new NotFoundError(`no check "${checkId}" in namespace "${namespace}": register it with its instance first`);
    const type = entry.target.check.type;
    if (type !== 'ttl') throw new BadRequestError(`check "${checkId}" is a ${type} check: only TTL checks take reports (the server runs ${type} checks itself)`);
    if (!STATUSES.has(status)) throw new BadRequestError(`status ${JSON.stringify(status)}: use passing, warning or critical`);
    if (this.state === 'running') this.armTtl(entry);
    await this.report(entry, status, output ?? '', true);
  }

  get size(): number {
    return this.entries.size;
  }

  private arm(entry: Entry): void {
    entry.round += 1;
    const { check } = entry.target;
    if (check.type === 'ttl') this.armTtl(entry);
    else if (PROBES[check.type]) this.scheduleRun(entry, Math.random() * intervalOf(entry), entry.round);
    else this.logger.warn({ namespace: entry.target.namespace, check: check.id, type: check.type }, 'health check of unknown type is not run');
    if (entry.status === 'critical') this.armDeregister(entry);
  }

  private disarm(entry: Entry): void {
    entry.round += 1;
    clearTimeout(entry.timer ?? undefined);
    clearTimeout(entry.deregisterTimer ?? undefined);
    entry.timer = entry.deregisterTimer = null;
    entry.inflight?.abort();
    entry.inflight = null;
  }

  private isLive(entry: Entry, round: number): boolean {
    return this.state === 'running' && entry.round === round && this.entries.get(entry.key) === entry;
  }

  // A setTimeout chain, not setInterval: the next run is scheduled when this one is done, so a slow check never
  // overlaps itself. The first run is delayed by a random part of the interval (jitter), so checks registered
  // together do not all fire together.
  private scheduleRun(entry: Entry, delay: number, round: number): void {
    entry.timer = setTimeout(() => {
      entry.timer = null;
      this.runOnce(entry, round).catch((err: unknown) => this.warn(entry, err, 'health check run failed'));
    }, delay);
    entry.timer.unref();
  }

  private async runOnce(entry: Entry, round: number): Promise<void> {
    const probe = PROBES[entry.target.check.type]!;
    try {
      const result = await this.queue.run(async () => {
        // It may have waited in the queue while the check was removed or the checker stopped.
        if (!this.isLive(entry, round)) return null;
        const abort = new AbortController();
        entry.inflight = abort;
        try {
          return await probe(entry.target, abort.signal);
        } finally {
          if (entry.inflight === abort) entry.inflight = null;
        }
      });
      if (!result || !this.isLive(entry, round)) return;
      const status = nextStatus(entry.status, result.status, entry.streak, entry.target.check);
      await this.report(entry, status, result.output, false);
    } finally {
      if (this.isLive(entry, round)) this.scheduleRun(entry, intervalOf(entry), round);
    }
  }

  private armTtl(entry: Entry): void {
    clearTimeout(entry.timer ?? undefined);
    const round = entry.round;
    entry.timer = setTimeout(() => {
      entry.timer = null;
      if (!this.isLive(entry, round)) return;
      this.report(entry, 'critical', 'TTL expired', false).catch((err: unknown) => this.warn(entry, err, 'TTL expiry failed'));
    }, Math.max(1, entry.target.check.ttl ?? 0));
    entry.timer.unref();
  }

  /** Tells the host: setStatus when the status changes, otherwise setOutput. */
  private async report(entry: Entry, status: CheckStatus, output: string, rethrow: boolean): Promise<void> {
    const { namespace, check } = entry.target;
    const text = truncateOutput(output);
    if (status === entry.status) {
      try {
        this.host.setOutput(namespace, check.id, text);
      } catch (err) {
        this.warn(entry, err, 'catalog refused a health check output');
        if (rethrow) throw err;
      }
      return;
    }
    const previous = entry.status;
    this.setLocalStatus(entry, status);
    try {
      await this.host.setStatus(namespace, check.id, status, text);
    } catch (err) {
      this.warn(entry, err, 'catalog refused a health check status change');
      // The catalog still holds the previous status: go back to it, so the next result tries again.
      if (this.entries.get(entry.key) === entry && entry.status === status) this.setLocalStatus(entry, previous);
      if (rethrow) throw err;
    }
  }

  private setLocalStatus(entry: Entry, status: CheckStatus): void {
    if (status === entry.status) return;
    entry.status = status;
    clearTimeout(entry.deregisterTimer ?? undefined);
    entry.deregisterTimer = null;
    entry.deregistered = false;
    entry.criticalSince = status === 'critical' ? this.now() : null;
    if (status === 'critical') this.armDeregister(entry);
  }

  private armDeregister(entry: Entry, retryIn?: number): void {
    const after = entry.target.check.deregister_critical_after;
    if (!(after > 0) || entry.criticalSince === null || entry.deregistered || this.state !== 'running') return;
    const round = entry.round;
    const wait = retryIn ?? Math.max(0, entry.criticalSince + after - this.now()) + 1;
    clearTimeout(entry.deregisterTimer ?? undefined);
    entry.deregisterTimer = setTimeout(() => {
      entry.deregisterTimer = null;
      if (this.isLive(entry, round)) this.deregisterIfDue(entry, after);
    }, wait);
    entry.deregisterTimer.unref();
  }

  private deregisterIfDue(entry: Entry, after: number): void {
    if (entry.status !== 'critical' || entry.criticalSince === null || entry.deregistered) return;
    const criticalFor = this.now() - entry.criticalSince;
    if (criticalFor <= after) return this.armDeregister(entry);
    entry.deregistered = true;
    const { namespace, instanceId, check } = entry.target;
    const reason = `check "${check.id}" has been critical for ${criticalFor} ms, longer than its deregister_critical_after (${after} ms)`;
    const round = entry.round;
    this.host.deregister(namespace, instanceId, reason).catch((err: unknown) => {
      this.warn(entry, err, 'catalog refused to deregister a critical instance');
      if (!this.isLive(entry, round) || entry.status !== 'critical') return;
      entry.deregistered = false;
      this.armDeregister(entry, Math.min(after, DEREGISTER_RETRY_MS));
    });
  }

  private warn(entry: Entry, err: unknown, msg: string): void {
    const { namespace, instanceId, check } = entry.target;
    try {
      this.logger.warn({ namespace, instance: instanceId, check: check.id, err: err instanceof Error ? err.message : String(err) }, msg);
    } catch {
      // A broken logger must not take the checker down with it.
    }
  }
}

function keyOf(namespace: string, checkId: string): string {
  return `${namespace}\u0000${checkId}`;
}

function intervalOf(entry: Entry): number {
  const i = entry.target.check.interval;
  return Number.isFinite(i) && i > MIN_INTERVAL_MS ? i : MIN_INTERVAL_MS;
}
