import { once } from 'node:events';
import { createServer as createNetServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { connect as tlsConnect, createSecureContext, type SecureContext, type TLSSocket } from 'node:tls';
import type { PeerVerifier } from './peer-verifier.js';
import { splice, type ByteCounters } from './splice.js';
import { parseHostPort, type EndpointAddress, type ProxyCredentials, type ProxyEvent, type ProxyEventSink } from './types.js';

// The outbound side: the local app connects in plain TCP to a listener per upstream; each connection is carried
// over mTLS (TLS 1.3, our SVID) to one instance of the upstream, chosen round robin. The server's SVID must chain
// to the bundle and carry the upstream's expected SPIFFE ID: a valid certificate of another service is refused.

export interface OutboundOptions {
  /** The local plain-TCP listener for this upstream; port 0 for any. */
  listen: EndpointAddress;
  /** The SPIFFE ID every instance of the upstream must present. */
  expectedSpiffeId: string;
  /**
   * `host:port` of the upstream's inbound listeners. May start empty when `allowEmpty` (the sidecar fills it from
   * the catalog with setInstances); local connections made while it is empty are closed as unavailable.
   */
  instances: string[];
  allowEmpty?: boolean;
  credentials: ProxyCredentials;
  verifier: PeerVerifier;
  /** TCP connect plus handshake, per attempt (default 2 s). */
  connectTimeoutMs?: number;
  onEvent?: ProxyEventSink;
}

export interface OutboundStats {
  connections: number;
  active: number;
  /** Attempts that failed (unreachable, timeout, refused server). */
  failedAttempts: number;
  /** Local connections closed because no instance could be reached. */
  unavailable: number;
  bytesIn: number;
  bytesOut: number;
}

type Attempt = { ok: true; socket: TLSSocket } | { ok: false; detail: string };

export class OutboundConnector {
  private context: SecureContext;
  private next = 0;
  private instances: EndpointAddress[];
  private readonly live = new Set<Socket>();
  private readonly counts = { connections: 0, failedAttempts: 0, unavailable: 0, bytesIn: 0, bytesOut: 0 };

  private constructor(private readonly server: Server, private readonly opts: OutboundOptions) {
    this.context = OutboundConnector.buildContext(opts.credentials);
    this.instances = opts.instances.map(parseHostPort);
    if (this.instances.length === 0 && !opts.allowEmpty) throw new RangeError(`upstream ${opts.expectedSpiffeId} has no instances`);
  }

  static async start(opts: OutboundOptions): Promise<OutboundConnector> {
    const server = createNetServer({ pauseOnConnect: true });
    const connector = new OutboundConnector(server, opts);
    server.on('connection', (local: Socket) => void connector.forward(local));
    server.listen(opts.listen.port, opts.listen.host);
    await once(server, 'listening');
    return connector;
  }

  /** One SecureContext per credential set, shared by every connection (building one per connect costs a lot). */
  private static buildContext(c: ProxyCredentials): SecureContext {
    return createSecureContext({ key: c.keyPem, cert: c.certChainPem, ca: c.bundlePem, minVersion: 'TLSv1.3' });
  }

  get port(): number {
    return (this.server.address() as AddressInfo).port;
  }

  stats(): OutboundStats {
    return { ...this.counts, active: this.live.size };
  }

  /** New connections use the new SVID and bundle; open ones keep theirs. */
  updateCredentials(c: ProxyCredentials): void {
    this.context = OutboundConnector.buildContext(c);
  }

  /** Replaces the instance list (healthy instances from the catalog); open connections are not touched. */
  setInstances(instances: string[]): void {
    this.instances = instances.map(parseHostPort);
  }

  /** The current instance list, `host:port`. */
  instanceList(): string[] {
    return this.instances.map((i) => (i.host.includes(':') ? `[${i.host}]:${i.port}` : `${i.host}:${i.port}`));
  }

  /**
   * An mTLS connection to the upstream: instances are tried round robin, each failed attempt moves to the next,
   * at most one attempt per instance. Null when none could be reached.
   */
  async connectUpstream(): Promise<TLSSocket | null> {
    const instances = this.instances; // a snapshot: setInstances may replace the list while attempts run
    for (let i = 0; i < instances.length; i++) {
      const instance = instances[this.next++ % instances.length]!;
      const r = await this.attempt(instance);
      if (r.ok) return r.socket;
      this.counts.failedAttempts++;
    }
    return null;
  }

  async close(): Promise<void> {
    const closed = new Promise<void>((r) => this.server.close(() => r()));
    for (const s of this.live) s.destroy();
    await closed;
  }

  private async forward(local: Socket): Promise<void> {
    local.on('error', () => local.destroy());
    const upstream = await this.connectUpstream();
    if (!upstream || local.destroyed) {
      upstream?.destroy();
      if (!upstream) this.counts.unavailable++;
      local.destroy();
      return;
    }
    this.counts.connections++;
    this.live.add(local);
    const counters: ByteCounters = { bytesIn: 0, bytesOut: 0 };
    splice(local, upstream, counters, () => {
      this.live.delete(local);
      this.counts.bytesIn += counters.bytesIn;
      this.counts.bytesOut += counters.bytesOut;
    });
    local.resume();
  }

  private attempt(instance: EndpointAddress): Promise<Attempt> {
    const peer = `${instance.host}:${instance.port}`;
    return new Promise((resolve) => {
      let tcpUp = false;
      let settled = false;
      const finish = (r: Attempt) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        if (!r.ok) socket.destroy();
        resolve(r);
      };
      const socket = tlsConnect({
        host: instance.host,
        port: instance.port,
        secureContext: this.context,
        // Chain verification is not skipped: PeerVerifier refuses unless OpenSSL verified the chain against the
        // bundle. The name check is SPIFFE's (Node's own rejects URI-only SAN certificates), done below.
        rejectUnauthorized: false,
        checkServerIdentity: () => undefined,
      });
      const timer = setTimeout(() => {
        if (tcpUp) this.event({ type: 'refused', reason: 'protocol', peer, detail: 'handshake timed out' });
        finish({ ok: false, detail: `${tcpUp ? 'handshake' : 'connect'} timed out` });
      }, this.opts.connectTimeoutMs ?? 2_000);
      socket.once('connect', () => { tcpUp = true; });
      socket.once('secureConnect', () => {
        const v = this.opts.verifier.verifySocket(socket, this.opts.expectedSpiffeId);
        if (v.ok) return finish({ ok: true, socket });
        this.event({ type: 'refused', reason: v.reason, peer, spiffeId: v.spiffeId, detail: v.detail });
        finish({ ok: false, detail: v.detail });
      });
      socket.on('error', (err: NodeJS.ErrnoException) => {
        if (settled) return; // after success, splice owns the socket's errors
        // Past TCP connect, a failure is the TLS handshake's: a security-relevant refusal.
        if (tcpUp) this.event({ type: 'refused', reason: 'protocol', peer, detail: err.code ?? err.message });
        finish({ ok: false, detail: err.message });
      });
      socket.once('close', () => finish({ ok: false, detail: 'closed during the handshake' }));
    });
  }

  private event(e: Omit<ProxyEvent, 'direction'>): void {
    const full: ProxyEvent = { ...e, direction: 'outbound' };
    if (full.spiffeId === undefined) delete full.spiffeId;
    try {
      this.opts.onEvent?.(full);
    } catch {
      // A failing sink must not take the connector down.
    }
  }
}
