// The service catalog's data model (Consul's catalog, in Aegis's snake_case): namespaces hold services, services
// hold instances, instances carry health checks that the server runs.

export type CheckStatus = 'passing' | 'warning' | 'critical';
export type CheckType = 'http' | 'tcp' | 'ttl';

export interface CheckDefinition {
  /** Unique within the namespace; default `service:<instance id>` (or `…:<n>` for the n-th check). */
  id: string;
  name: string;
  type: CheckType;
  /** http: the URL to GET (2xx passing, 429 warning, anything else critical). */
  http?: string;
  /** http: the method (default GET). */
  method?: string;
  /** tcp: `host:port` to connect to. */
  tcp?: string;
  /** ttl: ms within which the instance must report, else critical. */
  ttl?: number;
  /** http/tcp: ms between runs. */
  interval: number;
  /** http/tcp: ms before a run counts as failed. */
  timeout: number;
  /** ms critical after which the instance is deregistered (0 = never). */
  deregister_critical_after: number;
  /** Consecutive successes before a check turns passing (default 1). */
  success_before_passing: number;
  /** Consecutive failures before a check turns critical (default 1). */
  failures_before_critical: number;
}

export interface Upstream {
  destination_name: string;
  destination_namespace: string;
  local_bind_port: number;
}

export interface ProxyConfig {
  destination_service: string;
  upstreams: Upstream[];
}

export interface Instance {
  namespace: string;
  service: string;
  id: string;
  address: string;
  port: number;
  tags: string[];
  meta: Record<string, string>;
  /** `connect-proxy` for a sidecar, which then names the service it fronts and its upstreams. */
  kind: 'typical' | 'connect-proxy';
  proxy: ProxyConfig | null;
  checks: CheckDefinition[];
}

export interface CheckState {
  status: CheckStatus;
  /** The last output, truncated (4 KiB). */
  output: string;
  /** Unix ms of the last status change. */
  since: number;
}

/** Where a check runs: the definition and the instance it belongs to. */
export interface CheckTarget {
  namespace: string;
  instanceId: string;
  service: string;
  address: string;
  port: number;
  check: CheckDefinition;
}

/** What the health checker may do to the catalog. */
export interface CheckHost {
  /** A check's status flipped (after its thresholds): persisted, and watchers of the service wake. */
  setStatus(namespace: string, checkId: string, status: CheckStatus, output: string): Promise<void>;
  /** Newest output without a status change: kept in memory only (operators read it; nothing wakes). */
  setOutput(namespace: string, checkId: string, output: string): void;
  /** The instance has been critical longer than `deregister_critical_after`. */
  deregister(namespace: string, instanceId: string, reason: string): Promise<void>;
}

/** What DNS needs: the passing instances of a service, or null when no such service is registered. */
export interface DnsCatalog {
  passingInstances(namespace: string, service: string): { id: string; address: string; port: number }[] | null;
}

export const MAX_OUTPUT = 4096;
export const DEFAULT_NAMESPACE = 'default';

/** Consul's sidecar naming: the proxy of service `web` registers as service `web-sidecar-proxy`. */
export const SIDECAR_SUFFIX = '-sidecar-proxy';

export function sidecarServiceName(service: string): string {
  return `${service}${SIDECAR_SUFFIX}`;
}
