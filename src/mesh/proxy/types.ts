// Shared vocabulary of the proxy's TLS core: why a peer was refused, and the security events every refusal,
// denial and forced close produces (the detection work consumes them; the proxy only reports).

/** Why a peer was refused. A fixed set: dashboards and detection rules key on it. */
export type RefusalReason =
  | 'no_certificate' // the peer sent no certificate
  | 'unknown_ca' // the chain does not lead to a root of the current bundle (self-signed, another CA, bad signature)
  | 'expired' // a certificate of the chain is past its notAfter
  | 'not_yet_valid' // a certificate of the chain is before its notBefore
  | 'revoked' // the serial or the whole SPIFFE ID is on the revocation list
  | 'wrong_identity' // outbound: a valid SVID, but not the expected upstream's SPIFFE ID
  | 'bad_svid' // not an X509-SVID: no or several URI SANs, not spiffe://, CA:true leaf, another trust domain
  | 'protocol'; // TLS-level failure: version below 1.3, handshake error or timeout

export type EventReason = RefusalReason | 'denied';

export interface ProxyEvent {
  /** refused: failed verification; denied: authorization said no; closed: a live connection was cut. */
  type: 'refused' | 'denied' | 'closed';
  reason: EventReason;
  direction: 'inbound' | 'outbound';
  /** The remote address `host:port` (the TLS peer). */
  peer: string;
  spiffeId?: string;
  /** A human explanation (OpenSSL's code, the SAN found, …). */
  detail?: string;
}

export type ProxyEventSink = (event: ProxyEvent) => void;

/** Hands an event to the sink with its direction; a failing sink must not take a listener or connector down. */
export function report(sink: ProxyEventSink | undefined, direction: ProxyEvent['direction'], e: Omit<ProxyEvent, 'direction'>): void {
  const full: ProxyEvent = { ...e, direction };
  if (full.spiffeId === undefined) delete full.spiffeId;
  try {
    sink?.(full);
  } catch {
    // The event is lost; traffic is not.
  }
}

/** Our X509-SVID and the trust bundle it is checked against. */
export interface ProxyCredentials {
  /** Leaf then intermediates, PEM. */
  certChainPem: string;
  keyPem: string;
  /** The trust bundle: root certificates, PEM. */
  bundlePem: string;
}

export interface EndpointAddress {
  host: string;
  port: number;
}

/** `host:port` → address; IPv6 as `[::1]:8443`. */
export function parseHostPort(s: string): EndpointAddress {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(s);
  const port = m ? Number(m[3]) : NaN;
  if (!m || port < 1 || port > 65_535) throw new RangeError(`invalid instance address ${JSON.stringify(s)}: use host:port`);
  return { host: m[1] ?? m[2]!, port };
}
