import { createHash, X509Certificate } from 'node:crypto';
import { once } from 'node:events';
import { Agent, request as httpRequest, type IncomingHttpHeaders, type IncomingMessage, type OutgoingHttpHeaders, type ServerResponse } from 'node:http';
import { createSecureServer, type Http2SecureServer, type Http2Session, type Http2ServerRequest, type Http2ServerResponse, type ServerHttp2Session } from 'node:http2';
import type { AddressInfo, Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import type { PeerVerifier, VerifiedPeer } from './peer-verifier.js';
import { closeIdentity, contextOptions, decide, remote, revalidateLive, withLiveBytes } from './live-connections.js';
import { report, type EndpointAddress, type EventReason, type ProxyCredentials, type ProxyEvent, type ProxyEventSink } from './types.js';

// The inbound side of the sidecar in http mode (Envoy's HTTP connection manager with Consul L7 intentions as the
// anchor). The handshake and the peer verdict are those of tcp mode (TLS 1.3 only, client certificate verified
// against the current bundle, X509-SVID rules, revocation), once per connection. Then every request — HTTP/1.1 or
// HTTP/2, chosen by ALPN — gets its own authorization decision on (source SPIFFE ID, method, path, headers), default
// deny, and allowed requests are forwarded to the local app over plain HTTP/1.1 (a keep-alive pool), bodies streamed
// both ways, with X-Forwarded-Client-Cert set the way Envoy's SANITIZE_SET does it.
//
// Paths: the request target must be origin-form (`/…`, else 400). It is normalized with the WHATWG URL parser
// (dot segments, `%2e`, backslashes resolved; duplicate slashes and `%2F` kept) and the SAME normalized path is what
// authorizeRequest sees and what the app receives, so `/api/../admin` can never be authorized as `/api/…` and served
// as `/admin`.

export interface HttpRequestInfo {
  method: string;
  /** Normalized URL path, without the query string. */
  path: string;
  /**
   * The request headers as they will be forwarded (lowercase names; hop-by-hop and HTTP/2 pseudo headers removed,
   * `host` set from `:authority` for HTTP/2), minus X-Forwarded-Client-Cert: the client's one is never trusted.
   */
  headers: IncomingHttpHeaders;
}

/** Resolves true to let the request through; false, anything else, a throw or a rejection deny. */
export type AuthorizeRequest = (sourceSpiffeId: string, request: HttpRequestInfo) => boolean | Promise<boolean>;

/** A connection-level check for revalidate(): true keeps the identity's connections, anything else cuts them. */
export type AuthorizeConnection = (sourceSpiffeId: string) => boolean | Promise<boolean>;

export interface HttpRequestRecord {
  method: string;
  /** The status sent to the client; 0 when none was (connection cut, client gone before the answer). */
  status: number;
  seconds: number;
  /** The authorization decision (false for denials and for requests refused before a decision). */
  allowed: boolean;
  protocol: 'http/1.1' | 'h2';
}

export interface InboundHttpOptions {
  /** Where the mTLS listener binds; port 0 for any. */
  listen: EndpointAddress;
  /** The local app (plain HTTP/1.1). */
  app: EndpointAddress;
  credentials: ProxyCredentials;
  /**
   * Our SPIFFE ID, the `By` of X-Forwarded-Client-Cert. Default: the URI SAN of the leaf of `credentials` (and of
   * each credential set given to updateCredentials later, unless that call passes an ID of its own).
   */
  localSpiffeId?: string;
  verifier: PeerVerifier;
  /** One decision per request; default deny. */
  authorizeRequest: AuthorizeRequest;
  /** Used by revalidate() to cut identities no longer allowed at all; without it revalidate only rechecks revocation. */
  authorizeConnection?: AuthorizeConnection;
  onEvent?: ProxyEventSink;
  /** Called once per request when its response finished or failed (a latency histogram, say). */
  onRequest?: (r: HttpRequestRecord) => void;
  /** Handshake must finish within this (default 5 s). */
  handshakeTimeoutMs?: number;
  /** The app must send its response headers within this (default 30 s), else 504. */
  appTimeoutMs?: number;
  /** Connections to the app, at most (default 256). */
  appMaxSockets?: number;
}

export interface InboundHttpStats {
  /** Connections admitted (handshake and verdict passed). */
  accepted: number;
  /** Connections refused at the handshake, plus requests refused because their peer's identity was revoked since. */
  refused: number;
  /** Requests denied by authorizeRequest. */
  denied: number;
  /** Live connections closed by closeConnectionsOf or revalidate. */
  cut: number;
  /** Live (admitted, still open) connections. */
  active: number;
  /** Requests received on admitted connections. */
  requests: number;
  /** Request body bytes forwarded towards the app (bodies only: not headers, not TLS or HTTP/2 framing). */
  bytesIn: number;
  /** Response body bytes from the app towards clients (bodies only). */
  bytesOut: number;
}

type Protocol = 'http/1.1' | 'h2';
type AnyRequest = IncomingMessage | Http2ServerRequest;
type AnyResponse = ServerResponse | Http2ServerResponse;

interface LiveConnection {
  peer: VerifiedPeer;
  socket: TLSSocket;
  /** The HTTP/2 session riding on the socket (h2 only). */
  session?: ServerHttp2Session;
  protocol: Protocol;
  /** `host:port` of the client, kept (a destroyed socket forgets its address). */
  remote: string;
  /** `Hash=…;URI=…` of X-Forwarded-Client-Cert: fixed for the connection. */
  xfccClient: string;
  requests: number;
  bytesIn: number;
  bytesOut: number;
}

// RFC 9110 §7.6.1 connection-specific fields, plus the legacy ones Envoy also strips; never forwarded either way.
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'te', 'trailer', 'http2-settings']);
const XFCC = 'x-forwarded-client-cert';
const DENIED_BODY = 'RBAC: access denied';

/** The single URI SAN of the first certificate of a PEM chain. */
export function spiffeIdOfChain(certChainPem: string): string {
  const uris = (new X509Certificate(certChainPem).subjectAltName ?? '').split(', ').filter((n) => n.startsWith('URI:'));
  if (uris.length !== 1) throw new Error(`our certificate has ${uris.length} URI SANs; an X509-SVID has exactly one`);
  return uris[0]!.slice(4);
}

/** An XFCC value, quoted when it holds one of XFCC's separators (Envoy's rule). */
function xfccValue(v: string): string {
  return /[,;="]/.test(v) ? `"${v.replace(/"/g, '\\"')}"` : v;
}

/** Headers without hop-by-hop fields (including those the Connection header names) and HTTP/2 pseudo headers. */
function endToEnd(headers: IncomingHttpHeaders): IncomingHttpHeaders {
  const named = new Set(String(headers.connection ?? '').toLowerCase().split(',').map((s) => s.trim()).filter(Boolean));
  const out: IncomingHttpHeaders = {};
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined || name.startsWith(':') || HOP_BY_HOP.has(name) || named.has(name)) continue;
    out[name] = value;
  }
  return out;
}

/** The normalized path and query of an origin-form request target; null when it is not one. */
function normalizeTarget(url: string | undefined): { path: string; search: string } | null {
  if (!url || !url.startsWith('/')) return null;
  try {
    // A fixed origin prefix keeps `//host/x` a path (not an authority); the parser resolves dot segments.
    const u = new URL(`http://proxy.invalid${url}`);
    if (u.host !== 'proxy.invalid') return null;
    return { path: u.pathname, search: u.search };
  } catch {
    return null;
  }
}

const noop = (): void => {};

export class InboundHttpListener {
  private readonly live = new Set<LiveConnection>();
  private readonly bySocket = new WeakMap<TLSSocket, LiveConnection>();
  private readonly bySession = new WeakMap<Http2Session, LiveConnection>();
  /** Every TCP connection, verified or not, so that close() never waits on one. */
  private readonly sockets = new Set<Socket>();
  private readonly counts = { accepted: 0, refused: 0, denied: 0, cut: 0, requests: 0, bytesIn: 0, bytesOut: 0 };
  private readonly agent: Agent;
  /** The session http2 just built for the socket whose 'secureConnection' is being handled (see start()). */
  private justBuilt: ServerHttp2Session | null = null;
  private localSpiffeId: string;
  private readonly explicitId: boolean;

  private constructor(private readonly server: Http2SecureServer, private readonly opts: InboundHttpOptions) {
    this.explicitId = opts.localSpiffeId !== undefined;
    this.localSpiffeId = opts.localSpiffeId ?? spiffeIdOfChain(opts.credentials.certChainPem);
    this.agent = new Agent({ keepAlive: true, maxSockets: opts.appMaxSockets ?? 256, maxFreeSockets: 64 });
  }

  static async start(opts: InboundHttpOptions): Promise<InboundHttpListener> {
    const server = createSecureServer({
      ...contextOptions(opts.credentials),
      allowHTTP1: true,
      ALPNProtocols: ['h2', 'http/1.1'],
      requestCert: true,
      // We verify (PeerVerifier reads OpenSSL's verdict) so that every refusal carries its reason.
      rejectUnauthorized: false,
      handshakeTimeout: opts.handshakeTimeoutMs ?? 5_000,
    });
    const listener = new InboundHttpListener(server, opts);
    server.on('connection', (s: Socket) => {
      listener.sockets.add(s);
      s.on('close', () => listener.sockets.delete(s));
      s.on('error', noop);
    });
    // http2's own 'secureConnection' listener (registered by createSecureServer, so it runs first) builds the
    // session of an h2 socket and emits 'session' synchronously; ours runs right after, for the same socket.
    server.on('session', (session: ServerHttp2Session) => {
      session.on('error', noop);
      listener.justBuilt = session;
    });
    server.on('secureConnection', (socket: TLSSocket) => listener.admit(socket));
    server.on('sessionError', noop);
    server.on('tlsClientError', (err: NodeJS.ErrnoException, socket: TLSSocket) => {
      listener.counts.refused++;
      listener.event({ type: 'refused', reason: 'protocol', peer: remote(socket), detail: err.code ?? err.message });
    });
    server.on('request', (req: AnyRequest, res: AnyResponse) => void listener.handle(req, res));
    server.listen(opts.listen.port, opts.listen.host);
    await once(server, 'listening');
    return listener;
  }

  get port(): number {
    return (this.server.address() as AddressInfo).port;
  }

  stats(): InboundHttpStats {
    return withLiveBytes(this.counts, this.live, this.live.size);
  }

  /** The live connections: who, from where, over what, how much. */
  connections(): { spiffeId: string; serial: string; peer: string; protocol: Protocol; requests: number; bytesIn: number; bytesOut: number }[] {
    return [...this.live].map((c) => ({
      spiffeId: c.peer.spiffeId, serial: c.peer.serial, peer: c.remote, protocol: c.protocol, requests: c.requests, bytesIn: c.bytesIn, bytesOut: c.bytesOut,
    }));
  }

  /**
   * New SVID and/or bundle for new handshakes; connections already open keep theirs and stay up. `localSpiffeId`
   * (the XFCC `By`) is taken from the call, else from the options if they fixed one, else from the new leaf.
   */
  updateCredentials(c: ProxyCredentials, localSpiffeId?: string): void {
    const id = localSpiffeId ?? (this.explicitId ? this.localSpiffeId : spiffeIdOfChain(c.certChainPem));
    this.server.setSecureContext(contextOptions(c));
    this.localSpiffeId = id;
  }

  /** Closes every live connection of `spiffeId` now (in-flight requests included); returns how many. */
  closeConnectionsOf(spiffeId: string, reason: EventReason = 'revoked'): number {
    return closeIdentity(this.live, spiffeId, reason, (c, r, d) => this.cut(c, r, d));
  }

  /**
   * Re-checks every live connection (after a revocation list or policy change): revoked or expired identities are
   * closed, and — when authorizeConnection was given — identities it no longer admits. Per-request decisions need no
   * revalidation: every later request is decided under the new policy anyway. Returns how many were closed.
   */
  revalidate(): Promise<number> {
    return revalidateLive(this.live, this.opts.verifier, (c, r, d) => this.cut(c, r, d), this.opts.authorizeConnection);
  }

  async close(): Promise<void> {
    const closed = new Promise<void>((r) => this.server.close(() => r()));
    for (const c of [...this.live]) this.drop(c);
    for (const s of this.sockets) s.destroy();
    this.agent.destroy();
    await closed;
  }

  private admit(socket: TLSSocket): void {
    const session = this.justBuilt;
    this.justBuilt = null;
    socket.on('error', () => socket.destroy());
    const peer = remote(socket);
    const verdict = this.opts.verifier.verifySocket(socket);
    if (!verdict.ok) {
      this.counts.refused++;
      this.event({ type: 'refused', reason: verdict.reason, peer, spiffeId: verdict.spiffeId, detail: verdict.detail });
      session?.destroy();
      socket.destroy();
      return;
    }
    if (socket.destroyed) return;
    const protocol: Protocol = socket.alpnProtocol === 'h2' ? 'h2' : 'http/1.1';
    const hash = createHash('sha256').update(verdict.leaf.raw).digest('hex');
    const conn: LiveConnection = {
      peer: verdict, socket, protocol, remote: peer, requests: 0, bytesIn: 0, bytesOut: 0,
      xfccClient: `Hash=${hash};URI=${xfccValue(verdict.spiffeId)}`,
    };
    if (protocol === 'h2') {
      // Defensive: the session must be the one http2 built for this very socket.
      if (!session || session.socket?.remotePort !== socket.remotePort) {
        socket.destroy();
        return;
      }
      conn.session = session;
      this.bySession.set(session, conn);
      session.once('close', () => this.retire(conn));
    }
    this.bySocket.set(socket, conn);
    socket.once('close', () => this.retire(conn));
    this.live.add(conn);
    this.counts.accepted++;
  }

  private connectionOf(req: AnyRequest): LiveConnection | undefined {
    if (req.httpVersionMajor === 2) {
      const session = (req as Http2ServerRequest).stream.session;
      return session ? this.bySession.get(session) : undefined;
    }
    return this.bySocket.get((req as IncomingMessage).socket as TLSSocket);
  }

  private async handle(req: AnyRequest, res: AnyResponse): Promise<void> {
    const started = process.hrtime.bigint();
    const protocol: Protocol = req.httpVersionMajor === 2 ? 'h2' : 'http/1.1';
    const method = req.method ?? 'GET';
    let allowed = false;
    let reported = false;
    let finished = false;
    let clientGone = false;
    const report = () => {
      if (reported) return;
      reported = true;
      const r: HttpRequestRecord = {
        method, status: res.headersSent ? res.statusCode : 0, seconds: Number(process.hrtime.bigint() - started) / 1e9, allowed, protocol,
      };
      try {
        this.opts.onRequest?.(r);
      } catch {
        // A failing sink must not break traffic.
      }
    };
    req.on('error', noop);
    res.on('error', noop);
    res.once('finish', () => { finished = true; report(); });
    res.once('close', () => { if (!finished) clientGone = true; report(); });

    const conn = this.connectionOf(req);
    if (!conn || !this.live.has(conn)) {
      // Not admitted (or cut meanwhile): nothing is processed.
      destroy(res);
      return;
    }
    conn.requests++;
    this.counts.requests++;
    if (this.refusedLate(conn)) return;

    const target = normalizeTarget(req.url);
    if (!target) {
      req.resume();
      send(res, 400, 'bad request target');
      return;
    }
    const headers = endToEnd(req.headers);
    delete headers[XFCC];
    if (protocol === 'h2') {
      const authority = req.headers[':authority'];
      if (typeof authority === 'string' && authority) headers.host = authority;
    }
    if (!headers.host) headers.host = `${this.opts.app.host}:${this.opts.app.port}`;

    allowed = await decide(() => this.opts.authorizeRequest(conn.peer.spiffeId, { method, path: target.path, headers: { ...headers } }));
    // The connection may have been cut, or the client gone, while the decision was pending.
    if (!this.live.has(conn) || clientGone) {
      allowed = false;
      destroy(res);
      return;
    }
    if (this.refusedLate(conn)) {
      allowed = false;
      return;
    }
    if (!allowed) {
      this.counts.denied++;
      this.event({ type: 'denied', reason: 'denied', peer: conn.remote, spiffeId: conn.peer.spiffeId, detail: `${method} ${target.path} is not allowed by policy` });
      req.resume();
      send(res, 403, DENIED_BODY);
      return;
    }

    headers[XFCC] = `By=${xfccValue(this.localSpiffeId)};${conn.xfccClient}`;
    this.forward(req, res, conn, method, target.path + target.search, headers, () => clientGone);
  }

  private forward(req: AnyRequest, res: AnyResponse, conn: LiveConnection, method: string, path: string, headers: OutgoingHttpHeaders, gone: () => boolean): void {
    const up = httpRequest({ host: this.opts.app.host, port: this.opts.app.port, method, path, headers, agent: this.agent, setHost: false });
    let failed = false;
    const fail = (status: number, body: string) => {
      if (failed) return;
      failed = true;
      clearTimeout(timer);
      req.unpipe(up);
      up.destroy();
      if (!res.headersSent && !gone()) {
        req.resume();
        send(res, status, body);
      } else {
        destroy(res);
      }
    };
    const timer = setTimeout(() => fail(504, 'upstream request timeout'), this.opts.appTimeoutMs ?? 30_000);
    up.on('error', () => fail(502, 'upstream connect error or disconnect/reset before headers'));
    up.on('response', (upRes: IncomingMessage) => {
      clearTimeout(timer);
      if (failed) {
        upRes.resume();
        return;
      }
      upRes.on('error', noop);
      // The app stopped mid-body: the client must not take a truncated body for a whole one.
      upRes.on('close', () => { if (!upRes.complete) destroy(res); });
      try {
        res.writeHead(upRes.statusCode ?? 502, endToEnd(upRes.headers) as OutgoingHttpHeaders);
      } catch {
        // Headers HTTP/2 refuses (or a client already gone).
        failed = true;
        up.destroy();
        destroy(res);
        return;
      }
      upRes.on('data', (d: Buffer) => { conn.bytesOut += d.length; });
      upRes.pipe(res as NodeJS.WritableStream);
    });
    // The client went away before its answer was complete: stop the app's work too.
    res.once('close', () => { if (gone()) { failed = true; clearTimeout(timer); up.destroy(); } });
    req.on('data', (d: Buffer) => { conn.bytesIn += d.length; });
    req.pipe(up);
  }

  /** A revocation that landed after the handshake: the request is refused and the connection closed. */
  private refusedLate(conn: LiveConnection): boolean {
    const late = this.opts.verifier.recheck(conn.peer);
    if (!late) return false;
    this.counts.refused++;
    this.event({ type: 'refused', reason: late.reason, peer: conn.remote, spiffeId: conn.peer.spiffeId, detail: late.detail });
    this.drop(conn);
    return true;
  }

  /** Takes a connection out of the live set (once), folding its byte counts into the totals. */
  private retire(c: LiveConnection): boolean {
    if (!this.live.delete(c)) return false;
    this.counts.bytesIn += c.bytesIn;
    this.counts.bytesOut += c.bytesOut;
    return true;
  }

  /** Closes a connection at once: its session (every stream of it) and its socket. */
  private drop(c: LiveConnection): void {
    this.retire(c);
    c.session?.destroy();
    c.socket.destroy();
  }

  private cut(c: LiveConnection, reason: EventReason, detail: string): void {
    if (!this.live.has(c)) return;
    this.counts.cut++;
    this.event({ type: 'closed', reason, peer: c.remote, spiffeId: c.peer.spiffeId, detail });
    this.drop(c);
  }

  private event(e: Omit<ProxyEvent, 'direction'>): void {
    report(this.opts.onEvent, 'inbound', e);
  }
}


/** A short plain-text answer (and, for HTTP/1.1, the connection stays usable). */
function send(res: AnyResponse, status: number, body: string): void {
  try {
    res.writeHead(status, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(body) });
    res.end(body);
  } catch {
    destroy(res);
  }
}

function destroy(res: AnyResponse): void {
  try {
    res.destroy();
  } catch {
    // Already gone.
  }
}
