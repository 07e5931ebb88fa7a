import { parseHostPort } from './types.js';

// The outbound load balancer: which instance of an upstream the next connection goes to, and which instances are
// kept out for failing. Pure and synchronous (no sockets, no timers): the caller reports what happened, the clock
// and the random source are injectable. Modelled on Envoy's cluster load balancers and outlier detection:
//
// - round-robin: O(1), one cursor over the endpoints in service.
// - least-request: Envoy's power of two choices (choice_count 2) by active (in-flight) count. Of the two candidates,
//   one comes from the round-robin cursor and one at random among the others (so they are always distinct, and with
//   ≤ 2 endpoints in service both are compared: the lesser wins). Ties go to the cursor's candidate, which makes
//   equal loads rotate in order (round robin) instead of at random — evener, and deterministic for callers; an
//   endpoint busier than both others is never chosen. O(1) per pick.
// - outlier ejection (Envoy's consecutive_5xx, which for TCP means connect failures): after `consecutiveFailures`
//   failures in a row an endpoint is ejected for baseEjectionMs × its ejection multiplier (the number of times it
//   was ejected in a row), capped at maxEjectionMs (Envoy's max_ejection_time; the multiplier stops growing there).
//   The multiplier decays like Envoy's: one step per `intervalMs` (Envoy's `interval`, 10 s) spent in service.
// - max_ejection_percent: Envoy's rule — an ejection happens when no endpoint is out yet (so at least one endpoint
//   can always be ejected, whatever the percentage), or when (out + 1) / total ≤ maxEjectionPercent. An endpoint
//   whose ejection was refused by the cap stays a candidate and is ejected on its next failure once room frees up
//   (Envoy counts these as ejections_overflow). Endpoints waiting for or under a probe count as out.
// - probe back: when its time is up the endpoint does not return straight to service (Envoy's behaviour); it is put
//   on probation: the next pick goes to it, and only that one attempt (half-open, like a circuit breaker) until its
//   outcome is reported. success() returns it to service with its failure count cleared; failure() ejects it again
//   at once, with the multiplier one higher (twice the time after a first ejection). A probe whose outcome is never
//   reported is offered again after baseEjectionMs.
// - panic: when no endpoint in service is left to pick (all ejected, or the rest excluded by the caller), pick()
//   returns the out endpoint whose ejection ends (or ended) soonest instead of nothing — Envoy's panic mode, reduced
//   to "nothing healthy left" rather than Envoy's 50 % healthy threshold (maxEjectionPercent keeps us above it).
//   A success on an ejected endpoint (a panic pick, or an attempt that began before the ejection) proves it
//   reachable: it returns to service, like Envoy's successful_active_health_check_uneject_host.
//
// Every picked endpoint must be followed by success() or failure(); begin()/end() count the in-flight (active)
// connections that least-request compares.

export type LbPolicy = 'round-robin' | 'least-request';

export interface OutlierOptions {
  /** Connect failures in a row that eject an endpoint (Envoy consecutive_5xx; default 5). */
  consecutiveFailures?: number;
  /** Ejection time = baseEjectionMs × ejection multiplier (default 30 s). */
  baseEjectionMs?: number;
  /** Cap of one ejection's time (default 300 s). */
  maxEjectionMs?: number;
  /** At most this % of the endpoints out at once, but the first ejection is always allowed (default 50). */
  maxEjectionPercent?: number;
  /** The ejection multiplier drops by one per interval spent in service (Envoy `interval`; default 10 s). */
  intervalMs?: number;
}

export interface BalancerOptions {
  policy?: LbPolicy;
  outlier?: OutlierOptions;
  /** Epoch ms (default Date.now). */
  now?: () => number;
  /** Uniform in [0, 1) (default Math.random). */
  random?: () => number;
}

/** An endpoint as pick() returns it; pass it back to begin/end/success/failure (an address string works too). */
export interface Endpoint {
  /** `host:port`, IPv6 as `[::1]:8443`. */
  readonly address: string;
  readonly host: string;
  readonly port: number;
}

export interface EndpointStatus {
  address: string;
  /** In-flight connections. */
  active: number;
  /** Out of the load-balancing set: ejected, or back on probation and not yet proven. */
  ejected: boolean;
  /** The ejection's time is up and the endpoint awaits (or is under) its probe. */
  probation: boolean;
  /** Epoch ms at which the current ejection ends (ended, when on probation). */
  ejectedUntil?: number;
  consecutiveFailures: number;
  /** How many times it was ejected since it joined the list. */
  ejections: number;
  /** The current ejection multiplier (ejections in a row, decayed while in service). */
  ejectionMultiplier: number;
}

export type EndpointRef = Endpoint | string;

const HEALTHY = 0;
const EJECTED = 1;
const PROBE_PENDING = 2;
const PROBING = 3;
type State = typeof HEALTHY | typeof EJECTED | typeof PROBE_PENDING | typeof PROBING;

class Slot implements Endpoint {
  active = 0;
  failures = 0;
  ejections = 0;
  multiplier = 0;
  state: State = HEALTHY;
  ejectedUntil = 0;
  /** While PROBING: when an unreported probe is given up. */
  probeDeadline = 0;
  /** When it last returned to service (for the multiplier's decay). */
  inServiceSince = 0;
  constructor(readonly address: string, readonly host: string, readonly port: number) {}
}

function positive(name: string, v: number | undefined, dflt: number): number {
  if (v === undefined) return dflt;
  if (!Number.isFinite(v) || v <= 0) throw new RangeError(`${name} must be a positive number, got ${v}`);
  return v;
}

export class Balancer {
  readonly policy: LbPolicy;
  private readonly threshold: number;
  private readonly baseMs: number;
  private readonly maxMs: number;
  private readonly maxPercent: number;
  private readonly intervalMs: number;
  private readonly maxMultiplier: number;
  private readonly now: () => number;
  private readonly random: () => number;

  private slots: Slot[] = [];
  private byAddress = new Map<string, Slot>();
  /** Endpoints in service, the array both policies pick from (rebuilt on the rare membership changes). */
  private healthy: Slot[] = [];
  private probeQueue: Slot[] = [];
  /** Endpoints not in service (ejected, awaiting or under probe). */
  private out = 0;
  /** The earliest time an ejection ends or a probe is given up; Infinity when nothing is out. */
  private nextDue = Infinity;
  private cursor = 0;
  private ejectionsTotal = 0;
  private overflowTotal = 0;

  constructor(endpoints: readonly string[], opts: BalancerOptions = {}) {
    this.policy = opts.policy ?? 'least-request';
    if (this.policy !== 'round-robin' && this.policy !== 'least-request') throw new RangeError(`unknown load-balancing policy ${JSON.stringify(this.policy)}`);
    const o = opts.outlier ?? {};
    this.threshold = Math.ceil(positive('consecutiveFailures', o.consecutiveFailures, 5));
    this.baseMs = positive('baseEjectionMs', o.baseEjectionMs, 30_000);
    this.maxMs = Math.max(this.baseMs, positive('maxEjectionMs', o.maxEjectionMs, 300_000));
    this.intervalMs = positive('intervalMs', o.intervalMs, 10_000);
    const pct = o.maxEjectionPercent ?? 50;
    if (!(pct >= 0 && pct <= 100)) throw new RangeError(`maxEjectionPercent must be within 0–100, got ${pct}`);
    this.maxPercent = pct;
    this.maxMultiplier = Math.ceil(this.maxMs / this.baseMs);
    this.now = opts.now ?? Date.now;
    this.random = opts.random ?? Math.random;
    this.setEndpoints(endpoints);
  }

  /** Number of endpoints (in service or not). */
  get size(): number {
    return this.slots.length;
  }

  /** Ejections since creation (every endpoint, including removed ones). */
  get ejections(): number {
    return this.ejectionsTotal;
  }

  /** Ejections refused by maxEjectionPercent (Envoy's ejections_overflow). */
  get overflows(): number {
    return this.overflowTotal;
  }

  /** The endpoint list, `host:port`, in the order given. */
  addresses(): string[] {
    return this.slots.map((s) => s.address);
  }

  /**
   * Replaces the endpoint list. Endpoints that stay keep their state (active count, failures, ejection); the
   * others are dropped (their live connections may still call end(), which is harmless). Duplicates count once.
   */
  setEndpoints(endpoints: readonly string[]): void {
    const slots: Slot[] = [];
    const byAddress = new Map<string, Slot>();
    for (const raw of endpoints) {
      const { host, port } = parseHostPort(raw);
      const address = host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
      if (byAddress.has(address)) continue;
      const slot = this.byAddress.get(address) ?? new Slot(address, host, port);
      slots.push(slot);
      byAddress.set(address, slot);
    }
    this.slots = slots;
    this.byAddress = byAddress;
    this.probeQueue = this.probeQueue.filter((s) => byAddress.get(s.address) === s);
    this.out = 0;
    for (const s of slots) if (s.state !== HEALTHY) this.out++;
    this.rebuildHealthy();
    this.recomputeDue();
  }

  /**
   * The endpoint for the next attempt, never one of `exclude` (addresses): a pending probe first, else by the
   * policy among the endpoints in service, else (panic) the out endpoint whose ejection ends soonest. Null only when
   * every endpoint is excluded or there are none.
   */
  pick(exclude?: ReadonlySet<string>): Endpoint | null {
    if (this.out > 0) {
      const t = this.now();
      if (t >= this.nextDue) this.sweep(t);
      if (this.probeQueue.length > 0) {
        const probe = this.takeProbe(exclude, t);
        if (probe) return probe;
      }
    }
    const h = this.healthy;
    const n = h.length;
    if (n > 0) {
      const picked = this.policy === 'round-robin' || n === 1 ? this.roundRobin(h, n, exclude) : this.leastRequest(h, n, exclude);
      if (picked) return picked;
    }
    return this.panic(exclude);
  }

  /** One more in-flight connection to `ep`. */
  begin(ep: EndpointRef): void {
    const s = this.slot(ep);
    if (s) s.active++;
  }

  /** One in-flight connection to `ep` ended. */
  end(ep: EndpointRef): void {
    const s = this.slot(ep);
    if (s && s.active > 0) s.active--;
  }

  /** An attempt on `ep` succeeded: its failure count is cleared; on probation (or ejected) it returns to service. */
  success(ep: EndpointRef): void {
    const s = this.slot(ep);
    if (!s) return;
    s.failures = 0;
    if (s.state !== HEALTHY) this.restore(s);
  }

  /** An attempt on `ep` failed (unreachable, timeout, refused handshake, wrong identity). */
  failure(ep: EndpointRef): void {
    const s = this.slot(ep);
    if (!s) return;
    s.failures++;
    if (s.state === HEALTHY) {
      if (s.failures >= this.threshold) this.tryEject(s);
    } else if (s.state === PROBING || s.state === PROBE_PENDING) {
      // A failed probe: out again at once, for longer (it is already counted as out: no cap check).
      if (s.state === PROBE_PENDING) this.probeQueue.splice(this.probeQueue.indexOf(s), 1);
      this.eject(s, this.now());
    }
    // EJECTED (a panic pick, or an attempt that began before the ejection): counted, the ejection stands.
  }

  /** Status of every endpoint, for the admin/status endpoint. */
  snapshot(): EndpointStatus[] {
    if (this.out > 0) {
      const t = this.now();
      if (t >= this.nextDue) this.sweep(t);
    }
    return this.slots.map((s) => {
      const st: EndpointStatus = {
        address: s.address,
        active: s.active,
        ejected: s.state !== HEALTHY,
        probation: s.state === PROBE_PENDING || s.state === PROBING,
        consecutiveFailures: s.failures,
        ejections: s.ejections,
        ejectionMultiplier: s.multiplier,
      };
      if (s.state !== HEALTHY) st.ejectedUntil = s.ejectedUntil;
      return st;
    });
  }

  private slot(ep: EndpointRef): Slot | undefined {
    if (typeof ep === 'string') return this.byAddress.get(ep);
    return ep instanceof Slot ? ep : this.byAddress.get(ep.address);
  }

  private roundRobin(h: Slot[], n: number, exclude: ReadonlySet<string> | undefined): Slot | null {
    for (let k = 0; k < n; k++) {
      const i = (this.cursor + k) % n;
      const s = h[i]!;
      if (exclude === undefined || !exclude.has(s.address)) {
        this.cursor = (i + 1) % n;
        return s;
      }
    }
    return null;
  }

  private leastRequest(h: Slot[], n: number, exclude: ReadonlySet<string> | undefined): Slot | null {
    // First candidate: the round-robin cursor's. Second: uniform among the others (never the same one).
    let i1 = -1;
    for (let k = 0; k < n; k++) {
      const i = (this.cursor + k) % n;
      if (exclude === undefined || !exclude.has(h[i]!.address)) {
        i1 = i;
        break;
      }
    }
    if (i1 < 0) return null;
    this.cursor = (i1 + 1) % n;
    const first = h[i1]!;
    let j = Math.floor(this.random() * (n - 1));
    if (j >= i1) j++;
    // Excluded candidates (at most the caller's few retries) are skipped by probing onward.
    for (let k = 0; k < n; k++) {
      const i = (j + k) % n;
      if (i === i1) continue;
      const s = h[i]!;
      if (exclude !== undefined && exclude.has(s.address)) continue;
      return s.active < first.active ? s : first;
    }
    return first;
  }

  private takeProbe(exclude: ReadonlySet<string> | undefined, t: number): Slot | null {
    const q = this.probeQueue;
    for (let i = 0; i < q.length; i++) {
      const s = q[i]!;
      if (exclude !== undefined && exclude.has(s.address)) continue;
      q.splice(i, 1);
      s.state = PROBING;
      s.probeDeadline = t + this.baseMs;
      if (s.probeDeadline < this.nextDue) this.nextDue = s.probeDeadline;
      return s;
    }
    return null;
  }

  private panic(exclude: ReadonlySet<string> | undefined): Slot | null {
    let best: Slot | null = null;
    for (const s of this.slots) {
      if (s.state === HEALTHY || (exclude !== undefined && exclude.has(s.address))) continue;
      if (best === null || s.ejectedUntil < best.ejectedUntil) best = s;
    }
    return best;
  }

  private tryEject(s: Slot): void {
    const total = this.slots.length;
    if (this.out === 0 || (100 * (this.out + 1)) / total <= this.maxPercent) {
      this.eject(s, this.now());
    } else {
      this.overflowTotal++;
    }
  }

  /** Ejects `s` (in service, or a failed probe) for base × multiplier, capped. */
  private eject(s: Slot, t: number): void {
    if (s.state === HEALTHY) {
      // Envoy's decay: one step of the multiplier per interval spent in service since the last return.
      if (s.multiplier > 0) s.multiplier = Math.max(0, s.multiplier - Math.floor((t - s.inServiceSince) / this.intervalMs));
      this.out++;
      s.state = EJECTED;
      this.rebuildHealthy();
    }
    s.state = EJECTED;
    if (s.multiplier < this.maxMultiplier) s.multiplier++;
    s.ejectedUntil = t + Math.min(this.baseMs * s.multiplier, this.maxMs);
    s.ejections++;
    this.ejectionsTotal++;
    if (s.ejectedUntil < this.nextDue) this.nextDue = s.ejectedUntil;
  }

  private restore(s: Slot): void {
    if (s.state === PROBE_PENDING) this.probeQueue.splice(this.probeQueue.indexOf(s), 1);
    s.state = HEALTHY;
    s.inServiceSince = this.now();
    this.out--;
    this.rebuildHealthy();
    this.recomputeDue();
  }

  /** Ejections whose time is up go on probation; probes never reported are offered again. O(n), only when due. */
  private sweep(t: number): void {
    let next = Infinity;
    for (const s of this.slots) {
      if (s.state === EJECTED) {
        if (s.ejectedUntil <= t) {
          s.state = PROBE_PENDING;
          this.probeQueue.push(s);
        } else if (s.ejectedUntil < next) next = s.ejectedUntil;
      } else if (s.state === PROBING) {
        if (s.probeDeadline <= t) {
          s.state = PROBE_PENDING;
          this.probeQueue.push(s);
        } else if (s.probeDeadline < next) next = s.probeDeadline;
      }
    }
    this.nextDue = next;
  }

  private recomputeDue(): void {
    let next = Infinity;
    for (const s of this.slots) {
      if (s.state === EJECTED && s.ejectedUntil < next) next = s.ejectedUntil;
      else if (s.state === PROBING && s.probeDeadline < next) next = s.probeDeadline;
    }
    this.nextDue = next;
  }

  private rebuildHealthy(): void {
    this.healthy = this.slots.filter((s) => s.state === HEALTHY);
    if (this.cursor >= this.healthy.length) this.cursor = 0;
  }
}
