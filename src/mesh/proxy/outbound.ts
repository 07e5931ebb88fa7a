import { once } from 'node:events';
import { createServer as createNetServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { connect as tlsConnect, createSecureContext, type SecureContext, type TLSSocket } from 'node:tls';
import { Balancer, type Endpoint, type EndpointStatus, type LbPolicy, type OutlierOptions } from './balancer.js';
import type { PeerVerifier, VerifiedPeer } from './peer-verifier.js';
import { splice, type ByteCounters } from './splice.js';
import { report, type EndpointAddress, type ProxyCredentials, type ProxyEvent, type ProxyEventSink } from './types.js';

// The outbound side: the local app connects in plain TCP to a listener per upstream; each connection is carried
// over mTLS (TLS 1.3, our SVID) to one instance of the upstream, chosen by the Balancer (least-request by default,
// with outlier ejection: see balancer.ts). The server's SVID must chain to the bundle and carry the upstream's
// expected SPIFFE ID: a valid certificate of another service is refused (and counts as a failure of that instance).
// With `alpn`, the first bytes of the local connection choose the ALPN offered upstream: h2 for the HTTP/2 preface,
// http/1.1 otherwise (the inbound http-mode listener picks its protocol by ALPN).

/** The HTTP/2 client connection preface (RFC 9113 §3.4). */
const H2_PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');
/** ALPN lists in wire format, built once (Node would convert an array on every connect). */
const ALPN_WIRE = { h2: Buffer.from('\x02h2', 'latin1'), 'http/1.1': Buffer.from('\x08http/1.1', 'latin1') } as const;
export type OutboundAlpn = keyof typeof ALPN_WIRE;

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
  /** Instance choice (default least-request: power of two choices by in-flight connections). */
  lb?: LbPolicy;
  /** Outlier ejection of instances whose connects fail (defaults: 5 failures, 30 s × ejections up to 300 s, 50 %). */
  outlier?: OutlierOptions;
  /**
   * http mode: offer ALPN h2 upstream when the local connection starts with the HTTP/2 preface, http/1.1 otherwise
   * (default false: no ALPN, bytes are not looked at).
   */
  alpn?: boolean;
  /** With `alpn`: a local connection that sends nothing within this is closed (default 10 s). */
  firstChunkTimeoutMs?: number;
  /** Injectable clock and random source of the balancer (tests). */
  now?: () => number;
  random?: () => number;
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
  /** Instance ejections so far (outlier detection). */
  ejections: number;
}

type Attempt = { ok: true; socket: TLSSocket; peer: VerifiedPeer } | { ok: false; detail: string };

/** A live outbound connection: the local app's socket, the mTLS socket, and who the upstream proved to be. */
interface LiveOutbound {
  upstream: TLSSocket;
  peer: VerifiedPeer;
}

export class OutboundConnector {
  private context: SecureContext;
  private readonly balancer: Balancer;
  private readonly live = new Map<Socket, LiveOutbound>();
  /** Local connections whose first bytes are awaited (alpn): close() must not wait 10 s for them. */
  private readonly sniffing = new Set<Socket>();
  private readonly counts = { connections: 0, failedAttempts: 0, unavailable: 0, bytesIn: 0, bytesOut: 0 };

  private constructor(private readonly server: Server, private readonly opts: OutboundOptions) {
    this.context = OutboundConnector.buildContext(opts.credentials);
    this.balancer = new Balancer(opts.instances, {
      policy: opts.lb ?? 'least-request',
      ...(opts.outlier ? { outlier: opts.outlier } : {}),
      ...(opts.now ? { now: opts.now } : {}),
      ...(opts.random ? { random: opts.random } : {}),
    });
    if (this.balancer.size === 0 && !opts.allowEmpty) throw new RangeError(`upstream ${opts.expectedSpiffeId} has no instances`);
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
    return { ...this.counts, active: this.live.size, ejections: this.balancer.ejections };
  }

  /** New connections use the new SVID and bundle; open ones keep theirs. */
  updateCredentials(c: ProxyCredentials): void {
    this.context = OutboundConnector.buildContext(c);
  }

  /**
   * Replaces the instance list (healthy instances from the catalog); open connections are not touched. Instances
   * that stay keep their balancer state (in-flight count, failures, ejection).
   */
  setInstances(instances: string[]): void {
    this.balancer.setEndpoints(instances);
  }

  /** The current instance list, `host:port`. */
  instanceList(): string[] {
    return this.balancer.addresses();
  }

  /** Per instance: in-flight connections, ejection state, consecutive failures, ejections. */
  endpoints(): EndpointStatus[] {
    return this.balancer.snapshot();
  }

  /**
   * An mTLS connection to the upstream: up to min(3, instances) distinct instances are tried, each chosen by the
   * balancer, which is told every outcome. The instance's in-flight count is held until the returned socket closes.
   * `alpn` sets the ALPN protocol offered. Null when none could be reached.
   */
  async connectUpstream(alpn?: OutboundAlpn): Promise<{ socket: TLSSocket; peer: VerifiedPeer } | null> {
    const b = this.balancer;
    const tries = Math.min(3, b.size);
    const wire = alpn === undefined ? undefined : ALPN_WIRE[alpn];
    let exclude: Set<string> | undefined; // allocated on the first failure only
    for (let i = 0; i < tries; i++) {
      const ep = b.pick(exclude);
      if (!ep) break;
      b.begin(ep);
      const r = await this.attempt(ep, wire);
      if (r.ok) {
        b.success(ep);
        r.socket.once('close', () => b.end(ep));
        return r;
      }
      b.end(ep);
      b.failure(ep);
      this.counts.failedAttempts++;
      (exclude ??= new Set()).add(ep.address);
    }
    return null;
  }

  /**
   * Re-checks the upstream identity of every live connection (after a revocation list change, or as time passes):
   * connections to a revoked or expired SVID are closed, with a `closed` event. Returns how many.
   */
  revalidate(): number {
    let n = 0;
    for (const [local, c] of [...this.live]) {
      const refused = this.opts.verifier.recheck(c.peer);
      if (!refused) continue;
      this.live.delete(local);
      this.event({ type: 'closed', reason: refused.reason, peer: `${c.upstream.remoteAddress ?? '?'}:${c.upstream.remotePort ?? '?'}`, spiffeId: c.peer.spiffeId, detail: refused.detail });
      local.destroy();
      c.upstream.destroy();
      n++;
    }
    return n;
  }

  async close(): Promise<void> {
    const closed = new Promise<void>((r) => this.server.close(() => r()));
    for (const s of this.live.keys()) s.destroy();
    for (const s of this.sniffing) s.destroy();
    await closed;
  }

  private forward(local: Socket): void {
    local.on('error', () => local.destroy());
    if (this.opts.alpn) this.sniff(local);
    else void this.relay(local, undefined);
  }

  /**
   * Reads the local connection's first bytes to choose the ALPN: h2 when they are the HTTP/2 preface (a shorter
   * chunk that is a prefix of it waits for more), http/1.1 otherwise. The bytes are put back at the head of the
   * stream (unshift, the stream paused), so the splice sends them first: nothing lost, nothing reordered.
   */
  private sniff(local: Socket): void {
    let head: Buffer | undefined;
    this.sniffing.add(local);
    const cleanup = () => {
      this.sniffing.delete(local);
      clearTimeout(timer);
      local.off('data', onData);
      local.off('end', onEnd);
      local.off('close', cleanup);
    };
    const timer = setTimeout(() => {
      cleanup();
      local.destroy();
    }, this.opts.firstChunkTimeoutMs ?? 10_000);
    const onData = (chunk: Buffer) => {
      head = head === undefined ? chunk : Buffer.concat([head, chunk]);
      const n = Math.min(head.length, H2_PREFACE.length);
      const prefix = head.compare(H2_PREFACE, 0, n, 0, n) === 0;
      if (prefix && head.length < H2_PREFACE.length) return; // maybe HTTP/2: wait for the rest of the preface
      cleanup();
      local.pause();
      local.unshift(head);
      void this.relay(local, prefix ? 'h2' : 'http/1.1');
    };
    // The app closed its side before a whole first message: nothing could be answered (no half-open sockets here).
    const onEnd = () => {
      cleanup();
      local.destroy();
    };
    local.on('data', onData);
    local.once('end', onEnd);
    local.once('close', cleanup);
    local.resume();
  }

  private async relay(local: Socket, alpn: OutboundAlpn | undefined): Promise<void> {
    const up = await this.connectUpstream(alpn);
    if (!up || local.destroyed) {
      up?.socket.destroy();
      if (!up) this.counts.unavailable++;
      local.destroy();
      return;
    }
    const upstream = up.socket;
    this.counts.connections++;
    this.live.set(local, { upstream, peer: up.peer });
    const counters: ByteCounters = { bytesIn: 0, bytesOut: 0 };
    splice(local, upstream, counters, () => {
      this.live.delete(local);
      this.counts.bytesIn += counters.bytesIn;
      this.counts.bytesOut += counters.bytesOut;
    });
    local.resume();
  }

  private attempt(instance: Endpoint, alpn: Buffer | undefined): Promise<Attempt> {
    // The peer as events name it (built only when one is reported).
    const peer = () => `${instance.host}:${instance.port}`;
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
        ALPNProtocols: alpn,
      });
      const timer = setTimeout(() => {
        if (tcpUp) this.event({ type: 'refused', reason: 'protocol', peer: peer(), detail: 'handshake timed out' });
        finish({ ok: false, detail: `${tcpUp ? 'handshake' : 'connect'} timed out` });
      }, this.opts.connectTimeoutMs ?? 2_000);
      socket.once('connect', () => { tcpUp = true; });
      socket.once('secureConnect', () => {
        const v = this.opts.verifier.verifySocket(socket, this.opts.expectedSpiffeId);
        if (v.ok) return finish({ ok: true, socket, peer: v });
        this.event({ type: 'refused', reason: v.reason, peer: peer(), spiffeId: v.spiffeId, detail: v.detail });
        finish({ ok: false, detail: v.detail });
      });
      socket.on('error', (err: NodeJS.ErrnoException) => {
        if (settled) return; // after success, splice owns the socket's errors
        // Past TCP connect, a failure is the TLS handshake's: a security-relevant refusal.
        if (tcpUp) this.event({ type: 'refused', reason: 'protocol', peer: peer(), detail: err.code ?? err.message });
        finish({ ok: false, detail: err.message });
      });
      socket.once('close', () => finish({ ok: false, detail: 'closed during the handshake' }));
    });
  }

  private event(e: Omit<ProxyEvent, 'direction'>): void {
    report(this.opts.onEvent, 'outbound', e);
  }
}
