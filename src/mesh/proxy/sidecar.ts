import { describeError, type ApiClient } from '../../cli/client.js';
import { MAX_BATCH_BYTES, toWireEvent, wireEventBytes } from '../events/index.js';
import { BatchRejectedError, EventQueue } from './event-queue.js';
import { SvidKeeper, type Attestation, type HeldSvid } from '../../identity/agent/index.js';
import { workloadSpiffeId } from '../../identity/spiffe-id.js';
import type { Logger } from '../../telemetry/index.js';
import { InboundListener } from './inbound.js';
import { InboundHttpListener, type HttpRequestRecord } from './inbound-http.js';
import { OutboundConnector } from './outbound.js';
import { PeerVerifier } from './peer-verifier.js';
import { LocalPolicy, type ConfigStatement } from './runtime/local-policy.js';
import { ProxyMetrics } from './runtime/metrics.js';
import { SidecarRegistration, sidecarServiceName } from './runtime/registration.js';
import { BlockingWatch } from './runtime/watch.js';
import type { EndpointAddress, ProxyCredentials, ProxyEvent, RefusalReason } from './types.js';

// `aegis proxy` (tcp mode): attests and keeps its SVID renewed (SvidKeeper, shared with `aegis agent`), registers
// itself as `<service>-sidecar-proxy`, and holds blocking-query watches on the revocation list, the trust bundle,
// the mesh config of its service and the healthy sidecars of each upstream. Every decision is local: when the
// server is unreachable the proxy keeps serving with what it last had (fail static) and says how stale that is.

export interface UpstreamSpec {
  /** The upstream service; `ns/name` or `name` (this proxy's namespace). */
  service: string;
  namespace: string;
  listen: EndpointAddress;
}

export interface SidecarOptions {
  /** https:// */
  address: string;
  caFile?: string;
  attestation: Attestation;
  namespace: string;
  service: string;
  listen: EndpointAddress;
  /** What other proxies dial (default: the listen host, or 127.0.0.1 when it listens on every address). */
  advertise?: string;
  app: EndpointAddress;
  /**
   * tcp: one `connect` decision per connection, bytes spliced. http: HTTP/1.1 and HTTP/2 terminated inbound, one
   * decision per request on method and path, the caller's identity to the app in X-Forwarded-Client-Cert.
   */
  mode?: 'tcp' | 'http';
  upstreams: UpstreamSpec[];
  /** How an upstream's instances are chosen (default least-request). */
  lb?: 'round-robin' | 'least-request';
  logger: Logger;
  ttlSeconds?: number;
  /** Blocking-query wait (s), default 30. */
  watchWaitSeconds?: number;
  onEvent?: (e: ProxyEvent) => void;
  /** Every HTTP request in http mode, when its response is done (latency metrics). */
  onRequest?: (r: HttpRequestRecord) => void;
}

interface Revoked {
  serials: Set<string>;
  ids: Set<string>;
}

interface HealthEntry {
  service: { address: string; port: number; kind: string; proxy: { destination_service: string } | null };
}

/** The blocking-query parameters; none on the first read (revocations would otherwise park an index of 0). */
function blocking(index: number, wait: number): Record<string, string> {
  return index > 0 ? { index: String(index), wait: `${wait}s` } : {};
}

export class Sidecar {
  private readonly keeper: SvidKeeper;
  private readonly client: ApiClient;
  /** Refusals and denials on their way to the server (mesh/events), bounded: traffic never waits for them. */
  private readonly reports: EventQueue<ProxyEvent>;
  private revoked: Revoked = { serials: new Set(), ids: new Set() };
  private bundlePem = '';
  private lastContact = 0;
  private trustDomain = '';
  private policy: LocalPolicy | null = null;
  /** Prometheus metrics of this proxy (served on the admin port). */
  readonly metrics: ProxyMetrics;
  private inbound: InboundListener | InboundHttpListener | null = null;
  private readonly outbound = new Map<string, OutboundConnector>();
  private readonly watches: BlockingWatch<unknown>[] = [];
  private registration: SidecarRegistration | null = null;
  private stopped = false;
  private expiryTimer: NodeJS.Timeout | null = null;
  private revocationsRead = false;

  constructor(private readonly o: SidecarOptions) {
    this.keeper = new SvidKeeper({
      who: 'the proxy', address: o.address, caFile: o.caFile, attestation: o.attestation, ttlSeconds: o.ttlSeconds, logger: o.logger,
      onSvid: (svid) => this.adoptSvid(svid),
    });
    this.metrics = new ProxyMetrics({
      inbound: () => this.inbound?.stats() ?? null,
      upstreams: () => [...this.outbound].map(([name, c]) => ({ name, ...c.stats() })),
      svidExpiresAt: () => this.keeper.current()?.expiresAt ?? null,
      stalenessSeconds: () => this.staleness(),
      events: () => this.reports.stats(),
    });
    // No token: every call is authenticated by the SVID over mutual TLS, and the built-in workload policy confines
    // it to this service's own catalog entry, checks and mesh config (least privilege, nothing long-lived to leak).
    this.client = this.keeper.client;
    this.reports = new EventQueue<ProxyEvent>({
      send: (batch) => this.sendEvents(batch),
      sizeOf: (e) => { const w = toWireEvent(e); return w ? wireEventBytes(w) : 0; },
      maxBatchBytes: MAX_BATCH_BYTES - 64,
      onSendError: (err) => this.o.logger.warn({ err: (err as Error).message }, 'could not send security events; retrying'),
    });
  }

  get spiffeId(): string | null {
    return this.keeper.current()?.spiffeId ?? null;
  }

  get inboundPort(): number {
    return this.inbound!.port;
  }

  /** The local port of an upstream's listener. */
  upstreamPort(namespace: string, service: string): number | undefined {
    return this.outbound.get(`${namespace}/${service}`)?.port;
  }

  /**
   * Seconds since the server last answered: a watch read or a TTL report (every 5 s). Blocking reads answer only on
   * a change or after their wait, so the reports are what keeps an idle, healthy mesh near 0.
   */
  staleness(): number {
    return this.lastContact === 0 ? 0 : Math.floor((Date.now() - this.lastContact) / 1000);
  }

  status() {
    return {
      spiffe_id: this.spiffeId,
      staleness_seconds: this.staleness(),
      svid_expires: this.keeper.current() ? new Date(this.keeper.current()!.expiresAt).toISOString() : null,
      statements: this.policy?.statementCount ?? 0,
      revoked: { serials: this.revoked.serials.size, spiffe_ids: this.revoked.ids.size },
      inbound: this.inbound?.stats() ?? null,
      events: this.reports.stats(),
      upstreams: Object.fromEntries([...this.outbound].map(([k, c]) => [k, { port: c.port, instances: c.instanceList(), endpoints: c.endpoints(), ...c.stats() }])),
    };
  }

  async start(): Promise<void> {
    const svid = await this.keeper.attest();
    this.touch();
    this.trustDomain = new URL(svid.spiffeId).host;
    const own = `${this.o.namespace}/${this.o.service}`;
    const expected = workloadSpiffeId(this.trustDomain, this.o.namespace, this.o.service);
    if (svid.spiffeId !== expected) throw new Error(`attested as ${svid.spiffeId}, but a proxy for ${own} must be ${expected}: check --service/--namespace and the join token`);
    this.policy = new LocalPolicy(own, this.trustDomain);
    // One verifier per direction, so that successful handshakes are counted by direction (refusals are counted
    // from their events, which also cover TLS-level failures that never reach a verifier).
    const verifier = (direction: 'inbound' | 'outbound') => new PeerVerifier({
      trustDomain: this.trustDomain,
      isSerialRevoked: (serial) => this.revoked.serials.has(serial),
      isIdRevoked: (id) => this.revoked.ids.has(id),
      onVerdict: (v) => { if (v.ok) this.metrics.handshake(direction, 'ok'); },
    });
    const log = (name: string, err: Error, retryInMs: number) => this.o.logger.warn({ watch: name, err: err.message, retryInMs: Math.round(retryInMs), staleSeconds: this.staleness() }, 'watch failed; serving with what we have');
    const wait = this.o.watchWaitSeconds ?? 30;
    const revocations = this.watch<Revoked>('revocations', wait, log, (index, w) => this.fetchRevocations(index, w), (r) => this.applyRevocations(r));
    const config = this.watch<ConfigStatement[]>('mesh-config', wait, log, (index, w) => this.fetchConfig(index, w), (s) => this.applyConfig(s));
    // The policy and revocations must be in place before the listener admits anyone (until then: default deny).
    await Promise.all([revocations.first, config.first]);

    const credentials = this.credentials(svid);
    const common = { listen: this.o.listen, app: this.o.app, credentials, verifier: verifier('inbound'), onEvent: (e: ProxyEvent) => this.event(e) };
    const decide = (kind: 'connect' | 'request', allowed: boolean) => {
      this.metrics.decision(allowed ? 'allow' : 'deny', kind);
      return allowed;
    };
    // In http mode every request is decided, so a policy change reaches live connections at their next request;
    // revalidation there cuts revoked identities only (a connection-level `connect` check would cut callers whose
    // intentions carry method or path rules).
    this.inbound = this.o.mode === 'http'
      ? await InboundHttpListener.start({
        ...common, authorizeRequest: (id, r) => decide('request', this.policy!.allows(id, r)),
        onRequest: (r) => { this.metrics.request(r.seconds, r.status, r.method); this.o.onRequest?.(r); },
      })
      : await InboundListener.start({ ...common, authorize: (id) => decide('connect', this.policy!.allows(id)) });
    const outboundVerifier = verifier('outbound');
    for (const u of this.o.upstreams) {
      const connector = await OutboundConnector.start({
        listen: u.listen, expectedSpiffeId: workloadSpiffeId(this.trustDomain, u.namespace, u.service), instances: [], allowEmpty: true,
        credentials, verifier: outboundVerifier, onEvent: (e) => this.event(e),
        // http mode: the inbound side picks HTTP/2 or HTTP/1.1 by ALPN, so offer what the app is speaking.
        alpn: this.o.mode === 'http', lb: this.o.lb,
      });
      this.outbound.set(`${u.namespace}/${u.service}`, connector);
      this.watch<string[]>(`upstream:${u.namespace}/${u.service}`, wait, log, (index, w) => this.fetchHealthy(u, index, w), (list) => {
        connector.setInstances(list);
        this.o.logger.info({ upstream: `${u.namespace}/${u.service}`, instances: list }, 'upstream instances');
      });
    }

    this.registration = new SidecarRegistration(this.client, {
      namespace: this.o.namespace, service: this.o.service, id: sidecarServiceName(`${this.o.service}-${this.inbound.port}`),
      address: this.advertised(), port: this.inbound.port,
      upstreams: this.o.upstreams.map((u) => ({ name: u.service, namespace: u.namespace, localPort: this.outbound.get(`${u.namespace}/${u.service}`)!.port })),
      ttlMs: 15_000,
    }, (err) => this.o.logger.warn({ err: err.message }, 'sidecar health report failed'), () => this.touch());
    await this.registration.register();
    // Certificates expire without any event: re-check live connections on both sides every few seconds.
    this.expiryTimer = setInterval(() => void this.revalidate('expiry'), 5_000).unref();
    this.o.logger.info({ spiffeId: svid.spiffeId, inbound: this.inbound.port, upstreams: Object.fromEntries([...this.outbound].map(([k, c]) => [k, c.port])) }, 'proxy serving');
  }

  /** Serving: listeners up with an SVID and a loaded policy (the admin port's /ready). */
  ready(): boolean {
    return !this.stopped && this.inbound !== null && this.keeper.current() !== null && (this.policy?.ready ?? false);
  }

  /** Renews the SVID now (an operator action on the admin port; rotation tests force renewals with it). */
  async renew(): Promise<{ serial: string; expiresAt: number }> {
    const held = await this.keeper.renew();
    return { serial: held.serial, expiresAt: held.expiresAt };
  }

  /** Deregisters (best effort: the server may be gone), then closes listeners and live connections. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.keeper.stop();
    if (this.expiryTimer) clearInterval(this.expiryTimer);
    for (const w of this.watches) void w.stop();
    await this.registration?.deregister().catch((err: Error) => this.o.logger.warn({ err: err.message }, 'could not deregister the sidecar'));
    await this.reports.close(2_000);
    await Promise.all([this.inbound?.close(), ...[...this.outbound.values()].map((c) => c.close())]);
  }

  private watch<T>(name: string, waitSeconds: number, onError: (n: string, e: Error, r: number) => void,
    fetch: (index: number, wait: number) => Promise<{ index: number; value: T }>, apply: (v: T) => void | Promise<void>): BlockingWatch<T> {
    const w = new BlockingWatch<T>({ name, fetch, apply, waitSeconds, onError, onContact: () => this.touch() }).start();
    this.watches.push(w as BlockingWatch<unknown>);
    return w;
  }

  private touch(): void {
    this.lastContact = Date.now();
  }

  private advertised(): string {
    if (this.o.advertise) return this.o.advertise;
    const h = this.o.listen.host;
    return h === '0.0.0.0' || h === '::' || h === '' ? '127.0.0.1' : h;
  }

  private credentials(svid: HeldSvid): ProxyCredentials {
    return { certChainPem: svid.certChainPem, keyPem: svid.keyPem, bundlePem: this.bundlePem || svid.bundlePem };
  }

  /** A renewed SVID (or a new bundle) reaches new handshakes; live connections keep theirs. */
  private adoptSvid(svid: HeldSvid): void {
    if (!this.bundlePem) this.bundlePem = svid.bundlePem;
    this.touch();
    this.pushCredentials(svid);
  }

  private pushCredentials(svid: HeldSvid): void {
    const c = this.credentials(svid);
    this.inbound?.updateCredentials(c);
    for (const o of this.outbound.values()) o.updateCredentials(c);
  }

  private async fetchRevocations(index: number, wait: number): Promise<{ index: number; value: Revoked }> {
    // The revocation list parks even an index of 0 (nothing revoked yet), so only the very first read is immediate.
    const query: Record<string, string> = this.revocationsRead ? { index: String(index), wait: `${wait}s` } : {};
    const res = await this.client.call('GET', 'identity/revocations', { query, auth: false });
    this.revocationsRead = true;
    if (res.status !== 200) throw new Error(describeError(res, 'GET', 'identity/revocations'));
    const d = (res.body as { data: { index: number; serials: { serial_number: string }[]; spiffe_ids: { spiffe_id: string }[] } }).data;
    return {
      index: Number(d.index),
      value: { serials: new Set(d.serials.map((s) => s.serial_number.replace(/:/g, '').toLowerCase())), ids: new Set(d.spiffe_ids.map((i) => i.spiffe_id)) },
    };
  }

  /** A new revocation list; the bundle is read again with it (a root rotation changes both). */
  private async applyRevocations(r: Revoked): Promise<void> {
    const bundle = await this.client.call('GET', 'identity/bundle', { auth: false });
    this.revoked = r;
    if (bundle.status === 200 && bundle.text.includes('BEGIN CERTIFICATE') && bundle.text !== this.bundlePem) {
      this.bundlePem = bundle.text;
      const svid = this.keeper.current();
      if (svid) this.pushCredentials(svid);
    }
    await this.revalidate('revocations');
  }

  private async fetchConfig(index: number, wait: number): Promise<{ index: number; value: ConfigStatement[] }> {
    const path = `mesh/config/${this.o.namespace}/${this.o.service}`;
    const res = await this.client.call('GET', path, { query: blocking(index, wait) });
    if (res.status !== 200) throw new Error(describeError(res, 'GET', path));
    const d = (res.body as { data: { index: number; statements: ConfigStatement[] } }).data;
    return { index: Number(d.index), value: d.statements };
  }

  private async applyConfig(statements: ConfigStatement[]): Promise<void> {
    this.policy!.load(statements); // throws on a bad statement: the watch keeps the previous set and retries
    this.o.logger.info({ statements: statements.length }, 'mesh policy loaded');
    await this.revalidate('policy');
  }

  private async fetchHealthy(u: UpstreamSpec, index: number, wait: number): Promise<{ index: number; value: string[] }> {
    const path = `health/service/${u.namespace}/${sidecarServiceName(u.service)}`;
    const res = await this.client.call('GET', path, { query: { passing: 'true', ...blocking(index, wait) } });
    if (res.status !== 200) throw new Error(describeError(res, 'GET', path));
    const header = res.headers['x-aegis-index'];
    const entries = JSON.parse(res.text) as HealthEntry[];
    const list = entries
      .filter((e) => e.service.kind === 'connect-proxy' && e.service.proxy?.destination_service === u.service)
      .map((e) => (e.service.address.includes(':') ? `[${e.service.address}]:${e.service.port}` : `${e.service.address}:${e.service.port}`));
    return { index: Number(Array.isArray(header) ? header[0] : header ?? 0), value: list };
  }

  private async revalidate(why: string): Promise<void> {
    if (!this.inbound || this.stopped) return;
    // Outbound: connections to an upstream whose SVID was revoked. Inbound: callers revoked or no longer allowed.
    let closed = 0;
    for (const o of this.outbound.values()) closed += o.revalidate();
    closed += await this.inbound.revalidate();
    if (closed > 0) this.o.logger.info({ closed, why }, 'closed live connections that are no longer allowed');
  }

  private event(e: ProxyEvent): void {
    if (e.type === 'refused') this.metrics.handshake(e.direction, e.reason as RefusalReason);
    else if (e.type === 'closed') this.metrics.cut(e.reason);
    this.o.logger.info({ event: e }, `proxy ${e.type}: ${e.reason}`);
    this.reports.push(e);
    this.o.onEvent?.(e);
  }

  /** One batch to mesh/events, authenticated by our SVID (the server files the events under our SPIFFE ID). */
  private async sendEvents(batch: ProxyEvent[]): Promise<void> {
    const events = batch.map(toWireEvent).filter((e) => e !== null);
    if (events.length === 0) return;
    const res = await this.client.call('POST', 'mesh/events', { body: { events }, auth: false });
    if (res.status < 400) return;
    const msg = describeError(res, 'POST', 'mesh/events');
    // A batch the server refuses as malformed would be refused forever: drop it (counted) instead of blocking the queue.
    if (res.status < 500 && res.status !== 408 && res.status !== 429) throw new BatchRejectedError(msg);
    throw new Error(msg);
  }
}
