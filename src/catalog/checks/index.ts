// The catalog's health checker (http | tcp | ttl): the catalog hands it check registrations and hears back
// status changes through CheckHost.
export { HealthChecker, DEFAULT_MAX_CONCURRENT, type HealthCheckerOptions } from './health-checker.js';
export { httpProbe } from './http-check.js';
export { tcpProbe } from './tcp-check.js';
export type { Probe, ProbeResult } from './probe.js';
