import type { X509Certificate } from 'node:crypto';
import type { TLSSocket } from 'node:tls';
import { parseSpiffeId } from '../../identity/spiffe-id.js';
import type { RefusalReason } from './types.js';

// Who is on the other end of a handshake. Chain verification is OpenSSL's, against the trust bundle given as `ca`
// in the listener's or connector's secure context; sockets run with rejectUnauthorized: false so that the handshake
// finishes and *every* refusal can be reported with its reason (OpenSSL's verify code is read from
// socket.authorizationError). On top of the chain, the X509-SVID rules are checked here, then the revocation list.

export interface VerifiedPeer {
  ok: true;
  spiffeId: string;
  /** Lowercase hex, no separators (as the revocation list keys serials). */
  serial: string;
  /** Epoch ms. */
  notAfter: number;
  /**
   * The verified leaf. Read it here, not from the socket again: on a TLS client socket, Node 20's
   * getPeerX509Certificate() can answer only once (seen when session tickets are in play).
   */
  leaf: X509Certificate;
}

export interface RefusedPeer {
  ok: false;
  reason: RefusalReason;
  detail: string;
  /** The SPIFFE ID the certificate claimed, when it had one (not proven unless the chain verified). */
  spiffeId?: string;
}

export type PeerVerdict = VerifiedPeer | RefusedPeer;

export interface PeerVerifierOptions {
  /** Only SVIDs of this trust domain are accepted (a federated bundle may hold other roots). */
  trustDomain: string;
  /** `serial` is lowercase hex without separators. */
  isSerialRevoked: (serial: string) => boolean;
  isIdRevoked: (spiffeId: string) => boolean;
  now?: () => number;
  /** Every handshake verdict (metrics count handshakes by result here). */
  onVerdict?: (verdict: PeerVerdict) => void;
}

// OpenSSL verify codes (X509_V_ERR_*, as Node names them) that mean something more precise than "untrusted".
const TIME_ERRORS: Record<string, RefusalReason> = {
  CERT_HAS_EXPIRED: 'expired',
  CERT_NOT_YET_VALID: 'not_yet_valid',
};
const SVID_ERRORS = new Set(['INVALID_PURPOSE', 'UNSUPPORTED_EXTENSION_FEATURE', 'INVALID_EXTENSION']);

function refuse(reason: RefusalReason, detail: string, spiffeId?: string): RefusedPeer {
  return spiffeId === undefined ? { ok: false, reason, detail } : { ok: false, reason, detail, spiffeId };
}

/** The URI SANs of a certificate. */
function uriSans(cert: X509Certificate): string[] {
  return (cert.subjectAltName ?? '').split(', ').filter((n) => n.startsWith('URI:')).map((n) => n.slice(4));
}

export class PeerVerifier {
  private readonly now: () => number;

  constructor(private readonly opts: PeerVerifierOptions) {
    parseSpiffeId(`spiffe://${opts.trustDomain}`);
    this.now = opts.now ?? Date.now;
  }

  get trustDomain(): string {
    return this.opts.trustDomain;
  }

  /** The verdict on a socket whose handshake just finished; `expectedId` for outbound (the upstream's ID). */
  verifySocket(socket: TLSSocket, expectedId?: string): PeerVerdict {
    const leaf = socket.getPeerX509Certificate();
    const chainError = socket.authorized ? null : String(socket.authorizationError ?? 'UNKNOWN');
    const verdict = this.verifyCertificate(leaf, chainError, expectedId);
    this.opts.onVerdict?.(verdict);
    return verdict;
  }

  /**
   * `chainError` is OpenSSL's verify code for the chain against the bundle (null: it verified). OpenSSL keeps
   * the last error of the chain, so an untrusted certificate that is also out of date reads as expired/not yet
   * valid: refused either way, only the reason is the less precise one.
   */
  verifyCertificate(leaf: X509Certificate | undefined, chainError: string | null, expectedId?: string): PeerVerdict {
    if (!leaf) return refuse('no_certificate', 'the peer presented no certificate');
    const uris = uriSans(leaf);
    const claimed = uris.length === 1 ? uris[0] : undefined;
    if (chainError !== null) {
      if (chainError === 'NO_CERTIFICATE' || chainError === 'UNABLE_TO_GET_PEER_CERTIFICATE') return refuse('no_certificate', chainError);
      const reason = TIME_ERRORS[chainError] ?? (SVID_ERRORS.has(chainError) ? 'bad_svid' : 'unknown_ca');
      return refuse(reason, `chain verification failed: ${chainError}`, claimed);
    }
    // The chain verified; now the X509-SVID profile (spiffe/spiffe standards/X509-SVID.md).
    // §4.1: a leaf SVID MUST set cA to false.
    if (leaf.ca) return refuse('bad_svid', 'the leaf certificate is a CA (basicConstraints CA:true)', claimed);
    // §2: an X509-SVID MUST contain exactly one URI SAN.
    if (uris.length !== 1) return refuse('bad_svid', `the certificate has ${uris.length} URI SANs; an X509-SVID has exactly one`);
    let trustDomain: string;
    try {
      trustDomain = parseSpiffeId(claimed!).trustDomain;
    } catch (err) {
      return refuse('bad_svid', (err as Error).message);
    }
    if (trustDomain !== this.opts.trustDomain) return refuse('bad_svid', `${claimed} is not in trust domain ${this.opts.trustDomain}`, claimed);
    // OpenSSL checked the dates already; this check uses the same clock as revalidate().
    const notAfter = Date.parse(leaf.validTo);
    if (notAfter <= this.now()) return refuse('expired', `the certificate expired at ${leaf.validTo}`, claimed);
    if (Date.parse(leaf.validFrom) > this.now()) return refuse('not_yet_valid', `the certificate is valid from ${leaf.validFrom}`, claimed);
    const serial = leaf.serialNumber.replace(/:/g, '').toLowerCase();
    const revoked = this.revocation(serial, claimed!);
    if (revoked) return revoked;
    if (expectedId !== undefined && claimed !== expectedId) return refuse('wrong_identity', `the peer is ${claimed}, expected ${expectedId}`, claimed);
    return { ok: true, spiffeId: claimed!, serial, notAfter, leaf };
  }

  /** Re-checks an identity accepted earlier (revocation list changed, or time passed); null while it still holds. */
  recheck(peer: VerifiedPeer): RefusedPeer | null {
    if (peer.notAfter <= this.now()) return refuse('expired', `the certificate expired at ${new Date(peer.notAfter).toISOString()}`, peer.spiffeId);
    return this.revocation(peer.serial, peer.spiffeId);
  }

  private revocation(serial: string, spiffeId: string): RefusedPeer | null {
    if (this.opts.isSerialRevoked(serial)) return refuse('revoked', `serial ${serial} is revoked`, spiffeId);
    if (this.opts.isIdRevoked(spiffeId)) return refuse('revoked', `${spiffeId} is revoked`, spiffeId);
    return null;
  }
}
