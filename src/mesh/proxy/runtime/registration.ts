import type { ApiClient } from '../../../cli/client.js';
import { describeError } from '../../../cli/client.js';
import { SIDECAR_SUFFIX, sidecarServiceName } from '../../../catalog/model.js';

// The sidecar's own catalog entry, named as Consul names sidecars: service `<service>-sidecar-proxy`, instance id
// `<instance id>-sidecar-proxy`, kind connect-proxy, proxy.destination_service = the service it fronts. A caller's
// proxy discovers an upstream through `health/service/<ns>/<upstream>-sidecar-proxy?passing`: the addresses there
// are inbound mTLS listeners, never the apps behind them. Health is a TTL check the sidecar reports itself, so an
// entry whose proxy died goes critical (and out of discovery) after one TTL without the server probing a TLS port.

export { SIDECAR_SUFFIX, sidecarServiceName };

export interface RegistrationSpec {
  namespace: string;
  service: string;
  /** The instance id of the sidecar (default `<service>-<port>-sidecar-proxy`). */
  id: string;
  /** What callers dial: an address reachable from other hosts, not 0.0.0.0. */
  address: string;
  port: number;
  upstreams: { name: string; namespace: string; localPort: number }[];
  /** TTL of the health check (ms). */
  ttlMs: number;
}

export class SidecarRegistration {
  private heartbeat: NodeJS.Timeout | null = null;
  private registered = false;

  /** `onReported`: every accepted TTL report (the server was reachable then: the sidecar's staleness clock). */
  constructor(private readonly client: ApiClient, private readonly spec: RegistrationSpec, private readonly onError: (err: Error) => void,
    private readonly onReported?: () => void) {}

  get checkId(): string {
    return `sidecar:${this.spec.id}`;
  }

  private get path(): string {
    return `catalog/service/${this.spec.namespace}/${sidecarServiceName(this.spec.service)}/${this.spec.id}`;
  }

  /** Registers (idempotent PUT) and reports the TTL check passing; then keeps reporting at a third of the TTL. */
  async register(): Promise<void> {
    const s = this.spec;
    const res = await this.client.call('PUT', this.path, {
      body: {
        address: s.address, port: s.port, kind: 'connect-proxy', tags: ['sidecar'],
        proxy: {
          destination_service: s.service,
          upstreams: s.upstreams.map((u) => ({ destination_name: u.name, destination_namespace: u.namespace, local_bind_port: u.localPort })),
        },
        checks: [{ id: this.checkId, name: 'sidecar alive', ttl: `${Math.ceil(s.ttlMs / 1000)}s` }],
      },
    });
    if (res.status >= 400) throw new Error(describeError(res, 'PUT', this.path));
    this.registered = true;
    await this.report();
    this.heartbeat ??= setInterval(() => void this.report().catch(async (err: Error) => {
      this.onError(err);
      // The entry may be gone (a server on fresh storage, an operator's deregister): put it back.
      if (/404/.test(err.message)) await this.register().catch((e: Error) => this.onError(e));
    }), Math.max(1000, s.ttlMs / 3));
    this.heartbeat.unref();
  }

  async deregister(): Promise<void> {
    if (this.heartbeat) clearInterval(this.heartbeat);
    this.heartbeat = null;
    if (!this.registered) return;
    this.registered = false;
    const res = await this.client.call('DELETE', this.path);
    if (res.status >= 400 && res.status !== 404) throw new Error(describeError(res, 'DELETE', this.path));
  }

  private async report(): Promise<void> {
    const path = `health/check/${this.spec.namespace}/${this.checkId}`;
    const res = await this.client.call('PUT', path, { body: { status: 'pass', output: 'sidecar running' } });
    if (res.status >= 400) throw new Error(describeError(res, 'PUT', path));
    this.onReported?.();
  }
}
