import { Counter, Gauge, Registry, collectDefaultMetrics, type Metric } from 'prom-client';
import type { EventReason, RefusalReason } from '../types.js';

// The sidecar's Prometheus metrics (served by runtime/admin.ts on a loopback admin port, like Envoy's
// /stats/prometheus). One Registry per proxy, never prom-client's global one, so tests can run several proxies in
// one process.
//
// Two kinds of numbers:
// - Pulled at scrape time from a ProxyMetricsSource (the listeners' own cumulative totals and live counts): gauges
//   are set, counters are advanced by the difference since the last scrape (see CumulativeSeries).
// - Pushed from the data path (handshakes, decisions, cuts, HTTP request latency). Those hooks only do arithmetic
//   on preallocated typed arrays: prom-client's own `labels(...).inc()` children still validate and hash their
//   label object into a string on every call, so the pending counts are folded into the prom-client counters at
//   scrape time instead, and the latency histogram keeps its buckets itself (RequestHistogram below).

export interface ProxyMetricsSource {
  /** Inbound: totals so far and live connections; null before the inbound listener is up. */
  inbound(): { accepted: number; active: number; bytesIn: number; bytesOut: number } | null;
  /** Per upstream `ns/name`: totals so far and live connections. */
  upstreams(): { name: string; connections: number; active: number; bytesIn: number; bytesOut: number; failedAttempts: number; unavailable: number; ejections?: number }[];
  /** Epoch ms when the current SVID expires, or null. */
  svidExpiresAt(): number | null;
  /** Seconds since the last successful contact with the server. */
  stalenessSeconds(): number;
  /** Events queue: { queued, sent, dropped } */
  events(): { queued: number; sent: number; dropped: number };
}

export type Direction = 'inbound' | 'outbound';

/** Every refusal reason, for pre-initialized series. The check below fails to compile if RefusalReason grows. */
export const REFUSAL_REASONS = ['no_certificate', 'unknown_ca', 'expired', 'not_yet_valid', 'revoked', 'wrong_identity', 'bad_svid', 'protocol'] as const;
type MissingReason = Exclude<RefusalReason, (typeof REFUSAL_REASONS)[number]>;
const allReasonsListed: [MissingReason] extends [never] ? true : MissingReason = true;
void allReasonsListed;

const DIRECTIONS = ['inbound', 'outbound'] as const;
const HANDSHAKE_RESULTS = ['ok', ...REFUSAL_REASONS] as const;
const DECISION_KINDS = ['connect', 'request'] as const;
const DECISION_RESULTS = ['allow', 'deny'] as const;
const CUT_REASONS = [...REFUSAL_REASONS, 'denied'] as const satisfies readonly EventReason[];

/** The standard methods (RFC 9110 and PATCH); anything else, including lower case, is `other`. */
export const HTTP_METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'CONNECT', 'OPTIONS', 'TRACE', 'PATCH', 'other'] as const;
export const CODE_CLASSES = ['1xx', '2xx', '3xx', '4xx', '5xx', 'other'] as const;
/** A proxy hop: from half a millisecond (a local hop) to 10 s (a slow upstream). */
export const REQUEST_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10] as const;

function methodIndex(method: string): number {
  switch (method) {
    case 'GET': return 0;
    case 'HEAD': return 1;
    case 'POST': return 2;
    case 'PUT': return 3;
    case 'DELETE': return 4;
    case 'CONNECT': return 5;
    case 'OPTIONS': return 6;
    case 'TRACE': return 7;
    case 'PATCH': return 8;
    default: return 9;
  }
}

/** 100–599 → its class; anything else (0 for "no response", garbage) → `other`. */
function codeClassIndex(status: number): number {
  return status >= 100 && status < 600 ? Math.floor(status / 100) - 1 : 5;
}

interface Incrementable {
  inc(value?: number): void;
}

/**
 * A counter fed from a cumulative total the source keeps (connections accepted so far, bytes, …). Each scrape adds
 * `current - last` so the exported counter follows the source exactly while it only grows.
 *
 * A total that goes *down* can only mean the source's counters were reset (a connector replaced or restarted, a
 * listener re-created after a crash): everything it reports now happened since that reset, so the whole current
 * value is added and the exported counter keeps what it had. A Prometheus counter never decreases — rate() would
 * read a decrease as a counter reset and count the full value again. What the old source counted between the last
 * scrape and its reset is lost (at most one scrape interval of it).
 */
class CumulativeSeries {
  private last = 0;
  private seen = false;

  constructor(private readonly child: Incrementable) {}

  update(current: number): void {
    if (!Number.isFinite(current) || current < 0) return; // nonsense from the source: keep the previous reading
    const delta = current >= this.last ? current - this.last : current;
    // The first reading creates the series even at 0, so the first increase is visible to rate().
    if (delta > 0 || !this.seen) this.child.inc(delta);
    this.seen = true;
    this.last = current;
  }
}

/** The series of one connection owner (the inbound listener or one upstream). */
interface OwnerSeries {
  connections: CumulativeSeries;
  rx: CumulativeSeries;
  tx: CumulativeSeries;
  failedAttempts?: CumulativeSeries;
  unavailable?: CumulativeSeries;
  ejections?: CumulativeSeries;
}

/**
 * The HTTP request latency histogram, `{method, code_class}`, with fixed buckets. Observing is a bucket search and
 * three array increments; series appear once they have an observation. Registered in the Registry like any
 * prom-client metric (it implements the `get()` the registry renders), output identical to prom-client's Histogram.
 */
class RequestHistogram {
  readonly name = 'aegis_proxy_request_duration_seconds';
  readonly help = 'HTTP mode: request latency through the proxy, by method and status class';
  readonly type = 'histogram';
  readonly aggregator = 'sum';
  private readonly series = HTTP_METHODS.length * CODE_CLASSES.length;
  /** Per series, per bucket (non-cumulative; the last slot is +Inf only). */
  private readonly buckets = new Float64Array(this.series * (REQUEST_BUCKETS.length + 1));
  private readonly counts = new Float64Array(this.series);
  private readonly sums = new Float64Array(this.series);

  observe(seconds: number, status: number, method: string): void {
    if (!(seconds >= 0 && seconds < Infinity)) return; // NaN, negative or infinite: a clock bug, not a latency
    const s = methodIndex(method) * CODE_CLASSES.length + codeClassIndex(status);
    let b = 0;
    while (b < REQUEST_BUCKETS.length && seconds > REQUEST_BUCKETS[b]!) b++;
    this.buckets[s * (REQUEST_BUCKETS.length + 1) + b]!++;
    this.counts[s]!++;
    this.sums[s]! += seconds;
  }

  reset(): void {
    this.buckets.fill(0);
    this.counts.fill(0);
    this.sums.fill(0);
  }

  /** prom-client's MetricObjectWithValues shape (what Registry.getMetricsAsString reads). */
  async get() {
    const values: { metricName: string; labels: Record<string, string | number>; value: number }[] = [];
    const width = REQUEST_BUCKETS.length + 1;
    for (let s = 0; s < this.series; s++) {
      if (this.counts[s] === 0) continue;
      const labels = { method: HTTP_METHODS[Math.floor(s / CODE_CLASSES.length)]!, code_class: CODE_CLASSES[s % CODE_CLASSES.length]! };
      let cumulative = 0;
      for (let b = 0; b < width; b++) {
        cumulative += this.buckets[s * width + b]!;
        values.push({ metricName: `${this.name}_bucket`, labels: { ...labels, le: b < REQUEST_BUCKETS.length ? REQUEST_BUCKETS[b]! : '+Inf' }, value: cumulative });
      }
      values.push({ metricName: `${this.name}_sum`, labels, value: this.sums[s]! });
      values.push({ metricName: `${this.name}_count`, labels, value: this.counts[s]! });
    }
    return { name: this.name, help: this.help, type: this.type, values, aggregator: this.aggregator };
  }
}

export class ProxyMetrics {
  readonly registry = new Registry();

  // Pushed from the data path: pending counts since the last scrape, one slot per label set.
  private readonly pendingHandshakes = new Float64Array(DIRECTIONS.length * HANDSHAKE_RESULTS.length);
  private readonly pendingDecisions = new Float64Array(DECISION_KINDS.length * DECISION_RESULTS.length);
  private readonly pendingCuts = new Float64Array(CUT_REASONS.length);
  private readonly handshakeIndex = new Map<string, number>(HANDSHAKE_RESULTS.map((r, i) => [r, i]));
  private readonly cutIndex = new Map<string, number>(CUT_REASONS.map((r, i) => [r, i]));
  private readonly histogram = new RequestHistogram();

  // Pulled from the source at scrape time.
  private readonly connectionsTotal: Counter<'direction' | 'upstream'>;
  private readonly connectionsActive: Gauge<'direction' | 'upstream'>;
  private readonly bytesTotal: Counter<'direction' | 'flow' | 'upstream'>;
  private readonly failedAttempts: Counter<'upstream'>;
  private readonly unavailable: Counter<'upstream'>;
  private readonly ejections: Counter<'upstream'>;
  private readonly svidExpiry: Gauge;
  private readonly staleness: Gauge;
  private readonly eventsQueued: Gauge;
  private readonly sourceErrors: Counter<'source'>;
  private readonly inboundSeries: OwnerSeries;
  private readonly upstreamSeries = new Map<string, OwnerSeries>();
  private readonly activeUpstreams = new Set<string>();
  private readonly eventsSent: CumulativeSeries;
  private readonly eventsDropped: CumulativeSeries;
  /** True while the current scrape has already read the source (every metric's collect() asks; one read serves all). */
  private synced = false;

  constructor(private readonly source: ProxyMetricsSource) {
    const registers = [this.registry];
    const sync = () => this.sync();

    const handshakes: Counter<'direction' | 'result'> = new Counter({
      name: 'aegis_proxy_handshakes_total', help: 'mTLS handshakes by direction and result (ok or the refusal reason)',
      labelNames: ['direction', 'result'], registers, collect: (): void => flush(this.pendingHandshakes, handshakeChildren),
    });
    const handshakeChildren: Incrementable[] = DIRECTIONS.flatMap((direction) => HANDSHAKE_RESULTS.map((result) => handshakes.labels({ direction, result })));
    const decisions: Counter<'kind' | 'result'> = new Counter({
      name: 'aegis_proxy_decisions_total', help: 'Authorization decisions: connect (tcp) and request (http) by result',
      labelNames: ['kind', 'result'], registers, collect: (): void => flush(this.pendingDecisions, decisionChildren),
    });
    const decisionChildren: Incrementable[] = DECISION_KINDS.flatMap((kind) => DECISION_RESULTS.map((result) => decisions.labels({ kind, result })));
    const cuts: Counter<'reason'> = new Counter({
      name: 'aegis_proxy_connections_cut_total', help: 'Live connections the proxy closed: revoked or expired identity, no longer authorized',
      labelNames: ['reason'], registers, collect: (): void => flush(this.pendingCuts, cutChildren),
    });
    const cutChildren: Incrementable[] = CUT_REASONS.map((reason) => cuts.labels({ reason }));
    // Known label sets start at 0, so the first refusal is a visible increase (rate() over an absent series is nothing).
    for (const c of [...handshakeChildren, ...decisionChildren, ...cutChildren]) c.inc(0);

    this.registry.registerMetric(this.histogram as unknown as Metric);

    this.connectionsTotal = new Counter({
      name: 'aegis_proxy_connections_total', help: 'Connections proxied: inbound accepted (after authorization), outbound per upstream',
      labelNames: ['direction', 'upstream'], registers, collect: sync,
    });
    this.connectionsActive = new Gauge({
      name: 'aegis_proxy_connections_active', help: 'Live proxied connections', labelNames: ['direction', 'upstream'], registers, collect: sync,
    });
    this.bytesTotal = new Counter({
      name: 'aegis_proxy_bytes_total',
      help: 'Bytes proxied, seen from the side that opened the connection (the remote peer inbound, the local app outbound): rx received from it, tx sent to it',
      labelNames: ['direction', 'flow', 'upstream'], registers, collect: sync,
    });
    this.failedAttempts = new Counter({
      name: 'aegis_proxy_upstream_failed_attempts_total', help: 'Outbound attempts to an upstream instance that failed (unreachable, timeout, refused server)',
      labelNames: ['upstream'], registers, collect: sync,
    });
    this.unavailable = new Counter({
      name: 'aegis_proxy_upstream_unavailable_total', help: 'Local connections closed because no instance of the upstream could be reached',
      labelNames: ['upstream'], registers, collect: sync,
    });
    this.ejections = new Counter({
      name: 'aegis_proxy_upstream_ejections_total', help: 'Upstream instances ejected by outlier detection', labelNames: ['upstream'], registers, collect: sync,
    });
    this.svidExpiry = new Gauge({
      name: 'aegis_proxy_svid_expiry_seconds', help: 'Seconds until the current SVID expires (negative once expired; absent before the first SVID)', registers, collect: sync,
    });
    this.staleness = new Gauge({
      name: 'aegis_proxy_staleness_seconds', help: 'Seconds since the last successful contact with the server (fail static: the proxy serves what it last had)', registers, collect: sync,
    });
    this.eventsQueued = new Gauge({ name: 'aegis_proxy_events_queued', help: 'Security events waiting to be sent to the server', registers, collect: sync });
    const eventsSent = new Counter({ name: 'aegis_proxy_events_sent_total', help: 'Security events the server accepted', registers, collect: sync });
    const eventsDropped = new Counter({ name: 'aegis_proxy_events_dropped_total', help: 'Security events dropped (queue full, or refused by the server as malformed)', registers, collect: sync });
    this.eventsSent = new CumulativeSeries(eventsSent);
    this.eventsDropped = new CumulativeSeries(eventsDropped);
    this.sourceErrors = new Counter({
      name: 'aegis_proxy_metrics_source_errors_total', help: 'Scrapes where reading a part of the proxy state threw (that part kept its previous values)',
      labelNames: ['source'], registers,
    });
    this.inboundSeries = {
      connections: new CumulativeSeries(this.connectionsTotal.labels({ direction: 'inbound' })),
      rx: new CumulativeSeries(this.bytesTotal.labels({ direction: 'inbound', flow: 'rx' })),
      tx: new CumulativeSeries(this.bytesTotal.labels({ direction: 'inbound', flow: 'tx' })),
    };
    collectDefaultMetrics({ register: this.registry, prefix: 'aegis_proxy_process_' });

    function flush(pending: Float64Array, children: Incrementable[]): void {
      for (let i = 0; i < pending.length; i++) {
        const n = pending[i]!;
        if (n === 0) continue;
        pending[i] = 0;
        children[i]!.inc(n);
      }
    }
  }

  // ---- push hooks (data path: no allocation, no string building) ----

  /** One finished (or failed) mTLS handshake. */
  handshake(direction: Direction, result: 'ok' | RefusalReason): void {
    const r = this.handshakeIndex.get(result);
    if (r === undefined) return;
    this.pendingHandshakes[(direction === 'inbound' ? 0 : HANDSHAKE_RESULTS.length) + r]!++;
  }

  /** One authorization decision: `connect` (tcp mode, per connection) or `request` (http mode). */
  decision(result: 'allow' | 'deny', kind: 'connect' | 'request'): void {
    this.pendingDecisions[(kind === 'connect' ? 0 : DECISION_RESULTS.length) + (result === 'allow' ? 0 : 1)]!++;
  }

  /** HTTP mode: one request's latency through the proxy (seconds), its final status and its method. */
  request(seconds: number, status: number, method: string): void {
    this.histogram.observe(seconds, status, method);
  }

  /** A live connection closed by the proxy (revocation, expiry, policy). */
  cut(reason: EventReason): void {
    const r = this.cutIndex.get(reason);
    if (r !== undefined) this.pendingCuts[r]!++;
  }

  // ---- scrape ----

  /** The exposition text (Prometheus text format 0.0.4). */
  async render(): Promise<{ contentType: string; body: string }> {
    this.synced = false; // a fresh read of the source for this scrape
    const body = await this.registry.metrics();
    return { contentType: this.registry.contentType, body };
  }

  /**
   * Reads the source once per scrape and updates every pulled metric. Each of them calls this from its collect()
   * (so `registry.metrics()` used directly is right too); the first call of a scrape does the work, the flag is
   * cleared once the registry's synchronous pass over its metrics is over.
   */
  private sync(): void {
    if (this.synced) return;
    this.synced = true;
    queueMicrotask(() => { this.synced = false; });
    this.guard('inbound', () => {
      const i = this.source.inbound();
      if (!i) return void this.connectionsActive.remove({ direction: 'inbound' });
      this.inboundSeries.connections.update(i.accepted);
      this.inboundSeries.rx.update(i.bytesIn);
      this.inboundSeries.tx.update(i.bytesOut);
      this.connectionsActive.set({ direction: 'inbound' }, i.active);
    });
    this.guard('upstreams', () => {
      const seen = new Set<string>();
      for (const u of this.source.upstreams()) {
        seen.add(u.name);
        const s = this.upstream(u.name);
        s.connections.update(u.connections);
        s.rx.update(u.bytesIn);
        s.tx.update(u.bytesOut);
        s.failedAttempts!.update(u.failedAttempts);
        s.unavailable!.update(u.unavailable);
        if (u.ejections !== undefined) (s.ejections ??= new CumulativeSeries(this.ejections.labels({ upstream: u.name }))).update(u.ejections);
        this.connectionsActive.set({ direction: 'outbound', upstream: u.name }, u.active);
      }
      // An upstream no longer configured has no live connections to report; its counters stay (they never vanish).
      for (const name of this.activeUpstreams) if (!seen.has(name)) this.connectionsActive.remove({ direction: 'outbound', upstream: name });
      this.activeUpstreams.clear();
      for (const name of seen) this.activeUpstreams.add(name);
    });
    this.guard('svid', () => {
      const at = this.source.svidExpiresAt();
      if (at === null || !Number.isFinite(at)) this.svidExpiry.remove();
      else this.svidExpiry.set((at - Date.now()) / 1000);
    });
    this.guard('staleness', () => this.staleness.set(this.source.stalenessSeconds()));
    this.guard('events', () => {
      const e = this.source.events();
      this.eventsQueued.set(e.queued);
      this.eventsSent.update(e.sent);
      this.eventsDropped.update(e.dropped);
    });
  }

  private upstream(name: string): OwnerSeries {
    let s = this.upstreamSeries.get(name);
    if (!s) {
      const upstream = name;
      s = {
        connections: new CumulativeSeries(this.connectionsTotal.labels({ direction: 'outbound', upstream })),
        rx: new CumulativeSeries(this.bytesTotal.labels({ direction: 'outbound', flow: 'rx', upstream })),
        tx: new CumulativeSeries(this.bytesTotal.labels({ direction: 'outbound', flow: 'tx', upstream })),
        failedAttempts: new CumulativeSeries(this.failedAttempts.labels({ upstream })),
        unavailable: new CumulativeSeries(this.unavailable.labels({ upstream })),
      };
      this.upstreamSeries.set(name, s);
    }
    return s;
  }

  /** A throwing source must not blank the whole scrape: that part keeps its previous values and is counted. */
  private guard(part: string, read: () => void): void {
    try {
      read();
    } catch {
      this.sourceErrors.inc({ source: part });
    }
  }
}
