import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/** One registry per server (never prom-client's global), so tests can run several cores in one process. */
export class Metrics {
  readonly registry = new Registry();
  readonly requests: Counter<'route' | 'status'>;
  readonly latency: Histogram<'route'>;
  readonly sealed: Gauge;
  readonly auditFailures: Counter<'device'>;
  readonly tokens: Gauge;
  readonly leases: Gauge;
  readonly leasesFailing: Gauge;
  readonly leaseRevokeFailures: Counter;

  constructor(opts: { sealed: () => boolean; tokens: () => number; leases?: () => { live: number; failing: number } }) {
    this.requests = new Counter({ name: 'aegis_requests_total', help: 'API requests by route pattern and HTTP status', labelNames: ['route', 'status'], registers: [this.registry] });
    this.latency = new Histogram({
      name: 'aegis_request_duration_seconds', help: 'API request latency by route pattern', labelNames: ['route'], registers: [this.registry],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    });
    this.sealed = new Gauge({ name: 'aegis_sealed', help: '1 when Aegis is sealed', registers: [this.registry], collect() { this.set(opts.sealed() ? 1 : 0); } });
    this.auditFailures = new Counter({ name: 'aegis_audit_write_failures_total', help: 'Audit entries a device failed to write', labelNames: ['device'], registers: [this.registry] });
    this.tokens = new Gauge({ name: 'aegis_tokens', help: 'Live tokens in the token store', registers: [this.registry], collect() { this.set(opts.tokens()); } });
    this.leases = new Gauge({ name: 'aegis_leases', help: 'Live leases', registers: [this.registry], collect() { this.set(opts.leases?.().live ?? 0); } });
    this.leasesFailing = new Gauge({
      name: 'aegis_leases_revocation_failing', help: 'Leases whose revocation failed and is being retried with backoff', registers: [this.registry],
      collect() { this.set(opts.leases?.().failing ?? 0); },
    });
    this.leaseRevokeFailures = new Counter({ name: 'aegis_lease_revocation_failures_total', help: 'Failed lease revocation attempts', registers: [this.registry] });
    collectDefaultMetrics({ register: this.registry, prefix: 'aegis_process_' });
  }

  observe(route: string, status: number, seconds: number): void {
    this.requests.inc({ route, status: String(status) });
    this.latency.observe({ route }, seconds);
  }
}
