import type { X509Certificate } from 'node:crypto';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { connect, createServer, type PeerCertificate, type TLSSocket } from 'node:tls';
import { onCleanup } from '../helpers/cleanup.js';

// Two ends of a SPIFFE mTLS connection, as a sidecar would set them up with Node's TLS: both present an X.509-SVID
// (leaf + intermediates) and trust only the trust domain's bundle; the client checks the server's SPIFFE ID itself,
// since Node's default checkServerIdentity rejects a certificate whose only SAN is a URI.

export interface SvidPair {
  keyPem: string;
  /** Leaf then intermediates. */
  certPem: string;
}

export interface SpiffeServer {
  port: number;
  /** Why handshakes were refused (tlsClientError), oldest first. */
  tlsErrors: Error[];
}

/** The one URI SAN of a certificate (X509-SVID §2), or null. */
export function spiffeIdOf(cert: X509Certificate | PeerCertificate): string | null {
  const san = 'subjectAltName' in cert ? cert.subjectAltName : cert.subjectaltname;
  const uris = (san ?? '').split(', ').filter((n) => n.startsWith('URI:')).map((n) => n.slice(4));
  return uris.length === 1 ? uris[0]! : null;
}

/**
 * A TLS 1.3 server that requires a client SVID chaining to `trust` (and, with `crl`, not listed in it). After the
 * handshake `admit` may still refuse the peer (a revocation list check); admitted peers are greeted by SPIFFE ID.
 */
export async function startSpiffeServer(opts: { svid: SvidPair; trust: string; crl?: string[]; admit?: (peer: X509Certificate) => string | null }): Promise<SpiffeServer> {
  const tlsErrors: Error[] = [];
  // tls.Server builds its one secure context from these options (it ignores a `secureContext` option).
  const server = createServer({
    key: opts.svid.keyPem, cert: opts.svid.certPem, ca: opts.trust, crl: opts.crl, requestCert: true, rejectUnauthorized: true, minVersion: 'TLSv1.3',
  }, (socket: TLSSocket) => {
    const peer = socket.getPeerX509Certificate()!;
    const refusal = opts.admit?.(peer) ?? null;
    if (refusal) {
      socket.end(`refused: ${refusal}\n`);
      return;
    }
    socket.end(`hello ${spiffeIdOf(peer)}\n`);
  });
  server.on('tlsClientError', (err) => tlsErrors.push(err));
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  onCleanup(() => new Promise((r) => server.close(r)));
  return { port: (server.address() as AddressInfo).port, tlsErrors };
}

export type HandshakeResult = { ok: true; reply: string } | { ok: false; error: string; reply: string };

/**
 * Connects with `svid`, trusting only `trust` and accepting only a server whose SPIFFE ID is `serverId`; the
 * result is what the server said, or why the connection failed. In TLS 1.3 the client finishes its handshake
 * before the server has checked the client's certificate, so success means the server's greeting arrived.
 */
export function spiffeHandshake(port: number, svid: SvidPair, trust: string, serverId: string, timeoutMs = 5_000): Promise<HandshakeResult> {
  return new Promise((resolve) => {
    let reply = '';
    let settled = false;
    const finish = (r: HandshakeResult) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      resolve(r);
    };
    const socket = connect({
      host: '127.0.0.1', port, key: svid.keyPem, cert: svid.certPem, ca: trust, minVersion: 'TLSv1.3',
      // Chain verification stays on (rejectUnauthorized defaults to true); only the name check is SPIFFE's.
      checkServerIdentity: (_host, cert) => {
        const id = spiffeIdOf(cert);
        return id === serverId ? undefined : new Error(`server SPIFFE ID is ${id}, expected ${serverId}`);
      },
    });
    const timer = setTimeout(() => finish({ ok: false, error: `no answer within ${timeoutMs} ms`, reply }), timeoutMs);
    socket.setEncoding('utf8');
    socket.on('data', (d: string) => { reply += d; });
    socket.on('end', () => finish(reply.startsWith('hello ') ? { ok: true, reply: reply.trim() } : { ok: false, error: 'closed by the server', reply: reply.trim() }));
    socket.on('error', (err) => finish({ ok: false, error: err.message, reply }));
    socket.on('close', () => finish({ ok: false, error: 'connection closed', reply: reply.trim() }));
  });
}
