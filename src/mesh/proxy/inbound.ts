import { once } from 'node:events';
import { connect as netConnect, type AddressInfo } from 'node:net';
import { createServer, type Server, type TLSSocket } from 'node:tls';
import type { PeerVerifier, VerifiedPeer } from './peer-verifier.js';
import { closeIdentity, contextOptions, decide, remote, revalidateLive, withLiveBytes } from './live-connections.js';
import { splice, type ByteCounters } from './splice.js';
import { report, type EndpointAddress, type EventReason, type ProxyCredentials, type ProxyEvent, type ProxyEventSink } from './types.js';

// The inbound side of the sidecar (tcp mode): TLS 1.3 only, client certificate required and verified against the
// current bundle, X509-SVID rules, revocation, then one authorization decision (the Cedar `connect` decision,
// default deny), then bytes to the local app. Every refusal and denial is a security event.

export type Authorize = (sourceSpiffeId: string) => boolean | Promise<boolean>;

export interface InboundOptions {
  /** Where the mTLS listener binds; port 0 for any. */
  listen: EndpointAddress;
  /** The local app. */
  app: EndpointAddress;
  credentials: ProxyCredentials;
  verifier: PeerVerifier;
  /** Resolves true to admit the source service; false, a throw or a rejection deny. */
  authorize: Authorize;
  onEvent?: ProxyEventSink;
  /** Handshake must finish within this (default 5 s). */
  handshakeTimeoutMs?: number;
}

export interface InboundStats {
  accepted: number;
  refused: number;
  denied: number;
  /** Live connections closed by closeConnectionsOf or revalidate. */
  cut: number;
  active: number;
  bytesIn: number;
  bytesOut: number;
}

interface LiveConnection extends ByteCounters {
  peer: VerifiedPeer;
  socket: TLSSocket;
}

export class InboundListener {
  private readonly live = new Set<LiveConnection>();
  private readonly counts = { accepted: 0, refused: 0, denied: 0, cut: 0, bytesIn: 0, bytesOut: 0 };

  private constructor(private readonly server: Server, private readonly opts: InboundOptions) {}

  static async start(opts: InboundOptions): Promise<InboundListener> {
    const server = createServer({
      ...contextOptions(opts.credentials),
      requestCert: true,
      // We verify (PeerVerifier reads OpenSSL's verdict) so that every refusal carries its reason.
      rejectUnauthorized: false,
      handshakeTimeout: opts.handshakeTimeoutMs ?? 5_000,
    });
    const listener = new InboundListener(server, opts);
    server.on('secureConnection', (socket: TLSSocket) => void listener.admit(socket));
    server.on('tlsClientError', (err: NodeJS.ErrnoException, socket: TLSSocket) => {
      listener.event({ type: 'refused', reason: 'protocol', peer: remote(socket), detail: err.code ?? err.message });
    });
    server.listen(opts.listen.port, opts.listen.host);
    await once(server, 'listening');
    return listener;
  }

  get port(): number {
    return (this.server.address() as AddressInfo).port;
  }

  stats(): InboundStats {
    return withLiveBytes(this.counts, this.live, this.live.size);
  }

  /** The live connections: who, from where, how much. */
  connections(): { spiffeId: string; serial: string; peer: string; bytesIn: number; bytesOut: number }[] {
    return [...this.live].map((c) => ({ spiffeId: c.peer.spiffeId, serial: c.peer.serial, peer: remote(c.socket), bytesIn: c.bytesIn, bytesOut: c.bytesOut }));
  }

  /** New SVID and/or bundle for new handshakes; connections already open keep theirs and stay up. */
  updateCredentials(c: ProxyCredentials): void {
    this.server.setSecureContext(contextOptions(c));
  }

  /** Closes every live connection of `spiffeId` now; returns how many. */
  closeConnectionsOf(spiffeId: string, reason: EventReason = 'revoked'): number {
    return closeIdentity(this.live, spiffeId, reason, (c, r, d) => this.cut(c, r, d));
  }

  /**
   * Re-checks every live connection (after a revocation list or policy change): revoked or expired identities and
   * those no longer authorized are closed. Returns how many were closed.
   */
  revalidate(): Promise<number> {
    return revalidateLive(this.live, this.opts.verifier, (c, r, d) => this.cut(c, r, d), this.opts.authorize);
  }

  async close(): Promise<void> {
    const closed = new Promise<void>((r) => this.server.close(() => r()));
    for (const c of this.live) c.socket.destroy();
    await closed;
  }

  private async admit(socket: TLSSocket): Promise<void> {
    socket.on('error', () => socket.destroy());
    const verdict = this.opts.verifier.verifySocket(socket);
    const peer = remote(socket);
    if (!verdict.ok) {
      this.counts.refused++;
      this.event({ type: 'refused', reason: verdict.reason, peer, spiffeId: verdict.spiffeId, detail: verdict.detail });
      socket.destroy();
      return;
    }
    if (!(await this.decide(verdict.spiffeId))) {
      this.counts.denied++;
      this.event({ type: 'denied', reason: 'denied', peer, spiffeId: verdict.spiffeId, detail: 'connect is not allowed by policy' });
      socket.destroy();
      return;
    }
    // A revocation may have landed while the decision was pending.
    const late = this.opts.verifier.recheck(verdict);
    if (late) {
      this.counts.refused++;
      this.event({ type: 'refused', reason: late.reason, peer, spiffeId: verdict.spiffeId, detail: late.detail });
      socket.destroy();
      return;
    }
    if (socket.destroyed) return;
    this.counts.accepted++;
    const conn: LiveConnection = { peer: verdict, socket, bytesIn: 0, bytesOut: 0 };
    this.live.add(conn);
    const app = netConnect(this.opts.app.port, this.opts.app.host);
    splice(socket, app, conn, () => this.retire(conn));
  }

  private decide(spiffeId: string): Promise<boolean> {
    return decide(() => this.opts.authorize(spiffeId));
  }


  /** Takes a connection out of the live set (once), folding its byte counts into the totals. */
  private retire(c: LiveConnection): boolean {
    if (!this.live.delete(c)) return false;
    this.counts.bytesIn += c.bytesIn;
    this.counts.bytesOut += c.bytesOut;
    return true;
  }

  private cut(c: LiveConnection, reason: EventReason, detail: string): void {
    if (!this.retire(c)) return;
    this.counts.cut++;
    this.event({ type: 'closed', reason, peer: remote(c.socket), spiffeId: c.peer.spiffeId, detail });
    c.socket.destroy();
  }

  private event(e: Omit<ProxyEvent, 'direction'>): void {
    report(this.opts.onEvent, 'inbound', e);
  }
}
